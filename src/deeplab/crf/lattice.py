"""Permutohedral lattice (Adams, Baek & Davis 2010) as fused numba kernels.

Gaussian filtering of N values in a D-dimensional feature space in O(N (D+1) L):

* :func:`build_lattice` embeds every feature vector in the (D+1)-dim permutohedral lattice once
  (hash table of the enclosing simplex's vertices, barycentric weights, blur neighbours);
* :func:`lattice_filter` splats (N, L) values onto the vertices (pixel-order scatter into one private
  buffer per thread), blurs along the D+1 lattice axes with the [1/2, 1, 1/2] stencil and slices
  back — all L channels at once, float32, (N, L) rows;
* :func:`_meanfield_pass` fuses a whole mean-field update (slice every kernel, add the unary,
  softmax, splat the new Q for the next update) into one pass over the pixels.

The lattice scaling (standard deviation ``sqrt(2/3) (D+1)`` in lattice units) and the blur/slice
constants follow the construction of Adams et al. as used by Krähenbühl & Koltun's dense CRF, so the
filter matches pydensecrf's to float rounding.  Features must already be divided by the kernel's
standard deviations: the filter approximates ``sum_j exp(-|f_i - f_j|^2 / 2) v_j`` (including j = i).
"""

from __future__ import annotations

import os
import threading
import types as types_module
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from deeplab.crf.simd import MAX_REGISTER_LABELS, copy_row, gather_rows, meanfield_rows, scatter_rows, softmax_row

if "NUMBA_THREADING_LAYER" not in os.environ:
    # GNU OpenMP's spin-waiting threads make every parallel region crawl when the cores are shared with
    # other work (measured 5x slower than one thread here); numba's own workqueue does not. Concurrent
    # launches are serialised by numba_threads' lock; forked children use the serial kernels.
    import numba

    numba.config.THREADING_LAYER = "workqueue"


@dataclass(frozen=True)
class Lattice:
    """A feature set embedded in the permutohedral lattice.

    offset: (N, D+1) int32 vertex of each simplex corner; bary: (N, D+1) float32 barycentric weights
    (rows sum to 1); neighbours: (D+1, M, 2) int32 blur neighbours per axis (M = missing: row M of
    every vertex array is kept 0).
    """

    offset: np.ndarray
    bary: np.ndarray
    neighbours: np.ndarray

    @property
    def n(self) -> int:
        return self.offset.shape[0]

    @property
    def d(self) -> int:
        return self.offset.shape[1] - 1

    @property
    def m(self) -> int:
        return self.neighbours.shape[1]

    @property
    def alpha(self) -> float:
        """Slice constant 1 / (1 + 2^-D) of the [1/2, 1, 1/2]^(D+1) blur."""
        return 1.0 / (1.0 + 2.0 ** (-self.d))


# ---------------------------------------------------------------------------------------------
# construction


@njit(cache=True, inline="always")
def _hash(key, d):
    h = np.int64(0)
    for k in range(d):
        h = h * np.int64(1000003) + np.int64(key[k])
    h ^= h >> np.int64(29)
    h *= np.int64(0x7FEB352D)
    h ^= h >> np.int64(15)
    return h


@njit(cache=True, inline="always")
def _slot(table, keys, key, d):
    """Slot of ``key`` in the open-addressing table: where it is, or the empty slot to put it."""
    mask = table.shape[0] - 1
    h = _hash(key, d) & mask
    while True:
        e = table[h]
        if e < 0:
            return h
        same = True
        for k in range(d):
            if keys[e, k] != key[k]:
                same = False
                break
        if same:
            return h
        h = (h + 1) & mask


@njit(cache=True)
def _rehash(keys, m, d, capacity):
    table = np.full(capacity, -1, np.int32)
    for e in range(m):
        table[_slot(table, keys, keys[e], d)] = e
    return table


@njit(cache=True, parallel=True)
def _simplices(feat):
    """Enclosing simplex of every feature vector: rem0 (N, D+1) int32 nearest remainder-0 lattice point
    (after the rank wrap-around), rank (N, D+1) int32, bary (N, D+1) float32 barycentric weights."""
    n, d = feat.shape
    d1 = d + 1
    scale = np.empty(d, np.float64)
    inv_std = np.sqrt(2.0 / 3.0) * d1
    for j in range(d):
        scale[j] = inv_std / np.sqrt((j + 1.0) * (j + 2.0))
    rem0_all = np.empty((n, d1), np.int32)
    rank_all = np.empty((n, d1), np.int32)
    bary = np.empty((n, d1), np.float32)
    nchunks = 64
    for c in prange(nchunks):
        elevated = np.empty(d1, np.float64)
        rem0 = np.empty(d1, np.int64)
        rank = np.empty(d1, np.int64)
        b = np.empty(d1 + 1, np.float64)
        lo, hi = _chunk(c, nchunks, n)
        for i in range(lo, hi):
            _simplex(feat, i, scale, elevated, rem0, rank, b, rem0_all, rank_all, bary)
    return rem0_all, rank_all, bary


@njit(cache=True, inline="always")
def _simplex(feat, i, scale, elevated, rem0, rank, b, rem0_all, rank_all, bary):
    """Enclosing simplex of feature row i (scratch: elevated, rem0, rank, b) -> row i of the outputs."""
    d = feat.shape[1]
    d1 = d + 1
    # elevate onto the hyperplane sum(x) = 0
    sm = 0.0
    for j in range(d, 0, -1):
        cf = feat[i, j - 1] * scale[j - 1]
        elevated[j] = sm - j * cf
        sm += cf
    elevated[0] = sm
    # nearest remainder-0 point, then the rank of each coordinate's residual
    rank[:] = 0
    b[:] = 0.0
    total = 0
    for j in range(d1):
        v = elevated[j] / d1
        up = np.ceil(v) * d1
        down = np.floor(v) * d1
        rem0[j] = np.int64(up) if up - elevated[j] < elevated[j] - down else np.int64(down)
        total += rem0[j] // d1
    for j in range(d):
        dj = elevated[j] - rem0[j]
        for k in range(j + 1, d1):
            below = np.int64(dj < elevated[k] - rem0[k])  # branch-free: the comparisons are unpredictable
            rank[j] += below
            rank[k] += 1 - below
    for j in range(d1):
        rank[j] += total
        if rank[j] < 0:
            rank[j] += d1
            rem0[j] += d1
        elif rank[j] > d:
            rank[j] -= d1
            rem0[j] -= d1
    for j in range(d1):
        v = (elevated[j] - rem0[j]) / d1
        b[d - rank[j]] += v
        b[d - rank[j] + 1] -= v
    b[0] += 1.0 + b[d1]
    for j in range(d1):
        rem0_all[i, j] = rem0[j]
        rank_all[i, j] = rank[j]
        bary[i, j] = b[j]


@njit(cache=True)
def _vertices(rem0, rank):
    """Hash the d+1 vertices of every simplex: offset (N, D+1) int32, table, keys (>= M, D) int32, M.

    Vertex r of a simplex is rem0 + canonical[r, rank] (first D coordinates; the last is implied).
    Pixels hitting a small cache of recently seen simplices reuse their vertex indices.
    """
    n, d1 = rem0.shape
    d = d1 - 1
    capacity = 1024
    while capacity < n:
        capacity *= 2
    table = np.full(capacity, -1, np.int32)
    keys = np.empty((capacity // 2, max(d, 1)), np.int32)
    m = 0
    offset = np.empty((n, d1), np.int32)
    key = np.empty(max(d, 1), np.int32)
    # small direct-mapped cache of recent simplices (neighbouring pixels share few simplices)
    cache_size = 64
    while cache_size < min(n, 16384):
        cache_size *= 2
    cache_key = np.full((cache_size, 2 * d1), -(2 ** 31), np.int32)
    cache_off = np.empty((cache_size, d1), np.int32)
    for i in range(n):
        h = np.int64(0)
        for j in range(d1):
            h = h * np.int64(1000003) + np.int64(rem0[i, j]) * np.int64(31) + np.int64(rank[i, j])
        h ^= h >> np.int64(17)
        h = (h * np.int64(0x2545F491)) & np.int64(cache_size - 1)
        hit = True
        for j in range(d1):
            if cache_key[h, j] != rem0[i, j] or cache_key[h, d1 + j] != rank[i, j]:
                hit = False
                break
        if hit:
            for r in range(d1):
                offset[i, r] = cache_off[h, r]
            continue
        for r in range(d1):
            for j in range(d):
                # canonical simplex vertex r, coordinate j: r if rank <= d - r else r - (d + 1)
                key[j] = rem0[i, j] + (r if rank[i, j] <= d - r else r - d1)
            s = _slot(table, keys, key, d)
            e = table[s]
            if e < 0:
                e = m
                if m == keys.shape[0]:
                    grown = np.empty((2 * keys.shape[0], keys.shape[1]), np.int32)
                    grown[:m] = keys[:m]
                    keys = grown
                keys[m, :d] = key[:d]
                m += 1
                if 2 * m > table.shape[0]:
                    table = _rehash(keys, m, d, 2 * table.shape[0])
                else:
                    table[s] = e
            offset[i, r] = e
        for j in range(d1):
            cache_key[h, j] = rem0[i, j]
            cache_key[h, d1 + j] = rank[i, j]
        for r in range(d1):
            cache_off[h, r] = offset[i, r]
    return offset, table, keys, m


@njit(cache=True, parallel=True)
def _blur_neighbours(table, keys, m, d):
    """(D+1, M, 2) int32: the two lattice neighbours of every vertex along every axis (M if absent)."""
    d1 = d + 1
    nb = np.empty((d1, m, 2), np.int32)
    for i in prange(m):
        n1 = np.empty(max(d, 1), np.int32)
        n2 = np.empty(max(d, 1), np.int32)
        for j in range(d1):
            for k in range(d):
                n1[k] = keys[i, k] - 1
                n2[k] = keys[i, k] + 1
            if j < d:
                n1[j] = keys[i, j] + d
                n2[j] = keys[i, j] - d
            e1 = table[_slot(table, keys, n1, d)]
            e2 = table[_slot(table, keys, n2, d)]
            nb[j, i, 0] = e1 if e1 >= 0 else m
            nb[j, i, 1] = e2 if e2 >= 0 else m
    return nb


def build_lattice(features: np.ndarray) -> Lattice:
    """features: (N, D) float, already divided by the kernel standard deviations (D >= 1)."""
    feat = np.ascontiguousarray(features, dtype=np.float32)
    if feat.ndim != 2 or feat.shape[1] < 1 or feat.shape[0] < 1:
        raise ValueError(f"features must be (N, D) with N, D >= 1, got shape {feat.shape}")
    span = float(np.abs(feat).max()) if np.all(np.isfinite(feat)) else float("inf")
    if span * np.sqrt(2.0 / 3.0) * (feat.shape[1] + 1) ** 2 > 2 ** 30:
        raise ValueError(f"features must be finite and of moderate size (|f| = {span:.3g} in std units): "
                         f"the lattice coordinates would overflow; use larger standard deviations")
    rem0, rank, bary = kernel("_simplices")(feat)
    offset, table, keys, m = _vertices(rem0, rank)
    neighbours = kernel("_blur_neighbours")(table, keys, m, feat.shape[1])
    return Lattice(offset, bary, neighbours)


# ---------------------------------------------------------------------------------------------
# filtering


LANES = 8  # the label axis of work arrays is zero-padded to a multiple of this (SIMD-friendly rows)


def padded(num_labels: int) -> int:
    """Label count rounded up to a multiple of LANES (the width of the (N, L) work arrays)."""
    return -(-num_labels // LANES) * LANES


@njit(cache=True, inline="always", fastmath=True)
def _chunk(c, nchunks, n):
    return c * n // nchunks, (c + 1) * n // nchunks


@njit(cache=True, parallel=True, fastmath=True)
def _reduce_chunks(bufs):
    """bufs[0] += bufs[1:], (C, M+1, L) private splat buffers -> bufs[0]."""
    nchunks, m, nl = bufs.shape
    if nchunks > 1:
        for v in prange(m):
            for c in range(1, nchunks):
                for k in range(nl):
                    bufs[0, v, k] += bufs[c, v, k]


@njit(cache=True, parallel=True, fastmath=True)
def _splat(values, offset, weight, bufs):
    """Scatter values (N, L) onto the vertices: bufs[c] = sum over chunk c's pixels i and corners r of
    weight[i, r] values[i] at row offset[i, r]. bufs: (C, M+1, L), one private buffer per pixel chunk
    (C = threads; sum them with _reduce_chunks). Pixel order makes consecutive scatters hit cached rows.
    """
    nchunks = bufs.shape[0]
    n, nl = values.shape
    for c in prange(nchunks):
        bufs[c] = 0.0
        lo, hi = _chunk(c, nchunks, n)
        for i in range(lo, hi):
            scatter_rows(bufs, c, values[i], offset, weight, i)


@njit(cache=True, parallel=True, fastmath=True)
def _blur(src, a, b, neighbours, reverse):
    """Blur (M+1, L) vertex values src along every lattice axis (src unchanged; row M must be 0):
    [1/2, 1, 1/2] stencil between lattice neighbours, ping-ponging a <-> b. Returns the result (a or b)."""
    d1, m, _ = neighbours.shape
    nl = src.shape[1]
    for jj in range(d1):
        j = d1 - 1 - jj if reverse else jj
        if jj == 0:
            x = src
        elif jj % 2 == 1:
            x = a
        else:
            x = b
        y = b if jj % 2 == 1 else a
        for v in prange(m):
            n1 = neighbours[j, v, 0]
            n2 = neighbours[j, v, 1]
            for k in range(nl):
                y[v, k] = x[v, k] + np.float32(0.5) * (x[n1, k] + x[n2, k])
    return a if d1 % 2 == 1 else b


PAD_ENERGY = -1e30  # energy (= -unary) of padding label columns: their probability comes out exactly 0


@njit(cache=True, parallel=True, fastmath=True)
def softmax_rows(energy, out):
    """out[i] = softmax(energy[i]) over the label axis; (N, L) float32 (may alias)."""
    n = out.shape[0]
    for i in prange(n):
        copy_row(out[i], energy[i])
        softmax_row(out[i])


@njit(cache=True, parallel=True, fastmath=True)
def _slice(verts, offset, weight, out):
    """out[i] = sum_r weight[i, r] verts[offset[i, r]]; verts: (M+1, L), out: (N, L)."""
    n, nl = out.shape
    for i in prange(n):
        for k in range(nl):
            out[i, k] = 0.0
        gather_rows(out[i], verts, offset, weight, i)


@njit(cache=True, parallel=True, fastmath=True)
def _meanfield_pass(neg_unary, verts, offsets, slice_ws, splat_ws, bufs, q_out, gather, scatter, write_q):
    """One fused mean-field update over all pixels, all kernels, all labels.

    For every pixel i (in C chunks, in parallel): energy = -U_i [+ sum_k slice_k(verts_k)_i if gather];
    Q_i = softmax(energy); if write_q, write its first L' labels to q_out (L', N) (label-major); if scatter,
    splat Q_i into each kernel's private buffer bufs[k][chunk] for the next update (summed afterwards by
    _reduce_chunks).
    verts (M_k+1, L), offsets / slice_ws / splat_ws (N, D_k+1), bufs (C, M_k+1, L): equal-length tuples,
    one entry per kernel; compatibility weights are folded into slice_ws / verts. L % 8 == 0. Rows of up
    to MAX_REGISTER_LABELS labels stay in registers (meanfield_rows); wider rows go through a scratch row.
    """
    n, nl = neg_unary.shape
    nk = len(offsets)
    nchunks = bufs[0].shape[0]
    for c in prange(nchunks):
        if scatter:
            for t in range(nk):
                bufs[t][c] = 0.0
        lo, hi = _chunk(c, nchunks, n)
        if nl <= MAX_REGISTER_LABELS:
            meanfield_rows(neg_unary, q_out, verts, offsets, slice_ws, splat_ws, bufs, c, lo, hi, gather, scatter,
                           write_q)
            continue
        e = np.empty(nl, np.float32)
        for i in range(lo, hi):
            copy_row(e, neg_unary[i])
            if gather:
                for t in range(nk):
                    gather_rows(e, verts[t], offsets[t], slice_ws[t], i)
            softmax_row(e)
            if write_q:
                for k in range(q_out.shape[0]):
                    q_out[k, i] = e[k]
            if scatter:
                for t in range(nk):
                    scatter_rows(bufs[t], c, e, offsets[t], splat_ws[t], i)


def _serial_twin(dispatcher):
    """The same kernel compiled without ``parallel`` (prange runs as range): no threading layer at all.

    Needed for threads=1 and in forked children of a process that started numba's (OpenMP / workqueue)
    thread pool, which would hang there. A distinct qualname keeps the on-disk caches apart.
    """
    f = dispatcher.py_func
    g = types_module.FunctionType(f.__code__, f.__globals__, f.__name__ + "_serial", f.__defaults__, f.__closure__)
    g.__qualname__ = f.__qualname__ + "_serial"
    return njit(cache=True, fastmath=True)(g)


_PARALLEL = {f.__name__: f for f in (_simplices, _blur_neighbours, _reduce_chunks, _splat, _blur, softmax_rows,
                                       _slice, _meanfield_pass)}
_SERIAL = {name: _serial_twin(f) for name, f in _PARALLEL.items()}
_LOCAL = threading.local()
_LAUNCH_PID: int | None = None  # process that started numba's thread pool


def _serial_mode() -> bool:
    import numba

    return getattr(_LOCAL, "serial", False) or numba.config.NUMBA_NUM_THREADS == 1 \
        or (_LAUNCH_PID is not None and _LAUNCH_PID != os.getpid())


def kernel(name: str):
    """The numba kernel ``name`` in its parallel or serial build for the current caller.

    Serial when inside ``numba_threads(1)``, when numba has a single thread, or in a forked child of a
    process that already ran parallel kernels; otherwise parallel, called under the module lock (numba's
    workqueue layer aborts on concurrent launches from several threads).
    """
    global _LAUNCH_PID
    if _serial_mode():
        return _SERIAL[name]
    _LAUNCH_PID = os.getpid()
    fn = _PARALLEL[name]

    def locked(*args):
        with _NUMBA_LOCK:
            return fn(*args)

    return locked


def threads_in_use() -> int:
    """Threads the next kernel call will use (1 when running serial kernels)."""
    import numba

    return 1 if _serial_mode() else numba.get_num_threads()


def splat_buffers(lattice: Lattice, num_values: int, chunks: int) -> np.ndarray:
    """Zeroed private splat buffers (chunks, M+1, num_values) float32."""
    return np.zeros((chunks, lattice.m + 1, num_values), np.float32)


def lattice_filter(lattice: Lattice, values: np.ndarray, in_weight: np.ndarray | None = None,
                   out_weight: np.ndarray | None = None, reverse: bool = False) -> np.ndarray:
    """Gaussian-filter values (N, L): diag(out_weight) alpha S^T B S diag(in_weight) values, float32.

    in_weight / out_weight: optional (N,) per-pixel factors (normalisation). ``reverse`` runs the blur
    axes in reverse order: the exact transpose of the operator (when in/out weights are swapped too).
    Returns (N, L) float32.
    """
    values = np.asarray(values, dtype=np.float32)
    n, num_values = values.shape
    if n != lattice.n:
        raise ValueError(f"values have {n} rows but the lattice has {lattice.n} points")
    nl = padded(num_values)
    if nl != num_values or not values.flags.c_contiguous:
        values = np.pad(values, ((0, 0), (0, nl - num_values)))
    bary = lattice.bary
    w_in = bary if in_weight is None else bary * in_weight[:, None].astype(np.float32)
    w_out = bary * np.float32(lattice.alpha)
    if out_weight is not None:
        w_out = w_out * out_weight[:, None].astype(np.float32)
    bufs = splat_buffers(lattice, nl, threads_in_use())
    kernel("_splat")(values, lattice.offset, np.ascontiguousarray(w_in, np.float32), bufs)
    kernel("_reduce_chunks")(bufs)
    a = np.zeros((lattice.m + 1, nl), np.float32)
    verts = kernel("_blur")(bufs[0], a, np.zeros_like(a), lattice.neighbours, reverse)
    out = np.empty((n, nl), np.float32)
    kernel("_slice")(verts, lattice.offset, np.ascontiguousarray(w_out, np.float32), out)
    return out[:, :num_values]


@njit(cache=True, fastmath=True)
def _splat_ones(offset, bary, m):
    """Splat of the all-ones signal: (M+1, 1) float32 sum of the barycentric weights at each vertex."""
    out = np.zeros((m + 1, 1), np.float32)
    n, d1 = offset.shape
    for i in range(n):
        for r in range(d1):
            out[offset[i, r], 0] += bary[i, r]
    return out


@njit(cache=True, fastmath=True)
def _slice_scalar(verts, offset, bary, alpha):
    """alpha * sum_r bary[i, r] verts[offset[i, r], 0] for every point i: (N,) float32."""
    n, d1 = offset.shape
    out = np.empty(n, np.float32)
    for i in range(n):
        acc = np.float32(0.0)
        for r in range(d1):
            acc += bary[i, r] * verts[offset[i, r], 0]
        out[i] = acc * alpha
    return out


def filter_ones(lattice: Lattice) -> np.ndarray:
    """K 1: the lattice filter of the all-ones signal, (N,) float32 (normalisation factors come from it);
    equal to ``lattice_filter(lattice, ones)[:, 0]`` with one lane instead of a padded row."""
    a = _splat_ones(lattice.offset, lattice.bary, lattice.m)
    verts = kernel("_blur")(a.copy(), a, np.zeros_like(a), lattice.neighbours, False)
    return _slice_scalar(verts, lattice.offset, lattice.bary, np.float32(lattice.alpha))


_NUMBA_LOCK = threading.RLock()


@contextmanager
def numba_threads(threads: int | None = None):
    """Run numba kernels with ``threads`` threads (None: numba's default). threads=1 runs the serial
    kernels (no thread pool; concurrent callers run in parallel); otherwise one caller at a time holds
    the lock (numba's threading layers are not all safe for concurrent launches)."""
    import numba

    if threads is not None and int(threads) < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    old_serial = getattr(_LOCAL, "serial", False)
    if threads is not None and int(threads) == 1:
        _LOCAL.serial = True
        try:
            yield
        finally:
            _LOCAL.serial = old_serial
        return
    with _NUMBA_LOCK:
        old_threads = numba.get_num_threads()
        _LOCAL.serial = False if threads is not None else old_serial
        if threads is not None:
            numba.set_num_threads(min(int(threads), numba.config.NUMBA_NUM_THREADS))
        try:
            yield
        finally:
            _LOCAL.serial = old_serial
            numba.set_num_threads(old_threads)
