"""``deeplab benchmark``: CPU forward throughput of one architecture, by execution path."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "time the network forward on CPU: eager vs channels_last vs torch.compile vs onnxruntime vs the default"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", default="deeplab-largefov", help="architecture (see list_models)")
    parser.add_argument("--size", type=int, default=513, help="input side in pixels (rounded up to 8k+1)")
    parser.add_argument("--width", type=float, default=1.0, help="channel width multiplier")
    parser.add_argument("--repeats", type=int, default=5, help="timed forwards per method")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch and onnxruntime")
    parser.add_argument(
        "--methods",
        default="eager,channels_last,compile,onnxruntime,default",
        help="comma-separated subset of eager, channels_last, compile, onnxruntime, default (what predict runs)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="data folder with voc_mini/ (a real image as input); default: random input",
    )


def benchmark_input(size: int, data: Path | None):
    """(1, 3, size', size') input: a voc_mini image (Caffe preprocessing, mean-padded/cropped) or random noise."""
    import numpy as np
    import torch
    from PIL import Image

    from deeplab.models.deeplab import aligned_size
    from deeplab.models.predict import padded_input
    from deeplab.preprocess import Preprocess

    side = aligned_size(size)
    images = sorted((data / "voc_mini" / "VOC2012" / "JPEGImages").glob("*.jpg")) if data else []
    if not images:
        return torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(0)), "random input"
    with Image.open(images[0]) as im:
        image = np.array(im.convert("RGB"))[:side, :side]
    x = padded_input(image, Preprocess())
    x = torch.nn.functional.pad(x, (0, side - x.shape[-1], 0, side - x.shape[-2]))
    return x, f"{images[0].name} mean-padded"


def run_benchmark(
    arch: str, size: int, width: float, methods: tuple[str, ...], repeats: int, threads: int, data: Path | None
) -> str:
    """Markdown report of bench_forward for one configuration."""
    import torch

    from deeplab.errors import InputError
    from deeplab.models import build_model
    from deeplab.models.benchmark import METHODS, bench_forward, markdown_table

    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise InputError(f"--methods: unknown {', '.join(bad)}; choose from {', '.join(METHODS)}")
    if repeats < 1 or threads < 1:
        raise InputError("--repeats and --threads must be >= 1")
    if size < 9 or size > 8193:
        raise InputError(f"--size must lie in [9, 8193], got {size}")
    if not 0 < width <= 4:
        raise InputError(f"--width must lie in (0, 4], got {width}")
    torch.manual_seed(0)
    model = build_model(arch, width=width)
    x, what = benchmark_input(size, data)
    results = bench_forward(model, x.shape[-1], methods, repeats, threads, x=x)
    title = (
        f"{arch} width {width:g}, input {x.shape[-2]}x{x.shape[-1]} ({what}), {threads} threads, "
        f"torch {torch.__version__}, median of {repeats}\n"
    )
    return markdown_table(results, title)


def run(args: argparse.Namespace) -> int:
    print(
        run_benchmark(
            args.arch, args.size, args.width, tuple(args.methods.split(",")), args.repeats, args.threads, args.data
        )
    )
    return 0
