"""``deeplab train CONFIG.yaml [section.key=value ...] [--set section.key=value ...] [--resume] [--out DIR]``."""

from __future__ import annotations

import argparse
import sys

HELP = "train a DeepLab model from a YAML config (multi-process with torchrun)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML config file (see configs/)")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="section.key=value",
        help="config overrides right after CONFIG, e.g. train.lr=0.01 data.root=../shared/data/camvid "
        "(values parsed as YAML)",
    )
    p.add_argument(
        "--set",
        dest="set_overrides",
        action="extend",
        nargs="+",
        default=[],
        metavar="section.key=value",
        help="the same overrides, usable anywhere on the line (after other options)",
    )
    p.add_argument(
        "--out",
        default=None,
        help="output folder for checkpoint.pt, log.jsonl, curves.png, model.pt (default: runs/<config name>)",
    )
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from deeplab.engine.config import load_config
    from deeplab.engine.trainer import train

    cfg = load_config(args.config, args.overrides + args.set_overrides)
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    result = train(cfg, out, resume=args.resume, progress=not args.no_progress)
    if result.stopped_by is not None:
        print(
            f"deeplab train: stopped by signal {result.stopped_by} after {result.iteration} iterations; "
            f"checkpoint {result.checkpoint} (continue with --resume)",
            file=sys.stderr,
        )
        return 128 + int(result.stopped_by)
    if result.model_path is not None:
        print(f"deeplab train: {result.iteration} iterations; model written to {result.model_path}")
    return 0
