"""Training throughput (images/s) of DeepLab variants on this machine: one SGD step = forward + backward + update
on a batch of real augmented crops (CamVid by default), measured side by side for each width.

    python benchmarks/train_throughput.py --widths 0.25 0.375 0.5 --crop 321 --batch 8 --threads 2

Prints a markdown table. Also reports the data pipeline alone (load + augment), which a DataLoader worker
overlaps with the network on a separate core.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="shared data folder")
    ap.add_argument("--dataset", default="camvid")
    ap.add_argument("--arch", default="deeplab-largefov")
    ap.add_argument("--widths", type=float, nargs="+", default=[0.25, 0.375, 0.5])
    ap.add_argument("--crop", type=int, default=321)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per width (after one warm-up step)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-bn", action="store_true", help="without batch norm")
    args = ap.parse_args()

    from deeplab.data import build_dataset
    from deeplab.data.transforms import SeededDataset, TrainTransform
    from deeplab.engine.config import TrainConfig
    from deeplab.engine.optim import build_optimizer
    from deeplab.engine.trainer import segmentation_loss
    from deeplab.models import build_model

    torch.set_num_threads(args.threads)
    raw = build_dataset(args.dataset, Path(args.data) / args.dataset, "train")
    data = SeededDataset(raw, TrainTransform(args.crop, (0.75, 1.25)), seed=0)
    t0 = time.perf_counter()
    samples = [data[i] for i in range(args.batch)]
    load_s = (time.perf_counter() - t0) / args.batch
    x = torch.stack([s[0] for s in samples])
    y = torch.stack([s[1] for s in samples])[..., ::8, ::8]

    print(f"{args.arch}, crop {args.crop}, batch {args.batch}, {args.threads} threads, "
          f"batch_norm {not args.no_bn}; data pipeline alone: {1 / load_s:.1f} img/s\n")
    print("| width | parameters (M) | s / step | img/s |")
    print("|---|---|---|---|")
    for w in args.widths:
        model = build_model(args.arch, raw.num_classes, w, not args.no_bn).train()
        opt = build_optimizer(model, TrainConfig())
        times = []
        for step in range(args.steps + 1):
            t0 = time.perf_counter()
            opt.zero_grad()
            loss = segmentation_loss(model(x), y, int((y != 255).sum()))
            loss.backward()
            opt.step()
            if step:
                times.append(time.perf_counter() - t0)
        s = sorted(times)[len(times) // 2]
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"| {w} | {params:.2f} | {s:.2f} | {args.batch / s:.1f} |")


if __name__ == "__main__":
    main()
