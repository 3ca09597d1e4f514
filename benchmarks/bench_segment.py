"""``deeplab segment`` throughput on CamVid test frames with the CRF: the pipeline (DCNN and CRF overlapped in
worker processes, decoding and writing off the critical path) against today's sequential loop and against the
DCNN and CRF times measured alone.

    python benchmarks/bench_segment.py [--data ../shared/data] [--frames 48] [--model default]

Per image wall time = (time the last image finished - time the first finished) / (frames - 1), from the
summary's per-image timestamps: start-up (imports, model load, worker start, first compile or cache load) is
excluded. "Alone": the DCNN forward (channels_last, torch's default threads) and the CRF (the model's stored
parameters, one thread) per image, each timed by itself in this process. Target: pipeline <= 0.75 x (DCNN +
CRF alone). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def frames(data: Path, count: int) -> list[Path]:
    from deeplab.data import build_dataset

    test = build_dataset("camvid", data / "camvid", "test")
    step = len(test) / count
    return [test.image_paths[int(k * step)] for k in range(count)]


def alone(files: list[Path], model: str) -> tuple[float, float]:
    """Median seconds per image of the DCNN and of the CRF, each run by itself."""
    from deeplab.crf import CRFParams, dense_crf
    from deeplab.data.images import load_rgb
    from deeplab.models import load_model
    from deeplab.models.predict import predict_batch

    loaded = load_model(model)
    params = CRFParams.from_dict(loaded.crf or {})
    images = [load_rgb(f) for f in files]
    predict_batch(loaded.model, images[:1])
    dcnn, crf, probs = [], [], []
    for im in images:
        t = time.perf_counter()
        probs.append(predict_batch(loaded.model, [im])[0].numpy())
        dcnn.append(time.perf_counter() - t)
    dense_crf(images[0], probs[0], params)
    for im, p in zip(images, probs, strict=True):
        t = time.perf_counter()
        dense_crf(im, p, params)
        crf.append(time.perf_counter() - t)
    return statistics.median(dcnn), statistics.median(crf)


def pipeline(files: list[Path], model: str, extra: list[str]) -> tuple[float, dict]:
    """Seconds per image in steady state of one ``deeplab segment`` run, and its summary."""
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / "summary.json"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "deeplab",
                "segment",
                *map(str, files),
                "-o",
                tmp,
                "--model",
                model,
                "--summary",
                str(summary),
                "--no-progress",
                *extra,
            ],
            check=True,
            capture_output=True,
        )
        s = json.loads(summary.read_text())
    done = sorted(r["finished_s"] for r in s["records"])
    return (done[-1] - done[0]) / (len(done) - 1), s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--model", default="default")
    args = ap.parse_args()
    files = frames(args.data, args.frames)
    dcnn, crf = alone(files, args.model)
    rows = [("DCNN alone (channels_last) + CRF alone (1 thread)", dcnn + crf, "")]
    sequential, _ = pipeline(files, args.model, ["--workers", "0", "--threads", "0"])
    rows.append(("sequential loop (`--workers 0`: DCNN, CRF, write, next image)", sequential, ""))
    overlapped, s = pipeline(files, args.model, [])
    rows.append((f"pipeline (default: {s['workers']} CRF workers, network on 1 thread)", overlapped, ""))
    print(f"{args.frames} CamVid test frames (480x360), model {args.model}, CRF {json.dumps(s['crf'])}\n")
    print(f"DCNN alone {dcnn:.3f} s/image, CRF alone {crf:.3f} s/image\n")
    print("| run | s / image | images / s | vs DCNN + CRF alone |")
    print("|---|---:|---:|---:|")
    for name, t, _ in rows:
        print(f"| {name} | {t:.3f} | {1 / t:.2f} | {t / (dcnn + crf):.2f}x |")
    print(f"\npipeline vs sequential loop: {sequential / overlapped:.2f}x the images per second")


if __name__ == "__main__":
    main()
