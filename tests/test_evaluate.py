"""Evaluation: confusion over a data set, CRF in the same pass, boundary trimap, JSON/plot, CLI."""

import json

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from deeplab.data.camvid import CAMVID_PALETTE
from deeplab.engine.evaluate import evaluate, format_table, image_stats
from deeplab.engine.trimap import band_confusions, boundary_distance, boundary_mask, plot_trimap
from deeplab.errors import InputError
from deeplab.metrics import confusion_matrix, scores, trimap_band

C = 5


class Blocks:
    """In-memory data set: blocky label maps (optionally with a void band), images coloured by label."""

    classes = tuple(f"c{i}" for i in range(C))
    num_classes = C

    def __init__(self, n=4, void_band=True, size=(48, 64)):
        self.boundary = "void" if void_band else "labels"
        self.names = [f"img{i}" for i in range(n)]
        self.pairs = []
        for i in range(n):
            rng = np.random.default_rng(i)
            lab = np.kron(rng.integers(0, C - 1, (size[0] // 16, size[1] // 16)), np.ones((16, 16), int)).astype(
                np.uint8
            )
            if void_band:
                lab[ndimage.binary_dilation(boundary_mask(lab, "labels"))] = 255
            self.pairs.append((CAMVID_PALETTE[np.where(lab == 255, 0, lab)], lab))

    def __len__(self):
        return len(self.pairs)

    def sample(self, i):
        return self.pairs[i]


def shifted_probs(image):
    """A predictor that is right except near vertical edges: one-hot of the true class, shifted 3 px right."""
    lab = np.argmin(((image[:, :, None, :].astype(int) - CAMVID_PALETTE[None, None, :C].astype(int)) ** 2).sum(-1), -1)
    lab = np.roll(lab, 3, axis=1)
    probs = np.full((C, *lab.shape), 0.1 / (C - 1), np.float32)
    np.put_along_axis(probs, lab[None], 0.9, axis=0)
    return probs


def box_crf(image, probs, params):
    """Stand-in CRF: a (2k+1)^2 box filter of the probabilities, k = params['k']."""
    k = params["k"]
    return ndimage.uniform_filter(probs, size=(1, 2 * k + 1, 2 * k + 1), mode="nearest")


class Params(dict):
    def to_dict(self):
        return dict(self)


def _reference(ds, fn, widths, band_of):
    conf = np.zeros((C, C), np.int64)
    bands = {w: np.zeros((C, C), np.int64) for w in widths}
    for image, gt in ds.pairs:
        pred = fn(image)
        conf += confusion_matrix(pred, gt, C)
        for w in widths:
            bands[w] += confusion_matrix(pred, gt, C, mask=band_of(gt, w))
    return conf, bands


def test_confusion_and_void_trimap_match_brute_force():
    ds = Blocks(void_band=True)
    res = evaluate(ds, shifted_probs, crf=True, crf_fn=box_crf, crf_params=Params(k=2), trimap_width=12, workers=0)
    assert res.n_images == 4 and res.names == ds.names and res.bands.shape == (12, C, C)
    conf, bands = _reference(ds, lambda im: shifted_probs(im).argmax(0), [1, 5, 12], trimap_band)
    np.testing.assert_array_equal(res.conf, conf)
    for w, ref in bands.items():
        np.testing.assert_array_equal(res.bands[w - 1], ref)

    def crf_pred(im):
        return box_crf(im, shifted_probs(im), {"k": 2}).argmax(0)

    conf_crf, bands_crf = _reference(ds, crf_pred, [3], trimap_band)
    np.testing.assert_array_equal(res.conf_crf, conf_crf)
    np.testing.assert_array_equal(res.bands_crf[2], bands_crf[3])
    s = res.to_json()
    assert s["dcnn"]["miou"] == pytest.approx(scores(conf)["miou"])
    # errors sit at boundaries: accuracy in the narrow band is lower than in wide bands
    acc = s["trimap"]["dcnn"]["pixel_acc"]
    assert acc[0] < acc[4] < acc[-1]
    assert s["crf_params"] == {"k": 2}


def test_label_boundary_trimap_for_datasets_without_void_band():
    ds = Blocks(void_band=False)
    _, gt = ds.pairs[0]
    gt = gt.copy()
    gt[:5, :5] = 255  # an unlabelled region (CamVid void), not a boundary band
    edge = boundary_mask(gt, "labels")
    assert not edge[:3, :3].any() and edge[:5, 5].all()  # edges of the void region count, its inside does not
    dist = boundary_distance(gt, "labels")
    for w in (1, 4):
        np.testing.assert_array_equal(dist <= w, ndimage.binary_dilation(edge, np.ones((2 * w + 1,) * 2, bool)))
    res = evaluate(ds, shifted_probs, trimap_width=6, workers=0)

    def band(g, w):
        return ndimage.binary_dilation(boundary_mask(g, "labels"), np.ones((2 * w + 1,) * 2, bool))

    _, bands = _reference(ds, lambda im: shifted_probs(im).argmax(0), [6], band)
    np.testing.assert_array_equal(res.bands[5], bands[6])


def test_workers_give_identical_results():
    ds = Blocks(n=5)
    kw = dict(crf=True, crf_fn=box_crf, crf_params=Params(k=1), trimap_width=8)
    a = evaluate(ds, shifted_probs, workers=0, **kw)
    b = evaluate(ds, shifted_probs, workers=2, **kw)
    assert json.dumps(a.to_json()) == json.dumps(b.to_json())
    assert evaluate(ds, shifted_probs, limit=2, workers=2).n_images == 2


def test_bad_output_shape_and_empty_set():
    ds = Blocks(n=1)
    with pytest.raises(InputError, match="model output"):
        evaluate(ds, lambda im: shifted_probs(im)[:, :-1], workers=0)
    with pytest.raises(InputError, match="nothing to evaluate"):
        evaluate(Blocks(n=0), shifted_probs, workers=0)


def test_band_confusions_cumulative():
    gt = np.zeros((1, 6), np.uint8)
    pred = np.array([[0, 1, 0, 1, 0, 1]])
    dist = np.array([[0, 1, 2, 3, 4, 50]])
    b = band_confusions(pred, gt, dist, 2, 4)
    assert b[:, 0].tolist() == [[1, 1], [2, 1], [2, 2], [3, 2]]  # widths 1..4; distance 50 never counted
    with pytest.raises(ValueError, match="predicted labels"):
        band_confusions(pred + 1, gt, dist, 2, 4)


def test_json_table_and_trimap_plot(tmp_path):
    res = evaluate(
        Blocks(), shifted_probs, crf=True, crf_fn=box_crf, crf_params=Params(k=3), trimap_width=10, workers=0
    )
    s = json.loads(json.dumps(res.to_json()))  # plain JSON
    assert s["dcnn"]["iou"]["c4"] is None and s["dcnn"]["iou"]["c0"] > 0  # class 4 never appears: no IoU
    assert s["trimap"]["widths"] == list(range(1, 11)) and len(s["trimap"]["crf"]["miou"]) == 10
    table = format_table(s)
    assert "DCNN+CRF" in table and f"{100 * s['crf']['miou']:9.2f}" in table.splitlines()[-3]
    png = plot_trimap(s["trimap"], tmp_path / "t.png", title="x")
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > im.size[1] > 100


def test_image_stats_crf_only_when_given():
    image, gt = Blocks(n=1).pairs[0]
    st = image_stats(image, shifted_probs(image), gt, C)
    assert set(st) == {"conf"}
