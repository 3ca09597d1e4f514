"""Time and peak memory of ``deeplab segment`` and ``deeplab crf`` on a 6000x4000 photo (a CamVid frame upscaled),
with the default --max-size and without a limit.

    python benchmarks/bench_big_image.py [--data ../shared/data] [--size 6000x4000]

Each command runs in its own process; peak memory = the child's maximum resident set size. Prints a markdown
table.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def run(argv: list[str]) -> tuple[float, float, int]:
    """(seconds, peak RSS in MB, exit code) of one command in a child process."""
    code = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        "r = subprocess.run(sys.argv[1:]).returncode; "
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, r)"
    )
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True).stdout.split()
    return float(out[-3]), float(out[-2]), int(out[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--size", default="6000x4000")
    ap.add_argument("--no-unlimited", action="store_true", help="skip the runs without --max-size")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    frame = sorted((args.data / "camvid" / "test").glob("*.png"))[0]
    deeplab = [sys.executable, "-m", "deeplab"]
    rows = ["| command | --max-size | seconds | peak memory (MB) | exit |", "|---|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "big.jpg"
        Image.open(frame).convert("RGB").resize((w, h), Image.Resampling.BICUBIC).save(big, quality=92)
        limits = ["2048"] if args.no_unlimited else ["2048", "0"]
        for limit in limits:
            t, mb, code = run(
                [
                    *deeplab,
                    "segment",
                    str(big),
                    "-o",
                    f"{tmp}/seg{limit}",
                    "--max-size",
                    limit,
                    "--no-progress",
                    "--workers",
                    "0",
                ]
            )
            rows.append(f"| segment (DCNN + CRF) | {limit} | {t:.1f} | {mb:.0f} | {code} |")
        mask = Path(tmp) / "seg2048" / "big.png"
        for limit in limits:
            t, mb, code = run(
                [
                    *deeplab,
                    "crf",
                    str(big),
                    "--labels",
                    str(mask),
                    "--unknown",
                    "none",
                    "-o",
                    f"{tmp}/crf{limit}.png",
                    "--max-size",
                    limit,
                ]
            )
            rows.append(f"| crf (--labels, 11 labels) | {limit} | {t:.1f} | {mb:.0f} | {code} |")
        assert np.array(Image.open(mask)).shape == (h, w)
    print(f"{w}x{h} photo (CamVid frame upscaled), shipped model\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
