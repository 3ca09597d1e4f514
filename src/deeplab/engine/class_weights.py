"""Class weights for the training loss: median frequency balancing (Eigen & Fergus 2015, used by SegNet on CamVid).

freq(c) = pixels of class c / pixels of the images in which c appears; weight(c) = median(freq) / freq(c).
Rare classes (poles, signs, pedestrians) get weights above 1, sky and road below. Not in the DeepLab v1 paper
(VOC is trained unweighted): off by default (train.class_weighting: none).
"""

from __future__ import annotations

import numpy as np

from deeplab.data.base import IGNORE_INDEX


def class_pixel_counts(labels, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """labels: iterable of (H, W) int label maps (255 ignored). Returns (pixels per class, pixels of the images
    containing the class), both (num_classes,) int64; ignored pixels count in neither."""
    counts = np.zeros(num_classes, np.int64)
    present_in = np.zeros(num_classes, np.int64)
    for label in labels:
        label = np.asarray(label)
        valid = label[(label != IGNORE_INDEX) & (label < num_classes)]
        c = np.bincount(valid.ravel(), minlength=num_classes)
        counts += c
        present_in += np.where(c > 0, valid.size, 0)
    return counts, present_in


def median_frequency_weights(counts: np.ndarray, present_in: np.ndarray) -> np.ndarray:
    """(C,) float64 weights median(freq) / freq; classes never seen get weight 0 (they never occur as targets)."""
    seen = counts > 0
    freq = np.zeros(len(counts), np.float64)
    freq[seen] = counts[seen] / present_in[seen]
    weights = np.zeros(len(counts), np.float64)
    weights[seen] = np.median(freq[seen]) / freq[seen]
    return weights
