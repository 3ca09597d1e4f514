"""Tiny real-data training setups shared by the engine and CLI tests: the 120x90 CamVid fixture
(tests/data/camvid_tiny: 4 train, 2 val, 2 test frames), a narrow model."""

from __future__ import annotations

from pathlib import Path

import yaml

from deeplab.engine.config import Config, config_from_dict, merge


def tiny_dict(root: Path, **sections) -> dict:
    """Config dict: width-1/16 LargeFOV with BN, 65 px crops of the 120x90 CamVid frames, 1 thread; sections
    override."""
    base = {
        "model": {"arch": "deeplab-largefov", "width": 0.0625, "batch_norm": True},
        "data": {
            "dataset": "camvid",
            "root": str(root),
            "split": "train",
            "crop_size": 65,
            "scale_min": 1.0,
            "scale_max": 1.2,
        },
        "train": {
            "iterations": 4,
            "batch_size": 2,
            "micro_batch": 1,
            "lr": 0.01,
            "checkpoint_every": 2,
            "log_every": 1,
            "threads": 1,
        },
    }
    return merge(base, sections)


def tiny_config(root: Path, **sections) -> Config:
    return config_from_dict(tiny_dict(root, **sections))


def write_config(path: Path, d: dict) -> Path:
    path.write_text(yaml.safe_dump(d))
    return path
