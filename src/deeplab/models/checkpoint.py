"""Model checkpoints: architecture + weights + everything needed to use them (classes, palette, Preprocess, CRF)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deeplab.errors import InputError
from deeplab.io import atomic_torch_save, load_torch_file
from deeplab.models.deeplab import DeepLab, build_model
from deeplab.preprocess import Preprocess

FORMAT = "deeplab-model"
VERSION = 1


@dataclass
class LoadedModel:
    """A checkpoint loaded for use: model in eval mode; palette (K, 3) uint8; meta = the raw non-weight fields."""

    model: DeepLab
    arch: str
    classes: list[str]
    palette: np.ndarray
    preprocess: Preprocess
    crf: dict | None = None
    meta: dict = field(default_factory=dict)


def save_model(path: str | os.PathLike, model: DeepLab, *, classes: list[str], palette: np.ndarray | list,
               preprocess: Preprocess, crf: dict | None = None, extra: dict | None = None) -> Path:
    """Write a self-describing checkpoint atomically. Returns the path."""
    if not isinstance(model, DeepLab):
        raise InputError(f"save_model: expected a DeepLab model, got {type(model).__name__}")
    classes = [str(c) for c in classes]
    if len(classes) != model.num_classes:
        raise InputError(f"save_model: {len(classes)} class names for a {model.num_classes}-class model")
    pal = np.asarray(palette, dtype=np.int64).reshape(-1, 3) if len(palette) else np.zeros((0, 3), np.int64)
    if pal.size and (pal.min() < 0 or pal.max() > 255):
        raise InputError("save_model: palette values must lie in [0, 255]")
    ckpt = {
        "format": FORMAT,
        "version": VERSION,
        **model.config(),
        "classes": classes,
        "palette": pal.astype(np.uint8).tolist(),
        "preprocess": preprocess.to_dict(),
        "crf": dict(crf) if crf is not None else None,
        "extra": dict(extra) if extra is not None else {},
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
    }
    return atomic_torch_save(ckpt, path)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load and validate the raw checkpoint dict (InputError naming the file if missing/corrupt/foreign)."""
    path = Path(path)
    ckpt = load_torch_file(path, "model checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise InputError(f"{path}: not a deeplab model checkpoint (no format={FORMAT!r} entry; save it with save_model)")
    if ckpt.get("version", 0) > VERSION:
        raise InputError(f"{path}: checkpoint version {ckpt['version']} is newer than this deeplab ({VERSION})")
    missing = [k for k in ("arch", "num_classes", "width", "batch_norm", "state_dict", "preprocess") if k not in ckpt]
    if missing:
        raise InputError(f"{path}: deeplab checkpoint lacks {', '.join(missing)}")
    return ckpt


def load_model(path: str | os.PathLike) -> LoadedModel:
    """Rebuild the model from a save_model checkpoint; eval mode, its Preprocess attached as model.preprocess."""
    ckpt = read_checkpoint(path)
    try:
        model = build_model(ckpt["arch"], int(ckpt["num_classes"]), float(ckpt["width"]), bool(ckpt["batch_norm"]))
    except InputError as e:
        raise InputError(f"{path}: {e}") from e
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise InputError(f"{path}: weights do not fit arch {ckpt['arch']!r}: {e}") from e
    model.eval()
    preprocess = Preprocess.from_dict(ckpt["preprocess"])
    model.preprocess = preprocess
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    palette = np.asarray(ckpt.get("palette") or np.zeros((0, 3)), dtype=np.uint8).reshape(-1, 3)
    return LoadedModel(model, ckpt["arch"], list(ckpt.get("classes") or []), palette, preprocess, ckpt.get("crf"), meta)
