"""Fully connected CRF (Krähenbühl & Koltun 2011) with permutohedral-lattice mean field.

NumPy API: ``dense_crf(image, probs, CRFParams())``; pydensecrf drop-in: ``deeplab.crf.densecrf`` and
``deeplab.crf.utils``; batched, differentiable torch path: ``dense_crf_torch`` (imports torch lazily).
"""

from deeplab.crf.api import CRFParams, dense_crf, dense_crf_unary
from deeplab.crf.unary import unary_from_labels, unary_from_logits, unary_from_probs

__all__ = [
    "CRFParams",
    "dense_crf",
    "dense_crf_torch",
    "dense_crf_unary",
    "unary_from_labels",
    "unary_from_logits",
    "unary_from_probs",
]


def __getattr__(name: str):
    if name == "dense_crf_torch":
        from deeplab.crf.torch_crf import dense_crf_torch

        return dense_crf_torch
    raise AttributeError(f"module 'deeplab.crf' has no attribute {name!r}")
