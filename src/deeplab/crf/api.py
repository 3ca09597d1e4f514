"""NumPy-first dense CRF: ``dense_crf(image, probs, CRFParams(...))`` -> refined probabilities."""

from __future__ import annotations

import functools
import math
import numbers
from dataclasses import asdict, dataclass, fields

import numpy as np
from numba import njit

from deeplab.crf.kernels import numba_threads
from deeplab.crf.meanfield import NORMALIZATIONS, SKIP_TOLERANCE, LatticeKernel, MeanField
from deeplab.crf.unary import UNARY_CLIP
from deeplab.errors import InputError

MIN_STD = 0.01  # below this every pixel is its own lattice vertex: no filtering, only cost


def _is_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


@dataclass(frozen=True)
class CRFParams:
    """Fully connected CRF parameters; defaults are DeepLab-LargeFOV's (Chen et al. 2015).

    Bilateral (appearance) kernel: weight ``bi_w``, position std ``bi_xy_std`` px, colour std
    ``bi_rgb_std`` (0-255 units); Gaussian (smoothness) kernel: ``pos_w``, ``pos_xy_std`` px; Potts
    compatibility; ``iterations`` mean-field steps; ``normalization`` one of NO_NORMALIZATION,
    NORMALIZE_BEFORE, NORMALIZE_AFTER (default: DeepLab v1's per-pixel 1 / sum of kernel weights),
    NORMALIZE_SYMMETRIC (pydensecrf's default).
    """

    bi_w: float = 4.0
    bi_xy_std: float = 121.0
    bi_rgb_std: float = 5.0
    pos_w: float = 3.0
    pos_xy_std: float = 3.0
    iterations: int = 10
    normalization: str = "NORMALIZE_AFTER"

    def __post_init__(self) -> None:
        for name in ("bi_w", "pos_w"):
            v = getattr(self, name)
            if not _is_number(v) or not math.isfinite(v):
                raise InputError(f"CRFParams.{name} must be a finite number, got {v!r}")
        for name in ("bi_xy_std", "bi_rgb_std", "pos_xy_std"):
            v = getattr(self, name)
            if not _is_number(v) or not math.isfinite(v) or v < MIN_STD:
                raise InputError(
                    f"CRFParams.{name} must be a finite number >= {MIN_STD} (pixels / colour levels), got {v!r}"
                )
        if (
            isinstance(self.iterations, bool)
            or not isinstance(self.iterations, (int, np.integer))
            or self.iterations < 0
        ):
            raise InputError(f"CRFParams.iterations must be an integer >= 0, got {self.iterations!r}")
        if self.normalization not in NORMALIZATIONS:
            raise InputError(f"CRFParams.normalization must be one of {NORMALIZATIONS}, got {self.normalization!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CRFParams:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise InputError(f"CRFParams: unknown parameter(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)


def check_image(image, name: str = "image") -> np.ndarray:
    """Validate an RGB image: (H, W, 3) uint8 (any strides). Returns it C-contiguous."""
    if not isinstance(image, np.ndarray):
        raise InputError(f"{name} must be a numpy array (H, W, 3) uint8, got {type(image).__name__}")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        raise InputError(
            f"{name} is greyscale {image.shape}; the bilateral kernel needs RGB (H, W, 3): "
            f"repeat the channel, e.g. np.stack([g, g, g], -1)"
        )
    if image.ndim == 3 and image.shape[2] == 4:
        raise InputError(f"{name} is RGBA {image.shape}; pass RGB, e.g. {name}[..., :3]")
    if image.ndim == 3 and image.shape[0] == 3 and image.shape[2] != 3:
        raise InputError(f"{name} looks channels-first {image.shape}; pass (H, W, 3), e.g. {name}.transpose(1, 2, 0)")
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"{name} must be (H, W, 3) RGB, got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InputError(f"{name} is empty: shape {image.shape}")
    if image.dtype != np.uint8:
        raise InputError(
            f"{name} must be uint8 (0-255), got {image.dtype}; convert e.g. "
            f"(x * 255).round().clip(0, 255).astype(np.uint8) for [0, 1] floats"
        )
    return np.ascontiguousarray(image)


@njit(cache=True)
def _map_stats(maps):
    """maps (L, N) float32 -> (non-finite count, min, max over pixels of |sum over L - 1|) in one pass
    (per-pixel running sums and minima, so the label loop vectorises)."""
    nl, n = maps.shape
    sums = np.zeros(n, np.float32)  # float32 is ample: its rounding (~1e-6) is far below the 1e-3 tolerance
    lows = np.full(n, np.inf, np.float32)
    for k in range(nl):
        for i in range(n):
            v = maps[k, i]
            sums[i] += v
            lows[i] = min(lows[i], v)
    low, dev = np.inf, 0.0
    for i in range(n):
        low = min(low, lows[i])
        dev = max(dev, abs(sums[i] - 1.0))
    if np.isfinite(sums.sum()):  # a NaN or inf makes its pixel's sum, and so the total, non-finite
        return 0, low, dev
    return int(np.sum(~np.isfinite(maps))), low, dev


def _checked_maps(arr, hw: tuple[int, int], name: str):
    """Validate per-label maps (L, H, W): -> (float32 C-contiguous copy or view, min, max |sum over L - 1|)."""
    if not isinstance(arr, np.ndarray):
        raise InputError(f"{name} must be a numpy array (L, H, W), got {type(arr).__name__}")
    if arr.ndim != 3:
        raise InputError(f"{name} must be (L, H, W), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise InputError(f"{name} must be floating point (L, H, W), got dtype {arr.dtype}")
    h, w = hw
    if arr.shape[0] == 0:
        raise InputError(f"{name} has zero labels: shape {arr.shape}")
    if arr.shape[1:] != (h, w):
        if arr.shape[1:] == (w, h) and h != w:
            raise InputError(
                f"{name} is {arr.shape} but the image is H={h}, W={w}: height and width look "
                f"swapped; pass (L, {h}, {w})"
            )
        if arr.shape[:2] == (h, w):
            raise InputError(f"{name} looks channels-last {arr.shape}; pass (L, H, W), e.g. {name}.transpose(2, 0, 1)")
        raise InputError(f"{name} is {arr.shape[1:]} (H, W) but the image is ({h}, {w})")
    maps = np.ascontiguousarray(arr, dtype=np.float32)
    bad, low, dev = _map_stats(maps.reshape(maps.shape[0], -1))
    if bad:
        raise InputError(f"{name} has {bad} non-finite values (NaN/inf)")
    return maps, float(low), dev


def check_label_maps(arr, hw: tuple[int, int], name: str) -> np.ndarray:
    """Validate per-label maps (L, H, W) float, finite, matching the image size. Returns float32 C-contiguous."""
    return _checked_maps(arr, hw, name)[0]


def check_probs(probs, hw: tuple[int, int], name: str = "probs", atol: float = 1e-3) -> np.ndarray:
    """check_label_maps + probabilities: >= 0 and summing to 1 over L (within atol)."""
    p, low, dev = _checked_maps(probs, hw, name)
    if low < 0:
        raise InputError(
            f"{name} has negative values (min {low:.4g}); pass probabilities, "
            f"or logits via dense_crf_unary(image, unary_from_logits(logits))"
        )
    if dev > atol:
        raise InputError(
            f"{name} must sum to 1 over labels (axis 0); max deviation {dev:.4g}. "
            f"Softmax your scores first, or use dense_crf_unary with unary_from_logits"
        )
    return p


@njit(cache=True)
def _pixel_features(image, sx, sy, colour_std):
    """(H*W, 2+C) float32 rows (x/sx, y/sy, image[y, x, c]/colour_std[c] ...) in row-major pixel order;
    image: (H, W, C) uint8 or float (C may be 0); float32 divisions, as NumPy's."""
    h, w, nc = image.shape
    out = np.empty((h * w, 2 + nc), np.float32)
    for y in range(h):
        fy = np.float32(y) / sy
        for x in range(w):
            i = y * w + x
            out[i, 0] = np.float32(x) / sx
            out[i, 1] = fy
            for c in range(nc):
                out[i, 2 + c] = np.float32(image[y, x, c]) / colour_std[c]
    return out


def _stds(value, n: int) -> np.ndarray:
    """A number or n numbers -> (n,) float32."""
    return np.ascontiguousarray(np.broadcast_to(np.asarray(value, np.float32), (n,)))


def gaussian_features(h: int, w: int, xy_std) -> np.ndarray:
    """(H*W, 2) float32 (x/sx, y/sy) in row-major pixel order; xy_std: a number or (sx, sy)."""
    sx, sy = _stds(xy_std, 2)
    return _pixel_features(np.empty((h, w, 0), np.uint8), sx, sy, np.empty(0, np.float32))


def bilateral_features(image: np.ndarray, xy_std, rgb_std) -> np.ndarray:
    """image (H, W, C) uint8 (or float, 0-255) -> (H*W, 2+C) float32 (x/sx, y/sy, c_1/s_1, ...) like DenseCRF2D.

    xy_std: a number or (sx, sy); rgb_std: a number or one std per channel."""
    sx, sy = _stds(xy_std, 2)
    image = np.ascontiguousarray(image)
    return _pixel_features(image, sx, sy, _stds(rgb_std, image.shape[2]))


def resolve_params(params: CRFParams | None, overrides: dict) -> CRFParams:
    """params (None: defaults) with keyword overrides of its fields applied; InputError for unknown names."""
    if params is None:
        params = CRFParams()
    elif not isinstance(params, CRFParams):
        raise InputError(f"params must be a CRFParams, got {type(params).__name__}")
    if overrides:
        d = params.to_dict()
        unknown = set(overrides) - set(d)
        if unknown:
            raise InputError(f"unknown CRF parameter(s) {sorted(unknown)}; known: {sorted(d)}")
        d.update(overrides)
        params = CRFParams.from_dict(d)
    return params


@functools.lru_cache(maxsize=2)
def grid_gaussian_kernel(h: int, w: int, xy_std: tuple[float, float], normalization: str) -> LatticeKernel:
    """The position-only Gaussian kernel of an H x W pixel grid with stds xy_std = (sx, sy) px.

    It depends on nothing else, so it is cached (the last 2 sizes): a run over same-size images builds
    its lattice once. The returned kernel is shared: do not modify its arrays.
    """
    return LatticeKernel(gaussian_features(h, w, xy_std), normalization)


def add_potts_kernels(mf: MeanField, image: np.ndarray, params: CRFParams) -> MeanField:
    """Add params' two Potts kernels (bilateral, Gaussian) for a validated image (H, W, 3) uint8 to mf."""
    h, w = image.shape[:2]
    if params.bi_w != 0:
        mf.add(
            LatticeKernel(bilateral_features(image, params.bi_xy_std, params.bi_rgb_std), params.normalization),
            params.bi_w,
        )
    if params.pos_w != 0:
        xy_std = (float(params.pos_xy_std),) * 2
        mf.add(grid_gaussian_kernel(h, w, xy_std, params.normalization), params.pos_w)
    return mf


def refine(
    image: np.ndarray,
    maps: np.ndarray,
    params: CRFParams,
    threads: int | None,
    probs: bool,
    vertex_dtype: str = "float16",
    skip_tolerance: float = SKIP_TOLERANCE,
) -> np.ndarray:
    """Fused mean field, inputs already validated: image (H, W, 3) uint8 (or float, 0-255) and label maps
    (L, H, W) float32, probabilities (unary -log(max(p, 1e-5))) if ``probs`` else unary energies.
    vertex_dtype, skip_tolerance: as MeanField.inference. Returns Q: (L, H, W) float32."""
    num_labels, h, w = maps.shape
    flat = maps.reshape(num_labels, h * w)
    with numba_threads(threads):
        mf = MeanField.from_probs(flat, UNARY_CLIP) if probs else MeanField(flat.T)
        q = add_potts_kernels(mf, image, params).inference(
            params.iterations, vertex_dtype=vertex_dtype, skip_tolerance=skip_tolerance
        )
    return np.ascontiguousarray(q.T).reshape(num_labels, h, w)


def dense_crf_unary(
    image: np.ndarray,
    unary: np.ndarray,
    params: CRFParams | None = None,
    *,
    threads: int | None = None,
    vertex_dtype: str = "float16",
    skip_tolerance: float = SKIP_TOLERANCE,
    **overrides,
) -> np.ndarray:
    """Dense CRF from unary energies. image: (H, W, 3) uint8; unary: (L, H, W) float, -log P up to a
    per-pixel constant (see deeplab.crf.unary). Other arguments as dense_crf. Returns Q: (L, H, W) float32,
    sums to 1 over L."""
    params = resolve_params(params, overrides)
    image = check_image(image)
    maps = check_label_maps(unary, image.shape[:2], "unary")
    return refine(image, maps, params, threads, False, vertex_dtype, skip_tolerance)


def dense_crf(
    image: np.ndarray,
    probs: np.ndarray,
    params: CRFParams | None = None,
    *,
    threads: int | None = None,
    vertex_dtype: str = "float16",
    skip_tolerance: float = SKIP_TOLERANCE,
    **overrides,
) -> np.ndarray:
    """Refine class probabilities with the fully connected CRF.

    image: (H, W, 3) uint8 RGB; probs: (L, H, W) float, >= 0, sums to 1 over L (e.g. an upsampled
    DCNN softmax). params: CRFParams (DeepLab-LargeFOV defaults); keyword overrides replace fields,
    e.g. ``dense_crf(img, p, bi_w=5)``. threads: numba threads (default 1; 2+ pays on large images only).
    vertex_dtype: "float16" (default, faster; labels as float32's on >= 99.99% of pixels) or "float32", the
    storage of the lattice's blurred vertex values (error bound: deeplab.crf.meanfield). skip_tolerance
    (default 1e-3): the middle iterations leave a pixel as it is while its probabilities can have moved by at
    most this since its last update (bound: deeplab.crf.meanfield; a median 1.2x faster over 45 benchmark
    photos, labels as with 0 on >= 99.99% of pixels); 0 updates every pixel in every iteration. Unary =
    -log(max(p, 1e-5)) (as unary_from_probs).
    Returns Q: (L, H, W) float32, sums to 1 over L; ``Q.argmax(0)`` is the label map.
    """
    params = resolve_params(params, overrides)
    image = check_image(image)
    maps = check_probs(probs, image.shape[:2])
    return refine(image, maps, params, threads, True, vertex_dtype, skip_tolerance)
