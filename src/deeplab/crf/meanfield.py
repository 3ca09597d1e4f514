"""Mean-field inference for the fully connected CRF (Krähenbühl & Koltun 2011).

Energy E(x) = sum_i U_i(x_i) + sum_k sum_{i,j} C_k(x_i, x_j) k_k(f_i, f_j) with Gaussian kernels k_k.
Mean field: Q0 = softmax(-U); Q <- softmax(-U - sum_k (K_k Q) C_k^T), all arrays (N, L) float32.

Label compatibilities follow pydensecrf's conventions (as energy matrices C, (L, L)):
a number w is Potts ``C = -w I`` (same label rewarded; equivalent to w [l != l'] up to a per-pixel
constant), a vector c is ``diag(c)``, a matrix W is ``(W + W^T) / 2``.  The kernel sum includes j = i.

Normalisations (per-pixel factors n_i = 1 / (K 1)_i, as in pydensecrf's DenseKernel):
NO_NORMALIZATION (K), NORMALIZE_BEFORE (K diag(n)), NORMALIZE_AFTER (diag(n) K; DeepLab v1's),
NORMALIZE_SYMMETRIC (diag(sqrt n) K diag(sqrt n); pydensecrf's default).

Vertex precision. The fused inference stores each Potts kernel's blurred vertex values as float16 by default
(``vertex_dtype="float16"``): the blur and the slice, which dominate on large lattices, then move half the bytes
(measured over 45 photos in two runs: median 1.16-1.19x faster per image, 1.1-1.4x on the largest lattices). Splats
still accumulate in float32. Q lies in [0, 1], so the values are bounded by the blurred splat of the splat weights;
a power-of-two factor (exact, undone in the slice factors) keeps them <= 2^14 (float16 max 65504). Error bound:
every blur axis and the final store round once (relative 2^-11 each; all weights are positive, so errors do not
grow), so a message is off by a relative <= (D+2) 2^-11, plus an absolute (D+2) 2^-24 per vertex row below float16's
normal range. A kernel whose smallest per-pixel message would fall below 2^-10 after scaling (an extreme range of
vertex masses) keeps float32 vertices, as do non-Potts compatibilities, label rows wider than MAX_REGISTER_LABELS
and the portable build. For DeepLab's parameters (bi_w 4, pos_w 3, D = 5 and 2) the energy error is below 0.02 and
labels equal the float32 result on >= 99.99% of pixels (benchmarks/bench_crf.py); ``vertex_dtype="float32"`` gives
the float32 path.

Energy rows. When every kernel stores float16 vertex values, the passes also read each pixel's -U as int16 steps of
UNARY_STEP = 2^-11 below the pixel's largest entry (softmax is shift-invariant): half the bytes of the row every pass
streams (with the unary added after the gathers, off their dependency chains: median 1.13x per call, 0.97-1.29x,
on the 13 voc_mini photos, interleaved in one process, benchmarks/bench_crf_ab.py). Rounding
moves an energy by <= 2^-12, under 1/50 of the float16 vertex bound above; ``iterations=0`` (Q0 itself) reads the
float32 rows. A unary whose labels span more than 32767 steps (about 16) at some pixel keeps float32 rows: clipping
there could hide a label that the pairwise terms would revive.

Skipping settled pixels (``skip_tolerance``, default SKIP_TOLERANCE = 1e-3). Most pixels settle within a few
iterations, so the middle passes update only the pixels whose Q may still move by more than the tolerance; the
others keep their Q, and their splat stays in the buffers, which from the first iteration on hold the splat of each
pixel's last Q (a pass splats the change of the Q it updates). Bound: every pass computes, per vertex, the largest
change of its blurred values (any label), and per pixel adds the slice of those changes to a running b (the sum of
its corners' changes, weighted as the slice weighs them): its energies moved by at most b since its last update, so
each Q_l moved by a factor within exp(+-2b), i.e. by at most m (exp(2b) - 1) <= m (x + x^2), x = 2b <= 1, where m =
max over labels of min(Q_l, 1 - Q_l) at that update (a near-certain pixel tolerates large moves of its energies). A
pixel is updated when that bound passes the tolerance: every Q used in a pass is within the tolerance of the Q its
current energies give. The first iteration and the last (which writes Q) update every pixel; the splatted Q are
rounded to float16 when the vertex values are (half the bytes of the per-pixel state; relative 2^-11, below the
vertex storage's bound). Measured (DeepLab's parameters, 10 iterations): a median 1.2x faster per image over the 45
photos of benchmarks/bench_crf.py; on the 13 voc_mini photos, labels equal to skip_tolerance=0's on >= 99.998% of
pixels and Q within 9e-3. The bound is per pass: a skipped pixel's small error reaches its neighbours' messages
later, so the final Q can differ by more than the tolerance. ``skip_tolerance=0`` updates every pixel in every pass;
so do non-Potts compatibilities, label rows wider than MAX_REGISTER_LABELS and runs of fewer than 3 iterations.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from deeplab.crf.exact import gaussian_matrix
from deeplab.crf.kernels import (
    MAX_REGISTER_LABELS,
    PORTABLE,
    kernel,
    padded,
    register,
    stale_pixels,
    threads_in_use,
)
from deeplab.crf.lattice import (
    aligned_zeros,
    build_lattice,
    filter_scalar,
    lattice_filter,
    row_starts,
    splat_buffers,
)
from deeplab.crf.simd import ENERGY_FLOOR, PAD_ENERGY, UNARY_STEP, rows_from_columns  # (portable twin: kernels._build)
from deeplab.crf.unary import UNARY_CLIP
from deeplab.errors import InputError

NORMALIZATIONS = ("NO_NORMALIZATION", "NORMALIZE_BEFORE", "NORMALIZE_AFTER", "NORMALIZE_SYMMETRIC")


def normalization_weights(raw_norm, normalization: str):
    """Per-pixel (in, out) factors around the raw filter for a normalisation; None = no factor.

    raw_norm: (N,) = K 1, a NumPy array or a torch tensor (the factors are of the same kind).
    """
    if normalization not in NORMALIZATIONS:
        raise InputError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    if normalization == "NO_NORMALIZATION":
        return None, None
    n = 1.0 / (raw_norm + 1e-20)
    if normalization == "NORMALIZE_BEFORE":
        return n, None
    if normalization == "NORMALIZE_AFTER":
        return None, n
    s = n**0.5
    return s, s


PREFETCH_BYTES = 8 << 20  # vertex arrays beyond this (far past the caches): the fused pass prefetches rows


def _energy_rows(maps, width, scale, log_floor):
    """(N, width) float32 work array from label-major maps (L, N) float32: scale * maps, or
    scale * log(max(maps, log_floor)) when log_floor > 0, kept >= ENERGY_FLOOR; label columns L..width-1 hold
    PAD_ENERGY.
    Blocks of 8 pixels go through register transposes."""
    nl, n = maps.shape
    out = np.empty((n, width), np.float32)
    pad = np.float32(PAD_ENERGY)
    full = n - n % 8
    for b in prange(full // 8):
        rows_from_columns(out, maps, 8 * b, scale, pad, log_floor)
    for i in range(full, n):
        for k in range(width):
            if k >= nl:
                out[i, k] = pad
            elif log_floor > 0:
                out[i, k] = scale * np.log(max(maps[k, i], log_floor))
            else:
                out[i, k] = max(scale * maps[k, i], ENERGY_FLOOR)
    return out


register(_energy_rows)


def _fixed_rows(energy, num_labels, out):
    """out[i, k] = energy[i, k] - max over labels of energy[i, :L], in int16 steps of UNARY_STEP (rounded) for the
    labels k < L = num_labels, 0 in the padding lanes. energy: (N, Lp) float32; out: (N, Lp) int16. Returns how
    many entries fell below -32767 steps (about -16; clipped: out is then unusable)."""
    n, lp = energy.shape
    inv = np.float32(1.0 / UNARY_STEP)
    over = 0
    for i in prange(n):
        top = energy[i, 0]
        for k in range(1, num_labels):
            top = max(top, energy[i, k])
        for k in range(lp):
            v = np.float32(0.0)
            if k < num_labels:
                v = (energy[i, k] - top) * inv
            if v < -32767.0:
                over += 1
                v = np.float32(-32767.0)
            out[i, k] = np.int16(v - np.float32(0.5))  # v <= 0: truncation of v - 1/2 rounds to nearest
    return over


register(_fixed_rows)


VERTEX_DTYPES = ("float16", "float32")
HALF_PEAK = 2.0**14  # float16 vertex values are scaled to at most this (float16 max: 65504)
HALF_LOW = 2.0**-10  # ... and kept float32 if a pixel's own message would fall below this (normal from 2^-14)


SKIP_TOLERANCE = 1e-3  # default skip_tolerance (module docstring)


def check_skip_tolerance(skip_tolerance: float) -> float:
    """skip_tolerance as a float if it is a finite number >= 0, else InputError."""
    try:
        value = float(skip_tolerance)
    except (TypeError, ValueError):
        value = float("nan")
    if not (np.isfinite(value) and value >= 0):
        raise InputError(f"skip_tolerance must be a finite number >= 0, got {skip_tolerance!r}")
    return value


def check_vertex_dtype(vertex_dtype: str) -> str:
    """vertex_dtype unchanged if it is one of VERTEX_DTYPES, else InputError."""
    if vertex_dtype not in VERTEX_DTYPES:
        raise InputError(f"vertex_dtype must be one of {', '.join(VERTEX_DTYPES)}, got {vertex_dtype!r}")
    return vertex_dtype


def half_scale(raw: np.ndarray, peak: float, in_weight: np.ndarray | None) -> float | None:
    """Power-of-two factor s for storing a kernel's blurred vertex values of Q in [0, 1] as float16, or None
    (keep float32). raw: (N,) unscaled slice of the blurred ones (K 1 / alpha); peak: its largest vertex
    value; in_weight: (N,) splat-side normalisation or None. The values are <= peak x max(in_weight), scaled
    to <= HALF_PEAK; a pixel's message from its own mass is >= raw x min(in_weight), which must stay >=
    HALF_LOW after scaling."""
    lo_w, hi_w = (1.0, 1.0) if in_weight is None else (float(in_weight.min()), float(in_weight.max()))
    top = peak * hi_w
    if not (np.isfinite(top) and top > 0):
        return None
    s = 2.0 ** np.floor(np.log2(HALF_PEAK / top))
    return float(s) if float(raw.min()) * lo_w * s >= HALF_LOW else None


class LatticeKernel:
    """Normalised Gaussian kernel on features (N, D) (already divided by the std), permutohedral lattice."""

    def __init__(self, features: np.ndarray, normalization: str = "NORMALIZE_SYMMETRIC"):
        self.lattice = build_lattice(features)
        self.normalization = normalization
        raw, peak = filter_scalar(self.lattice)  # K 1, its largest vertex value
        self.in_weight, self.out_weight = normalization_weights(raw, normalization)
        self.half_scale = half_scale(raw / self.lattice.alpha, peak, self.in_weight)
        # vertex values are kept scaled by vertex_scale (a power of two: exact), undone by the slice factors
        self.vertex_scale = 1.0 if self.half_scale is None else self.half_scale

    def pass_scales(self, scale: float = 1.0) -> np.ndarray:
        """(N, 2) float32 per-pixel factors of the fused pass, which slices and splats with the barycentric
        weights (Lattice.bary) times them: [:, 0] slice (alpha x output normalisation x scale / vertex_scale),
        [:, 1] splat (input normalisation x vertex_scale)."""
        out = np.empty((self.n, 2), np.float32)
        out[:, 0] = self.lattice.alpha * scale / self.vertex_scale
        if self.out_weight is not None:
            out[:, 0] *= self.out_weight
        out[:, 1] = self.vertex_scale
        if self.in_weight is not None:
            out[:, 1] *= self.in_weight
        return out

    @property
    def n(self) -> int:
        return self.lattice.n

    def apply(self, q: np.ndarray, transpose: bool = False) -> np.ndarray:
        """K q (or K^T q): q (N, L) -> (N, L) float32."""
        if transpose:
            return lattice_filter(self.lattice, q, self.out_weight, self.in_weight, reverse=True)
        return lattice_filter(self.lattice, q, self.in_weight, self.out_weight)


class ExactKernel:
    """The same normalised kernel as a dense (N, N) matrix of exact Gaussian weights (test reference for
    small N: memory 8 N^2 bytes)."""

    def __init__(self, features: np.ndarray, normalization: str = "NORMALIZE_SYMMETRIC"):
        k = gaussian_matrix(features)
        self.normalization = normalization
        in_w, out_w = normalization_weights(k.sum(1), normalization)
        if in_w is not None:
            k *= in_w[None, :]
        if out_w is not None:
            k *= out_w[:, None]
        self.matrix = k

    @property
    def n(self) -> int:
        return len(self.matrix)

    def apply(self, q: np.ndarray, transpose: bool = False) -> np.ndarray:
        """K q (or K^T q): q (N, L) -> (N, L) float32."""
        k = self.matrix.T if transpose else self.matrix
        return (k @ np.asarray(q, dtype=np.float64)).astype(np.float32)


def compat_matrix(compat, num_labels: int) -> np.ndarray:
    """pydensecrf-style compatibility -> energy matrix (L, L) float32 (see module docstring)."""
    c = np.asarray(compat, dtype=np.float32)
    if c.ndim == 0:
        return (-float(c) * np.eye(num_labels)).astype(np.float32)
    if c.ndim == 1:
        if c.shape[0] != num_labels:
            raise InputError(f"compat vector must have {num_labels} entries, got {c.shape[0]}")
        return np.diag(c).astype(np.float32)
    if c.ndim == 2:
        if c.shape != (num_labels, num_labels):
            raise InputError(f"compat matrix must be ({num_labels}, {num_labels}), got {c.shape}")
        return (0.5 * (c + c.T)).astype(np.float32)
    raise InputError(f"compat must be a number, an (L,) vector or an (L, L) matrix, got shape {c.shape}")


def _is_diagonal(c: np.ndarray) -> bool:
    return not np.any(c - np.diag(np.diag(c)))


class MeanField:
    """Unary (N, L) + pairwise terms (kernel, compat) -> mean-field iterations.

    Work arrays are (N, Lp) float32 with the label axis padded to Lp = padded(L) (SIMD width); padding
    columns have energy PAD_ENERGY, so probability exactly 0. :meth:`inference` returns the (N, L) part.
    """

    def __init__(self, unary: np.ndarray):
        """unary: (N, L) float32, any strides; fastest as the transposed view of a C-contiguous (L, N) array."""
        unary_lm = np.ascontiguousarray(np.asarray(unary, dtype=np.float32).T)
        self._start(
            kernel("_energy_rows")(unary_lm, padded(unary_lm.shape[0]), np.float32(-1.0), np.float32(0.0)),
            unary_lm.shape[0],
        )

    @classmethod
    def from_probs(cls, probs: np.ndarray, clip: float = UNARY_CLIP) -> MeanField:
        """Unary -log(max(p, clip)) (as unary_from_probs) from label-major probabilities probs: (L, N),
        computed in one pass (log and transpose in registers; fastest for C-contiguous float32)."""
        probs = np.ascontiguousarray(probs, dtype=np.float32)
        if probs.ndim != 2 or not clip > 0:
            raise InputError(f"probs must be (L, N) and clip > 0, got shape {probs.shape} and clip {clip}")
        mf = cls.__new__(cls)
        mf._start(
            kernel("_energy_rows")(probs, padded(probs.shape[0]), np.float32(1.0), np.float32(clip)), probs.shape[0]
        )
        return mf

    def _start(self, neg_unary: np.ndarray, num_labels: int) -> None:
        self.neg_unary = neg_unary  # (N, Lp) work array of -U, padding columns PAD_ENERGY
        self.num_labels = num_labels
        self.terms: list[tuple[LatticeKernel | ExactKernel, np.ndarray]] = []

    @property
    def unary(self) -> np.ndarray:
        """U: (N, L) float32 (a new array)."""
        return -self.neg_unary[:, : self.num_labels]

    def add(self, kernel: LatticeKernel | ExactKernel, compat) -> None:
        if kernel.n != self.neg_unary.shape[0]:
            raise InputError(f"kernel has {kernel.n} points but the unary has {self.neg_unary.shape[0]}")
        c = np.zeros((self.neg_unary.shape[1],) * 2, np.float32)
        c[: self.num_labels, : self.num_labels] = compat_matrix(compat, self.num_labels)
        self.terms.append((kernel, c))

    def pad(self, q: np.ndarray) -> np.ndarray:
        """(N, L) -> zero-padded (N, Lp) float32 work array (a copy)."""
        out = np.zeros_like(self.neg_unary)
        out[:, : self.num_labels] = q
        return out

    def initial(self) -> np.ndarray:
        """Q0 = softmax(-U), (N, Lp)."""
        q = np.empty_like(self.neg_unary)
        kernel("_softmax_rows")(self.neg_unary, q)
        return q

    def pairwise_energy(self, q: np.ndarray) -> np.ndarray:
        """sum_k (K_k q) C_k^T for q (N, Lp): (N, Lp) float32."""
        out = np.zeros_like(self.neg_unary)
        for term_kernel, c in self.terms:
            out += term_kernel.apply(q) @ c.T
        return out

    def step(self, q: np.ndarray) -> np.ndarray:
        """One mean-field update of q (N, Lp) in place (unfused: one filter call per kernel)."""
        energy = self.neg_unary - self.pairwise_energy(q)
        kernel("_softmax_rows")(energy, q)
        return q

    def fusable(self) -> bool:
        """True if the fused lattice pass applies: >= 1 term, all of them lattice kernels."""
        return bool(self.terms) and all(isinstance(k, LatticeKernel) for k, _ in self.terms)

    def inference(
        self,
        iterations: int,
        fused: bool = True,
        vertex_dtype: str = "float16",
        skip_tolerance: float = SKIP_TOLERANCE,
    ) -> np.ndarray:
        """Q after ``iterations`` updates from Q0 = softmax(-U): (N, L) float32, a view (``.T`` of the fused
        path's (L, N) result, so ``np.ascontiguousarray(q.T)`` costs no copy there). vertex_dtype: "float16"
        or "float32", the fused path's storage of blurred vertex values; skip_tolerance: the fused path's middle
        passes leave a pixel as it is while its Q can have moved by at most this since its last update (any
        label; 0: every pixel in every pass). Module docstring for both."""
        half = check_vertex_dtype(vertex_dtype) == "float16"
        skip_tolerance = check_skip_tolerance(skip_tolerance)
        if fused and self.fusable():
            return self._inference_fused(iterations, half, skip_tolerance).T
        q = self.initial()
        for _ in range(iterations):
            q = self.step(q)
        return q[:, : self.num_labels]

    def lattice_terms(self) -> list[tuple[LatticeKernel, np.ndarray]]:
        """The (kernel, compatibility) terms whose kernels are LatticeKernels (all of them when fusable)."""
        return [(k, c) for k, c in self.terms if isinstance(k, LatticeKernel)]

    def _compat_terms(self) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        """Per kernel: the pass's per-pixel factors (pass_scales, Potts weight folded into the slice) and the
        label map applied to the blurred vertex values: None (Potts), (Lp,) per-label factors (other diagonal
        C) or (Lp, Lp) -C^T (full C). energy -= (K Q) C^T, and slicing is linear per label, so C acts on the
        M blurred rows (M << N)."""
        scales: list[np.ndarray] = []
        label_maps: list[np.ndarray | None] = []
        for k, c in self.lattice_terms():
            scale = -np.diag(c)[: self.num_labels]
            potts = _is_diagonal(c) and np.all(scale == scale[0])
            scales.append(k.pass_scales(scale[0] if potts else 1.0))
            if potts:
                label_maps.append(None)
            elif _is_diagonal(c):
                label_maps.append(-np.diag(c))
            else:
                label_maps.append(np.ascontiguousarray(-c.T))
        return scales, label_maps

    def _pass_inputs(self) -> tuple[str, tuple, tuple, tuple, list[np.ndarray | None]]:
        """The fused pass's read-only inputs: the name of its kernel (the prefetching build when the vertex arrays
        exceed PREFETCH_BYTES), then per lattice kernel the row starts (lattice.row_starts, one dtype for the
        tuple), barycentric weights and per-pixel factors, and the label maps (both from _compat_terms)."""
        lp = self.neg_unary.shape[1]
        kernels = [k for k, _ in self.lattice_terms()]
        prefetch = sum((k.lattice.m + 1) * lp * 4 for k in kernels) > PREFETCH_BYTES
        offsets = tuple(row_starts(k.lattice, lp) for k in kernels)
        if len({o.dtype for o in offsets}) > 1:
            offsets = tuple(o.astype(np.int64) for o in offsets)
        scales, label_maps = self._compat_terms()
        name = "_meanfield_pass_prefetch" if prefetch else "_meanfield_pass"
        return name, offsets, tuple(k.lattice.bary for k in kernels), tuple(scales), label_maps

    def _inference_fused(self, iterations: int, half: bool, tolerance: float) -> np.ndarray:
        """Q as (L, N) float32: fused passes over the pixels, blurs of the vertex rows in between. half: store
        the blurred vertex values of the kernels that allow it as float16; tolerance > 0: the middle passes skip
        settled pixels (_skipping_iterations). Module docstring for both."""
        n, lp = self.neg_unary.shape
        chunks = threads_in_use()
        kernels = [k for k, _ in self.lattice_terms()]
        pass_name, offsets, bary_t, scales_t, label_maps = self._pass_inputs()
        meanfield_pass = kernel(pass_name)
        half = half and not PORTABLE and lp <= MAX_REGISTER_LABELS
        halves = [half and k.half_scale is not None and m is None for k, m in zip(kernels, label_maps, strict=True)]
        skipping = tolerance > 0 and iterations > 2 and lp <= MAX_REGISTER_LABELS
        skipping = skipping and all(m is None for m in label_maps)
        bufs = tuple(splat_buffers(k.lattice, lp, chunks) for k in kernels)
        dtypes = [np.uint16 if h else np.float32 for h in halves]  # uint16: float16 bits
        # per kernel: two vertex arrays for the blur's ping-pong, and one more when skipping (the previous blur)
        verts_sets = [
            [aligned_zeros((k.lattice.m + 1, lp), t) for _ in range(3 if skipping else 2)]
            for k, t in zip(kernels, dtypes, strict=True)
        ]
        q = np.empty((self.num_labels, n), np.float32)
        unary = self.neg_unary
        if all(halves) and iterations > 0:  # int16 energy rows (module docstring)
            fixed = np.empty(unary.shape, np.int16)
            if kernel("_fixed_rows")(unary, self.num_labels, fixed) == 0:
                unary = fixed
        inputs = (offsets, bary_t, scales_t, bufs)
        # Q0 = softmax(-U), splatted for the first update (the vertex arrays are not read)
        meanfield_pass(unary, tuple(v[0] for v in verts_sets), *inputs, q, False, iterations > 0, iterations == 0)
        if skipping:
            self._skipping_iterations(iterations, tolerance, unary, pass_name, inputs, verts_sets, half, q)
            return q
        reduce_chunks, blur = kernel("_reduce_chunks"), kernel("_blur")
        for it in range(iterations):
            verts = []
            for k, b, (a, a2), label_map in zip(kernels, bufs, verts_sets, label_maps, strict=True):
                reduce_chunks(b)
                v = blur(b[0], a, a2, k.lattice.neighbours, k.lattice.order, False)
                if label_map is not None and label_map.ndim == 1:
                    v *= label_map
                elif label_map is not None:  # into the other buffer; its row M stays 0
                    v = np.matmul(v, label_map, out=a2 if v is a else a)
                verts.append(v)
            last = it == iterations - 1
            meanfield_pass(unary, tuple(verts), *inputs, q, True, not last, last)
        return q

    def _skipping_iterations(self, iterations, tolerance, unary, pass_name, inputs, verts_sets, half, q) -> None:
        """The iterations of _inference_fused after Q0's pass, skipping settled pixels (module docstring): the
        first a reset pass (every pixel; the splat buffers from then on hold the splat of each pixel's last Q,
        q_state), the middle ones over the stale pixels only (stale_pixels), the last over every pixel, writing
        Q into q (L, N). Potts kernels only (no label maps)."""
        kernels = [k for k, _ in self.lattice_terms()]
        scales_t, bufs = inputs[2:]
        n, lp = self.neg_unary.shape
        meanfield_pass = kernel(pass_name)
        skip_pass = kernel(pass_name.replace("_meanfield_pass", "_meanfield_pass_skip"))
        blur, sum_chunks = kernel("_blur"), kernel("_sum_chunks")
        vertex_changes, add_moves = kernel("_vertex_changes"), kernel("_add_moves")
        state = np.empty((n, lp), np.uint16 if half else np.float32)  # q_state: float16 bits or float32
        bound, margin, listed = np.zeros(n, np.float32), np.empty(n, np.float32), np.empty(n, np.int32)
        changes = tuple(np.zeros(k.lattice.m + 1, np.float32) for k in kernels)
        totals = [b[0] if b.shape[0] == 1 else np.empty(b.shape[1:], np.float32) for b in bufs]
        previous: list[np.ndarray | None] = [None] * len(kernels)
        for it in range(iterations):
            verts = []
            for t, (k, b) in enumerate(zip(kernels, bufs, strict=True)):
                if b.shape[0] > 1:  # private buffers persist: sum them elsewhere
                    sum_chunks(b, totals[t])
                a, a2 = [x for x in verts_sets[t] if x is not previous[t]][:2]  # previous[t] stays intact
                v = blur(totals[t], a, a2, k.lattice.neighbours, k.lattice.order, False)
                if previous[t] is not None:
                    vertex_changes(v, previous[t], changes[t])
                previous[t] = v
                verts.append(v)
            if it == iterations - 1:
                meanfield_pass(unary, tuple(verts), *inputs, q, True, False, True)
                return
            count = 0
            if it > 0:
                for k, scales, change in zip(kernels, scales_t, changes, strict=True):
                    add_moves(k.lattice.offset, k.lattice.bary, scales, change, bound)
                count = stale_pixels(bound, margin, tolerance, listed)
            skip_pass(unary, tuple(verts), *inputs, q, state, margin, None if it == 0 else listed, count)

    def kl_divergence(self, q: np.ndarray) -> float:
        """Mean-field free energy KL(Q || P) up to log Z: sum Q log Q + sum U Q + sum Q (pairwise). q: (N, L)."""
        q64 = np.asarray(q, dtype=np.float64)
        kl = float((q64 * np.log(np.maximum(q64, 1e-20))).sum() + (self.unary * q64).sum())
        pairwise = self.pairwise_energy(self.pad(q))[:, : self.num_labels]
        return kl + float((q64 * pairwise).sum())
