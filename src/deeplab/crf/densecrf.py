"""pydensecrf-compatible interface: ``import deeplab.crf.densecrf as dcrf`` replaces ``pydensecrf.densecrf``.

Same classes, methods, argument names, defaults, constants and conventions (unary (L, N) float32 of
-log probabilities; features (D, N); pixel index y * W + x; compat a number (Potts), an (L,) vector
(diagonal) or an (L, L) matrix; normalisation NORMALIZE_SYMMETRIC by default). ``inference`` returns a
NumPy (L, N) float32 array (``np.array(...)`` of it works as with pydensecrf's MatrixXf).
Kernel types only matter for pydensecrf's parameter learning, which is not provided: all three give
the same inference. Bad input raises deeplab.errors.InputError (a ValueError).
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

from deeplab.crf.api import bilateral_features, check_image, grid_gaussian_kernel
from deeplab.crf.kernels import numba_threads
from deeplab.crf.meanfield import (
    NORMALIZATIONS,
    SKIP_TOLERANCE,
    LatticeKernel,
    MeanField,
    check_skip_tolerance,
    check_vertex_dtype,
)
from deeplab.errors import InputError


class KernelType(IntEnum):
    CONST_KERNEL = 0
    DIAG_KERNEL = 1
    FULL_KERNEL = 2


class NormalizationType(IntEnum):
    NO_NORMALIZATION = 0
    NORMALIZE_BEFORE = 1
    NORMALIZE_AFTER = 2
    NORMALIZE_SYMMETRIC = 3


CONST_KERNEL = KernelType.CONST_KERNEL
DIAG_KERNEL = KernelType.DIAG_KERNEL
FULL_KERNEL = KernelType.FULL_KERNEL
NO_NORMALIZATION = NormalizationType.NO_NORMALIZATION
NORMALIZE_BEFORE = NormalizationType.NORMALIZE_BEFORE
NORMALIZE_AFTER = NormalizationType.NORMALIZE_AFTER
NORMALIZE_SYMMETRIC = NormalizationType.NORMALIZE_SYMMETRIC


def _normalization_name(normalization) -> str:
    if isinstance(normalization, str) and normalization in NORMALIZATIONS:
        return normalization
    try:
        return NormalizationType(int(normalization)).name
    except (TypeError, ValueError):
        raise InputError(
            f"normalization must be one of {list(NormalizationType)} (or their names), got {normalization!r}"
        ) from None


def _check_kernel(kernel) -> None:
    try:
        KernelType(int(kernel))
    except (TypeError, ValueError):
        raise InputError(f"kernel must be one of {list(KernelType)}, got {kernel!r}") from None


def _pair(value, n: int, name: str) -> tuple[float, ...]:
    v = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if v.size == 1:
        v = np.repeat(v, n)
    if v.shape != (n,) or not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise InputError(f"{name} must be a positive number or {n} positive numbers, got {value!r}")
    return tuple(float(x) for x in v)


class DenseCRF:
    """Fully connected CRF over ``nvar`` variables with ``nlabels`` labels (pydensecrf.densecrf.DenseCRF).
    vertex_dtype, skip_tolerance (not in pydensecrf): "float16" (default) or "float32" storage of the blurred
    vertex values, and how far a pixel's Q may have moved before a middle iteration updates it again (default
    1e-3; 0: every pixel in every iteration); deeplab.crf.meanfield."""

    def __init__(
        self, nvar: int, nlabels: int, *, vertex_dtype: str = "float16", skip_tolerance: float = SKIP_TOLERANCE
    ):
        if int(nvar) < 1 or int(nlabels) < 1:
            raise InputError(f"DenseCRF needs nvar >= 1 and nlabels >= 1, got nvar={nvar}, nlabels={nlabels}")
        self._vertex_dtype = check_vertex_dtype(vertex_dtype)
        self._skip_tolerance = check_skip_tolerance(skip_tolerance)
        self._nvar = int(nvar)
        self._nlabels = int(nlabels)
        self._unary: np.ndarray | None = None
        self._pairwise: list[tuple[LatticeKernel, object]] = []

    def setUnaryEnergy(self, u) -> None:
        """u: (nlabels, nvar) float, -log probability (see deeplab.crf.utils.unary_from_softmax)."""
        u = np.asarray(u)
        if u.shape != (self._nlabels, self._nvar):
            raise InputError(
                f"setUnaryEnergy: unary must be (nlabels, nvar) = ({self._nlabels}, {self._nvar}), got {u.shape}"
            )
        if not np.issubdtype(u.dtype, np.floating):
            raise InputError(f"setUnaryEnergy: unary must be floating point, got {u.dtype}")
        if not np.all(np.isfinite(u)):
            raise InputError("setUnaryEnergy: unary has non-finite values (NaN/inf); clip probabilities before -log")
        self._unary = np.array(u, dtype=np.float32)  # (L, N) copy

    def setUnary(self, u) -> None:
        """Alias of setUnaryEnergy (pydensecrf accepts a unary array here too)."""
        self.setUnaryEnergy(u)

    def addPairwiseEnergy(self, features, compat, kernel=DIAG_KERNEL, normalization=NORMALIZE_SYMMETRIC) -> None:
        """features: (D, nvar) float (already divided by the kernel stds); compat: number / (L,) / (L, L)."""
        f = np.asarray(features)
        if f.ndim != 2 or f.shape[1] != self._nvar or f.shape[0] < 1:
            raise InputError(f"addPairwiseEnergy: features must be (D, nvar={self._nvar}), got {f.shape}")
        if not np.issubdtype(f.dtype, np.number) or not np.all(np.isfinite(f)):
            raise InputError("addPairwiseEnergy: features must be finite numbers")
        c = self._checked_compat(compat, kernel)
        kern = LatticeKernel(np.ascontiguousarray(f.T, dtype=np.float32), _normalization_name(normalization))
        self._pairwise.append((kern, c))

    def _checked_compat(self, compat, kernel) -> np.ndarray:
        _check_kernel(kernel)
        c = np.asarray(compat, dtype=np.float64)
        if c.ndim > 2 or (c.ndim >= 1 and any(s != self._nlabels for s in c.shape)) or not np.all(np.isfinite(c)):
            raise InputError(
                f"addPairwiseEnergy: compat must be a number, ({self._nlabels},) or "
                f"({self._nlabels}, {self._nlabels}) finite, got shape {c.shape}"
            )
        return c

    def _model(self) -> MeanField:
        unary = self._unary if self._unary is not None else np.zeros((self._nlabels, self._nvar), np.float32)
        mf = MeanField(unary.T)
        for kern, c in self._pairwise:
            mf.add(kern, c)
        return mf

    def inference(self, n_iterations: int) -> np.ndarray:
        """Q after n_iterations mean-field updates: (nlabels, nvar) float32."""
        if int(n_iterations) < 0:
            raise InputError(f"inference: n_iterations must be >= 0, got {n_iterations}")
        with numba_threads():
            q = self._model().inference(
                int(n_iterations), vertex_dtype=self._vertex_dtype, skip_tolerance=self._skip_tolerance
            )
            return np.ascontiguousarray(q.T)

    def startInference(self):
        """(Q, tmp1, tmp2): Q0 = softmax(-U) as (nlabels, nvar) float32, plus two scratch arrays."""
        with numba_threads():
            q = np.ascontiguousarray(self._model().inference(0).T)
        return q, np.zeros_like(q), np.zeros_like(q)

    def stepInference(self, Q, tmp1, tmp2) -> None:
        """One mean-field update of Q (nlabels, nvar) float32 in place; tmp1/tmp2 are unused scratch."""
        if not isinstance(Q, np.ndarray) or Q.shape != (self._nlabels, self._nvar) or Q.dtype != np.float32:
            raise InputError(
                f"stepInference: Q must be the float32 ({self._nlabels}, {self._nvar}) array from startInference"
            )
        mf = self._model()
        with numba_threads():
            q = mf.step(mf.pad(Q.T))
        Q[...] = q[:, : self._nlabels].T

    def klDivergence(self, Q) -> float:
        """Mean-field KL(Q || P) up to log Z for Q (nlabels, nvar) (pydensecrf's definition)."""
        Q = np.asarray(Q, dtype=np.float32)
        if Q.shape != (self._nlabels, self._nvar):
            raise InputError(f"klDivergence: Q must be ({self._nlabels}, {self._nvar}), got {Q.shape}")
        with numba_threads():
            return self._model().kl_divergence(Q.T)


class DenseCRF2D(DenseCRF):
    """Dense CRF on a W x H image (pydensecrf.densecrf.DenseCRF2D(W, H, nlabels); note width first)."""

    def __init__(
        self, W: int, H: int, nlabels: int, *, vertex_dtype: str = "float16", skip_tolerance: float = SKIP_TOLERANCE
    ):
        super().__init__(int(W) * int(H), nlabels, vertex_dtype=vertex_dtype, skip_tolerance=skip_tolerance)
        self._w, self._h = int(W), int(H)

    def addPairwiseGaussian(self, sxy, compat, kernel=DIAG_KERNEL, normalization=NORMALIZE_SYMMETRIC) -> None:
        """Smoothness kernel on (x / sx, y / sy); sxy a number or (sx, sy). Its lattice is cached per image
        size and stds (see deeplab.crf.api.grid_gaussian_kernel)."""
        c = self._checked_compat(compat, kernel)
        kern = grid_gaussian_kernel(self._h, self._w, _pair(sxy, 2, "sxy"), _normalization_name(normalization))
        self._pairwise.append((kern, c))

    def addPairwiseBilateral(
        self, sxy, srgb, rgbim, compat, kernel=DIAG_KERNEL, normalization=NORMALIZE_SYMMETRIC
    ) -> None:
        """Appearance kernel on (x / sx, y / sy, r / sr, g / sg, b / sb); rgbim: (H, W, 3) uint8."""
        sxy2, srgb3 = _pair(sxy, 2, "sxy"), _pair(srgb, 3, "srgb")
        img = check_image(rgbim, "rgbim")
        if img.shape[:2] != (self._h, self._w):
            raise InputError(
                f"addPairwiseBilateral: rgbim is {img.shape[:2]} (H, W) but the CRF is "
                f"H={self._h}, W={self._w} (DenseCRF2D takes W first)"
            )
        self.addPairwiseEnergy(bilateral_features(img, sxy2, srgb3).T, compat, kernel, normalization)
