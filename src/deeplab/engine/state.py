"""Training checkpoints: everything needed to continue a run on the same trajectory, written atomically.

A checkpoint holds the model and optimizer (momentum buffers) state, the number of completed iterations,
the data position (the same on every rank: all ranks consume equal shares), the config, the seconds spent
training so far and ``meta`` (classes, palette, preprocess: what makes the checkpoint usable as a model file).
Random state needs no saving: dropout is seeded from
(seed, rank, iteration) and augmentation from (seed, epoch, index) (see deeplab.engine.sampler), so both
are restored by construction.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

from deeplab.engine.sampler import Position
from deeplab.errors import InputError
from deeplab.io import atomic_torch_save, load_torch_file
from deeplab.models.checkpoint import TRAIN_STATE_FORMAT as FORMAT

VERSION = 1


def save_state(
    path: str | os.PathLike,
    *,
    model_state: dict,
    optimizer_state: dict,
    iteration: int,
    position: Position,
    config: dict,
    meta: dict | None = None,
    train_seconds: float = 0.0,
) -> Path:
    """Write a checkpoint atomically (a kill mid-write leaves the previous one intact)."""
    return atomic_torch_save(
        {
            "format": FORMAT,
            "version": VERSION,
            "iteration": iteration,
            "position": asdict(position),
            "config": config,
            "meta": meta or {},
            "train_seconds": float(train_seconds),
            "model": model_state,
            "optimizer": optimizer_state,
        },
        path,
    )


def load_state(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by save_state; ``position`` comes back as a Position."""
    path = Path(path)
    state = load_torch_file(path, "training checkpoint")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise InputError(f"{path}: not a deeplab training checkpoint")
    if state.get("version") != VERSION:
        raise InputError(f"{path}: checkpoint version {state.get('version')} is not supported (want {VERSION})")
    state["position"] = Position(**state["position"])
    return state
