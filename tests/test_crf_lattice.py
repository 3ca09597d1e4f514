"""The permutohedral lattice and mean field against the exact O(N^2) reference, on real image crops."""

import numpy as np
import pytest
from scipy import ndimage

from crops import voc_crop
from deeplab.crf.api import bilateral_features, gaussian_features
from deeplab.crf.exact import exact_filter
from deeplab.crf.kernels import numba_threads
from deeplab.crf.lattice import build_lattice, lattice_filter
from deeplab.crf.meanfield import ExactKernel, LatticeKernel, MeanField
from deeplab.crf.unary import unary_from_probs


def coarse_unary(gt: np.ndarray, num_labels: int, seed: int = 0) -> np.ndarray:
    """-log of blurred, noisy one-hot ground truth: (N, L) float32, a DCNN-like coarse score map."""
    rng = np.random.default_rng(seed)
    onehot = np.eye(num_labels, dtype=np.float32)[np.where(gt == 255, 0, gt)].transpose(2, 0, 1)
    p = ndimage.gaussian_filter(onehot, (0, 3, 3)) + 0.3 * rng.random(onehot.shape, dtype=np.float32)
    p /= p.sum(0)
    return np.ascontiguousarray(-np.log(p).reshape(num_labels, -1).T)


@pytest.mark.slow
@pytest.mark.parametrize("normalization", ["NORMALIZE_AFTER", "NORMALIZE_SYMMETRIC", "NORMALIZE_BEFORE"])
def test_meanfield_lattice_matches_exact_reference(normalization):
    for index in (0, 1):
        img, gt = voc_crop(index)
        h, w = gt.shape
        unary = coarse_unary(gt, 21, seed=index)
        out = []
        for kernel in (LatticeKernel, ExactKernel):
            mf = MeanField(unary)
            mf.add(kernel(bilateral_features(img, 121, 5), normalization), 4)
            mf.add(kernel(gaussian_features(h, w, 3), normalization), 3)
            out.append(mf.inference(10))
        fast, exact = out
        assert np.allclose(fast.sum(1), 1, atol=1e-4)
        assert np.abs(fast - exact).mean() < 2e-3
        assert (fast.argmax(1) == exact.argmax(1)).mean() >= 0.99
        # the CRF does real work here: it changes some of the coarse labels
        assert (exact.argmax(1) != unary.argmin(1)).mean() > 0.01


@pytest.mark.parametrize("dim, max_rel_err", [(1, 0.1), (3, 0.2), (5, 0.5), (7, 1.0)])
def test_lattice_filter_any_dimension_approximates_gaussian(dim, max_rel_err):
    """Arbitrary feature dimensions: normalised lattice filtering ~ normalised exact Gaussian filtering
    (the lattice's approximation coarsens with the dimension; error relative to the signal's spread)."""
    rng = np.random.default_rng(dim)
    centres = rng.normal(size=(6, dim)) * 3
    feat = (centres[rng.integers(0, 6, 1500)] + rng.normal(size=(1500, dim))).astype(np.float32)
    values = rng.random((1500, 3)).astype(np.float32)
    lat = build_lattice(feat)
    ones = np.ones((1500, 1), np.float32)
    fast = lattice_filter(lat, values) / lattice_filter(lat, ones)
    exact = exact_filter(feat, values) / exact_filter(feat, ones)
    assert np.corrcoef(fast.ravel(), exact.ravel())[0, 1] > 0.9
    assert np.abs(fast - exact).mean() < max_rel_err * np.abs(exact - exact.mean()).mean()


def test_lattice_transpose_is_exact_adjoint():
    rng = np.random.default_rng(1)
    feat = rng.normal(size=(800, 5)).astype(np.float32) * 2
    lat = build_lattice(feat)
    v, u = rng.random((800, 4)).astype(np.float32), rng.random((800, 4)).astype(np.float32)
    w_in, w_out = rng.random(800).astype(np.float32) + 0.5, rng.random(800).astype(np.float32) + 0.5
    forward = (u * lattice_filter(lat, v, w_in, w_out)).sum(dtype=np.float64)
    adjoint = (v * lattice_filter(lat, u, w_out, w_in, reverse=True)).sum(dtype=np.float64)
    assert forward == pytest.approx(adjoint, rel=1e-5)


def test_lattice_barycentric_weights_and_vertices():
    rng = np.random.default_rng(2)
    feat = rng.normal(size=(500, 4)).astype(np.float32)
    lat = build_lattice(feat)
    assert lat.bary.shape == (500, 5) and lat.offset.shape == (500, 5)
    assert np.allclose(lat.bary.sum(1), 1, atol=1e-5) and (lat.bary >= -1e-6).all()
    assert (lat.offset >= 0).all() and (lat.offset < lat.m).all()
    # the d+1 corners of a simplex are distinct lattice points
    assert all(len(set(row)) == 5 for row in lat.offset.tolist())
    # identical features land on identical vertices with identical weights
    twin = build_lattice(np.concatenate([feat, feat]))
    assert np.array_equal(twin.offset[:500], twin.offset[500:]) and np.array_equal(twin.bary[:500], twin.bary[500:])


@pytest.mark.parametrize("threads", [1, 2])
def test_sorted_blur_order_gives_the_vertex_order_result(threads):
    """A lattice big enough for the sorted-key blur order: its merged neighbours are the hashed ones of the
    general path, and filtering through the blur order gives the vertex-order blur's values exactly."""
    from dataclasses import replace

    from deeplab.crf import lattice as lattice_module
    from deeplab.crf.kernels import kernel

    rng = np.random.default_rng(3)
    feat = (rng.random((60000, 5)) * 12).astype(np.float32)
    with numba_threads(threads):
        lat = build_lattice(feat)
        assert lat.m >= lattice_module.SORTED_BLUR_VERTICES
        assert sorted(lat.order[:-1].tolist()) == list(range(lat.m)) and lat.order[-1] == lat.m
        assert not np.array_equal(lat.order[:-1], np.arange(lat.m))
        rem0, rank, _ = kernel("_simplices")(feat)
        offset, table, keys, m = lattice_module._vertices(rem0, rank)
        hashed = kernel("_blur_neighbours")(table, keys, m, feat.shape[1])
        assert m == lat.m and np.array_equal(offset, lat.offset)
        position = np.empty(m + 1, np.int64)
        position[lat.order] = np.arange(m + 1)  # vertex -> its position in blur order
        assert np.array_equal(lat.neighbours, position[hashed[:, lat.order[:-1], :]])
        plain = replace(lat, order=lattice_module.VERTEX_ORDER, neighbours=hashed)
        values = rng.random((60000, 5)).astype(np.float32)
        for reverse in (False, True):
            assert np.array_equal(
                lattice_filter(lat, values, reverse=reverse), lattice_filter(plain, values, reverse=reverse)
            )
    # small or position-only lattices keep vertex order
    assert build_lattice(feat[:2000]).order.size == 0 and build_lattice(feat[:, :2]).order.size == 0


def test_filter_scalar_equals_the_row_filter():
    """filter_scalar (one value per vertex, plain loops: the normalisation of every kernel) gives the row filter's
    K v to float32 rounding, on a lattice blurred in sorted order and on one in vertex order."""
    from deeplab.crf.lattice import filter_scalar

    rng = np.random.default_rng(6)
    feat = (rng.random((60000, 5)) * 12).astype(np.float32)
    for lat in (build_lattice(feat), build_lattice(feat[:3000])):
        v = rng.random(lat.n).astype(np.float32)
        kv, peak = filter_scalar(lat, v)
        np.testing.assert_allclose(kv, lattice_filter(lat, v[:, None])[:, 0], rtol=1e-5)
        ones, _ = filter_scalar(lat)
        np.testing.assert_allclose(ones, lattice_filter(lat, np.ones((lat.n, 1), np.float32))[:, 0], rtol=1e-5)
        assert 0 < kv.max() <= peak * lat.alpha * 1.0001  # slices are convex combinations of vertex values


@pytest.mark.parametrize("threads", [1, 2])
def test_packed_neighbours_equal_the_general_paths(threads):
    """Lattices that keep vertex order find their blur neighbours in the packed-key table (one lookup per vertex
    and axis, the second neighbour by inversion): the same as the general path's two lookups."""
    from deeplab.crf import lattice as lattice_module
    from deeplab.crf.kernels import kernel

    rng = np.random.default_rng(4)
    for feat in ((rng.random((3000, 5)) * 12).astype(np.float32), (rng.random((20000, 2)) * 40).astype(np.float32)):
        with numba_threads(threads):
            lat = build_lattice(feat)
            assert lat.order.size == 0
            rem0, rank, _ = kernel("_simplices")(feat)
            offset, table, keys, m = lattice_module._vertices(rem0, rank)
            assert m == lat.m and np.array_equal(offset, lat.offset)
            assert np.array_equal(lat.neighbours, kernel("_blur_neighbours")(table, keys, m, feat.shape[1]))
            assert (lat.neighbours < m).any() and (lat.neighbours == m).any()


@pytest.mark.parametrize(
    "num_labels, threads, kernels, matrix",
    [
        (21, 1, 2, False),
        (21, 2, 2, False),
        (2, 1, 2, False),
        (11, 1, 2, False),
        (30, 1, 2, False),
        (40, 1, 2, False),
        (21, 1, 1, False),
        (21, 1, 2, True),
        (40, 2, 2, True),
    ],
)
def test_fused_inference_equals_unfused_steps(num_labels, threads, kernels, matrix):
    """The fused pass (label rows in registers up to 32 labels, as 8-, 16-, 16+8- and 16+16-lane vectors, a scratch
    row beyond; serial and parallel builds; one or two kernels; Potts, per-label and full L x L compatibilities)
    equals plain filter + softmax steps."""
    img, gt = voc_crop(2)
    unary = coarse_unary(np.where(gt == 255, 255, gt % num_labels), num_labels)
    compat = np.linspace(1, 3, num_labels)
    if matrix:  # a learned-looking compatibility: label pairs interact, not only equal labels
        compat = -np.random.default_rng(1).random((num_labels, num_labels)) - np.diag(compat)
    with numba_threads(threads):
        mf = MeanField(unary)
        mf.add(LatticeKernel(gaussian_features(*gt.shape, 3), "NORMALIZE_SYMMETRIC"), compat)
        if kernels == 2:
            mf.add(LatticeKernel(bilateral_features(img, 60, 8), "NORMALIZE_SYMMETRIC"), 5)
        fused = mf.inference(5, fused=True, vertex_dtype="float32", skip_tolerance=0)
        half = mf.inference(5, fused=True)  # float16 vertex storage (the default)
        unfused, q0 = mf.inference(5, fused=False), mf.inference(0)
    assert fused.shape == half.shape == (gt.size, num_labels)
    assert np.allclose(fused, unfused, atol=1e-5)
    assert np.abs(fused - q0).mean() > 1e-3  # the kernels did change Q
    # float16 storage: Q within the documented bound, the same labels (Potts kernels only store float16)
    assert np.abs(half - unfused).max() < 2e-2
    assert (half.argmax(1) == unfused.argmax(1)).mean() >= 0.999


def test_meanfield_decreases_kl_divergence():
    """Mean field with a Potts model is a coordinate descent on KL(Q || P): the objective goes down."""
    img, gt = voc_crop(3)
    unary = coarse_unary(gt, 21)
    mf = MeanField(unary)
    mf.add(LatticeKernel(bilateral_features(img, 121, 5), "NORMALIZE_SYMMETRIC"), 4)
    mf.add(LatticeKernel(gaussian_features(*gt.shape, 3), "NORMALIZE_SYMMETRIC"), 3)
    kl = [mf.kl_divergence(mf.inference(n)) for n in (0, 1, 3, 10)]
    assert kl[0] > kl[1] > kl[2] >= kl[3] - 1e-3 * abs(kl[3])


@pytest.mark.parametrize("num_labels, n", [(21, 4803), (8, 64), (3, 13), (40, 1001)])
def test_work_array_from_probs_equals_negated_unary(num_labels, n):
    """MeanField.from_probs (log and transpose in registers, 8 pixels at a time, scalar tail) builds the
    same -U work array as MeanField(unary_from_probs(p)), padding columns included."""
    rng = np.random.default_rng(num_labels)
    p = rng.random((num_labels, n), dtype=np.float32) ** 4  # many values below the 1e-5 clip
    p /= p.sum(0)
    fast = MeanField.from_probs(p)
    ref = MeanField(unary_from_probs(p).T)
    assert fast.neg_unary.shape == ref.neg_unary.shape
    assert np.allclose(fast.neg_unary, ref.neg_unary, rtol=1e-6, atol=1e-5)
    assert np.allclose(fast.unary, -np.log(np.maximum(p, 1e-5)).T, rtol=1e-6, atol=1e-5)


def test_simd_softmax_matches_float64_softmax():
    """The SIMD exp / softmax of the fused pass (MeanField.inference(0) = softmax(-U)) against float64,
    over energies spanning 0..-100 (exp underflows to exactly 0 below -80) and padded label counts."""
    rng = np.random.default_rng(0)
    for num_labels in (3, 11, 21, 30, 40):
        unary = (rng.random((997, num_labels)) * rng.choice([1, 10, 100], (997, 1))).astype(np.float32)
        q = MeanField(unary).inference(0)
        e = -unary.astype(np.float64)
        ref = np.exp(e - e.max(1, keepdims=True))
        ref /= ref.sum(1, keepdims=True)
        for smallest, rel_err in ((1e-6, 1e-6), (1e-30, 1e-5)):  # float32 e - max limits the tiny ones
            big = ref > smallest
            assert np.abs(q[big] / ref[big] - 1).max() < rel_err
        assert np.abs(q - ref).max() < 5e-7
        assert np.all(q[ref < 1e-36] == 0)  # below exp(-80): exactly 0, no denormals


def test_straddles_matches_the_lines_rows_touch():
    """simd._straddles against brute force: rows of b bytes laid end to end from a cache line touch at most
    ceil(b / 64) lines each, or one more exactly when _straddles(b)."""
    from deeplab.crf.simd import _straddles

    for b in range(16, 400, 16):  # float16 rows of 8k values and float32 rows of 4k values
        most = max((v * b + b - 1) // 64 - (v * b) // 64 + 1 for v in range(64))
        assert most == -(-b // 64) + _straddles(b), b
