"""PASCAL VOC 2012 segmentation in the devkit layout.

``root`` is the VOC2012 folder (JPEGImages/, SegmentationClass/, ImageSets/Segmentation/{split}.txt)
or a folder holding VOC2012/ or VOCdevkit/VOC2012/.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from deeplab.data.base import SegmentationDataset, read_id_list
from deeplab.data.palette import voc_palette
from deeplab.errors import InputError

VOC_CLASSES = [
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
]


def find_voc_root(root: str | Path) -> Path:
    """The VOC2012 folder under ``root`` (itself, VOC2012/ or VOCdevkit/VOC2012/)."""
    root = Path(root)
    for cand in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (cand / "JPEGImages").is_dir() and (cand / "ImageSets" / "Segmentation").is_dir():
            return cand
    raise InputError(
        f"{root}: not a PASCAL VOC 2012 folder (expected JPEGImages/ and ImageSets/Segmentation/ "
        "in it, in VOC2012/ or in VOCdevkit/VOC2012/)"
    )


def voc_split_ids(root: str | Path, split: str) -> list[str]:
    """Image ids listed in ImageSets/Segmentation/{split}.txt."""
    return read_id_list(find_voc_root(root) / "ImageSets" / "Segmentation" / f"{split}.txt")


class VOCSegmentation(SegmentationDataset):
    """VOC 2012 segmentation split (train, val, trainval, ...): JPEG images, palette PNG labels (255 = void band)."""

    classes = VOC_CLASSES
    palette = voc_palette(len(VOC_CLASSES))
    boundary = "void"

    def __init__(self, root: str | Path, split: str = "val", transform: Callable | None = None):
        self.root = find_voc_root(root)
        self.split = split
        names = voc_split_ids(self.root, split)
        super().__init__(
            names,
            [self.root / "JPEGImages" / f"{n}.jpg" for n in names],
            [self.root / "SegmentationClass" / f"{n}.png" for n in names],
            transform,
        )
