"""Data sets in their on-disk formats, joint transforms and palettes.

``build_dataset(name, root, split)`` opens any of them; each yields (image (H, W, 3) uint8 RGB,
label (H, W) uint8, 255 = ignore) and has ``classes``, ``palette`` and ``names``.
"""

from deeplab.data.base import IGNORE_INDEX, SegmentationDataset
from deeplab.data.factory import DATASETS, build_dataset

__all__ = ["DATASETS", "IGNORE_INDEX", "SegmentationDataset", "build_dataset"]
