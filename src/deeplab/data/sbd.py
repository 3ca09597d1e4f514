"""Semantic Boundaries Dataset (Hariharan et al. 2011) and the VOC ``train_aug`` merge.

SBD layout: ``root`` is benchmark_RELEASE/ or its dataset/ folder, holding img/*.jpg, cls/*.mat
(MATLAB struct GTcls with field Segmentation: (H, W) class ids 0-20) and train.txt / val.txt.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.io

from deeplab.data.base import SegmentationDataset, read_id_list
from deeplab.data.palette import load_label_png, voc_palette
from deeplab.data.voc import VOC_CLASSES, find_voc_root, voc_split_ids
from deeplab.errors import InputError


def find_sbd_root(root: str | Path) -> Path:
    """The SBD dataset/ folder under ``root`` (itself, dataset/ or benchmark_RELEASE/dataset/)."""
    root = Path(root)
    for cand in (root, root / "dataset", root / "benchmark_RELEASE" / "dataset"):
        if (cand / "cls").is_dir():
            return cand
    raise InputError(f"{root}: not an SBD folder (expected cls/ in it, in dataset/ or in benchmark_RELEASE/dataset/)")


def load_sbd_mat(path: str | Path) -> np.ndarray:
    """Read GTcls.Segmentation from an SBD cls/*.mat file. Returns (H, W) uint8 class ids."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"label file not found: {path}")
    try:
        mat = scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)
        seg = np.asarray(mat["GTcls"].Segmentation)
    except Exception as e:  # corrupt file, not a .mat, missing GTcls/Segmentation
        raise InputError(f"{path}: cannot read SBD GTcls.Segmentation ({e})") from e
    if seg.ndim != 2 or seg.size == 0 or seg.min() < 0 or seg.max() > 255:
        raise InputError(f"{path}: GTcls.Segmentation must be a 2-D map of labels 0-255, got shape {seg.shape}")
    return seg.astype(np.uint8)


class _LabelsFromPngOrMat(SegmentationDataset):
    def load_label(self, i: int) -> np.ndarray:
        path = self.label_paths[i]
        return load_sbd_mat(path) if path.suffix == ".mat" else load_label_png(path)


class SBDSegmentation(_LabelsFromPngOrMat):
    """SBD split ``train`` (8,498) or ``val`` (2,857), or ``trainval``: img/*.jpg with cls/*.mat labels."""

    classes = VOC_CLASSES
    palette = voc_palette(len(VOC_CLASSES))
    boundary = "labels"  # SBD masks have no void band

    def __init__(self, root: str | Path, split: str = "train", transform: Callable | None = None):
        self.root = find_sbd_root(root)
        self.split = split
        splits = ["train", "val"] if split == "trainval" else [split]
        names = sorted({n for s in splits for n in read_id_list(self.root / f"{s}.txt")})
        super().__init__(
            names,
            [self.root / "img" / f"{n}.jpg" for n in names],
            [self.root / "cls" / f"{n}.mat" for n in names],
            transform,
        )


def train_aug_ids(voc_root: str | Path, sbd_root: str | Path) -> tuple[list[str], set[str]]:
    """The VOC ``train_aug`` recipe: (SBD train ∪ SBD val ∪ VOC train) − VOC val (10,582 ids on the full sets).

    Returns (sorted ids, the subset labelled by VOC's own SegmentationClass).
    """
    sbd = find_sbd_root(sbd_root)
    voc_train = set(voc_split_ids(voc_root, "train"))
    voc_val = set(voc_split_ids(voc_root, "val"))
    sbd_all = set(read_id_list(sbd / "train.txt")) | set(read_id_list(sbd / "val.txt"))
    return sorted((sbd_all | voc_train) - voc_val), voc_train


class VOCAugSegmentation(_LabelsFromPngOrMat):
    """VOC 2012 ``train_aug``: VOC images; VOC's label PNG where VOC has one (train), else SBD's .mat."""

    classes = VOC_CLASSES
    palette = voc_palette(len(VOC_CLASSES))
    boundary = "void"

    def __init__(self, voc_root: str | Path, sbd_root: str | Path, transform: Callable | None = None):
        self.root = find_voc_root(voc_root)
        self.sbd_root = find_sbd_root(sbd_root)
        self.split = "train_aug"
        names, voc_labelled = train_aug_ids(self.root, self.sbd_root)
        images, labels = [], []
        for n in names:
            jpg = self.root / "JPEGImages" / f"{n}.jpg"
            images.append(jpg if jpg.is_file() else self.sbd_root / "img" / f"{n}.jpg")
            labels.append(
                self.root / "SegmentationClass" / f"{n}.png"
                if n in voc_labelled
                else self.sbd_root / "cls" / f"{n}.mat"
            )
        super().__init__(names, images, labels, transform)
