"""Class weights for the training loss; not in the DeepLab v1 paper (VOC is trained unweighted), so off by
default (train.class_weighting: none).

median_frequency (Eigen & Fergus 2015, SegNet on CamVid): freq(c) = pixels of class c / pixels of the images
in which c appears; weight(c) = median(freq) / freq(c). On CamVid train: 0.15 (road) to 8.8 (bicyclist).
enet (Paszke et al. 2016, ENet on CamVid): weight(c) = 1 / ln(1.02 + p(c)), p(c) = the class's share of all
labelled pixels; bounded by 1/ln(1.02) ~ 50, a gentler spread (on CamVid train 3.3 (road) to 44 (bicyclist)
against 0.15 to 8.8).
Only ratios matter: the loss is normalised by the summed weights of the batch's pixels.
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


def enet_weights(counts: np.ndarray, c: float = 1.02) -> np.ndarray:
    """(C,) float64 weights 1 / ln(c + p) with p the class's share of all pixels; unseen classes get 0."""
    counts = np.asarray(counts, np.float64)
    p = counts / max(counts.sum(), 1.0)
    return np.where(counts > 0, 1.0 / np.log(c + p), 0.0)
