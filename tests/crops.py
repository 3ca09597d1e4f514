"""Real 60x80 VOC crops (tests/data/voc_crops.npz, from the first 4 voc_mini val photos) for the exact-reference
CRF tests, which need small inputs (O(N^2))."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

CROPS = Path(__file__).resolve().parent / "data" / "voc_crops.npz"


@lru_cache(maxsize=1)
def _crops() -> tuple[np.ndarray, np.ndarray]:
    with np.load(CROPS) as z:
        return z["images"], z["labels"]


def voc_crop(index: int) -> tuple[np.ndarray, np.ndarray]:
    """Crop ``index`` (0-3): image (60, 80, 3) uint8 and ground truth (60, 80) uint8 (255 = void)."""
    images, labels = _crops()
    return np.ascontiguousarray(images[index]), labels[index].copy()
