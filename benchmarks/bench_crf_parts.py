"""One part of the dense CRF (the fused mean-field pass, the blur or the lattice build) timed across versions of
deeplab.crf in one process: how a change to one kernel is measured on this noisy shared machine.

    python benchmarks/bench_crf_parts.py SRC [SRC ...] [--part pass|blur|build] [--rounds 15] [--camvid 3]
                                          [--resized] [--data ../shared/data] [--names NAME ...]

Each SRC is a ``src`` folder, loaded as its own package (bench_crf_ab.load_copy). Give the first one twice (first
and last) to see the noise: the control's ratios are what "no change" looks like. Inputs are prepared once per
image by this checkout's deeplab.crf (one thread, DeepLab-LargeFOV parameters, 21 labels, the unary of
deeplab.crf.synthetic.coarse_probs; float16 vertex values, the default): the lattices, the work arrays and
the blurred vertex values of Q0. Then every round times each version's kernel on every image, versions in
alternating order, so each image's samples spread over the whole run rather than a few seconds of it (a slow
phase of the host, which lasts seconds to minutes, then hits all versions alike). Per image: the first version's
fastest call and first / other (> 1: faster); then the median ratio.

Parts: ``pass`` one fused mean-field update (gather, softmax, scatter; the build that the inference would use for
the image), ``blur`` the blur of every kernel's splatted values, ``build`` deeplab.crf.lattice.build_lattice of
the bilateral features. The pass and blur results must match the first version's (printed: max abs difference
of the splat buffers or vertex values); the build must give the same lattice.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_crf import RESIZED, camvid, resized, voc, voc_names
from bench_crf_ab import load_copy
from deeplab.crf.api import bilateral_features
from deeplab.crf.kernels import numba_threads
from deeplab.crf.synthetic import coarse_probs


def load_versions(srcs: list[Path], root: Path) -> list[dict]:
    """The crf modules of every version (packages deeplab_v0, deeplab_v1, ...)."""
    sys.path.insert(0, str(root))
    versions = []
    for j, src in enumerate(srcs):
        load_copy(src, f"deeplab_v{j}", root)
        names = ("kernels", "lattice")
        versions.append({m: importlib.import_module(f"deeplab_v{j}.crf.{m}") for m in names})
    return versions


def pass_inputs(img: np.ndarray, probs: np.ndarray) -> dict:
    """The arguments of one fused update (after Q0's splat and blur), made by this checkout's deeplab.crf."""
    from deeplab.crf import api, kernels, lattice, meanfield

    mf = meanfield.MeanField.from_probs(probs.reshape(probs.shape[0], -1), 1e-5)
    api.add_potts_kernels(mf, img, api.resolve_params(None, {}))
    n, lp = mf.neg_unary.shape
    terms = [k for k, _ in mf.lattice_terms()]
    name, offsets, bary, scales, _ = mf._pass_inputs()  # as MeanField.inference builds them
    bufs = tuple(lattice.splat_buffers(k.lattice, lp, 1) for k in terms)
    ping = tuple(lattice.aligned_zeros((k.lattice.m + 1, lp), np.uint16) for k in terms)
    pong = tuple(lattice.aligned_zeros((k.lattice.m + 1, lp), np.uint16) for k in terms)
    energy = np.empty(mf.neg_unary.shape, np.int16)
    kernels.kernel("_fixed_rows")(mf.neg_unary, mf.num_labels, energy)
    args = dict(
        name=name,
        energy=energy,
        offsets=offsets,
        bary=bary,
        scales=scales,
        bufs=bufs,
        q=np.empty((mf.num_labels, n), np.float32),
        lattices=[k.lattice for k in terms],
        ping=ping,
        pong=pong,
        m_over_n=terms[0].lattice.m / n,
    )
    kernel = kernels.kernel
    kernel(name)(energy, ping, offsets, bary, scales, bufs, args["q"], False, True, False)
    args["verts"] = tuple(_blur(kernel, args))
    return args


def _blur(kernel, a: dict) -> list[np.ndarray]:
    blur = kernel("_blur")
    return [
        blur(b[0], x, y, lat.neighbours, lat.order, False)
        for lat, b, x, y in zip(a["lattices"], a["bufs"], a["ping"], a["pong"], strict=True)
    ]


def timed_call(v: dict, part: str, a: dict):
    """A no-argument callable running version v's kernel for the part on the prepared inputs; returns its output."""
    kernel = v["kernels"].kernel
    if part == "build":
        return lambda: v["lattice"].build_lattice(a["features"])
    if part == "blur":
        return lambda: np.concatenate([x[:-1].ravel().view(np.float16) for x in _blur(kernel, a)])

    def update():
        args = (a["energy"], a["verts"], a["offsets"], a["bary"], a["scales"], a["bufs"], a["q"])
        kernel(a["name"])(*args, True, True, False)
        return np.concatenate([b[0].ravel() for b in a["bufs"]])

    return update


def difference(x, y) -> str:
    if hasattr(x, "offset"):  # lattices
        same = all(np.array_equal(getattr(x, f), getattr(y, f)) for f in ("offset", "bary", "order", "neighbours"))
        return "same lattice" if same else "DIFFERENT LATTICE"
    return f"max |diff| {float(np.abs(x.astype(np.float64) - y.astype(np.float64)).max()):.1e}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("srcs", type=Path, nargs="+", help="src folders; the first is the reference")
    ap.add_argument("--part", choices=("pass", "blur", "build"), default="pass")
    ap.add_argument("--names", nargs="*", help="voc_mini photos (default: all 13)")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--camvid", type=int, default=3, help="CamVid test frames spread over the split (0: none)")
    ap.add_argument("--resized", action="store_true", help=f"also {RESIZED[0]} at {RESIZED[1]}")
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data")
    args = ap.parse_args()
    for src in args.srcs:
        if not (src / "deeplab/crf/__init__.py").is_file():
            ap.error(f"{src} is not a src folder holding deeplab/crf")
    images = [(n, *voc(args.data, n)) for n in (args.names if args.names is not None else voc_names(args.data))]
    images += camvid(args.data, args.camvid) if args.camvid else []
    if args.resized:
        img, gt = voc(args.data, RESIZED[0])
        images += [(f"{RESIZED[0]} {w}x{h}", *resized(img, gt, (w, h))) for w, h in RESIZED[1]]
    with tempfile.TemporaryDirectory() as tmp:
        versions = load_versions(args.srcs, Path(tmp))
        prepared = []
        for name, img, gt in images:
            with numba_threads(1):
                a = pass_inputs(img, coarse_probs(np.where(gt == 255, 0, gt), 21, seed=0))
                a["features"] = bilateral_features(img, 121.0, 5.0)
                calls = [timed_call(v, args.part, a) for v in versions]
                outs = [call() for call in calls]  # compiles on the first image
            diff = max((difference(outs[0], o) for o in outs[1:]), key=len, default="")
            prepared.append((name, a["m_over_n"], calls, diff))
        best = np.full((len(prepared), len(versions)), np.inf)
        for r in range(args.rounds):
            for i, (_, _, calls, _) in enumerate(prepared):
                order = range(len(calls)) if (r + i) % 2 == 0 else reversed(range(len(calls)))
                for j in order:
                    with versions[j]["kernels"].numba_threads(1):
                        t = time.perf_counter()
                        calls[j]()
                        best[i, j] = min(best[i, j], time.perf_counter() - t)
    print(f"| image | M/N | first (ms) | {' | '.join(f'first / v{j}' for j in range(1, len(versions)))} | output |")
    print("|---|---:|---:|" + "---:|" * (len(versions) - 1) + "---|")
    for (name, m_over_n, _, diff), row in zip(prepared, best, strict=True):
        ratios = " | ".join(f"{row[0] / t:.3f}" for t in row[1:])
        print(f"| {name} | {m_over_n:.2f} | {row[0] * 1e3:.2f} | {ratios} | {diff} |")
    for j in range(1, len(versions)):
        r = best[:, 0] / best[:, j]
        print(f"v{j}: median {statistics.median(r):.3f}, lowest {r.min():.3f}, highest {r.max():.3f}")


if __name__ == "__main__":
    main()
