"""Exact O(N^2) Gaussian filtering: the reference the lattice is tested against (small inputs only)."""

from __future__ import annotations

import numpy as np


def gaussian_matrix(features: np.ndarray) -> np.ndarray:
    """Dense kernel K_ij = exp(-|f_i - f_j|^2 / 2) for features (N, D) (divided by the stds): (N, N) float64."""
    f = np.asarray(features, dtype=np.float64)
    sq = (f * f).sum(1)
    return np.exp(-0.5 * np.maximum(sq[:, None] + sq[None, :] - 2.0 * f @ f.T, 0.0))


def exact_filter(
    features: np.ndarray,
    values: np.ndarray,
    in_weight: np.ndarray | None = None,
    out_weight: np.ndarray | None = None,
    block: int = 1024,
) -> np.ndarray:
    """diag(out_weight) K diag(in_weight) values with K_ij = exp(-|f_i - f_j|^2 / 2) (j = i included).

    features: (N, D) already divided by the kernel standard deviations; values: (N, L).
    Computed in float64, blockwise over rows (memory O(block * N)). Returns (N, L) float64.
    """
    f = np.asarray(features, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if in_weight is not None:
        v = v * np.asarray(in_weight, dtype=np.float64)[:, None]
    sq = (f * f).sum(1)
    out = np.empty((f.shape[0], v.shape[1]), np.float64)
    for s in range(0, f.shape[0], block):
        fb = f[s : s + block]
        d2 = sq[s : s + block, None] + sq[None, :] - 2.0 * fb @ f.T
        out[s : s + block] = np.exp(-0.5 * np.maximum(d2, 0.0)) @ v
    if out_weight is not None:
        out *= np.asarray(out_weight, dtype=np.float64)[:, None]
    return out
