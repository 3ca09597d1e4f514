"""pydensecrf drop-in: deeplab.crf.densecrf / deeplab.crf.utils behave like pydensecrf on real images."""

import numpy as np
import pytest
from PIL import Image

import deeplab.crf.densecrf as dcrf
import deeplab.crf.utils as dutils
from deeplab.errors import InputError


@pytest.fixture(scope="module")
def scene(voc_tiny):
    """A real photo crop (H, W, 3) uint8 and noisy softmax-like scores (5, H, W)."""
    img = np.array(Image.open(voc_tiny / "JPEGImages/2011_000003.jpg").convert("RGB"))[:120, :100].copy()
    rng = np.random.default_rng(0)
    sm = rng.random((5, *img.shape[:2])) ** 3
    return img, (sm / sm.sum(0)).astype(np.float32)


def _classic_demo(module, img, unary, n_labels):
    """The pydensecrf README recipe, run against ``module``."""
    h, w = img.shape[:2]
    d = module.DenseCRF2D(w, h, n_labels)
    d.setUnaryEnergy(unary)
    d.addPairwiseGaussian(sxy=(3, 2), compat=3)
    d.addPairwiseBilateral(
        sxy=(50, 60),
        srgb=(13, 10, 8),
        rgbim=img,
        compat=np.arange(1, n_labels + 1, dtype=np.float32),
        normalization=module.NORMALIZE_BEFORE,
    )
    feats = dutils.create_pairwise_bilateral(sdims=(20, 20), schan=(10,), img=img[..., :1], chdim=2)
    compat = np.ones((n_labels, n_labels), np.float32) - 2 * np.eye(n_labels, dtype=np.float32)
    d.addPairwiseEnergy(feats, compat=compat, kernel=module.FULL_KERNEL, normalization=module.NO_NORMALIZATION)
    q5 = d.inference(5)
    q, t1, t2 = d.startInference()
    for _ in range(3):
        d.stepInference(q, t1, t2)
    return np.array(q5), np.array(q), d.klDivergence(q5)


def test_matches_pydensecrf(scene):
    pdc = pytest.importorskip("pydensecrf.densecrf")
    img, sm = scene
    unary = dutils.unary_from_softmax(sm)
    q5, q3, kl = _classic_demo(dcrf, img, unary, 5)
    r5, r3, rkl = _classic_demo(pdc, img, unary, 5)
    assert q5.shape == (5, img.shape[0] * img.shape[1]) and q5.dtype == np.float32
    assert np.abs(q5 - r5).max() < 1e-2 and (q5.argmax(0) == r5.argmax(0)).mean() > 0.995
    assert np.abs(q3 - r3).max() < 1e-2
    assert kl == pytest.approx(rkl, rel=1e-4)


def test_utils_match_pydensecrf_utils(scene):
    putils = pytest.importorskip("pydensecrf.utils")
    img, sm = scene
    labels = np.random.default_rng(1).integers(0, 6, img.shape[:2])
    assert np.array_equal(dutils.unary_from_labels(labels, 5, 0.7), putils.unary_from_labels(labels, 5, 0.7))
    assert np.array_equal(
        dutils.unary_from_labels(labels % 5, 5, 0.6, zero_unsure=False),
        putils.unary_from_labels(labels % 5, 5, 0.6, zero_unsure=False),
    )
    for kw in ({}, {"scale": 0.8}, {"clip": None}):
        assert np.allclose(dutils.unary_from_softmax(sm, **kw), putils.unary_from_softmax(sm, **kw), atol=1e-5)
    assert np.array_equal(
        dutils.create_pairwise_gaussian((3, 4), img.shape[:2]), putils.create_pairwise_gaussian((3, 4), img.shape[:2])
    )
    for schan in (5, (5, 6, 7)):
        assert np.array_equal(
            dutils.create_pairwise_bilateral((3, 4), schan, img, chdim=2),
            putils.create_pairwise_bilateral((3, 4), schan, img, chdim=2),
        )


def test_known_values_without_pydensecrf(scene):
    """Semantics checked directly: label unaries, feature layout, Potts smoothing of a noisy map."""
    img, sm = scene
    u = dutils.unary_from_labels(np.array([0, 1, 2]), 2, 0.8)  # 0 = unsure, labels 1..2
    assert np.allclose(np.exp(-u), [[0.5, 0.8, 0.2], [0.5, 0.2, 0.8]])
    g = dutils.create_pairwise_gaussian((2, 4), (2, 3))
    assert np.array_equal(g, [[0, 0, 0, 0.5, 0.5, 0.5], [0, 0.25, 0.5, 0, 0.25, 0.5]])
    h, w = img.shape[:2]
    d = dcrf.DenseCRF2D(w, h, 5)
    d.setUnaryEnergy(dutils.unary_from_softmax(sm, scale=0.6))
    d.addPairwiseGaussian(sxy=3, compat=10)
    q = np.array(d.inference(5))
    assert np.allclose(q.sum(0), 1, atol=1e-4)
    flips = lambda lab: (lab[:, 1:] != lab[:, :-1]).mean()  # noqa: E731
    assert flips(q.argmax(0).reshape(h, w)) < 0.5 * flips(sm.argmax(0))
    assert d.klDivergence(q) < d.klDivergence(np.array(d.inference(0)))


def test_constants_and_errors():
    assert (dcrf.NO_NORMALIZATION, dcrf.NORMALIZE_BEFORE, dcrf.NORMALIZE_AFTER, dcrf.NORMALIZE_SYMMETRIC) == (
        0,
        1,
        2,
        3,
    )
    assert (dcrf.CONST_KERNEL, dcrf.DIAG_KERNEL, dcrf.FULL_KERNEL) == (0, 1, 2)
    d = dcrf.DenseCRF2D(4, 3, 2)
    img = np.zeros((3, 4, 3), np.uint8)
    with pytest.raises(InputError, match="unary"):
        d.setUnaryEnergy(np.zeros((2, 11), np.float32))
    with pytest.raises(InputError, match="non-finite"):
        d.setUnaryEnergy(np.full((2, 12), np.inf, np.float32))
    with pytest.raises(InputError, match="W first"):
        d.addPairwiseBilateral(sxy=3, srgb=3, rgbim=np.zeros((4, 3, 3), np.uint8), compat=1)
    with pytest.raises(InputError, match="RGBA"):
        d.addPairwiseBilateral(sxy=3, srgb=3, rgbim=np.zeros((3, 4, 4), np.uint8), compat=1)
    with pytest.raises(InputError, match="compat"):
        d.addPairwiseBilateral(sxy=3, srgb=3, rgbim=img, compat=np.ones(3))
    with pytest.raises(InputError, match="normalization"):
        d.addPairwiseGaussian(sxy=3, compat=1, normalization=7)
    with pytest.raises(InputError, match="sxy"):
        d.addPairwiseGaussian(sxy=(1, 2, 3), compat=1)
    with pytest.raises(InputError, match="features"):
        d.addPairwiseEnergy(np.zeros((2, 5), np.float32), compat=1)
    with pytest.raises(InputError, match="gt_prob"):
        dutils.unary_from_labels(np.zeros(3, int), 2, 1.5)
