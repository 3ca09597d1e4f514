"""`deeplab evaluate` and `deeplab crf-search` end to end: a small real DeepLab net, the real dense CRF, CamVid."""

import json

import numpy as np
import pytest
import torch

from deeplab.cli import main
from deeplab.crf import CRFParams, dense_crf
from deeplab.data import build_dataset
from deeplab.metrics import confusion_matrix
from deeplab.models import build_model, load_model, predict, save_model
from deeplab.preprocess import Preprocess


@pytest.fixture(scope="module")
def camvid_model(tmp_path_factory):
    torch.manual_seed(0)
    from deeplab.data.camvid import CAMVID_CLASSES, CAMVID_PALETTE

    model = build_model("deeplab-largefov", 11, width=0.125)
    with torch.no_grad():  # make the untrained net prefer the frequent classes so scores are not all zero
        model.classifier.bias.copy_(torch.tensor([2.0, 2.5, 0, 3.0, 1.0, 1.5, 0, 0, 1.0, 0, 0]))
    return save_model(
        tmp_path_factory.mktemp("model") / "camvid.pt",
        model,
        classes=CAMVID_CLASSES,
        palette=CAMVID_PALETTE,
        preprocess=Preprocess(),
    )


def test_evaluate_cli_matches_direct_computation(camvid_model, camvid_tiny, tmp_path, capsys):
    args = [
        "evaluate",
        "--checkpoint",
        str(camvid_model),
        "--dataset",
        "camvid",
        "--data",
        str(camvid_tiny),
        "--split",
        "test",
        "--crf",
        "--bi-w",
        "5",
        "--trimap",
        "10",
        "--limit",
        "2",
        "-o",
        str(tmp_path),
        "--no-progress",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["n_images"] == 2 and summary["crf_params"] == CRFParams(bi_w=5).to_dict()
    assert "Bicyclist" in printed and "DCNN+CRF" in printed
    assert (tmp_path / "trimap.png").stat().st_size > 10_000
    assert len(summary["trimap"]["crf"]["miou"]) == 10

    loaded = load_model(camvid_model)
    ds = build_dataset("camvid", camvid_tiny, "test")
    conf = np.zeros((11, 11), np.int64)
    conf_crf = np.zeros((11, 11), np.int64)
    for i in range(2):
        image, gt = ds[i]
        probs = predict(loaded.model, image, loaded.preprocess)
        conf += confusion_matrix(probs.argmax(0), gt, 11)
        conf_crf += confusion_matrix(dense_crf(image, probs, CRFParams(bi_w=5)).argmax(0), gt, 11)
    assert summary["confusion"]["dcnn"] == conf.tolist()
    assert summary["confusion"]["crf"] == conf_crf.tolist()


@pytest.mark.slow
def test_crf_search_cli_writes_the_chosen_parameters(camvid_model, camvid_tiny, tmp_path, capsys):
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(camvid_model.read_bytes())
    grid = json.dumps({"bi_w": [4], "bi_xy_std": [121, 130], "bi_rgb_std": [5]})
    args = [
        "crf-search",
        "--model",
        str(ckpt),
        "--dataset",
        "camvid",
        "--data",
        str(camvid_tiny),
        "--split",
        "val+test",
        "--images",
        "4",
        "--grid",
        grid,
        "--no-refine",
        "--max-extend",
        "1",
        "--iterations",
        "3",
        "--write",
        "--no-progress",
    ]
    assert main(args) == 0
    log = json.loads((tmp_path / "crf_search.json").read_text())
    assert len(log["images"]) == 4 and log["fixed"] == {"pos_w": 3.0, "pos_xy_std": 3.0, "iterations": 3}
    assert [t["params"]["bi_xy_std"] for t in log["trials"]][:2] == [121, 130]  # pixels as given: no rescaling
    assert load_model(ckpt).crf == log["chosen"]
    out = capsys.readouterr().out
    assert "decision:" in out and "defaults" in out
    assert len(log["extensions"]) == 1 and "grid extended" in out  # either point is on an edge
    argv = f"crf-search --model default --dataset camvid --data {camvid_tiny} --images 1 --write".split()
    assert main(argv) == 2
    assert "read-only" in capsys.readouterr().err


def test_cli_errors_exit_2(camvid_model, camvid_tiny, voc_tiny, tmp_path, capsys):
    base = ["evaluate", "--checkpoint", str(camvid_model), "--data", str(voc_tiny), "-o", str(tmp_path)]
    assert main([*base, "--dataset", "voc"]) == 2
    assert "11 classes" in capsys.readouterr().err
    assert main([*base, "--dataset", "camvid"]) == 2
    assert "val.txt" in capsys.readouterr().err
    bad = [
        "evaluate",
        "--checkpoint",
        str(camvid_model),
        "--dataset",
        "camvid",
        "--data",
        str(camvid_tiny),
        "-o",
        str(tmp_path),
        "--crf",
        "--crf-params",
        '{"bi_w": 4, "sigma": 2}',
    ]
    assert main(bad) == 2
    assert "sigma" in capsys.readouterr().err
    argv = f"evaluate --checkpoint {tmp_path / 'none.pt'} --dataset camvid --data x -o {tmp_path}".split()
    assert main(argv) == 2
