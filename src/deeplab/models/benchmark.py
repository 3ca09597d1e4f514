"""CPU forward-pass benchmark: eager vs channels_last vs torch.compile vs onnxruntime vs predict's default, side by
side ("default": deeplab.models.predict.forward with DEFAULT_BACKEND, exactly what predict/segment run).

Methods are timed round-robin (one forward each per round) so load from other processes hits all of them
alike; we report the median per method and its speed ratio to the plain eager forward.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from deeplab.models.deeplab import DeepLab

METHODS = ("eager", "channels_last", "compile", "onnxruntime", "default")


@dataclass
class BenchResult:
    """Per method: median forward seconds, setup seconds (compile / export + session), max |logit diff| vs eager."""

    method: str
    median_s: float
    setup_s: float
    max_abs_diff: float
    times: list[float]


def _runner(method: str, model: DeepLab, x: torch.Tensor, threads: int, workdir: Path) -> Callable[[], torch.Tensor]:
    if method == "eager":
        return lambda: model(x)
    if method == "channels_last":
        m = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        xc = x.contiguous(memory_format=torch.channels_last)
        return lambda: m(xc)
    if method == "compile":
        compiled = torch.compile(model)
        return lambda: compiled(x)
    if method == "default":
        from deeplab.models.predict import DEFAULT_BACKEND, forward

        return lambda: forward(model, x, DEFAULT_BACKEND)
    if method == "onnxruntime":
        from deeplab.models.onnx_export import OnnxRunner, export_onnx

        runner = OnnxRunner(export_onnx(model, workdir / "model.onnx", example_size=x.shape[-1]), threads=threads)
        return lambda: runner(x)
    raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")


def bench_forward(
    model: DeepLab,
    size: int = 513,
    methods: tuple[str, ...] = METHODS,
    repeats: int = 5,
    threads: int = 2,
    x: torch.Tensor | None = None,
) -> list[BenchResult]:
    """Time model forwards on a (1, 3, size, size) input (x, or random) with each method; eager first."""
    torch.set_num_threads(threads)
    model = model.eval()
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0)) if x is None else x
    methods = ("eager", *(m for m in methods if m != "eager"))
    with torch.inference_mode():
        ref = model(x)
    runners, setup, diff = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        for m in methods:
            model_copy = model if m not in ("channels_last", "default") else _clone(model)
            t0 = time.perf_counter()
            runners[m] = _runner(m, model_copy, x, threads, Path(tmp))
            out = runners[m]()  # first call: compilation / session warm-up
            setup[m] = time.perf_counter() - t0
            diff[m] = float((out.float().contiguous() - ref).abs().max())
        times: dict[str, list[float]] = {m: [] for m in methods}
        for _ in range(repeats):
            for m in methods:
                t0 = time.perf_counter()
                runners[m]()
                times[m].append(time.perf_counter() - t0)
    return [BenchResult(m, statistics.median(times[m]), setup[m], diff[m], times[m]) for m in methods]


def _clone(model: DeepLab) -> DeepLab:
    from deeplab.models.deeplab import build_model

    copy = build_model(**model.config())
    copy.load_state_dict(model.state_dict())
    return copy.eval()


def markdown_table(results: list[BenchResult], title: str = "") -> str:
    """Results as a markdown table with speed ratios to eager (higher = faster)."""
    eager = next(r.median_s for r in results if r.method == "eager")
    lines = [title] if title else []
    lines += [
        "| method | median forward (s) | speed vs eager | setup (s) | max abs logit diff |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.method} | {r.median_s:.3f} | {eager / r.median_s:.2f}x | {r.setup_s:.1f} | {r.max_abs_diff:.1e} |"
        )
    return "\n".join(lines)
