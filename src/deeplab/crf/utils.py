"""pydensecrf.utils-compatible helpers: ``from deeplab.crf.utils import unary_from_softmax, ...``.

Same names, signatures and semantics as pydensecrf.utils; outputs are float32 (L, N) unaries and
(D, N) feature arrays for DenseCRF.setUnaryEnergy / addPairwiseEnergy.
"""

from __future__ import annotations

from numbers import Number

import numpy as np

from deeplab.crf.unary import unary_from_labels as _unary_from_labels
from deeplab.crf.unary import unary_from_probs
from deeplab.errors import InputError


def unary_from_labels(labels, n_labels: int, gt_prob: float, zero_unsure: bool = True) -> np.ndarray:
    """Label map (any shape) -> (n_labels, N) float32 unary with confidence gt_prob in (0, 1).

    zero_unsure=True: value 0 means "unknown" (uniform) and labels 1..n_labels map to 0..n_labels-1
    (so n_labels excludes 0); False: values are the labels 0..n_labels-1.
    """
    if not 0 < gt_prob < 1:
        raise InputError(f"gt_prob must be in (0, 1), got {gt_prob}")
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    try:
        if zero_unsure:
            u = _unary_from_labels(labels - 1, n_labels, gt_prob, unknown=-1)
        else:
            u = _unary_from_labels(labels, n_labels, gt_prob)
    except ValueError as e:
        raise InputError(f"unary_from_labels: {e}") from None
    return u


def unary_from_softmax(sm, scale: float | None = None, clip: float | None = 1e-5) -> np.ndarray:
    """Softmax output (L, ...) -> (L, N) float32 -log p; ``scale`` in (0, 1] mixes in the uniform
    distribution (certainty), ``clip`` is the smallest probability kept (None: no clipping)."""
    sm = np.asarray(sm, dtype=np.float64)
    num = sm.shape[0]
    if scale is not None:
        if not 0 < scale <= 1:
            raise InputError(f"scale must be in (0, 1], got {scale}")
        sm = scale * sm + (1 - scale) / num
    if clip is None:
        with np.errstate(divide="ignore"):
            return (-np.log(sm)).reshape(num, -1).astype(np.float32)
    return unary_from_probs(np.minimum(sm, 1.0), clip=clip).reshape(num, -1)


def create_pairwise_gaussian(sdims, shape) -> np.ndarray:
    """Position features (len(shape), N) float32: index along each axis ('ij' order) / sdims."""
    mesh = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij"))
    mesh /= np.asarray(sdims, np.float32).reshape((-1,) + (1,) * len(shape))
    return mesh.reshape(len(shape), -1)


def create_pairwise_bilateral(sdims, schan, img, chdim: int = -1) -> np.ndarray:
    """Position + channel features (len(sdims) + C, N) float32.

    img: image with channel axis ``chdim`` (-1: no channel axis, a single channel); schan: one
    number for all channels or one per channel; sdims: per spatial axis ('ij' order).
    """
    img = np.asarray(img)
    chans = img[np.newaxis].astype(np.float32) if chdim == -1 else np.moveaxis(img, chdim, 0).astype(np.float32)
    if isinstance(schan, Number):
        chans /= schan
    else:
        chans /= np.asarray(schan, np.float32).reshape((-1,) + (1,) * (chans.ndim - 1))
    pos = create_pairwise_gaussian(sdims, chans.shape[1:])
    return np.concatenate([pos, chans.reshape(chans.shape[0], -1)])
