"""The numba kernels of the dense CRF and how they are built and run: threads, serial twins, portable twins.

Each kernel is written once as a plain Python function over row operations (gather_rows, scatter_rows,
blur_row, softmax_row, meanfield_rows, ...) and compiled in up to four builds:

* parallel (``prange`` over pixel chunks) or serial (no thread pool at all: ``threads=1``, and forked
  children of a process that already started numba's pool, where the pool would hang);
* SIMD rows (deeplab.crf.simd, LLVM IR through numba internals) or portable rows (deeplab.crf.portable,
  plain loops), the latter when ``DEEPLAB_CRF_PORTABLE=1`` is set at import.

Every build has its own qualname, so numba's on-disk caches of the builds never mix. Nothing here changes
numba's global configuration (threading layer, thread count outside a ``numba_threads`` block).
"""

from __future__ import annotations

import os
import threading
import types as types_module
from collections.abc import Callable
from contextlib import contextmanager

import numpy as np
from numba import njit, prange

from deeplab.crf import portable, simd
from deeplab.crf.portable import wide_rows  # label rows wider than the registers
from deeplab.crf.simd import (  # the row functions of the kernels below (_build swaps in the portable ones)
    blur_row,
    copy_row,
    gather_rows,
    meanfield_rows,
    meanfield_rows_skip,
    prefetch_row,
    row_change,
    scatter_rows,
    softmax_row,
)
from deeplab.errors import InputError

PORTABLE = os.environ.get("DEEPLAB_CRF_PORTABLE", "").strip() not in ("", "0")
ROWS = portable if PORTABLE else simd
ROW_FUNCTIONS = (
    "gather_rows",
    "scatter_rows",
    "blur_row",
    "softmax_row",
    "copy_row",
    "meanfield_rows",
    "meanfield_rows_prefetch",
    "meanfield_rows_skip",
    "meanfield_rows_skip_prefetch",
    "row_change",
    "rows_from_columns",
    "prefetch_row",
)
PREFETCH = 32  # blur positions ahead whose neighbour rows are prefetched (kernels._blur; 16: blur 0.90x, 48: 1.0x)
LANES = 8  # the label axis of work arrays is zero-padded to a multiple of this (SIMD-friendly rows)
MAX_REGISTER_LABELS = simd.MAX_REGISTER_LABELS


def padded(num_labels: int) -> int:
    """Label count rounded up to a multiple of LANES (the width of the (N, L) work arrays)."""
    return -(-num_labels // LANES) * LANES


@njit(cache=True, inline="always", fastmath=True)
def chunk_range(c, nchunks, n):
    """Items [lo, hi) of chunk c when n items are cut into nchunks near-equal chunks."""
    return c * n // nchunks, (c + 1) * n // nchunks


# ---------------------------------------------------------------------------------------------
# kernels (plain functions; compiled by build() below)


def _reduce_chunks(bufs):
    """bufs[0] += bufs[1:], (C, M+1, W) private splat buffers -> bufs[0]."""
    nchunks, m, nl = bufs.shape
    if nchunks > 1:
        for v in prange(m):
            for c in range(1, nchunks):
                for k in range(nl):
                    bufs[0, v, k] += bufs[c, v, k]


def _splat(values, starts, weight, bufs):
    """Scatter values (N, W) onto the vertices: bufs[c] = sum over chunk c's pixels i and corners r of
    weight[i, r] values[i] at the row starting at starts[i, r] (row_starts). bufs: (C, M+1, W), one private
    buffer per pixel chunk (C = threads; summed by _reduce_chunks). Pixel order makes consecutive scatters
    hit cached rows."""
    nchunks = bufs.shape[0]
    n = values.shape[0]
    for c in prange(nchunks):
        bufs[c] = 0.0
        lo, hi = chunk_range(c, nchunks, n)
        for i in range(lo, hi):
            scatter_rows(bufs, c, values[i], starts, weight, i)


def _blur(src, a, b, neighbours, order, reverse):
    """Blur (M+1, W) vertex values src along every lattice axis (src unchanged; row M must be 0):
    [1/2, 1, 1/2] stencil between lattice neighbours, ping-ponging a <-> b. Returns the result (a or b).

    src and the result hold vertex v in row v. With a blur order (Lattice.order, (M+1,): position s is vertex
    order[s]; neighbours are positions), the axes in between run over the positions, where the neighbour rows
    of consecutive positions come in a few ascending streams: the first axis gathers its rows through order,
    the last one writes them back through it. An empty order is vertex order throughout. Neighbour rows
    fetched out of order are prefetched PREFETCH positions ahead.
    """
    d1, m, _ = neighbours.shape
    permuted = order.shape[0] > 0
    j0 = d1 - 1 if reverse else 0
    for s in prange(m):
        v, n1, n2 = np.int64(s), np.int64(neighbours[j0, s, 0]), np.int64(neighbours[j0, s, 1])
        if permuted:
            v, n1, n2 = np.int64(order[v]), np.int64(order[n1]), np.int64(order[n2])
        if s + PREFETCH < m:
            f1, f2 = neighbours[j0, s + PREFETCH, 0], neighbours[j0, s + PREFETCH, 1]
            if permuted:
                prefetch_row(src, order[s + PREFETCH])
                f1, f2 = order[f1], order[f2]
            prefetch_row(src, f1)
            prefetch_row(src, f2)
        blur_row(a, src, s, v, n1, n2)
    for jj in range(1, d1):
        j = d1 - 1 - jj if reverse else jj
        x = a if jj % 2 == 1 else b
        y = b if jj % 2 == 1 else a
        back = permuted and jj == d1 - 1
        for s in prange(m):
            if s + PREFETCH < m:
                prefetch_row(x, neighbours[j, s + PREFETCH, 0])
                prefetch_row(x, neighbours[j, s + PREFETCH, 1])
            w = np.int64(order[s]) if back else np.int64(s)  # (one integer type: prange indices are unsigned)
            blur_row(y, x, w, s, neighbours[j, s, 0], neighbours[j, s, 1])
    return a if d1 % 2 == 1 else b


def _softmax_rows(energy, out):
    """out[i] = softmax(energy[i]) over the label axis; (N, L) float32 (may alias)."""
    n = out.shape[0]
    for i in prange(n):
        copy_row(out[i], energy[i])
        softmax_row(out[i])


def _slice(verts, starts, weight, out):
    """out[i] = sum_r weight[i, r] verts[row starting at starts[i, r]]; verts: (M+1, W), out: (N, W)."""
    n, nl = out.shape
    for i in prange(n):
        for k in range(nl):
            out[i, k] = 0.0
        gather_rows(out[i], verts, starts, weight, i)


def _meanfield_pass(neg_unary, verts, offsets, bary, scales, bufs, q_out, gather, scatter, write_q):
    """One fused mean-field update over all pixels, all kernels, all labels.

    For every pixel i (in C chunks, in parallel): energy = -U_i [+ sum_k slice_k(verts_k)_i if gather];
    Q_i = softmax(energy); if write_q, write its first L' labels to q_out (L', N) (label-major); if scatter,
    splat Q_i into each kernel's private buffer bufs[k][chunk] for the next update (summed afterwards by
    _reduce_chunks). Slice and splat weigh the corners by the barycentric weights times a per-pixel factor.
    verts (M_k+1, L), offsets (row_starts) / bary (N, D_k+1), scales (N, 2) (slice, splat factors), bufs
    (C, M_k+1, L): tuples, one entry per kernel; compatibility weights are folded into the slice factors / verts.
    L % 8 == 0. Rows of up to MAX_REGISTER_LABELS labels stay in registers (meanfield_rows); wider rows go
    through the plain loops of deeplab.crf.portable (wide_rows).
    Registered twice: ``_meanfield_pass_prefetch`` fetches vertex rows ahead of their use (meanfield_rows_prefetch,
    for vertex arrays far larger than the caches).
    """
    n, nl = neg_unary.shape
    nk = len(offsets)
    nchunks = bufs[0].shape[0]
    for c in prange(nchunks):
        if scatter:
            for t in range(nk):
                bufs[t][c] = 0.0
        lo, hi = chunk_range(c, nchunks, n)
        if nl <= MAX_REGISTER_LABELS:
            meanfield_rows(neg_unary, q_out, verts, offsets, bary, scales, bufs, c, lo, hi, gather, scatter, write_q)
            continue
        wide_rows(neg_unary, q_out, verts, offsets, bary, scales, bufs, c, lo, hi, gather, scatter, write_q)


def _meanfield_pass_skip(neg_unary, verts, offsets, bary, scales, bufs, q_out, q_state, margin, pixels, count):
    """_meanfield_pass (gathering, not writing Q) over the first ``count`` pixels of the list ``pixels``, splatting
    the change of their Q from q_state (N, L) and setting their margin (meanfield_rows_skip); pixels None: a reset,
    every pixel from q_state = 0 into cleared buffers. The buffers (one private buffer per chunk) then hold the
    splat of q_state. Registered twice, like _meanfield_pass (``_meanfield_pass_skip_prefetch``)."""
    nchunks = bufs[0].shape[0]
    total = neg_unary.shape[0] if pixels is None else count
    for c in prange(nchunks):
        if pixels is None:
            for t in range(len(bufs)):
                bufs[t][c] = 0.0
        lo, hi = chunk_range(c, nchunks, total)
        meanfield_rows_skip(
            neg_unary, q_out, verts, offsets, bary, scales, bufs, c, lo, hi, True, True, False, q_state, margin,
            pixels,
        )  # fmt: skip


def _add_moves(offset, bary, scales, changes, bound):
    """bound[i] += scales[i, 0] sum_r bary[i, r] changes[offset[i, r]] for one lattice kernel: an upper bound
    on how far any of pixel i's energies from this kernel moved since the last pass, changes[v] being the largest
    change of vertex v's blurred values (_vertex_changes). offset: (N, R) int32 vertex indices (Lattice.offset)."""
    n, nr = offset.shape
    for i in prange(n):
        acc = np.float32(0.0)
        for r in range(nr):
            acc += bary[i, r] * changes[offset[i, r]]
        bound[i] += scales[i, 0] * acc


@njit(cache=True)
def stale_pixels(bound, margin, tolerance, out):
    """The pixels whose Q may have moved by more than ``tolerance`` (any label) since their last update, written
    to out[:count] (their bound restarts at 0); returns count. Energies moved by at most b = bound[i] (_add_moves)
    scale every Q_il by a factor within exp(+-2b), so Q_il moves by at most m (exp(2b) - 1) <= m (x + x^2), x =
    2b <= 1, with m = margin[i] = max over labels of min(Q_il, 1 - Q_il) at its last update."""
    count = 0
    for i in range(bound.shape[0]):
        x = 2.0 * bound[i]
        if x > 1.0 or margin[i] * x * (1.0 + x) > tolerance:
            out[count] = i
            count += 1
            bound[i] = 0.0
    return count


def _sum_chunks(bufs, out):
    """out = sum over c of bufs[c]: (C, M+1, W) private splat buffers -> (M+1, W), bufs unchanged."""
    nchunks, m, nl = bufs.shape
    for v in prange(m):
        for k in range(nl):
            total = bufs[0, v, k]
            for c in range(1, nchunks):
                total += bufs[c, v, k]
            out[v, k] = total


def _vertex_changes(new, old, out):
    """out[v] = max over labels of |new[v] - old[v]| for the M vertices of (M+1, W) vertex arrays (float32, or
    uint16 holding float16); out: (M+1,) float32, out[M] = 0."""
    m = out.shape[0] - 1
    for v in prange(m):
        out[v] = row_change(new, old, v)
    out[m] = 0.0


# ---------------------------------------------------------------------------------------------
# builds, threads


_KERNELS: dict[str, tuple[Callable, dict]] = {}  # name -> (plain function with prange loops, row renames)
_BUILDS: dict[tuple[str, bool], Callable] = {}  # (name, parallel) -> compiled dispatcher
_LOCAL = threading.local()
_LAUNCH_PID: int | None = None  # process that started numba's thread pool
_NUMBA_LOCK = threading.RLock()


def register(fn: Callable, name: str | None = None, rows: dict[str, str] | None = None) -> Callable:
    """Add a kernel (a plain function using prange and the row functions) to the registry under ``name``;
    ``rows`` renames row functions for this build (e.g. meanfield_rows -> meanfield_rows_prefetch)."""
    _KERNELS[name or fn.__name__] = (fn, rows or {})
    return fn


def _build(name: str, parallel: bool) -> Callable:
    fn, renames = _KERNELS[name]
    glob = dict(fn.__globals__)
    glob.update({f: getattr(ROWS, renames.get(f, f)) for f in ROW_FUNCTIONS})
    glob["chunk_range"] = chunk_range
    suffix = (
        ("" if name == fn.__name__ else name[len(fn.__name__) :])
        + ("" if parallel else "_serial")
        + ("_portable" if PORTABLE else "")
    )
    g = types_module.FunctionType(fn.__code__, glob, fn.__name__ + suffix, fn.__defaults__, fn.__closure__)
    g.__qualname__ = fn.__qualname__ + suffix
    g.__module__ = fn.__module__
    return njit(cache=True, fastmath=True, parallel=parallel)(g)


def _serial_mode() -> bool:
    import numba

    return (
        getattr(_LOCAL, "serial", False)
        or numba.config.NUMBA_NUM_THREADS == 1  # type: ignore[attr-defined]
        or (_LAUNCH_PID is not None and os.getpid() != _LAUNCH_PID)
    )


def kernel(name: str) -> Callable:
    """The compiled kernel ``name`` in its parallel or serial build for the current caller (built on first use).

    Serial when inside ``numba_threads(1)``, when numba has a single thread, or in a forked child of a
    process that already ran parallel kernels; otherwise parallel, called under the module lock (numba's
    workqueue layer aborts on concurrent launches from several threads).
    """
    global _LAUNCH_PID
    parallel = not _serial_mode()
    key = (name, parallel)
    if key not in _BUILDS:
        _BUILDS[key] = _build(name, parallel)
    fn = _BUILDS[key]
    if not parallel:
        return fn
    _LAUNCH_PID = os.getpid()

    def locked(*args):
        with _NUMBA_LOCK:
            return fn(*args)

    return locked


def threads_in_use() -> int:
    """Threads the next kernel call will use (1 when running serial kernels)."""
    import numba

    return 1 if _serial_mode() else numba.get_num_threads()


DEFAULT_THREADS = 1  # two threads measured no faster on typical photos (numba's launch overhead; README)


@contextmanager
def numba_threads(threads: int | None = None):
    """Run numba kernels with ``threads`` threads (None: DEFAULT_THREADS). threads=1 runs the serial kernels
    (no thread pool; concurrent callers run in parallel); more threads run the parallel builds, one caller at
    a time (numba's threading layers are not all safe for concurrent launches)."""
    import numba

    threads = DEFAULT_THREADS if threads is None else int(threads)
    if threads < 1:
        raise InputError(f"threads must be >= 1, got {threads}")
    old_serial = getattr(_LOCAL, "serial", False)
    if threads == 1:
        _LOCAL.serial = True
        try:
            yield
        finally:
            _LOCAL.serial = old_serial
        return
    with _NUMBA_LOCK:
        old_threads = numba.get_num_threads()
        _LOCAL.serial = False
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
        try:
            yield
        finally:
            _LOCAL.serial = old_serial
            numba.set_num_threads(old_threads)


_FUNCTIONS: list[Callable] = [_reduce_chunks, _splat, _blur, _softmax_rows, _slice, _meanfield_pass]
_FUNCTIONS += [_meanfield_pass_skip, _sum_chunks, _vertex_changes, _add_moves]
for _fn in _FUNCTIONS:
    register(_fn)
register(_meanfield_pass, "_meanfield_pass_prefetch", {"meanfield_rows": "meanfield_rows_prefetch"})
register(_meanfield_pass_skip, "_meanfield_pass_skip_prefetch", {"meanfield_rows_skip": "meanfield_rows_skip_prefetch"})
