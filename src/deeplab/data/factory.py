"""``build_dataset(name, root, split)``: one entry point for every data set format."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from deeplab.data.base import SegmentationDataset
from deeplab.errors import InputError

DATASETS = ("voc", "sbd", "camvid", "folder")


def _guess_sbd_root(voc_root: Path) -> Path:
    for base in (voc_root, voc_root.parent, voc_root.parent.parent):
        for name in ("SBD", "benchmark_RELEASE", "sbd"):
            if (base / name).is_dir():
                return base / name
    raise InputError(
        f"split train_aug needs the SBD data set: pass sbd_root (none found as SBD/ or "
        f"benchmark_RELEASE/ beside {voc_root})"
    )


_PART = re.compile(r"^(?P<name>[^\[\]+]+)(\[(?P<start>-?\d*):(?P<stop>-?\d*)\])?$")


def build_dataset(
    name: str,
    root: str | Path,
    split: str,
    transform: Callable | None = None,
    sbd_root: str | Path | None = None,
    classes_file: str | Path | None = None,
) -> SegmentationDataset:
    """Open data set ``name`` (one of DATASETS) at ``root``, split ``split``.

    voc: splits from ImageSets/Segmentation (train, val, ...) plus ``train_aug`` (VOC + SBD, needs ``sbd_root``
    or an SBD/ / benchmark_RELEASE/ folder beside the VOC folder). sbd: train, val, trainval.
    camvid: train, val, test. folder: SPLIT.txt in root, or "all".
    Any data set: parts joined by "+" and Python slices of a split's list, e.g. ``train+val[40:]`` (train and
    all of val but its first 40 images, which stay held out: ``val[:40]``).
    """
    if "+" in split or "[" in split:
        parts = []
        for text in split.split("+"):
            m = _PART.match(text.strip())
            if not m:
                raise InputError(f"split {split!r}: expected parts like 'train' or 'val[40:]' joined by '+'")
            part = _open(name, root, m["name"], transform, sbd_root, classes_file)
            if m.group(2):
                keep = slice(int(m["start"]) if m["start"] else None, int(m["stop"]) if m["stop"] else None)
                part.names, part.image_paths = part.names[keep], part.image_paths[keep]
                part.label_paths = part.label_paths[keep]
            parts.append(part)
        merged = parts[0]
        for part in parts[1:]:
            merged.names += part.names
            merged.image_paths += part.image_paths
            merged.label_paths += part.label_paths
        if not len(merged):
            raise InputError(f"split {split!r} of {root} selects no images")
        return merged
    return _open(name, root, split, transform, sbd_root, classes_file)


def _open(
    name: str,
    root: str | Path,
    split: str,
    transform: Callable | None,
    sbd_root: str | Path | None,
    classes_file: str | Path | None,
) -> SegmentationDataset:
    from deeplab.data.camvid import CamVid
    from deeplab.data.folder import FolderDataset
    from deeplab.data.sbd import SBDSegmentation, VOCAugSegmentation
    from deeplab.data.voc import VOCSegmentation

    root = Path(root)
    if not root.exists():
        raise InputError(f"data root not found: {root}")
    if name == "voc":
        if split == "train_aug":
            return VOCAugSegmentation(root, Path(sbd_root) if sbd_root else _guess_sbd_root(root), transform)
        return VOCSegmentation(root, split, transform)
    if name == "sbd":
        return SBDSegmentation(root, split, transform)
    if name == "camvid":
        return CamVid(root, split, transform)
    if name == "folder":
        return FolderDataset(root, split, transform, classes_file=classes_file)
    raise InputError(f"unknown data set {name!r}: choose one of {', '.join(DATASETS)}")
