"""CRF parameter search: seeded subset, cached probabilities, coarse-to-fine grid, checkpoint update."""

import json

import numpy as np
import pytest
import torch
from scipy import ndimage

from deeplab.crf import CRFParams
from deeplab.data.palette import voc_palette
from deeplab.engine.crf_search import (
    GRIDS,
    check_grid,
    crf_search,
    extend_grid,
    refine_grid,
    select_subset,
    write_crf_to_checkpoint,
)
from deeplab.engine.evaluate import evaluate
from deeplab.errors import InputError
from deeplab.models import build_model, load_model, save_model
from deeplab.preprocess import Preprocess
from test_evaluate import Blocks, C, shifted_probs


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


@pytest.mark.slow
def test_search_scores_every_setting_like_evaluate(tmp_path):
    ds = Blocks(n=6, void_band=False)
    log = crf_search(
        ds,
        noisy_probs,
        images=4,
        seed=1,
        grid=GRID,
        refine=True,
        max_extend=0,
        workers=2,
        crf_fn=smoothing_crf,
        cache_dir=tmp_path,
    )
    assert list(tmp_path.iterdir()) == []  # the probability cache is removed
    assert log["images"] == [ds.names[i] for i in select_subset(6, 4, 1)]
    stages = [t["stage"] for t in log["trials"]]
    assert stages[0] == "baseline" and stages.count("coarse") == 12 and 0 < stages.count("fine") <= 26
    sub = Blocks(n=6, void_band=False)
    sub.pairs = [ds.pairs[i] for i in select_subset(6, 4, 1)]
    for t in log["trials"][::5]:
        p = CRFParams.from_dict(t["params"])
        ref = evaluate(sub, noisy_probs, crf=True, crf_fn=smoothing_crf, crf_params=p, workers=0).to_json()
        assert t["miou"] == ref["crf"]["miou"]
    assert all(t["params"]["pos_w"] == 3 and t["params"]["pos_xy_std"] == 3 for t in log["trials"])  # fixed
    best = max(log["trials"], key=lambda t: t["miou"])
    assert log["best"] == best["params"] and log["best_miou"] == best["miou"]
    assert log["best_miou"] > log["dcnn"]["miou"]  # smoothing removes the salt noise
    json.dumps(log)


def test_defaults_are_always_a_baseline_and_win_ties():
    """A CRF that ignores its parameters: every setting scores the same, so nothing beats the defaults."""
    ds = Blocks(n=5, void_band=False)
    log = crf_search(
        ds, noisy_probs, images=5, grid=GRID, refine=False, workers=0, crf_fn=lambda image, probs, params: probs
    )
    assert log["baselines"]["defaults"]["params"] == CRFParams().to_dict()
    assert not log["changed"] and log["chosen"] == CRFParams().to_dict()
    assert "noise" in log["reason"] and log["top_two_gap"]["diff"] == 0


def test_current_parameters_are_a_baseline_and_a_real_gain_replaces_them():
    ds = Blocks(n=8, void_band=False)
    current = CRFParams(bi_w=2, bi_xy_std=10, bi_rgb_std=5, pos_w=3, pos_xy_std=3).to_dict()  # hardly smooths
    log = crf_search(
        ds,
        noisy_probs,
        images=8,
        grid=GRID,
        refine=False,
        max_extend=0,
        current=current,
        workers=0,
        crf_fn=smoothing_crf,
    )
    assert set(log["baselines"]) == {"defaults", "current"}
    gain = log["gain_over_baselines"]["current"]
    assert gain["ci95"][0] > 0 and log["changed"] and log["chosen"] == log["best"]
    assert log["chosen_miou"] > log["baselines"]["current"]["miou"]


def test_best_on_the_grid_edge_extends_the_grid():
    """Two values of bi_xy_std: the best lies on an edge, so the grid grows there; one-value axes stay fixed."""
    ds = Blocks(n=4, void_band=False)
    small = {"bi_w": [4], "bi_xy_std": [20, 30], "bi_rgb_std": [3]}
    log = crf_search(ds, noisy_probs, images=4, grid=small, refine=False, max_extend=2, workers=0, crf_fn=smoothing_crf)
    first = log["extensions"][0]
    assert first["at"]["bi_xy_std"] in (20, 30) and len(first["grid"]["bi_xy_std"]) == 3
    assert first["grid"]["bi_w"] == [4] and first["grid"]["bi_rgb_std"] == [3]
    assert any(t["stage"] == "extend" for t in log["trials"])
    best = log["best"]["bi_xy_std"]
    assert log["best_on_grid_edge"] == (
        best in (min(log["final_grid"]["bi_xy_std"]), max(log["final_grid"]["bi_xy_std"]))
    )


@pytest.mark.slow
def test_search_is_deterministic_across_workers():
    ds = Blocks(n=5, void_band=False)
    kw = dict(images=3, seed=0, grid=GRID, refine=False, crf_fn=smoothing_crf)
    assert crf_search(ds, shifted_probs, workers=0, **kw) == crf_search(ds, shifted_probs, workers=2, **kw)


def test_grid_helpers():
    assert select_subset(1449, 100, 0) == select_subset(1449, 100, 0)
    s = select_subset(1449, 100, 0)
    assert len(set(s)) == 100 and s == sorted(s) and s != select_subset(1449, 100, 1)
    assert select_subset(5, 100, 0) == [0, 1, 2, 3, 4]
    paper = check_grid(GRIDS["paper"])
    assert [len(paper[k]) for k in ("bi_w", "bi_xy_std", "bi_rgb_std")] == [6, 6, 8]  # 288 settings, as the paper
    assert paper["bi_xy_std"] == [50, 60, 70, 80, 90, 100] and paper["bi_rgb_std"] == list(range(3, 11))
    fine = refine_grid(paper, {"bi_w": 6.0, "bi_xy_std": 80.0, "bi_rgb_std": 4.0})
    assert fine == {"bi_w": [5.5, 6.0, 6.5], "bi_xy_std": [75.0, 80.0, 85.0], "bi_rgb_std": [3.5, 4.0, 4.5]}
    grown = extend_grid(paper, {"bi_w": 10.0, "bi_xy_std": 70.0, "bi_rgb_std": 3.0})
    assert grown["bi_w"][-1] == 11 and grown["bi_rgb_std"][0] == 2 and grown["bi_xy_std"] == paper["bi_xy_std"]
    assert extend_grid(paper, {"bi_w": 7.0, "bi_xy_std": 70.0, "bi_rgb_std": 5.0}) is None
    assert 121 in GRIDS["default"]["bi_xy_std"]  # the defaults' sigma_alpha is on the default grid
    with pytest.raises(InputError, match="bi_rgb_std"):
        check_grid({"bi_w": [3], "bi_xy_std": [50]})
    with pytest.raises(InputError, match="bi_w"):
        check_grid({"bi_w": [-1], "bi_xy_std": [50], "bi_rgb_std": [3]})
    with pytest.raises(InputError, match="--images"):
        select_subset(10, 0, 0)


def test_write_best_into_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = build_model("deeplab-largefov", 3, width=0.125)
    path = save_model(
        tmp_path / "m.pt",
        model,
        classes=["a", "b", "c"],
        palette=voc_palette(3),
        preprocess=Preprocess(),
        extra={"note": "kept"},
    )
    best = CRFParams(bi_w=5, bi_xy_std=70, bi_rgb_std=4).to_dict()
    write_crf_to_checkpoint(path, best)
    loaded = load_model(path)
    assert loaded.crf == best and loaded.classes == ["a", "b", "c"] and loaded.meta["extra"]["note"] == "kept"
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[k], v)


def test_shipped_model_is_read_only(tmp_path):
    import deeplab.weights

    with pytest.raises(InputError, match="read-only"):
        write_crf_to_checkpoint(deeplab.weights.default_model_path(), CRFParams().to_dict())
    copy = write_crf_to_checkpoint(
        deeplab.weights.default_model_path(), CRFParams(bi_w=5).to_dict(), out=tmp_path / "copy.pt"
    )
    assert load_model(copy).crf["bi_w"] == 5
