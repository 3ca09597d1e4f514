"""Skipping settled pixels in the middle mean-field passes (skip_tolerance, deeplab.crf.meanfield): the bound
that decides which pixels are stale, and the results against updating every pixel in every pass."""

import numpy as np
import pytest
from PIL import Image

from crops import voc_crop
from deeplab.crf import CRFParams, dense_crf
from deeplab.crf.kernels import stale_pixels
from deeplab.crf.synthetic import coarse_probs
from deeplab.errors import InputError


def _softmax(e: np.ndarray) -> np.ndarray:
    q = np.exp(e - e.max(1, keepdims=True))
    return q / q.sum(1, keepdims=True)


def test_stale_pixels_never_misses_a_pixel_that_moved_more_than_the_tolerance():
    """Energies moved by at most b (any label): stale_pixels lists every pixel whose Q actually moved by more
    than the tolerance, from b and the margin of its old Q alone; it also lets settled ones through."""
    rng = np.random.default_rng(0)
    n, labels = 20000, 21
    energy = rng.normal(0, 1, (n, labels)) * rng.choice([0.5, 3.0, 12.0], (n, 1))  # soft to near-certain rows
    b = rng.uniform(0, 0.6, n) * rng.choice([1e-3, 1e-2, 1.0], n)
    moved = energy + rng.uniform(-1, 1, (n, labels)) * b[:, None]
    q, q_new = _softmax(energy), _softmax(moved)
    change = np.abs(q_new - q).max(1)
    margin = np.minimum(q, 1 - q).max(1).astype(np.float32)
    for tolerance in (1e-4, 1e-3, 1e-2):
        bound = b.astype(np.float32)
        listed = np.empty(n, np.int32)
        count = stale_pixels(bound, margin, tolerance, listed)
        stale = np.zeros(n, bool)
        stale[listed[:count]] = True
        assert stale[change > tolerance].all()
        assert np.all(bound[stale] == 0) and np.array_equal(bound[~stale], b[~stale].astype(np.float32))
        assert 0.2 < (~stale).mean() < 0.99  # the test has settled pixels and stale ones


def test_skip_tolerance_is_checked():
    img, gt = voc_crop(0)
    probs = coarse_probs(gt % 21, 21)
    for bad in (-1e-3, float("nan"), float("inf"), "x", None):
        with pytest.raises(InputError, match="skip_tolerance"):
            dense_crf(img, probs, skip_tolerance=bad)


def test_skipping_stays_near_full_updates_on_crops():
    """On real crops with uncertain probabilities: a tolerance far below the float16 rounding of Q gives the full
    updates' answer; the default moves Q by a few times its tolerance at most and keeps the labels; a huge one
    leaves pixels that still had far to go (so the skipping does happen)."""
    far = []
    for index in range(4):
        img, gt = voc_crop(index)
        probs = coarse_probs(np.where(gt == 255, 0, gt), 21, seed=index) ** 0.25
        probs /= probs.sum(0)
        params = CRFParams(bi_xy_std=30)
        full = dense_crf(img, probs, params, skip_tolerance=0)
        tiny = dense_crf(img, probs, params, skip_tolerance=1e-9)
        default = dense_crf(img, probs, params)
        assert np.abs(tiny - full).max() < 1e-3  # float16 rounding of each pixel's splatted Q
        assert np.abs(default - full).max() < 5e-3
        assert (default.argmax(0) == full.argmax(0)).mean() >= 0.999
        assert np.allclose(default.sum(0), 1, atol=1e-4)
        far.append(np.abs(dense_crf(img, probs, params, skip_tolerance=1.0) - full).max())
    assert max(far) > 0.1


@pytest.mark.parametrize("threads", [1, 2])
def test_skipping_keeps_labels_on_photos(shared_data, threads):
    """Full VOC photos at DeepLab's parameters (and one at 2x): the default against every pixel in every pass,
    the same labels on >= 99.99% of pixels and Q within 1e-2 (measured over all 45 benchmark images:
    benchmarks/bench_crf.py)."""
    root = shared_data / "voc_mini/VOC2012"
    ids = (root / "ImageSets/Segmentation/val.txt").read_text().split()
    for index, scale in ((0, 1), (4, 1), (7, 2)):
        img = Image.open(root / "JPEGImages" / f"{ids[index]}.jpg").convert("RGB")
        gt = Image.open(root / "SegmentationClass" / f"{ids[index]}.png")
        if scale != 1:
            img = img.resize((img.width * scale, img.height * scale), Image.BILINEAR)
            gt = gt.resize(img.size, Image.NEAREST)
        img, gt = np.array(img), np.array(gt)
        probs = coarse_probs(np.where(gt == 255, 0, gt), 21, seed=index)
        full = dense_crf(img, probs, threads=threads, skip_tolerance=0)
        default = dense_crf(img, probs, threads=threads)
        assert (default.argmax(0) == full.argmax(0)).mean() >= 0.9999
        assert np.abs(default - full).max() < 1e-2
