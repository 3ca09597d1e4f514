"""Synthetic inputs for evaluating the CRF without a trained network (seeded, deterministic).

:func:`coarse_probs` mimics a stride-8 DCNN score map from a ground-truth mask; :func:`render_image`
draws a stand-in image for a mask when the real photo is not available (clearly not a photo: flat
per-class colours with texture noise and a slight blur).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def coarse_probs(
    gt: np.ndarray,
    num_labels: int,
    seed: int = 0,
    scale: float = 10.0,
    blur: float = 1.0,
    noise: float = 2.0,
    noise_corr: float = 1.5,
    ignore_index: int = 255,
) -> np.ndarray:
    """A DCNN-like coarse score map for a label mask gt (H, W) -> probs (L, H, W) float32.

    Class fractions of every 8x8 cell (what a stride-8 net resolves), Gaussian-blurred by ``blur``
    cells, times ``scale`` as logits, plus per-class spatially correlated logit noise (std ``noise``,
    correlation ``noise_corr`` cells: confusions and false classes), bilinearly upsampled x8, softmax.
    Void pixels (ignore_index) count as class 0.
    """
    rng = np.random.default_rng(seed)
    h, w = gt.shape
    g = np.where(gt == ignore_index, 0, gt).astype(np.int64)
    hh, ww = -(-h // 8) * 8, -(-w // 8) * 8
    onehot = np.zeros((num_labels, hh, ww), np.float32)
    onehot[:, :h, :w] = np.eye(num_labels, dtype=np.float32)[g].transpose(2, 0, 1)
    frac = onehot.reshape(num_labels, hh // 8, 8, ww // 8, 8).mean((2, 4))
    logits = scale * ndimage.gaussian_filter(frac, (0, blur, blur))
    field = ndimage.gaussian_filter(rng.normal(size=frac.shape).astype(np.float32), (0, noise_corr, noise_corr))
    logits += noise * field / field.std()
    up = np.stack([ndimage.zoom(c, 8, order=1) for c in logits])[:, :h, :w]
    p = np.exp(up - up.max(0))
    return (p / p.sum(0)).astype(np.float32)


def render_image(
    gt: np.ndarray, seed: int = 0, texture: float = 20.0, blur: float = 1.0, ignore_index: int = 255
) -> np.ndarray:
    """A synthetic RGB image (H, W, 3) uint8 for a mask: a random colour per class, Gaussian texture
    noise (std ``texture``), a slight blur; void pixels take their nearest labelled neighbour's colour."""
    rng = np.random.default_rng(seed)
    g = np.asarray(gt).astype(np.int64)
    void = g == ignore_index
    if void.any() and not void.all():
        idx = ndimage.distance_transform_edt(void, return_distances=False, return_indices=True)
        g = g[tuple(idx)]
    g = np.where(g == ignore_index, 0, g)
    colours = rng.uniform(30, 225, size=(int(g.max()) + 1, 3))
    img = colours[g] + rng.normal(0, texture, size=(*g.shape, 3))
    img = ndimage.gaussian_filter(img, (blur, blur, 0))
    return img.round().clip(0, 255).astype(np.uint8)
