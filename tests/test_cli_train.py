import json

import pytest

from deeplab.cli import main
from deeplab.models import load_model
from engine_tiny import tiny_dict, write_config


@pytest.mark.slow
def test_train_cli_end_to_end(camvid_tiny, tmp_path, capsys):
    cfg = write_config(tmp_path / "tiny.yaml", tiny_dict(camvid_tiny))
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                str(cfg),
                "train.iterations=3",
                "--out",
                str(out),
                "--set",
                "train.schedule=poly",
                "train.class_weighting=median_frequency",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert "model written to" in captured.out and "img_s=" in captured.err  # tqdm bar with speed
    loaded = load_model(out / "model.pt")
    assert loaded.arch == "deeplab-largefov" and len(loaded.classes) == 11 and loaded.palette.shape == (11, 3)
    assert loaded.meta["extra"]["config"]["train"]["schedule"] == "poly"
    weights = loaded.meta["extra"]["class_weights"]
    assert len(weights) == 11 and min(weights) >= 0 and max(weights) > 1  # rare classes up-weighted
    log = [json.loads(ln) for ln in (out / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log] == [1, 2, 3]
    assert all(r["loss"] > 0 and r["img_per_s"] > 0 for r in log)
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "schedule: poly" in (out / "config.yaml").read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["train.lrr=1"], "train.lrr"),
        (["train.micro_batch=3"], "train.micro_batch"),
        (["nonsense"], "section.key=value"),
        (["data.root=/nonexistent/camvid"], "/nonexistent/camvid"),
    ],
)
def test_train_cli_bad_input_exits_2_naming_it(camvid_tiny, tmp_path, capsys, args, message):
    cfg = write_config(tmp_path / "tiny.yaml", tiny_dict(camvid_tiny))
    assert main(["train", str(cfg), *args, "--out", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err


def test_train_cli_resume_without_checkpoint_exits_2(camvid_tiny, tmp_path, capsys):
    cfg = write_config(tmp_path / "tiny.yaml", tiny_dict(camvid_tiny))
    assert main(["train", str(cfg), "--out", str(tmp_path / "run"), "--resume"]) == 2
    assert "training checkpoint not found" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
