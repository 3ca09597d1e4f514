"""Training throughput on this machine: the real trainer (DataLoader, augmentation, forward, backward, SGD step)
on CamVid crops, for each setting side by side, reported as iterations/minute and images/s.

    python benchmarks/train_throughput.py --iterations 30 --rounds 2

Each setting runs ``deeplab.engine.trainer.train`` for --iterations iterations (the first --warmup are not
timed) in a fresh output folder, interleaved over --rounds rounds; the figure is the median over rounds of
the logged images/s. The first row is the trainer before this work (float32, NCHW, 1 torch thread + 1 loader
worker, as configs/camvid_default.yaml had it). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# name -> train/data overrides
SETTINGS = {
    "fp32, NCHW, 1 thread + 1 worker (before)": {"train": {"precision": "fp32", "channels_last": False, "threads": 1}},
    "fp32, NCHW, 2 threads + 1 worker": {"train": {"precision": "fp32", "channels_last": False, "threads": 2}},
    "fp32, channels_last, 2 threads + 1 worker": {"train": {"precision": "fp32", "channels_last": True, "threads": 2}},
    "bf16, NCHW, 2 threads + 1 worker": {"train": {"precision": "bf16", "channels_last": False, "threads": 2}},
    "bf16, channels_last, 1 thread + 1 worker": {"train": {"precision": "bf16", "channels_last": True, "threads": 1}},
    "bf16, channels_last, 2 threads + 1 worker": {"train": {"precision": "bf16", "channels_last": True, "threads": 2}},
    "bf16, channels_last, 2 threads, loading inline": {
        "train": {"precision": "bf16", "channels_last": True, "threads": 2},
        "data": {"workers": 0},
    },
}


def run_one(base: dict, overrides: dict, iterations: int, warmup: int) -> float:
    """Images/s over the iterations after ``warmup`` of one short training run."""
    from deeplab.engine.config import config_from_dict, merge
    from deeplab.engine.plots import read_log
    from deeplab.engine.trainer import train

    cfg = config_from_dict(
        merge(merge(base, overrides), {"train": {"iterations": iterations, "log_every": 1, "checkpoint_every": 10**6}})
    )
    with tempfile.TemporaryDirectory() as tmp:
        train(cfg, tmp, progress=False)
        rates = [r["img_per_s"] for r in read_log(Path(tmp) / "log.jsonl") if "img_per_s" in r][warmup:]
    return len(rates) / sum(1 / r for r in rates)  # images/s over the timed iterations


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(REPO / "configs" / "camvid_default.yaml"))
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "camvid"), help="CamVid root")
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--only", nargs="*", help="substrings of setting names to run")
    args = ap.parse_args()

    import yaml

    from deeplab.engine.config import merge

    base = merge(
        yaml.safe_load(Path(args.config).read_text()),
        {"data": {"root": args.data, "val_split": None, "test_split": None}, "train": {"val_every": 0}},
    )
    names = [n for n in SETTINGS if not args.only or any(s in n for s in args.only)]
    results: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(args.rounds):
        for n in names:
            results[n].append(run_one(base, SETTINGS[n], args.iterations, args.warmup))
    batch = base["train"]["batch_size"]
    m = base["model"]
    print(
        f"{m['arch']} width {m['width']}, batch norm {m['batch_norm']}, batch {batch} of "
        f"{base['data']['crop_size']}x{base['data']['crop_size']} crops; median of {args.rounds} rounds of "
        f"{args.iterations - args.warmup} timed iterations\n"
    )
    print("| setting | img/s | iterations/min | vs before |")
    print("|---|---:|---:|---:|")
    ref = statistics.median(results[names[0]])
    for n in names:
        r = statistics.median(results[n])
        print(f"| {n} | {r:.1f} | {60 * r / batch:.1f} | {r / ref:.2f}x |")


if __name__ == "__main__":
    main()
