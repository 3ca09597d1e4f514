"""Unary energies U = -log P for the CRF, (L, ...) float32, from probabilities, logits or labels."""

from __future__ import annotations

import numpy as np

from deeplab.errors import InputError

UNARY_CLIP = 1e-5  # probabilities are clipped to this before -log (DeepLab's and pydensecrf's value)


def unary_from_probs(probs: np.ndarray, clip: float = UNARY_CLIP) -> np.ndarray:
    """probs: (L, ...) summing to 1 over L -> -log(max(p, clip)), same shape, float32."""
    u = np.maximum(np.asarray(probs, dtype=np.float32), np.float32(clip))
    np.log(u, out=u)
    return np.negative(u, out=u)


def unary_from_logits(logits: np.ndarray) -> np.ndarray:
    """logits: (L, ...) raw scores -> -log_softmax over L, same shape, float32."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=0, keepdims=True)
    return (np.log(np.exp(z).sum(axis=0, keepdims=True)) - z).astype(np.float32)


def unary_from_labels(
    labels: np.ndarray, num_labels: int, gt_prob: float = 0.5, unknown: int | None = None
) -> np.ndarray:
    """Hard/partial labels -> unary (L, *labels.shape) float32.

    A labelled pixel has probability ``gt_prob`` for its label and (1 - gt_prob) / (L - 1) for each
    other; pixels equal to ``unknown`` (e.g. 255 or -1) are uniform (1 / L). Other values must lie in
    [0, L). gt_prob in (0, 1); gt_prob = 1/L makes every pixel uninformative.
    """
    if not 0.0 < gt_prob < 1.0:
        raise InputError(f"gt_prob must lie in (0, 1), got {gt_prob}")
    if num_labels < 2:
        raise InputError(f"num_labels must be >= 2 for label unaries, got {num_labels}")
    labels = np.asarray(labels).astype(np.int64)
    known = np.ones(labels.shape, bool) if unknown is None else labels != unknown
    bad = known & ((labels < 0) | (labels >= num_labels))
    if bad.any():
        raise InputError(
            f"labels must lie in [0, {num_labels}) (or equal unknown={unknown}); "
            f"found {np.unique(labels[bad])[:5].tolist()}"
        )
    u = np.full((num_labels, *labels.shape), -np.log((1.0 - gt_prob) / (num_labels - 1)), np.float32)
    np.put_along_axis(u, np.where(known, labels, 0)[None], np.float32(-np.log(gt_prob)), axis=0)
    u[:, ~known] = np.float32(-np.log(1.0 / num_labels))
    return u
