"""CRF parameter search: seeded subset, cached probabilities, coarse-to-fine grid, checkpoint update."""

import json

import numpy as np
import pytest
import torch
from scipy import ndimage

from deeplab.crf import CRFParams
from deeplab.data.palette import voc_palette
from deeplab.engine.crf_search import (COARSE_GRID, check_grid, crf_search, refine_grid, select_subset,
                                       spatial_scale, write_crf_to_checkpoint)
from deeplab.engine.evaluate import evaluate
from deeplab.errors import InputError
from deeplab.models import build_model, load_model, save_model
from deeplab.preprocess import Preprocess

from test_evaluate import C, Blocks, shifted_probs


def noisy_probs(image):
    """Prob 1/2 on the true class except 15% salt pixels, 1/8 elsewhere (seeded by the image; exact in float16,
    so the search's float16 cache changes nothing): smoothing helps."""
    truth = shifted_probs(np.roll(image, -3, axis=1)).argmax(0)  # undo the shift: the true labels
    rng = np.random.default_rng(int(image.sum()))
    noisy = np.where(rng.random(truth.shape) < 0.15, (truth + 1) % C, truth)
    return (0.375 * (np.arange(C)[:, None, None] == noisy) + 0.125).astype(np.float32)


def smoothing_crf(image, probs, params):
    """Stand-in CRF whose result depends on all searched parameters: a box filter of side ~ bi_xy_std / 10,
    mixed with the input by bi_w / (bi_w + bi_rgb_std)."""
    k = int(params.bi_xy_std // 10)
    a = params.bi_w / (params.bi_w + params.bi_rgb_std)
    return a * ndimage.uniform_filter(probs, size=(1, 2 * k + 1, 2 * k + 1), mode="nearest") + (1 - a) * probs


GRID = {"bi_w": [2, 4], "bi_xy_std": [10, 30, 50], "bi_rgb_std": [3, 5]}


def test_search_scores_every_setting_like_evaluate(tmp_path):
    ds = Blocks(n=6, void_band=False)
    log = crf_search(ds, noisy_probs, images=4, seed=1, grid=GRID, refine=True, scale_spatial=False,
                     workers=2, crf_fn=smoothing_crf, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # the probability cache is removed
    assert log["images"] == [ds.names[i] for i in select_subset(6, 4, 1)]
    coarse = [t for t in log["trials"] if t["stage"] == "coarse"]
    fine = [t for t in log["trials"] if t["stage"] == "fine"]
    assert len(coarse) == 12 and 0 < len(fine) <= 26
    sub = Blocks(n=6, void_band=False)
    sub.pairs = [ds.pairs[i] for i in select_subset(6, 4, 1)]
    for t in coarse[::5] + fine[::7]:
        p = CRFParams.from_dict(t["params"])
        assert (p.pos_w, p.pos_xy_std) == (3, 3)  # fixed as in the paper
        ref = evaluate(sub, noisy_probs, crf=True, crf_fn=smoothing_crf, crf_params=p, workers=0).to_json()
        assert t["miou"] == ref["crf"]["miou"]
    best = max(log["trials"], key=lambda t: t["miou"])
    assert log["best"] == best["params"] and log["best_miou"] == best["miou"]
    assert log["best_miou"] > log["dcnn"]["miou"]  # smoothing removes the salt noise
    assert all(type(v) in (float, int, str) for t in log["trials"] for v in t["params"].values())  # plain types
    json.dumps(log)


def test_search_is_deterministic_across_workers():
    ds = Blocks(n=5, void_band=False)
    kw = dict(images=3, seed=0, grid=GRID, refine=False, crf_fn=smoothing_crf)
    assert crf_search(ds, shifted_probs, workers=0, **kw) == crf_search(ds, shifted_probs, workers=2, **kw)


def test_grid_helpers():
    assert select_subset(1449, 100, 0) == select_subset(1449, 100, 0)
    s = select_subset(1449, 100, 0)
    assert len(set(s)) == 100 and s == sorted(s) and s != select_subset(1449, 100, 1)
    assert select_subset(5, 100, 0) == [0, 1, 2, 3, 4]
    g = check_grid(COARSE_GRID)
    fine = refine_grid(g, {"bi_w": 4.0, "bi_xy_std": 120.0, "bi_rgb_std": 3.0})
    assert fine == {"bi_w": [3.5, 4.0, 4.5], "bi_xy_std": [110.0, 120.0, 130.0], "bi_rgb_std": [2.5, 3.0, 3.5]}
    assert spatial_scale([(375, 500)]) == 1.0 and spatial_scale([(360, 480)] * 3) == pytest.approx(0.96)
    with pytest.raises(InputError, match="bi_rgb_std"):
        check_grid({"bi_w": [3], "bi_xy_std": [50]})
    with pytest.raises(InputError, match="bi_w"):
        check_grid({"bi_w": [-1], "bi_xy_std": [50], "bi_rgb_std": [3]})
    with pytest.raises(InputError, match="--images"):
        select_subset(10, 0, 0)


def test_write_best_into_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = build_model("deeplab-largefov", 3, width=0.125)
    path = save_model(tmp_path / "m.pt", model, classes=["a", "b", "c"], palette=voc_palette(3),
                      preprocess=Preprocess(), extra={"note": "kept"})
    best = CRFParams(bi_w=5, bi_xy_std=70, bi_rgb_std=4).to_dict()
    write_crf_to_checkpoint(path, best)
    loaded = load_model(path)
    assert loaded.crf == best and loaded.classes == ["a", "b", "c"] and loaded.meta["extra"]["note"] == "kept"
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[k], v)
