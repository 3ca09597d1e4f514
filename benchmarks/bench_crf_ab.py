"""Side-by-side speed of two versions of deeplab.crf in one process: the way to measure a change to the CRF.

    python benchmarks/bench_crf_ab.py OLD_SRC NEW_SRC [--rounds 8] [--camvid 3] [--data ../shared/data] [names...]

OLD_SRC and NEW_SRC are ``src`` folders (e.g. of a ``git worktree`` at the old commit, and ``src`` of this
checkout). Each is copied to a temporary folder as its own package (deeplab_a, deeplab_b: imports renamed, own
numba cache, so the first calls compile), and both run in this process, interleaved call by call (the order
alternates per round), on every voc_mini photo (or the given names) and --camvid CamVid test frames: DeepLab-LargeFOV
parameters, 21 labels, 10 iterations, one thread, the unary of deeplab.crf.synthetic.coarse_probs. On a shared
machine whole calls timed in separate processes differ by 10-20% from run to run; interleaved in one process, the
same code measures within about 5% of itself (run OLD_SRC against itself to see the noise). Prints per image the
fastest call of each version, their ratio (old / new: > 1 is faster), label agreement and max |Q difference|.
"""

from __future__ import annotations

import argparse
import importlib
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_crf import camvid, voc, voc_names

_IMPORT = re.compile(r"\b(from|import) deeplab([. ])")


def load_copy(src: Path, name: str, root: Path):
    """src/deeplab copied to root/name with its imports renamed; returns name.crf.dense_crf."""
    target = root / name
    shutil.copytree(src / "deeplab", target, ignore=shutil.ignore_patterns("__pycache__"))
    for path in target.rglob("*.py"):
        text = path.read_text()
        path.write_text(_IMPORT.sub(rf"\1 {name}\2", text).replace('"deeplab.', f'"{name}.'))
    return importlib.import_module(f"{name}.crf").dense_crf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old", type=Path, help="src folder of the version to compare against")
    ap.add_argument("new", type=Path, help="src folder of the new version")
    ap.add_argument("names", nargs="*", help="voc_mini photos (default: all 13)")
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--camvid", type=int, default=3, help="CamVid test frames spread over the split (0: none)")
    args = ap.parse_intermixed_args()  # names may follow the options
    for src in (args.old, args.new):
        if not (src / "deeplab/crf/__init__.py").is_file():
            ap.error(f"{src} is not a src folder holding deeplab/crf")
    photos = args.data / "voc_mini/VOC2012/JPEGImages"
    missing = [n for n in args.names if not (photos / f"{n}.jpg").is_file()]
    if missing or not photos.is_dir():
        ap.error(f"not voc_mini photos under {photos}: {', '.join(missing) or '(folder missing; see --data)'}")
    from deeplab.crf.synthetic import coarse_probs

    images = [(n, *voc(args.data, n)) for n in (args.names or voc_names(args.data))]
    images += camvid(args.data, args.camvid) if args.camvid else []
    with tempfile.TemporaryDirectory() as tmp:
        sys.path.insert(0, tmp)
        engines = [load_copy(args.old, "deeplab_a", Path(tmp)), load_copy(args.new, "deeplab_b", Path(tmp))]
        print("| image | old (ms) | new (ms) | old / new | labels equal | max abs Q difference |")
        print("|---|---:|---:|---:|---:|---:|")
        ratios = []
        for name, img, gt in images:
            probs = coarse_probs(np.where(gt == 255, 0, gt), 21, seed=0)
            qs = [run(img, probs, threads=1) for run in engines]  # compiles on the first image
            times: list[list[float]] = [[], []]
            for r in range(args.rounds):
                for j in (0, 1) if r % 2 == 0 else (1, 0):
                    t = time.perf_counter()
                    engines[j](img, probs, threads=1)
                    times[j].append(time.perf_counter() - t)
            old, new = min(times[0]), min(times[1])
            ratios.append(old / new)
            equal = float((qs[0].argmax(0) == qs[1].argmax(0)).mean())
            print(
                f"| {name} | {old * 1e3:.0f} | {new * 1e3:.0f} | {old / new:.3f} | {equal:.4%} | "
                f"{float(np.abs(qs[0] - qs[1]).max()):.1e} |",
                flush=True,
            )
        print(
            f"\nold / new over {len(ratios)} images: median {statistics.median(ratios):.3f}, "
            f"lowest {min(ratios):.3f}, highest {max(ratios):.3f}"
        )


if __name__ == "__main__":
    main()
