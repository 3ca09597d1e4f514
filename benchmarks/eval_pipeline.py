"""Evaluation pipeline speed, side by side on this machine.

1. Trimap bands (widths 1..40): one chessboard distance transform + one bincount per image (deeplab.engine.trimap)
   vs 40 square dilations + 40 masked confusion matrices (deeplab.metrics.trimap_band), on VOC val masks.
2. `evaluate` with the dense CRF and trimap on CamVid test images: CRF/metrics inline (workers 0) vs a pool of
   2 worker processes overlapping the forward pass.

    python benchmarks/eval_pipeline.py --images 6 --width 0.25

Prints markdown tables. The network is randomly initialised (speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def trimap_table(data: Path, n: int) -> None:
    from deeplab.data.palette import load_label_png
    from deeplab.engine.trimap import band_confusions, boundary_distance
    from deeplab.metrics import confusion_matrix, trimap_band

    masks = sorted((data / "voc2012-val-masks").glob("*.png"))[:n]
    gts = [load_label_png(p) for p in masks]
    shifted = [np.roll(g, 5, axis=1) for g in gts]  # a prediction with boundary errors
    preds = [np.where(s == 255, 0, s) for s in shifted]
    t0 = time.perf_counter()
    fast = [band_confusions(p, g, boundary_distance(g), 21, 40) for p, g in zip(preds, gts, strict=False)]
    t_fast = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    slow = [
        np.stack([confusion_matrix(p, g, 21, mask=trimap_band(g, w)) for w in range(1, 41)])
        for p, g in zip(preds, gts, strict=False)
    ]
    t_slow = (time.perf_counter() - t0) / n
    same = all(np.array_equal(a, b) for a, b in zip(fast, slow, strict=False))
    print(f"\n### Trimap bands 1..40 px, {n} VOC val masks (identical results: {same})\n")
    print("| method | s / image | ratio |\n|---|---|---|")
    print(f"| distance transform + bincount | {t_fast:.4f} | 1 |")
    print(f"| 40 dilations + 40 confusions | {t_slow:.3f} | {t_slow / t_fast:.0f}x |")


def evaluate_table(data: Path, n: int, width: float, threads: int, reps: int) -> None:
    import torch

    from deeplab.crf import CRFParams, dense_crf
    from deeplab.data import build_dataset
    from deeplab.engine.evaluate import evaluate, model_probs_fn, run_backend
    from deeplab.models import build_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model("deeplab-largefov", 11, width=width)
    ds = build_dataset("camvid", data / "camvid", "test")
    probs_fn = model_probs_fn(model, backend=run_backend(n))  # as the evaluate command: deterministic
    image = ds.sample(0)[0]
    dense_crf(image, probs_fn(image))  # warm up torch and the CRF's compiled kernels
    times: dict[int, list[float]] = {0: [], 2: []}
    results = []
    for _ in range(reps):  # interleaved repeats, best of each: the machine is shared
        for workers in times:
            t0 = time.perf_counter()
            r = evaluate(ds, probs_fn, crf=True, crf_params=CRFParams(), trimap_width=40, limit=n, workers=workers)
            times[workers].append((time.perf_counter() - t0) / n)
            results.append(r.to_json())
    same = all(r == results[0] for r in results)  # the CRF runs single-threaded inline and in workers
    print(
        f"\n### evaluate --crf --trimap, {n} CamVid test images 480x360, deeplab-largefov width {width}, "
        f"{threads} torch threads, best of {reps} (identical results: {same})\n"
    )
    print("| workers | s / image | speed-up |\n|---|---|---|")
    for workers, ts in times.items():
        print(f"| {workers} | {min(ts):.2f} | {min(times[0]) / min(ts):.2f}x |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="shared data folder")
    ap.add_argument("--images", type=int, default=6, help="CamVid images for the evaluate timing")
    ap.add_argument("--masks", type=int, default=5, help="VOC masks for the trimap timing")
    ap.add_argument("--width", type=float, default=0.25, help="network width multiplier (1 = full VGG-16)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for the forward pass")
    ap.add_argument("--reps", type=int, default=2, help="repeats of each evaluate timing (best is reported)")
    args = ap.parse_args()
    data = Path(args.data)
    trimap_table(data, args.masks)
    evaluate_table(data, args.images, args.width, args.threads, args.reps)


if __name__ == "__main__":
    main()
