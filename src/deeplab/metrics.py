"""Segmentation metrics: confusion matrix, pixel/class accuracy, IoU, boundary trimap bands.

Conventions (VOC): ground-truth pixels equal to ``ignore_index`` (255) are not counted; rows of the
confusion matrix are ground truth, columns are predictions.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def confusion_matrix(
    pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore_index: int = 255, mask: np.ndarray | None = None
) -> np.ndarray:
    """pred, gt: (H, W) int labels; mask: optional (H, W) bool of pixels to count. Returns (C, C) int64."""
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} != ground truth shape {gt.shape}")
    keep = (gt != ignore_index) & (gt >= 0) & (gt < num_classes)
    if mask is not None:
        keep &= mask
    g = gt[keep].astype(np.int64)
    p = pred[keep].astype(np.int64)
    if p.size and (p.min() < 0 or p.max() >= num_classes):
        raise ValueError(f"predicted labels must lie in [0, {num_classes}), got [{p.min()}, {p.max()}]")
    return np.bincount(g * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def scores(conf: np.ndarray) -> dict:
    """Scores of a (C, C) confusion matrix.

    Returns pixel_acc, mean_acc, miou (floats in [0, 1]) and per-class iou/acc ((C,) float64; NaN for
    classes absent from both ground truth and prediction, left out of the means).
    """
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diag(conf)
    gt_count = conf.sum(1)
    pred_count = conf.sum(0)
    union = gt_count + pred_count - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        acc = np.where(gt_count > 0, tp / gt_count, np.nan)
    total = conf.sum()
    return {
        "pixel_acc": float(tp.sum() / total) if total else float("nan"),
        "mean_acc": float(np.nanmean(acc)) if np.isfinite(acc).any() else float("nan"),
        "miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
        "iou": iou,
        "acc": acc,
    }


def label_boundaries(gt: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    """Boundary pixels of a label map. gt: (H, W) -> (H, W) bool.

    If the map has void pixels (VOC marks object boundaries with a 255 band) those are the boundary,
    as in the paper's trimap; otherwise pixels whose right or lower neighbour has another label.
    """
    gt = np.asarray(gt)
    void = gt == ignore_index
    if void.any():
        return void
    edge = np.zeros(gt.shape, dtype=bool)
    dx = gt[:, 1:] != gt[:, :-1]
    dy = gt[1:, :] != gt[:-1, :]
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    edge[1:, :] |= dy
    edge[:-1, :] |= dy
    return edge


def trimap_band(gt: np.ndarray, width: int, ignore_index: int = 255) -> np.ndarray:
    """Pixels within ``width`` px of a boundary: square dilation of side 2*width+1. Returns (H, W) bool."""
    if width < 0:
        raise ValueError(f"band width must be >= 0, got {width}")
    edge = label_boundaries(gt, ignore_index)
    if width == 0:
        return edge
    return ndimage.binary_dilation(edge, structure=np.ones((2 * width + 1, 2 * width + 1), dtype=bool))
