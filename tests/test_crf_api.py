"""deeplab.crf.dense_crf on real VOC images: agreement with pydensecrf, quality, input checking, processes."""

import multiprocessing as mp
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from deeplab.crf import CRFParams, dense_crf, dense_crf_unary, unary_from_labels, unary_from_logits, unary_from_probs
from deeplab.crf.synthetic import coarse_probs
from deeplab.errors import InputError
from deeplab.metrics import confusion_matrix, scores, trimap_band

VOC = "voc_mini/VOC2012"


def voc_pair(shared_data, index: int):
    root = shared_data / VOC
    ids = (root / "ImageSets/Segmentation/val.txt").read_text().split()
    img = np.array(Image.open(root / "JPEGImages" / f"{ids[index]}.jpg").convert("RGB"))
    gt = np.array(Image.open(root / "SegmentationClass" / f"{ids[index]}.png"))
    return img, gt


def test_dense_crf_agrees_with_pydensecrf(shared_data):
    dcrf = pytest.importorskip("pydensecrf.densecrf")
    img, gt = voc_pair(shared_data, 0)
    h, w = gt.shape
    probs = coarse_probs(gt, 21)
    for norm in ("NORMALIZE_AFTER", "NORMALIZE_SYMMETRIC"):
        d = dcrf.DenseCRF2D(w, h, 21)
        d.setUnaryEnergy(np.ascontiguousarray(unary_from_probs(probs).reshape(21, -1)))
        d.addPairwiseBilateral(sxy=121, srgb=5, rgbim=img, compat=4, normalization=getattr(dcrf, norm))
        d.addPairwiseGaussian(sxy=3, compat=3, normalization=getattr(dcrf, norm))
        ref = np.array(d.inference(10)).reshape(21, h, w)
        # every pixel in every iteration: pydensecrf's answer up to float16 vertex storage
        ours = dense_crf(img, probs, CRFParams(normalization=norm), skip_tolerance=0)
        assert (ours.argmax(0) == ref.argmax(0)).mean() >= 0.995
        assert np.abs(ours - ref).max() < 1e-3
        # the default skips settled pixels in the middle iterations (bound: deeplab.crf.meanfield)
        ours = dense_crf(img, probs, CRFParams(normalization=norm))
        assert (ours.argmax(0) == ref.argmax(0)).mean() >= 0.995
        assert np.abs(ours - ref).max() < 1e-2


@pytest.mark.slow
def test_dense_crf_improves_coarse_scores_at_boundaries(shared_data):
    """DeepLab's claim on real data (all 9 voc_mini val images, DCNN-like coarse scores): the CRF raises
    accuracy and mIoU, most of all near object boundaries."""
    conf = {k: np.zeros((21, 21), np.int64) for k in ("before", "after", "band_before", "band_after")}
    for index in range(9):
        img, gt = voc_pair(shared_data, index)
        probs = coarse_probs(gt, 21, seed=index)
        refined = dense_crf(img, probs)
        assert refined.shape == probs.shape and refined.dtype == np.float32
        assert np.allclose(refined.sum(0), 1, atol=1e-4)
        band = trimap_band(gt, 5)
        for name, pred in (("before", probs.argmax(0)), ("after", refined.argmax(0))):
            conf[name] += confusion_matrix(pred, gt, 21)
            conf["band_" + name] += confusion_matrix(pred, gt, 21, mask=band)
    s = {k: scores(v) for k, v in conf.items()}
    assert s["after"]["miou"] > s["before"]["miou"] + 0.02
    assert s["after"]["pixel_acc"] > s["before"]["pixel_acc"]
    assert s["band_after"]["pixel_acc"] > s["band_before"]["pixel_acc"] + 0.02


def test_params_defaults_round_trip_and_overrides():
    p = CRFParams()
    assert (p.bi_w, p.bi_xy_std, p.bi_rgb_std, p.pos_w, p.pos_xy_std, p.iterations) == (4, 121, 5, 3, 3, 10)
    assert p.normalization == "NORMALIZE_AFTER"
    assert CRFParams.from_dict(p.to_dict()) == p
    with pytest.raises(InputError, match="unknown"):
        CRFParams.from_dict({**p.to_dict(), "bogus": 1})
    for bad in (
        {"bi_xy_std": 0},
        {"iterations": -1},
        {"iterations": 2.5},
        {"pos_w": float("nan")},
        {"normalization": "SOMETIMES"},
    ):
        with pytest.raises(InputError, match=next(iter(bad))):
            CRFParams(**bad)


def test_zero_iterations_and_zero_weights_return_the_input():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    p = rng.random((4, 20, 30)).astype(np.float32) + 0.1
    p /= p.sum(0)
    assert np.allclose(dense_crf(img, p, iterations=0), p, atol=1e-5)
    assert np.allclose(dense_crf(img, p, bi_w=0, pos_w=0), p, atol=1e-5)
    assert not np.allclose(dense_crf(img, p), p, atol=1e-2)


def test_bad_inputs_raise_input_error_naming_the_argument():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    p = np.full((3, 12, 16), 1 / 3, np.float32)
    cases = [
        (img[..., 0], p, "greyscale"),
        (np.concatenate([img, img[..., :1]], 2), p, "RGBA"),
        (img.astype(np.float32), p, "uint8"),
        (img.transpose(2, 0, 1), p, "channels-first"),
        (img, p.transpose(0, 2, 1), "swapped"),
        (img, p.transpose(1, 2, 0), "channels-last"),
        (img, p[:, :6], "probs"),
        (img, p[:0], "zero labels"),
        (img, np.where(np.arange(16) == 3, np.nan, p).astype(np.float32), "NaN"),
        (img, np.where(np.arange(16) == 3, np.inf, p).astype(np.float32), "non-finite"),
        (img, p * 2, "sum to 1"),
        (img, p - 0.5, "negative"),
        (img, p.astype(np.int64), "floating"),
        (img.tolist(), p, "numpy array"),
    ]
    for image, probs, words in cases:
        with pytest.raises(InputError, match=words):
            dense_crf(image, probs)
    with pytest.raises(InputError, match="unary"):
        dense_crf_unary(img, np.full((3, 12, 16), np.nan, np.float32))
    with pytest.raises(InputError, match="unknown CRF parameter"):
        dense_crf(img, p, bi_weight=3)


def test_non_contiguous_inputs_are_accepted():
    rng = np.random.default_rng(1)
    big = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    probs = rng.random((60, 40, 5)).astype(np.float64) + 0.1
    probs /= probs.sum(2, keepdims=True)
    img_view, p_view = big[::2, ::2], probs.transpose(2, 1, 0)[:, ::2, ::2]  # strided, float64
    assert not img_view.flags.c_contiguous and not p_view.flags.c_contiguous
    out = dense_crf(img_view, p_view)
    ref = dense_crf(np.ascontiguousarray(img_view), np.ascontiguousarray(p_view, dtype=np.float32))
    assert np.array_equal(out, ref)


def test_unary_helpers():
    probs = np.array([[0.7, 0.2], [0.3, 0.8]], np.float32)[:, None, :]  # (L=2, H=1, W=2)
    assert np.allclose(unary_from_probs(probs), -np.log(probs))
    assert np.allclose(unary_from_probs(np.zeros((2, 1, 1)), clip=1e-5), -np.log(1e-5))
    logits = np.log(probs) + 5.0  # a per-pixel constant does not matter
    assert np.allclose(unary_from_logits(logits), -np.log(probs), atol=1e-5)
    u = unary_from_labels(np.array([[0, 2, 255]]), 3, gt_prob=0.6, unknown=255)
    assert u.shape == (3, 1, 3)
    assert np.allclose(np.exp(-u[:, 0, 0]), [0.6, 0.2, 0.2]) and np.allclose(np.exp(-u[:, 0, 1]), [0.2, 0.2, 0.6])
    assert np.allclose(np.exp(-u[:, 0, 2]), 1 / 3)
    with pytest.raises(ValueError, match="gt_prob"):
        unary_from_labels(np.zeros((2, 2), int), 3, gt_prob=1.0)
    with pytest.raises(ValueError, match="labels must lie"):
        unary_from_labels(np.array([[5]]), 3)


def _worker(args):
    img, probs = args
    return dense_crf(img, probs, threads=1)


@pytest.mark.slow
def test_dense_crf_is_safe_in_worker_processes_and_threads(voc_tiny):
    """Same answer in-process, with 1 or 2 threads, and in forked / spawned worker processes."""
    img = np.array(Image.open(voc_tiny / "JPEGImages/2007_000042.jpg").convert("RGB"))[:120, :160].copy()
    gt = np.array(Image.open(voc_tiny / "SegmentationClass/2007_000042.png"))[:120, :160]
    probs = coarse_probs(gt, 21)
    ref = dense_crf(img, probs, threads=1)
    exact = dense_crf(img, probs, threads=1, skip_tolerance=0)
    # 2 threads sum their splats in another order: the same Q up to rounding when every pixel is updated; with
    # skipping, a pixel near the tolerance may be updated in one run and not the other
    assert np.allclose(dense_crf(img, probs, threads=2, skip_tolerance=0), exact, atol=1e-5)
    assert np.allclose(dense_crf(img, probs, threads=2), ref, atol=2e-3)
    for method in ("fork", "spawn"):
        with mp.get_context(method).Pool(2) as pool:
            for out in pool.map(_worker, [(img, probs)] * 2):
                assert np.allclose(out, ref, atol=1e-6)
    with ThreadPoolExecutor(3) as pool:  # concurrent callers in one process
        for out in pool.map(lambda t: dense_crf(img, probs, threads=t, skip_tolerance=0), [1, 2, None]):
            assert np.allclose(out, exact, atol=1e-5)


def test_float16_vertices_keep_float32_labels(shared_data):
    """The default float16 vertex storage against float32 on full VOC photos at DeepLab's parameters, also
    at 2x size (larger lattices, larger vertex masses): the same labels on >= 99.9% of pixels and Q within
    the documented 0.02."""
    for index, scale in ((0, 1), (3, 1), (5, 2)):
        img, gt = voc_pair(shared_data, index)
        if scale != 1:
            size = (img.shape[1] * scale, img.shape[0] * scale)
            img = np.array(Image.fromarray(img).resize(size, Image.BILINEAR))
            gt = np.array(Image.fromarray(gt).resize(size, Image.NEAREST))
        probs = coarse_probs(gt, 21, seed=index)
        half = dense_crf(img, probs, skip_tolerance=0)
        full = dense_crf(img, probs, vertex_dtype="float32", skip_tolerance=0)
        assert np.allclose(half.sum(0), 1, atol=1e-4)
        assert np.abs(half - full).max() < 2e-2
        assert (half.argmax(0) == full.argmax(0)).mean() >= 0.999


def test_half_scale_bounds_the_stored_values():
    """half_scale: a power of two that brings the largest vertex value to at most HALF_PEAK, or None when a
    pixel's own message would sink below HALF_LOW (or the values are not finite)."""
    from deeplab.crf.meanfield import HALF_LOW, HALF_PEAK, half_scale

    raw = np.array([0.5, 2.0, 30.0], np.float32)
    for peak in (3.0, 300.0, 7e4):
        s = half_scale(raw, peak, None)
        assert s is not None and np.log2(s) == int(np.log2(s))
        assert HALF_PEAK / 2 < peak * s <= HALF_PEAK
    in_weight = np.array([1.0, 0.5, 0.25], np.float32)
    assert half_scale(raw, 300.0, in_weight) * 300.0 * 1.0 <= HALF_PEAK
    assert half_scale(np.array([1e-12, 1.0], np.float32), 1e3, None) is None  # raw.min * s < HALF_LOW
    assert half_scale(raw, float("nan"), None) is None
    low = np.array([HALF_LOW / 4, 1.0], np.float32)
    assert half_scale(low, HALF_PEAK, None) is None  # s = 1 leaves the smallest message at HALF_LOW / 4
    assert half_scale(low, HALF_PEAK / 8, None) == 8.0  # s = 8 lifts it to 2 HALF_LOW


def test_vertex_dtype_is_checked():
    import deeplab.crf.densecrf as dcrf

    img = np.zeros((6, 8, 3), np.uint8)
    probs = np.full((3, 6, 8), 1 / 3, np.float32)
    with pytest.raises(InputError, match="vertex_dtype"):
        dense_crf(img, probs, vertex_dtype="bfloat16")
    with pytest.raises(InputError, match="vertex_dtype"):
        dcrf.DenseCRF2D(8, 6, 3, vertex_dtype="float64")
    d = dcrf.DenseCRF2D(8, 6, 3, vertex_dtype="float32")
    d.setUnaryEnergy(unary_from_probs(probs).reshape(3, -1))
    d.addPairwiseBilateral(sxy=3, srgb=10, rgbim=img, compat=4)
    assert np.allclose(np.array(d.inference(3)).sum(0), 1, atol=1e-5)


def test_int16_energy_rows_round_to_the_step():
    """_fixed_rows: every label's energy minus the pixel's largest, rounded to UNARY_STEP (error <= half a step),
    padding lanes 0; a pixel whose labels span more than 32767 steps is counted (the caller then keeps float32)."""
    from deeplab.crf.kernels import kernel, numba_threads
    from deeplab.crf.simd import PAD_ENERGY, UNARY_STEP

    rng = np.random.default_rng(0)
    energy = (rng.uniform(-15.9, 0, (1000, 24)) + rng.uniform(-50, 50, (1000, 1))).astype(np.float32)
    energy[:, 21:] = PAD_ENERGY
    out = np.empty(energy.shape, np.int16)
    with numba_threads(1):
        assert kernel("_fixed_rows")(energy, 21, out) == 0
        expect = energy[:, :21] - energy[:, :21].max(1, keepdims=True)
        assert np.abs(out[:, :21] * UNARY_STEP - expect).max() <= UNARY_STEP / 2 + 1e-5
        assert (out[:, :21].max(1) == 0).all() and (out[:, 21:] == 0).all()
        energy[7, 3] = energy[7, :21].max() - 17.0
        assert kernel("_fixed_rows")(energy, 21, out) > 0


def test_wide_unary_keeps_float32_energy_rows():
    """A 2-px column whose unary favours label 0 by 18, inside a region that favours label 1 by 18: the smoothness
    term pulls the column towards label 1 by about as much. Energy rows clipped at 16 would flip Q there (by
    0.99), so such a unary keeps float32 rows: Q as with float32 storage."""
    h, w = 24, 40
    img = np.full((h, w, 3), 128, np.uint8)
    unary = np.zeros((2, h, w), np.float32)
    unary[0] = 18.0
    unary[0, :, 20:22] = 0.0
    unary[1, :, 20:22] = 18.0
    params = CRFParams(bi_w=0.0, pos_w=28.0, pos_xy_std=3.0, iterations=5)
    half = dense_crf_unary(img, unary, params)
    full = dense_crf_unary(img, unary, params, vertex_dtype="float32")
    assert np.abs(half - full).max() < 2e-2
