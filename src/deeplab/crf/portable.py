"""Plain numba versions of the row kernels of deeplab.crf.simd, with the same signatures and results.

The SIMD intrinsics generate LLVM IR through numba internals that a numba release may change. With
``DEEPLAB_CRF_PORTABLE=1`` in the environment (read at import) the lattice kernels are built on these loops
instead: slower, never wrong. CI runs part of the CRF tests that way.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import overload

from deeplab.crf.simd import ENERGY_FLOOR


@njit(cache=True, inline="always", fastmath=True)
def gather_rows(acc, verts, starts, weight, i):
    """acc[:L] += sum_r weight[i, r] * verts.flat[starts[i, r] : + L], L = verts.shape[1]."""
    nl = verts.shape[1]
    flat = verts.reshape(-1)
    for r in range(starts.shape[1]):
        w = weight[i, r]
        s = starts[i, r]
        for k in range(nl):
            acc[k] += w * flat[s + k]


@njit(cache=True, inline="always", fastmath=True)
def scatter_rows(bufs, chunk, x, starts, weight, i):
    """bufs[chunk].flat[starts[i, r] : + L] += weight[i, r] * x[:L], L = bufs.shape[2]."""
    nl = bufs.shape[2]
    flat = bufs[chunk].reshape(-1)
    for r in range(starts.shape[1]):
        w = weight[i, r]
        s = starts[i, r]
        for k in range(nl):
            flat[s + k] += w * x[k]


@njit(cache=True, inline="always", fastmath=True)
def blur_row(y, x, w, v, n1, n2):
    """y[w] = x[v] + (x[n1] + x[n2]) / 2."""
    for k in range(y.shape[1]):
        y[w, k] = x[v, k] + 0.5 * (x[n1, k] + x[n2, k])


@njit(cache=True, inline="always", fastmath=True)
def softmax_row(e):
    """e = softmax(e) in place."""
    mx = e[0]
    for k in range(1, e.shape[0]):
        mx = max(mx, e[k])
    total = np.float32(0.0)
    for k in range(e.shape[0]):
        y = np.exp(e[k] - mx) if e[k] - mx > -80.0 else np.float32(0.0)
        e[k] = y
        total += y
    inv = np.float32(1.0) / total
    for k in range(e.shape[0]):
        e[k] *= inv


@njit(cache=True, inline="always")
def prefetch_row(x, v):
    """No-op (the prefetch hint needs the LLVM intrinsic)."""


@njit(cache=True, inline="always")
def copy_row(dst, src):
    for k in range(dst.shape[0]):
        dst[k] = src[k]


@njit(cache=True, inline="always", fastmath=True)
def rows_from_columns(dst, src, i0, scale, pad, log_floor):
    """dst[i0 + j, :] = scale * f(src[:, i0 + j]) for j < 8 (see simd.rows_from_columns)."""
    nl = src.shape[0]
    for j in range(8):
        for k in range(dst.shape[1]):
            if k >= nl:
                dst[i0 + j, k] = pad
            elif log_floor > 0:
                dst[i0 + j, k] = scale * np.log(max(src[k, i0 + j], log_floor))
            else:
                dst[i0 + j, k] = max(scale * src[k, i0 + j], ENERGY_FLOOR)


@njit(cache=True, inline="always", fastmath=True)
def _pixel_q(e, row, neg_unary, q_out, verts, offsets, bary, scales, i, gather, write_q):
    """e = Q_i, the softmax of pixel i's energy row (-U_i, plus the kernels' slices if gather); into q_out[:, i]
    if write_q. row: scratch of e's length."""
    copy_row(e, neg_unary[i])
    if gather:
        for t in range(len(offsets)):
            row[:] = 0.0
            gather_rows(row, verts[t], offsets[t], bary[t], i)
            f = scales[t][i, 0]
            for k in range(e.shape[0]):
                e[k] += f * row[k]
    softmax_row(e)
    if write_q:
        for k in range(q_out.shape[0]):
            q_out[k, i] = e[k]


@njit(cache=True, inline="always", fastmath=True)
def _splat_pixel(x, row, bufs, chunk, offsets, bary, scales, i):
    """Splat x (times each kernel's splat factor of pixel i) into every kernel's buffer. row: scratch."""
    for t in range(len(offsets)):
        f = scales[t][i, 1]
        for k in range(x.shape[0]):
            row[k] = f * x[k]
        scatter_rows(bufs[t], chunk, row, offsets[t], bary[t], i)


@njit(cache=True, inline="always", fastmath=True)
def meanfield_rows(neg_unary, q_out, verts, offsets, bary, scales, bufs, chunk, lo, hi, gather, scatter, write_q):
    """Mean-field updates of pixels lo..hi-1 (see simd.meanfield_rows)."""
    nl = neg_unary.shape[1]
    e = np.empty(nl, np.float32)
    row = np.empty(nl, np.float32)
    for i in range(lo, hi):
        _pixel_q(e, row, neg_unary, q_out, verts, offsets, bary, scales, i, gather, write_q)
        if scatter:
            _splat_pixel(e, row, bufs, chunk, offsets, bary, scales, i)


@njit(cache=True, inline="always", fastmath=True)
def meanfield_rows_skip(
    neg_unary, q_out, verts, offsets, bary, scales, bufs, chunk, lo, hi, gather, scatter, write_q, q_state, margin,
    pixels,
):  # fmt: skip
    """Mean-field updates of pixels[lo..hi-1] (lo..hi-1 if pixels is None: a reset), splatting the change of Q from
    q_state (float32 here; see simd.meanfield_rows_skip)."""
    nl = neg_unary.shape[1]
    e = np.empty(nl, np.float32)
    row = np.empty(nl, np.float32)
    change = np.empty(nl, np.float32)
    for j in range(lo, hi):
        i = j if pixels is None else pixels[j]
        _pixel_q(e, row, neg_unary, q_out, verts, offsets, bary, scales, i, gather, write_q)
        if scatter:
            for k in range(nl):
                change[k] = e[k] if pixels is None else e[k] - q_state[i, k]
                q_state[i, k] = e[k]
            _splat_pixel(change, row, bufs, chunk, offsets, bary, scales, i)
        top = np.float32(0.0)
        for k in range(nl):
            top = max(top, e[k])
        margin[i] = min(top, 1.0 - top)  # = max over labels of min(Q_il, 1 - Q_il)


@njit(cache=True, inline="always", fastmath=True)
def row_change(new, old, v):
    """max over labels of |new[v] - old[v]| (float32 rows)."""
    top = np.float32(0.0)
    for k in range(new.shape[1]):
        top = max(top, abs(new[v, k] - old[v, k]))
    return top


meanfield_rows_prefetch = meanfield_rows  # no prefetch hints in plain numba
meanfield_rows_skip_prefetch = meanfield_rows_skip


def wide_rows(neg_unary, q_out, verts, offsets, bary, scales, bufs, chunk, lo, hi, gather, scatter, write_q):
    """meanfield_rows for label rows wider than the SIMD registers (the SIMD build's fallback). Typed for
    float32 energy and vertex rows only: int16 energy rows and float16 vertex storage are limited to
    MAX_REGISTER_LABELS labels, so arguments holding them never reach this call and compile it to nothing."""


@overload(wide_rows, inline="always")
def _wide_rows_for(neg_unary, q_out, verts, offsets, bary, scales, bufs, chunk, lo, hi, gather, scatter, write_q):
    if neg_unary.dtype == types.float32 and all(v.dtype == types.float32 for v in verts):

        def rows(neg_unary, q_out, verts, offsets, bary, scales, bufs, chunk, lo, hi, gather, scatter, write_q):
            meanfield_rows(
                neg_unary, q_out, verts, offsets, bary, scales, bufs, chunk, lo, hi, gather, scatter, write_q
            )

        return rows
    return wide_rows
