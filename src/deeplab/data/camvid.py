"""CamVid, SegNet version: 11 classes at 480x360.

``root`` holds {train,val,test}.txt (lines "/SegNet/CamVid/train/X.png /SegNet/CamVid/trainannot/X.png":
only the last folder and file names are used), {train,val,test}/ RGB PNG images and {split}annot/ mode-L
label PNGs with 0-10 = classes and 11 = void (mapped to 255 = ignore).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from deeplab.data.base import IGNORE_INDEX, SegmentationDataset
from deeplab.data.palette import load_label_png
from deeplab.errors import InputError

CAMVID_CLASSES = [
    "Sky",
    "Building",
    "Pole",
    "Road",
    "Pavement",
    "Tree",
    "SignSymbol",
    "Fence",
    "Car",
    "Pedestrian",
    "Bicyclist",
]
CAMVID_PALETTE = np.array(
    [
        (128, 128, 128),
        (128, 0, 0),
        (192, 192, 128),
        (128, 64, 128),
        (60, 40, 222),
        (128, 128, 0),
        (192, 128, 128),
        (64, 64, 128),
        (64, 0, 128),
        (64, 64, 0),
        (0, 128, 192),
    ],
    dtype=np.uint8,
)
CAMVID_VOID = 11


def _camvid_pairs(root: Path, split: str) -> list[tuple[Path, Path]]:
    listing = root / f"{split}.txt"
    if not listing.is_file():
        raise InputError(f"CamVid list file not found: {listing}")
    pairs = []
    for n, line in enumerate(listing.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise InputError(f"{listing}:{n}: expected 'IMAGE LABEL', got {line!r}")
        img, lab = (Path(f.replace("\\", "/")) for f in fields)
        pairs.append((root / img.parent.name / img.name, root / lab.parent.name / lab.name))
    return pairs


class CamVid(SegmentationDataset):
    """CamVid split ``train`` (367), ``val`` (101) or ``test`` (233) (joined / sliced: deeplab.data.build_dataset)."""

    classes = CAMVID_CLASSES
    palette = CAMVID_PALETTE
    boundary = "labels"  # void marks unlabelled regions, not a band around objects

    def __init__(self, root: str | Path, split: str = "test", transform: Callable | None = None):
        self.root = Path(root)
        self.split = split
        pairs = _camvid_pairs(self.root, split)
        super().__init__([p[0].stem for p in pairs], [p[0] for p in pairs], [p[1] for p in pairs], transform)

    def load_label(self, i: int) -> np.ndarray:
        label = load_label_png(self.label_paths[i])
        label[label == CAMVID_VOID] = IGNORE_INDEX
        return label
