"""Permutohedral lattice (Adams, Baek & Davis 2010): construction and Gaussian filtering.

Gaussian filtering of N values in a D-dimensional feature space in O(N (D+1) L):

* :func:`build_lattice` embeds every feature vector in the (D+1)-dim permutohedral lattice once
  (hash table of the enclosing simplex's vertices, barycentric weights, blur neighbours);
* :func:`lattice_filter` splats (N, L) values onto the vertices (pixel-order scatter into one private
  buffer per thread), blurs along the D+1 lattice axes with the [1/2, 1, 1/2] stencil and slices
  back — all L channels at once, float32, (N, L) rows. The fused mean-field pass that does the same
  inside the CRF's iterations is deeplab.crf.kernels._meanfield_pass; every kernel's builds (parallel or
  serial, SIMD or portable) are made there.

Two ways to hash the vertices, and which runs when:

* **packed** (``_packed_vertices``): every vertex's first D coordinates packed into one int64 (mixed radix
  over the coordinate ranges the features can reach, ``_key_layout``), in a linear-probing table of (key,
  index) pairs; neighbours are key +- a constant. They are looked up in the table (``_packed_neighbours``)
  for lattices whose blur keeps vertex order, and found by merging the sorted keys with themselves shifted
  (``_sorted_neighbours``) for those whose blur runs in sorted-key order (Lattice; SORTED_BLUR_*): the sort
  is needed for that order anyway, and the merge then replaces the hashing (2007_000129: 40 -> 30 ms per
  build), but for a lattice that keeps vertex order, sorting and mapping back cost more than the lookups
  (Gaussian xy 1 on 375 x 500: 6.4 ms against 3.3 ms). The packed path runs whenever the packed keys fit in
  63 bits and D <= 15: every CRF kernel of an image (bilateral D = 5 over positions and colours, Gaussian
  D = 2) and most other feature sets. It is the fast path (bench_lattice_build.py: 3-5x the general one on
  the same features).
* **general** (``_simplices``, ``_vertices``, ``_blur_neighbours``): keys of D int32 coordinates compared
  element by element; its blur keeps vertex order. It runs only when the packed keys would not fit: high
  dimensions or very wide coordinate ranges (e.g. 8 random features, or features divided by tiny standard
  deviations); there is no packing for those, so it stays.

The lattice scaling (standard deviation ``sqrt(2/3) (D+1)`` in lattice units) and the blur/slice
constants follow the construction of Adams et al. as used by Krähenbühl & Koltun's dense CRF, so the
filter matches pydensecrf's to float rounding.  Features must already be divided by the kernel's
standard deviations: the filter approximates ``sum_j exp(-|f_i - f_j|^2 / 2) v_j`` (including j = i).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from deeplab.crf.kernels import chunk_range, kernel, padded, register, threads_in_use
from deeplab.errors import InputError


@dataclass(frozen=True)
class Lattice:
    """A feature set embedded in the permutohedral lattice.

    offset: (N, D+1) int32 vertex of each simplex corner; bary: (N, D+1) float32 barycentric weights
    (rows sum to 1); order: (M+1,) int32 blur order, position s -> vertex order[s] (order[M] = M), or empty:
    vertex order; neighbours: (D+1, M, 2) int32 blur neighbours of position s along every axis, as positions
    (M = missing: row M of every vertex array is kept 0).

    Vertices are numbered in the order the pixels first reach them, which keeps a pixel's vertex rows near
    those of the pixels before it (the splat and slice run in pixel order). On large lattices (SORTED_BLUR_*)
    the blur runs in the order of the sorted packed keys instead, where the neighbours of consecutive positions
    come in ascending streams; elsewhere order is empty (vertex order, no indirection).
    """

    offset: np.ndarray
    bary: np.ndarray
    order: np.ndarray
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


@njit(cache=True)
def _find(table, key, shift):
    """Slot of the packed vertex key in the open-addressing table (2^(64 - shift), 2) int64 of (key, vertex
    index; -1: empty): where it is, or the empty slot to put it."""
    mask = table.shape[0] - 1
    s = ((key * np.int64(-7046029254386353131)) >> shift) & mask  # Fibonacci hashing (the top bits)
    while table[s, 1] >= 0 and table[s, 0] != key:
        s = (s + 1) & mask
    return s


@njit(cache=True)
def _grow(table, shift):
    """The table re-inserted into twice the slots (shift - 1)."""
    grown = np.full((2 * table.shape[0], 2), -1, np.int64)
    for s in range(table.shape[0]):
        if table[s, 1] >= 0:
            t = _find(grown, table[s, 0], shift - 1)
            grown[t, 0] = table[s, 0]
            grown[t, 1] = table[s, 1]
    return grown


@njit(cache=True, inline="always")
def _scale(d):
    """(D,) float64 elevation factors sqrt(2/3) (D+1) / sqrt((j+1)(j+2))."""
    scale = np.empty(d, np.float64)
    inv_std = np.sqrt(2.0 / 3.0) * (d + 1)
    for j in range(d):
        scale[j] = inv_std / np.sqrt((j + 1.0) * (j + 2.0))
    return scale


BLOCK = 256  # pixels per _simplex_block call
# The blur runs in sorted-key order (Lattice) for lattices of at least this many dimensions and vertices (the
# bilateral kernel's of a photo with many distinct colours: ten blurs of 2007_000129's, 119k vertices, 66-91 ->
# 58-60 ms over two runs); smaller or position-only lattices keep vertex order: their rows stay in cache or come in
# pixel order already, and the reordering first and last axes cost as much as they save (33k-58k vertices:
# +-3 ms per ten blurs; one blur of a Gaussian xy 3 lattice: 0.77 -> 0.97 ms).
SORTED_BLUR_DIMS = 3
SORTED_BLUR_VERTICES = 1 << 16
VERTEX_ORDER = np.empty(0, np.int32)  # Lattice.order of a lattice blurred in vertex order


def _simplices(feat):
    """Enclosing simplex of every feature vector: rem0 (N, D+1) int32 nearest remainder-0 lattice point
    (after the rank wrap-around), rank (N, D+1) int32, bary (N, D+1) float32 barycentric weights."""
    n, d = feat.shape
    d1 = d + 1
    scale = _scale(d)
    rem0_all = np.empty((n, d1), np.int32)
    rank_all = np.empty((n, d1), np.int32)
    bary = np.empty((n, d1), np.float32)
    nchunks = 64
    for c in prange(nchunks):
        work = np.empty((4, d1 + 1, BLOCK), np.float64)
        lo, hi = chunk_range(c, nchunks, n)
        for i0 in range(lo, hi, BLOCK):
            nb = min(BLOCK, hi - i0)
            _simplex_block(feat, i0, nb, scale, work)
            for p in range(nb):
                for j in range(d1):
                    rem0_all[i0 + p, j] = np.int32(work[1, j, p])
                    rank_all[i0 + p, j] = np.int32(work[2, j, p])
                    bary[i0 + p, j] = work[3, j, p]
    return rem0_all, rank_all, bary


@njit(cache=True, inline="always")
def _simplex_block(feat, i0, nb, scale, work):
    """Enclosing simplices of feature rows i0 .. i0+nb-1 (nb <= B), pixel p in column p of work (4, D+2, B)
    float64: work[1, :D+1] nearest remainder-0 lattice point (after the rank wrap-around), work[2, :D+1]
    rank, work[3, :D+1] barycentric weights (work[0] and row D+1: scratch). Loops over p innermost (SIMD)."""
    d = feat.shape[1]
    d1 = d + 1
    el, rem, rank, res = work[0], work[1], work[2], work[3]
    # elevate onto the hyperplane sum(x) = 0 (running sum in el[d1])
    for p in range(nb):
        el[d1, p] = 0.0
        rem[d1, p] = 0.0
    for j in range(d, 0, -1):
        for p in range(nb):
            cf = feat[i0 + p, j - 1] * scale[j - 1]
            el[j, p] = el[d1, p] - j * cf
            el[d1, p] += cf
    for p in range(nb):
        el[0, p] = el[d1, p]
    # nearest remainder-0 point (sum of rem / (D+1) in rem[d1]), residuals
    for j in range(d1):
        for p in range(nb):
            e = el[j, p]
            v = e / d1
            up = np.ceil(v)
            down = np.floor(v)
            k = down + (1.0 if up * d1 - e < e - down * d1 else 0.0)  # (up = down + 1 unless v is whole)
            rem[j, p] = k * d1
            rem[d1, p] += k
            res[j, p] = e - k * d1
    # rank of each residual (ties: the earlier coordinate ranks higher), shifted by the sum, wrapped to 0..D
    for j in range(d1):
        for p in range(nb):
            rank[j, p] = rem[d1, p]
        for k in range(j):
            for p in range(nb):
                rank[j, p] += 1.0 if res[k, p] >= res[j, p] else 0.0
        for k in range(j + 1, d1):
            for p in range(nb):
                rank[j, p] += 1.0 if res[k, p] > res[j, p] else 0.0
    for j in range(d1):
        for p in range(nb):
            r = rank[j, p]
            wrap = ((1.0 if r < 0 else 0.0) - (1.0 if r > d else 0.0)) * d1
            rank[j, p] = r + wrap
            rem[j, p] += wrap
            res[j, p] = (el[j, p] - rem[j, p]) / d1
    # barycentric weights: differences of the residuals sorted by rank (in el)
    for r in range(d1):
        for p in range(nb):
            el[r, p] = 0.0
        for j in range(d1):
            for p in range(nb):
                el[r, p] += res[j, p] if rank[j, p] == r else 0.0
    for p in range(nb):
        res[0, p] = el[d, p] + (1.0 - el[0, p])
    for t in range(1, d1):
        for p in range(nb):
            res[t, p] = el[d - t, p] - el[d - t + 1, p]


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
    cache_key = np.full((cache_size, 2 * d1), -(2**31), np.int32)
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


def _packed_vertices(feat, bary, lo, mult):
    """Find every pixel's simplex and hash its D+1 vertices, in pixel order, with vertex coordinates j < D
    packed into one int64 key sum_j (x_j - lo[j]) mult[j] (see _key_layout): writes bary (N, D+1) float32;
    returns offset (N, D+1) int32, the table (C, 2) int64 of _find, M. One serial pass (faster than a
    parallel simplex pass followed by serial hashing, measured with 2 threads).
    """
    n, d = feat.shape
    offset = np.empty((n, d + 1), np.int32)
    table = np.full((1 << 14, 2), -1, np.int64)
    shift = 64 - 14
    i = m = 0
    while True:
        i, m = _packed_pass(feat, bary, lo, mult, table, shift, offset, i, m)
        if i == n:
            return offset, table, m
        table = _grow(table, shift)
        shift -= 1


@njit(cache=True, fastmath=True)
def _packed_pass(feat, bary, lo, mult, table, shift, offset, start, m):
    """_packed_vertices from pixel ``start`` (M = m so far) until the table gets half full: (stop, M).

    Pixels in a small cache of recent simplices reuse their vertex indices. (A separate pass per table
    size: reassigning the table inside the pixel loop would cost numba reference counting per lookup.)
    """
    n, d = feat.shape
    d1 = d + 1
    scale = _scale(d)
    work = np.empty((4, d1 + 1, BLOCK), np.float64)
    perm = np.empty(d1, np.int64)
    ones = mult.sum()  # key step +1 in every coordinate
    # simplex ids of B pixels at a time: vertex 0's key, the ranks in 4-bit fields (D < 16), and their slot
    # in a direct-mapped cache of recent simplices
    sid = np.empty((3, BLOCK), np.int64)
    cache_size = 64
    while cache_size < min(n, 16384):
        cache_size *= 2
    cache_id = np.full((cache_size, 2), -1, np.int64)
    cache_off = np.empty((cache_size, d1), np.int32)
    for i in range(start - start % BLOCK, n):
        p = i % BLOCK
        if p == 0 or i == start:
            i0 = i - p
            nb = min(BLOCK, n - i0)
            _simplex_block(feat, i0, nb, scale, work)
            for q in range(nb):
                sid[0, q] = 0
                sid[1, q] = 0
            for j in range(d):
                for q in range(nb):
                    sid[0, q] += (np.int64(work[1, j, q]) - lo[j]) * mult[j]
            for j in range(d1):
                for q in range(nb):
                    sid[1, q] |= np.int64(work[2, j, q]) << np.int64(4 * j)
            for q in range(nb):
                h = (sid[0, q] ^ (sid[1, q] * np.int64(0x2545F491))) * np.int64(-7046029254386353131)
                sid[2, q] = (h >> np.int64(32)) & (cache_size - 1)
        if i < start:
            continue
        for j in range(d1):
            bary[i, j] = work[3, j, p]
        key0 = sid[0, p]
        code = sid[1, p]
        c = sid[2, p]
        if cache_id[c, 0] == key0 and cache_id[c, 1] == code:
            for r in range(d1):
                offset[i, r] = cache_off[c, r]
            continue
        if 2 * (m + d1) > table.shape[0]:
            return i, m
        # vertex r + 1 = vertex r + 1 in every coordinate, -D in the one of rank D - r
        for j in range(d1):
            perm[np.int64(work[2, j, p])] = j
        key = key0
        for r in range(d1):
            s = _find(table, key, shift)
            if table[s, 1] < 0:
                table[s, 0] = key
                table[s, 1] = m
                m += 1
            offset[i, r] = table[s, 1]
            cache_off[c, r] = table[s, 1]
            key += ones
            j = perm[d - r]
            if j < d:
                key -= d1 * mult[j]
        cache_id[c, 0] = key0
        cache_id[c, 1] = code
    return n, m


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


@njit(cache=True)
def _table_keys(table, m):
    """(M,) int64 packed key of every vertex from the _packed_vertices table."""
    keys = np.empty(m, np.int64)
    for s in range(table.shape[0]):
        if table[s, 1] >= 0:
            keys[table[s, 1]] = table[s, 0]
    return keys


def _packed_neighbours(table, m, delta):
    """(D+1, M, 2) int32 blur neighbours (M if absent) from the _packed_vertices table; delta (D+1,) int64:
    packed key step to the first neighbour along each axis (-delta: the second). One lookup per vertex and axis:
    u is v's first neighbour exactly when v is u's second."""
    d1 = delta.shape[0]
    capacity = table.shape[0]
    shift = np.int64(64)
    while 1 << (64 - shift) < capacity:
        shift -= 1
    nb = np.full((d1, m, 2), m, np.int32)
    nchunks = 64
    for c in prange(nchunks):
        lo, hi = chunk_range(c, nchunks, capacity)
        for s in range(lo, hi):
            e = table[s, 1]
            if e < 0:
                continue
            for j in range(d1):
                f = table[_find(table, table[s, 0] + delta[j], shift), 1]
                if f >= 0:
                    nb[j, e, 0] = f
                    nb[j, f, 1] = e  # every (j, f) is written once: no race between chunks
    return nb


@njit(cache=True)
def _sorted_neighbours(sorted_keys, delta):
    """(D+1, M, 2) int32 blur neighbours as positions in sorted_keys (M,) int64 ascending (M if absent);
    delta (D+1,) int64: packed key step to the first neighbour along each axis (-delta: the second). The keys
    plus a constant are ascending too, so each axis is one merge: O(M), no hashing; u is v's first neighbour
    exactly when v is u's second."""
    m = sorted_keys.shape[0]
    nb = np.full((delta.shape[0], m, 2), m, np.int32)
    for j in range(delta.shape[0]):
        t = 0
        for s in range(m):
            target = sorted_keys[s] + delta[j]
            while t < m and sorted_keys[t] < target:
                t += 1
            if t < m and sorted_keys[t] == target:
                nb[j, s, 0] = t
                nb[j, t, 1] = s
    return nb


@njit(cache=True)
def _bounds(feat):
    """Per-column minimum and maximum (D,) float64 of feat (N, D); minimum NaN if feat has a NaN."""
    n, d = feat.shape
    flat = feat.ravel()
    lanes = 16 * d  # reduce 16 rows at a time (SIMD), lane t holding column t % d
    lo = flat[:lanes].copy() if n >= 16 else np.full(lanes, flat[0])
    hi = lo.copy()
    nan = False
    for k in range(0, n * d, lanes):
        chunk = flat[k : k + lanes]
        for t in range(chunk.shape[0]):
            x = chunk[t]
            lo[t] = min(lo[t], x)
            hi[t] = max(hi[t], x)
            nan |= np.isnan(x)
    fmin = np.full(d, np.inf)
    fmax = np.full(d, -np.inf)
    for t in range(lanes):
        fmin[t % d] = min(fmin[t % d], lo[t])
        fmax[t % d] = max(fmax[t % d], hi[t])
    if nan:
        fmin[:] = np.nan
    return fmin, fmax


def _key_layout(fmin: np.ndarray, fmax: np.ndarray):
    """Packing of vertex coordinates j < D into one int64 key sum_j (x_j - lo[j]) mult[j] (mixed radix),
    from the feature bounds fmin, fmax (D,): lo, mult (D,) int64 and delta (D+1,) int64 (key step to the
    first blur neighbour along each axis); None when the coordinates' ranges do not fit or D > 15. The
    ranges cover every vertex and blur neighbour with a margin, so packed keys add like coordinates."""
    d = fmin.shape[0]
    d1 = d + 1
    if d > 15:
        return None
    scale = np.sqrt(2.0 / 3.0) * d1 / np.sqrt(np.arange(1.0, d1) * np.arange(2.0, d1 + 1))
    # elevated[j] = sum_{k > j} cf_k - j cf_j (1-based cf_k = f_{k-1} scale_{k-1}), elevated[0] = sum cf_k
    elo, ehi = np.empty(d1), np.empty(d1)
    smlo = smhi = 0.0
    for j in range(d, 0, -1):
        clo, chi = fmin[j - 1] * scale[j - 1], fmax[j - 1] * scale[j - 1]
        elo[j], ehi[j] = smlo - j * chi, smhi - j * clo
        smlo, smhi = smlo + clo, smhi + chi
    elo[0], ehi[0] = smlo, smhi
    lo, mult = np.empty(d, np.int64), np.empty(d, np.int64)
    place = 1
    for j in range(d):
        lo[j] = (int(np.floor(elo[j] / d1)) - 4) * d1
        mult[j] = place
        place *= (int(np.ceil(ehi[j] / d1)) + 4) * d1 - int(lo[j]) + 1
        if place > 2**62:
            return None
    delta = np.full(d1, -int(mult.sum()), np.int64)
    delta[:d] += d1 * mult
    return lo, mult, delta


def build_lattice(features: np.ndarray) -> Lattice:
    """features: (N, D) float, already divided by the kernel standard deviations (D >= 1)."""
    feat = np.ascontiguousarray(features, dtype=np.float32)
    if feat.ndim != 2 or feat.shape[1] < 1 or feat.shape[0] < 1:
        raise InputError(f"features must be (N, D) with N, D >= 1, got shape {feat.shape}")
    fmin, fmax = _bounds(feat)
    span = max(-fmin.min(), fmax.max()) if np.isfinite(fmin).all() and np.isfinite(fmax).all() else np.inf
    if span * np.sqrt(2.0 / 3.0) * (feat.shape[1] + 1) ** 2 > 2**30:
        raise InputError(
            f"features must be finite and of moderate size (|f| = {span:.3g} in std units): "
            f"the lattice coordinates would overflow; use larger standard deviations"
        )
    layout = _key_layout(fmin, fmax)
    if layout is None:  # general path: vertex keys of D int32 coordinates
        rem0, rank, bary = kernel("_simplices")(feat)
        offset, table, keys, m = _vertices(rem0, rank)
        neighbours = kernel("_blur_neighbours")(table, keys, m, feat.shape[1])
        return Lattice(offset, bary, VERTEX_ORDER, neighbours)
    lo, mult, delta = layout
    bary = np.empty((feat.shape[0], feat.shape[1] + 1), np.float32)
    offset, table, m = _packed_vertices(feat, bary, lo, mult)
    if feat.shape[1] < SORTED_BLUR_DIMS or m < SORTED_BLUR_VERTICES:
        neighbours = kernel("_packed_neighbours")(table, m, delta)
        return Lattice(offset, bary, VERTEX_ORDER, neighbours)
    keys = _table_keys(table, m)
    order = np.append(np.argsort(keys).astype(np.int32), np.int32(m))
    return Lattice(offset, bary, order, _sorted_neighbours(keys[order[:m]], delta))


# ---------------------------------------------------------------------------------------------
# filtering


for _fn in (_simplices, _blur_neighbours, _packed_neighbours):
    register(_fn)


def row_starts(lattice: Lattice, width: int) -> np.ndarray:
    """(N, D+1) vertex index x width: where each corner's row starts in a flat (M+1, width) vertex array.
    int32, or int64 when (M+1) x width does not fit in int32. (The row kernels take these, saving a
    multiply per corner in the mean-field pass.)"""
    dtype = np.int32 if (lattice.m + 1) * width < 2**31 else np.int64
    return lattice.offset.astype(dtype) * dtype(width)


def aligned_zeros(shape: tuple[int, ...], dtype, align: int = 64) -> np.ndarray:
    """np.zeros(shape, dtype) whose data starts on an ``align``-byte boundary (a cache line). NumPy's large arrays
    start 16 bytes past one, so half the 32-byte and most 64-byte vector accesses to their rows would straddle two
    lines (ten mean-field iterations side by side: faster on all 7 photos of one run, by about 5-10%; within the
    noise in another)."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape)) * dtype.itemsize
    raw = np.zeros(size + align, np.uint8)
    skip = -raw.ctypes.data % align
    return raw[skip : skip + size].view(dtype).reshape(shape)


def splat_buffers(lattice: Lattice, num_values: int, chunks: int) -> np.ndarray:
    """Zeroed private splat buffers (chunks, M+1, num_values) float32, cache-line aligned."""
    return aligned_zeros((chunks, lattice.m + 1, num_values), np.float32)


def lattice_filter(
    lattice: Lattice,
    values: np.ndarray,
    in_weight: np.ndarray | None = None,
    out_weight: np.ndarray | None = None,
    reverse: bool = False,
) -> np.ndarray:
    """Gaussian-filter values (N, L): diag(out_weight) alpha S^T B S diag(in_weight) values, float32.

    in_weight / out_weight: optional (N,) per-pixel factors (normalisation). ``reverse`` runs the blur
    axes in reverse order: the exact transpose of the operator (when in/out weights are swapped too).
    Returns (N, L) float32.
    """
    values = np.asarray(values, dtype=np.float32)
    n, num_values = values.shape
    if n != lattice.n:
        raise InputError(f"values have {n} rows but the lattice has {lattice.n} points")
    nl = padded(num_values)
    if nl != num_values or not values.flags.c_contiguous:
        values = np.pad(values, ((0, 0), (0, nl - num_values)))
    bary = lattice.bary
    w_in = bary if in_weight is None else bary * in_weight[:, None].astype(np.float32)
    w_out = bary * np.float32(lattice.alpha)
    if out_weight is not None:
        w_out = w_out * out_weight[:, None].astype(np.float32)
    bufs = splat_buffers(lattice, nl, threads_in_use())
    starts = row_starts(lattice, nl)
    kernel("_splat")(values, starts, np.ascontiguousarray(w_in, np.float32), bufs)
    kernel("_reduce_chunks")(bufs)
    a, b = (aligned_zeros((lattice.m + 1, nl), np.float32) for _ in range(2))  # as the fused path's
    verts = kernel("_blur")(bufs[0], a, b, lattice.neighbours, lattice.order, reverse)
    out = np.empty((n, nl), np.float32)
    kernel("_slice")(verts, starts, np.ascontiguousarray(w_out, np.float32), out)
    return out[:, :num_values]


@njit(cache=True, fastmath=True)
def _splat_scalar(offset, bary, m, values):
    """Splat of one value per point (N,): (M+1,) float32 sums of bary x value at each vertex (entry M: 0)."""
    out = np.zeros(m + 1, np.float32)
    n, d1 = offset.shape
    for i in range(n):
        for r in range(d1):
            out[offset[i, r]] += bary[i, r] * values[i]
    return out


@njit(cache=True, fastmath=True)
def _blur_scalar(values, neighbours, order):
    """kernels._blur of one value per vertex: values (M+1,) float32 (values[M] = 0) -> (M+1,) float32. Plain
    loops over positions: the whole array stays in cache, so no prefetching and no row code."""
    d1, m, _ = neighbours.shape
    x = values[order] if order.shape[0] > 0 else values.copy()
    y = np.zeros_like(x)  # entry M of both stays 0: the missing neighbour
    for j in range(d1):
        for s in range(m):
            y[s] = x[s] + np.float32(0.5) * (x[neighbours[j, s, 0]] + x[neighbours[j, s, 1]])
        x, y = y, x
    if order.shape[0] > 0:
        y[order] = x
        return y
    return x


@njit(cache=True, fastmath=True)
def _slice_scalar(verts, offset, bary, alpha):
    """alpha * sum_r bary[i, r] verts[offset[i, r]] for every point i: (N,) float32."""
    n, d1 = offset.shape
    out = np.empty(n, np.float32)
    for i in range(n):
        acc = np.float32(0.0)
        for r in range(d1):
            acc += bary[i, r] * verts[offset[i, r]]
        out[i] = acc * alpha
    return out


def filter_scalar(lattice: Lattice, values: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """K v for one value per point, (N,) float32 (v = None: the all-ones signal, whose filter gives the
    normalisation factors), and the largest blurred vertex value (before slicing). K v equals
    ``lattice_filter(lattice, v[:, None])[:, 0]`` to float32 rounding, with one value per vertex instead of a
    padded row."""
    v = np.ones(lattice.n, np.float32) if values is None else np.ascontiguousarray(values, np.float32)
    a = _splat_scalar(lattice.offset, lattice.bary, lattice.m, v)
    verts = _blur_scalar(a, lattice.neighbours, lattice.order)
    return _slice_scalar(verts, lattice.offset, lattice.bary, np.float32(lattice.alpha)), float(verts.max())
