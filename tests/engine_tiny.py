"""Tiny real-data training setups shared by the engine and CLI tests: a few CamVid images, a narrow model."""

from __future__ import annotations

from pathlib import Path

import yaml

from deeplab.engine.config import Config, config_from_dict, merge


def tiny_camvid(shared_data: Path, dest: Path, n: int = 4, split: str = "train") -> Path:
    """A CamVid root under ``dest`` whose ``train`` split is the first ``n`` images of the real ``split``."""
    src = Path(shared_data) / "camvid"
    root = dest / "camvid"
    root.mkdir(parents=True)
    lines = [ln for ln in (src / f"{split}.txt").read_text().splitlines() if ln.strip()][:n]
    folder = Path(lines[0].split()[0]).parent.name
    (root / "train.txt").write_text("".join(f"/x/train/{Path(a).name} /x/trainannot/{Path(b).name}\n"
                                            for a, b in (ln.split() for ln in lines)))
    (root / "train").symlink_to(src / folder)
    (root / "trainannot").symlink_to(src / f"{folder}annot")
    return root


def tiny_dict(root: Path, **sections) -> dict:
    """Config dict: width-1/16 LargeFOV with BN, 65 px crops of quarter-size CamVid, 1 thread; sections override."""
    base = {
        "model": {"arch": "deeplab-largefov", "width": 0.0625, "batch_norm": True},
        "data": {"dataset": "camvid", "root": str(root), "split": "train", "crop_size": 65,
                 "scale_min": 0.25, "scale_max": 0.3},
        "train": {"iterations": 4, "batch_size": 2, "micro_batch": 1, "lr": 0.01, "checkpoint_every": 2,
                  "log_every": 1, "threads": 1},
    }
    return merge(base, sections)


def tiny_config(root: Path, **sections) -> Config:
    return config_from_dict(tiny_dict(root, **sections))


def write_config(path: Path, d: dict) -> Path:
    path.write_text(yaml.safe_dump(d))
    return path
