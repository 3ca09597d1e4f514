"""evaluate and segment under torchrun (2 gloo processes on CPU): each process takes every 2nd image, the
metrics are those of one process and every mask is written once."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deeplab.cli import main


def torchrun() -> list[str]:
    exe = Path(sys.executable).with_name("torchrun")
    return [str(exe)] if exe.is_file() else [shutil.which("torchrun") or "torchrun"]


@pytest.fixture(scope="module")
def model(tiny_camvid_model):
    return tiny_camvid_model


@pytest.mark.slow
def test_evaluate_and_segment_split_across_two_processes(model, camvid_tiny, tmp_path):
    args = [
        "evaluate",
        "--model",
        str(model),
        "--dataset",
        "camvid",
        "--data",
        str(camvid_tiny),
        "--split",
        "train+val+test",
        "--crf",
        "--trimap",
        "5",
        "--workers",
        "0",
        "--no-progress",
    ]
    assert main([*args, "-o", str(tmp_path / "single")]) == 0
    run = subprocess.run(
        [*torchrun(), "--standalone", "--nproc_per_node", "2", "-m", "deeplab", *args, "-o", str(tmp_path / "ddp")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    single = json.loads((tmp_path / "single" / "metrics.json").read_text())
    ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert single["n_images"] == ddp["n_images"] == 8
    for key in ("confusion", "trimap", "dcnn", "crf"):
        assert ddp[key] == single[key], key

    seg = [
        "segment",
        str(camvid_tiny / "test"),
        str(camvid_tiny / "val"),
        "--model",
        str(model),
        "--no-progress",
        "--summary",
    ]
    run = subprocess.run(
        [
            *torchrun(),
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "deeplab",
            *seg,
            str(tmp_path / "seg" / "summary.json"),
            "-o",
            str(tmp_path / "seg"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert main([*seg, str(tmp_path / "one" / "summary.json"), "-o", str(tmp_path / "one")]) == 0
    masks = sorted(p.name for p in (tmp_path / "seg").glob("*.png"))
    assert masks == sorted(p.name for p in (tmp_path / "one").glob("*.png")) and len(masks) == 4
    for name in masks:
        assert (tmp_path / "seg" / name).read_bytes() == (tmp_path / "one" / name).read_bytes()
    summary = json.loads((tmp_path / "seg" / "summary.json").read_text())
    assert summary["images"] == 4 and len(summary["records"]) == 4
