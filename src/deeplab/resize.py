"""Big inputs within a memory bound: work at a bounded size, then bring the labels back to full size.

``fit_within`` shrinks an image so its longer side is at most ``max_size`` (area-averaging resampling).
``upsampled_labels`` takes class probabilities at the working size to labels at full size by bilinear
interpolation (half-pixel centres, as PIL and torch's align_corners=False) and argmax, in bands of rows, so
the full-size probability volume is never held: memory is O(C x band x W), not O(C x H x W).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

BAND_ROWS = 256


def fitted_size(h: int, w: int, max_size: int) -> tuple[int, int]:
    """(h', w') with max(h', w') <= max_size, the aspect ratio kept (unchanged if already within)."""
    if max_size <= 0 or max(h, w) <= max_size:
        return h, w
    scale = max_size / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def fit_within(image: np.ndarray, max_size: int) -> np.ndarray:
    """image (H, W, 3) uint8 -> the same or a shrunk copy whose longer side is <= max_size (0: no limit)."""
    h, w = image.shape[:2]
    hh, ww = fitted_size(h, w, max_size)
    if (hh, ww) == (h, w):
        return image
    return np.asarray(Image.fromarray(image).resize((ww, hh), Image.Resampling.BOX, reducing_gap=3.0))


def _taps(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (lo, hi) and weight of hi for bilinear resampling n_in -> n_out (half-pixel centres)."""
    pos = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    pos = np.clip(pos, 0, n_in - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, (pos - lo).astype(np.float32)


def upsampled_labels(probs: np.ndarray, size: tuple[int, int], band: int = BAND_ROWS) -> np.ndarray:
    """probs (C, h, w) float -> labels (H, W) uint8 (C <= 256) or int32: argmax of the bilinearly
    upsampled probabilities, computed band by band."""
    c, h, w = probs.shape
    H, W = size
    if (h, w) == (H, W):
        labels = probs.argmax(0)
    else:
        ylo, yhi, wy = _taps(H, h)
        xlo, xhi, wx = _taps(W, w)
        labels = np.empty((H, W), np.int64)
        for r0 in range(0, H, band):
            r1 = min(H, r0 + band)
            a, b, t = probs[:, ylo[r0:r1]], probs[:, yhi[r0:r1]], wy[r0:r1, None]
            rows = a + (b - a) * t  # (C, rows, w)
            full = rows[:, :, xlo] + (rows[:, :, xhi] - rows[:, :, xlo]) * wx
            labels[r0:r1] = full.argmax(0)
    return labels.astype(np.uint8 if c <= 256 else np.int32)
