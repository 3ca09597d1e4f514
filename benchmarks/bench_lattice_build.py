"""Permutohedral lattice construction speed (deeplab.crf.lattice.build_lattice), single thread.

    python benchmarks/bench_lattice_build.py [--data ../shared/data] [--repeats 9] [--src DIR ...]

Feature sets of two voc_mini photos (2007_000123: few lattice vertices; 2007_000129: the most): bilateral
(x, y, r, g, b) and
Gaussian (x, y) features at several standard deviations, plus random features of dimension 1..8.
Prints a markdown table of the best of --repeats build times (ms), one column per --src (a source
directory put first on sys.path, e.g. another checkout's src to compare against; default: this
repository's src). Each source runs in its own subprocess; the rounds alternate between the sources so
that noise from other work on the machine hits all of them alike.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def feature_sets(data: Path) -> dict:
    """name -> (N, D) float32 features."""
    import numpy as np

    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_crf import voc
    from deeplab.crf.api import bilateral_features, gaussian_features

    img, _ = voc(data, "2007_000123")
    h, w = img.shape[:2]
    sets = {
        f"bilateral xy {xy} rgb {rgb}": bilateral_features(img, xy, rgb)
        for xy, rgb in [(121, 5), (121, 1), (121, 13), (10, 5), (80, 5)]
    }
    sets["bilateral xy 121 rgb 5, 2007_000129"] = bilateral_features(voc(data, "2007_000129")[0], 121, 5)
    sets.update({f"gaussian xy {xy}": gaussian_features(h, w, xy) for xy in (3, 1, 10)})
    for d in (1, 2, 3, 5, 8):
        rng = np.random.default_rng(d)
        centres = rng.normal(size=(6, d)) * 3
        sets[f"random D={d}, N=50000"] = (centres[rng.integers(0, 6, 50000)] + rng.normal(size=(50000, d))).astype(
            np.float32
        )
    return sets


def child(data: Path, repeats: int) -> None:
    """Print {feature set: [best build time in ms, "N x D", M vertices]} as JSON (deeplab on sys.path)."""
    import time

    from deeplab.crf.lattice import build_lattice

    try:
        from deeplab.crf.kernels import numba_threads
    except ImportError:  # a --src from before deeplab.crf.kernels
        from deeplab.crf.lattice import numba_threads

    out = {}
    with numba_threads(1):
        for name, feat in feature_sets(data).items():
            lattice = build_lattice(feat)  # compile
            best = float("inf")
            for _ in range(repeats):
                t0 = time.perf_counter()
                build_lattice(feat)
                best = min(best, time.perf_counter() - t0)
            out[name] = [best * 1e3, f"{feat.shape[0]} x {feat.shape[1]}", lattice.m]
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO / "../shared/data")
    ap.add_argument("--repeats", type=int, default=9, help="timed builds per feature set and round")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds per source")
    ap.add_argument("--src", type=Path, action="append", help="source directory (repeatable)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.data, args.repeats)
        return
    srcs = [s.resolve() for s in (args.src or [REPO / "src"])]
    best: list[dict] = [{} for _ in srcs]
    for _ in range(args.rounds):
        for k, src in enumerate(srcs):
            env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]))
            res = subprocess.run(
                [sys.executable, __file__, "--child", "--data", str(args.data), "--repeats", str(args.repeats)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            for name, (ms, shape, m) in json.loads(res.stdout.strip().splitlines()[-1]).items():
                best[k][name] = (min(best[k].get(name, (float("inf"),))[0], ms), shape, m)
    print(f"build_lattice, single thread, best of {args.rounds} x {args.repeats} builds (ms)\n")
    print("| features | N x D | M | " + " | ".join(str(s) for s in srcs) + " |")
    print("|---|---|---:|" + "---:|" * len(srcs))
    for name, (_, shape, m) in best[0].items():
        print(f"| {name} | {shape} | {m} | " + " | ".join(f"{b[name][0]:.2f}" for b in best) + " |")


if __name__ == "__main__":
    main()
