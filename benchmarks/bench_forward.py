"""CPU forward throughput of a DeepLab variant: eager vs channels_last vs torch.compile vs onnxruntime.

    python benchmarks/bench_forward.py --arch deeplab-largefov --size 513 --repeats 5

Prints a markdown table of median forward times and their ratio to the plain eager forward, all measured
round-robin in one run. The input is a real VOC image (from --data) padded with the mean colour, as predict() does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="deeplab-largefov")
    parser.add_argument("--size", type=int, default=513, help="input side (made 8k+1)")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", default="eager,channels_last,compile,onnxruntime")
    parser.add_argument(
        "--data",
        type=Path,
        default=REPO.parent / "shared" / "data",
        help="shared data folder (a voc_mini image is the input; random input if absent)",
    )
    args = parser.parse_args(argv)

    from deeplab.commands.benchmark import run_benchmark

    print(
        run_benchmark(
            args.arch, args.size, args.width, tuple(args.methods.split(",")), args.repeats, args.threads, args.data
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
