"""The forward benchmark (deeplab benchmark / benchmarks/bench_forward.py) on a tiny model: runs and agrees."""

import pytest

from deeplab.cli import main as cli_main
from deeplab.models import build_model
from deeplab.models.benchmark import bench_forward, markdown_table


@pytest.mark.slow
def test_bench_forward_methods_agree_with_eager():
    model = build_model("deeplab-largefov", width=0.0625)
    results = bench_forward(
        model, size=41, methods=("eager", "channels_last", "onnxruntime", "default"), repeats=2, threads=1
    )
    assert [r.method for r in results] == ["eager", "channels_last", "onnxruntime", "default"]
    assert all(len(r.times) == 2 and r.median_s > 0 for r in results)
    assert max(r.max_abs_diff for r in results) < 1e-3
    table = markdown_table(results)
    assert "| eager |" in table and "1.00x" in table and table.count("\n") == 1 + len(results)


def test_benchmark_cli(capsys):
    argv = [
        "benchmark",
        "--width",
        "0.0625",
        "--size",
        "40",
        "--repeats",
        "1",
        "--threads",
        "1",
        "--methods",
        "eager,channels_last",
    ]
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert "input 41x41" in out and "random input" in out and "| channels_last |" in out
    assert cli_main([*argv[:-2], "--methods", "eager,tensorrt"]) == 2
