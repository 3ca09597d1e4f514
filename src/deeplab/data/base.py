"""The common shape of every segmentation data set.

A data set is an indexable list of (image, label) pairs:
``image`` (H, W, 3) uint8 RGB, ``label`` (H, W) uint8 with class ids 0..K-1 and 255 = ignore.
It knows its ``classes`` (names), ``palette`` ((K, 3) uint8 colours), ``names`` (per-sample ids, alias ``ids``)
and how its boundaries are marked for the trimap evaluation (``boundary``: "void" when the ground truth
has a void band around objects, as VOC; "labels" when boundaries are where labels change, as CamVid).
With a ``transform`` it yields ``transform(image, label)`` instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from deeplab.data.images import load_rgb
from deeplab.data.palette import load_label_png
from deeplab.errors import InputError

IGNORE_INDEX = 255


class SegmentationDataset:
    """Base class: subclasses fill ``names``, ``image_paths`` and override ``load_label`` if needed."""

    classes: list[str]
    palette: np.ndarray
    boundary: str = "void"
    ignore_index: int = IGNORE_INDEX

    def __init__(
        self,
        names: Sequence[str],
        image_paths: Sequence[Path],
        label_paths: Sequence[Path],
        transform: Callable | None = None,
    ):
        if not (len(names) == len(image_paths) == len(label_paths)):
            raise ValueError("names, image_paths and label_paths must have the same length")
        self.names = list(names)
        self.image_paths = [Path(p) for p in image_paths]
        self.label_paths = [Path(p) for p in label_paths]
        self.transform = transform

    @property
    def ids(self) -> list[str]:
        return self.names

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.names)

    def load_image(self, i: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB of sample i."""
        return load_rgb(self.image_paths[i])

    def load_label(self, i: int) -> np.ndarray:
        """(H, W) uint8 labels of sample i (255 = ignore)."""
        return load_label_png(self.label_paths[i])

    def check_label(self, label: np.ndarray, path: Path) -> np.ndarray:
        """Reject labels outside 0..K-1 and 255 (a wrong data set or a corrupt file)."""
        bad = (label >= self.num_classes) & (label != self.ignore_index)
        if bad.any():
            raise InputError(
                f"{path}: label values {sorted(np.unique(label[bad]).tolist())[:5]} are not "
                f"classes 0..{self.num_classes - 1} or {self.ignore_index} (ignore)"
            )
        return label

    def sample(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """The raw pair (image (H, W, 3) uint8, label (H, W) uint8) of sample i, sizes checked."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"sample {i} out of range for {len(self)} samples")
        image = self.load_image(i)
        label = self.check_label(self.load_label(i), self.label_paths[i])
        if image.shape[:2] != label.shape:
            raise InputError(
                f"{self.label_paths[i]}: label size {label.shape} != image size {image.shape[:2]} "
                f"of {self.image_paths[i]}"
            )
        return image, label

    def __getitem__(self, i: int):
        image, label = self.sample(i)
        if self.transform is not None:
            return self.transform(image, label)
        return image, label

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} samples, {self.num_classes} classes)"


def read_id_list(path: Path) -> list[str]:
    """Non-empty lines of a list file (first whitespace-separated field). Missing file -> InputError."""
    if not path.is_file():
        raise InputError(f"list file not found: {path}")
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read list file ({e})") from e
    return [ln.split()[0] for ln in lines if ln.strip()]
