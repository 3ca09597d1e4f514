"""``deeplab crf-search --model M.pt --dataset camvid --data ROOT --split val [--grid paper] [--write]``."""

from __future__ import annotations

import argparse
import json

from deeplab.commands.evaluate import add_data_arguments, json_object_arg

HELP = "search the dense CRF's w1, sigma_alpha, sigma_beta on held-out images against its current and default values"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_arguments(p, "val")
    p.add_argument("--images", type=int, default=100, help="held-out images drawn from the split (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the image draw and the bootstrap (default 0)")
    p.add_argument(
        "--grid",
        default="default",
        metavar="NAME|JSON",
        help="'default' (w1 3,4,5 x sigma_alpha 30,60,90,121 x sigma_beta 3,5,7), 'paper' (the paper's "
        "w1 5..10 x sigma_alpha 50:10:100 x sigma_beta 3..10), or a JSON object / file of lists, in "
        "pixels and colour levels as used",
    )
    p.add_argument("--no-refine", action="store_true", help="no finer stage around the best grid point")
    p.add_argument(
        "--max-extend",
        type=int,
        default=3,
        help="times the grid may grow past an edge the best setting lies on (default 3)",
    )
    p.add_argument("--iterations", type=int, default=None, help="mean-field iterations (default: the model's, or 10)")
    p.add_argument("--cache-dir", default=None, help="where to cache the float16 probabilities (default: temp dir)")
    p.add_argument(
        "-o",
        "--out",
        default=None,
        metavar="LOG.json",
        help="search log (default: crf_search.json beside the model file; for the shipped model, here)",
    )
    p.add_argument(
        "--write",
        action="store_true",
        help="store the chosen parameters in the model file (not the shipped model: use --write-to)",
    )
    p.add_argument(
        "--write-to", metavar="COPY.pt", default=None, help="write a copy of the model with the chosen parameters"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from deeplab.commands.evaluate import open_model_and_data
    from deeplab.engine.crf_search import GRIDS, crf_search, write_crf_to_checkpoint
    from deeplab.engine.evaluate import model_probs_fn
    from deeplab.errors import InputError
    from deeplab.io import atomic_write
    from deeplab.outputs import check_output_file
    from deeplab.weights import is_shipped_model

    if args.workers < 0 or args.max_extend < 0:
        raise InputError("--workers and --max-extend must be >= 0")
    grid = args.grid if args.grid in GRIDS else json_object_arg(args.grid, "--grid")
    path, loaded, dataset = open_model_and_data(args)
    if args.write and is_shipped_model(path):
        raise InputError(
            f"--write: {path} is the model shipped inside the package and is read-only; "
            "write a copy with --write-to COPY.pt"
        )
    default_log = Path("crf_search.json") if is_shipped_model(path) else path.with_name("crf_search.json")
    log_path = check_output_file(args.out or default_log, (".json",), "-o", [path])
    if args.write_to:
        check_output_file(args.write_to, (".pt",), "--write-to", [path])
    bars: dict = {}

    def progress(stage: str, done: int, total: int) -> None:
        if args.no_progress:
            return
        if stage not in bars:
            bars[stage] = tqdm(total=total, desc=stage, unit="img" if stage == "forward" else "crf")
        bar = bars[stage]
        bar.update(done - bar.n)
        if done == total:
            bar.close()

    log = crf_search(
        dataset,
        model_probs_fn(loaded),
        images=args.images,
        seed=args.seed,
        grid=grid,
        refine=not args.no_refine,
        max_extend=args.max_extend,
        iterations=args.iterations,
        current=loaded.crf,
        workers=args.workers,
        cache_dir=args.cache_dir,
        progress=progress,
    )
    log = {"model": str(path), "dataset": args.dataset, "split": args.split, **log}
    atomic_write(log_path, lambda f: f.write(json.dumps(log, indent=1)), mode="w")
    n = len(log["images"])
    print(f"{len(log['trials'])} settings on {n} images: DCNN mIoU {100 * log['dcnn']['miou']:.2f}")
    for name, t in log["baselines"].items():
        print(f"  {name:9s} {100 * t['miou']:.2f}  {_short(t['params'])}")
    print(f"  best      {100 * log['best_miou']:.2f}  {_short(log['best'])}")
    gap = log["top_two_gap"]
    print(
        f"  top two settings differ by {100 * gap['diff']:.2f} mIoU (bootstrap s.e. {100 * gap['se']:.2f} "
        f"over the {n} images)"
    )
    for ext in log["extensions"]:
        print(f"  the best lay on the grid's edge at {_short(ext['at'])}: grid extended")
    if log["best_on_grid_edge"]:
        print("  warning: the best setting still lies on the grid's edge; widen --grid or raise --max-extend")
    print(f"decision: {'use' if log['changed'] else 'keep'} {_short(log['chosen'])}: {log['reason']}")
    print(f"wrote {log_path}")
    if args.write or args.write_to:
        if args.write and not log["changed"] and loaded.crf == log["chosen"]:
            print(f"{path} already holds these parameters: not rewritten")
        else:
            target = write_crf_to_checkpoint(path, log["chosen"], log, out=args.write_to)
            print(f"stored the chosen CRF parameters in {target}")
    return 0


def _short(p: dict) -> str:
    """The CRF parameters of ``p`` that it holds (a grid point has only the searched ones), on one line."""
    return ", ".join(f"{k} {p[k]:g}" for k in ("bi_w", "bi_xy_std", "bi_rgb_std", "pos_w", "pos_xy_std") if k in p)
