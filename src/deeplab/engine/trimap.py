"""Boundary trimap evaluation (paper Fig. 5): scores inside bands of width 1..W px around object boundaries.

A pixel is in the band of width w when a boundary pixel lies within its (2w+1)x(2w+1) square, i.e. its
chessboard distance to the boundary is <= w: one distance transform gives every band at once (identical to
``metrics.trimap_band``'s square dilation). Boundaries are the void band (VOC) or label changes (CamVid,
SBD, folder data sets: ``dataset.boundary == "labels"``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy import ndimage

from deeplab.metrics import label_boundaries, scores


def boundary_mask(gt: np.ndarray, mode: str = "void", ignore_index: int = 255) -> np.ndarray:
    """gt: (H, W) labels -> (H, W) bool boundary pixels.

    mode "void": the void (ignore) pixels, or label changes if the map has none (metrics.label_boundaries).
    mode "labels": pixels where the label changes (void counts as a label: data sets whose void marks
    unlabelled regions, not a band).
    """
    if mode == "void":
        return label_boundaries(gt, ignore_index)
    if mode == "labels":
        return label_boundaries(np.asarray(gt, dtype=np.int16), ignore_index=-1)  # -1: no pixel is void
    raise ValueError(f"boundary mode must be 'void' or 'labels', got {mode!r}")


def boundary_distance(gt: np.ndarray, mode: str = "void", ignore_index: int = 255) -> np.ndarray:
    """Chessboard distance (px) of every pixel to the nearest boundary pixel. Returns (H, W) int32;
    a huge value everywhere when there is no boundary."""
    edge = boundary_mask(gt, mode, ignore_index)
    if not edge.any():
        return np.full(edge.shape, np.iinfo(np.int32).max, dtype=np.int32)
    return ndimage.distance_transform_cdt(~edge, metric="chessboard").astype(np.int32)


def band_confusions(
    pred: np.ndarray, gt: np.ndarray, distance: np.ndarray, num_classes: int, max_width: int, ignore_index: int = 255
) -> np.ndarray:
    """Confusion matrices inside bands of width 1..max_width. Returns (max_width, C, C) int64; [w-1] = width w."""
    keep = (gt != ignore_index) & (distance <= max_width)
    d = np.maximum(distance[keep], 1).astype(np.int64) - 1  # width-1 band already holds distance-0 pixels
    g = gt[keep].astype(np.int64)
    p = pred[keep].astype(np.int64)
    if p.size and (p.min() < 0 or p.max() >= num_classes):
        raise ValueError(f"predicted labels must lie in [0, {num_classes}), got [{p.min()}, {p.max()}]")
    c2 = num_classes * num_classes
    counts = np.bincount(d * c2 + g * num_classes + p, minlength=max_width * c2)
    return np.cumsum(counts.reshape(max_width, num_classes, num_classes), axis=0)


def trimap_scores(bands: np.ndarray) -> dict:
    """(W, C, C) band confusions -> {"pixel_acc": [W floats], "miou": [W floats]} (VOC IoU; absent classes skipped)."""
    s = [scores(c) for c in bands]
    return {"pixel_acc": [x["pixel_acc"] for x in s], "miou": [x["miou"] for x in s]}


def plot_trimap(trimap: dict, path: str | os.PathLike, title: str | None = None) -> Path:
    """Figure 5 of the paper: pixel accuracy and mIoU (%) vs trimap band width, one curve per method.

    trimap: {"widths": [...], "<method>": {"pixel_acc": [...], "miou": [...]}, ...} as in metrics.json.
    """
    from deeplab.engine.plots import figure, save_figure

    widths = trimap["widths"]
    methods = [k for k in trimap if k != "widths"]
    fig, axes = figure(10, 4, 2)
    for ax, key, label in zip(axes, ("pixel_acc", "miou"), ("pixel accuracy (%)", "mean IOU (%)"), strict=True):
        for m in methods:
            values = [100 * v if v is not None else np.nan for v in trimap[m][key]]
            ax.plot(widths, values, marker="o", markersize=3, label={"dcnn": "DCNN", "crf": "DCNN+CRF"}.get(m, m))
        ax.set_xlabel("trimap width (pixels)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
