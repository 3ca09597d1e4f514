"""``deeplab crf-search --checkpoint M.pt --dataset camvid --data ROOT --split val [--images 100] [--write]``."""

from __future__ import annotations

import argparse
import json

from deeplab.commands.evaluate import add_data_arguments, json_object_arg

HELP = "search the dense CRF's parameters (w1, sigma_alpha, sigma_beta) coarse-to-fine on held-out images"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_arguments(p, "val")
    p.add_argument("--images", type=int, default=100, help="held-out images drawn from the split (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the image draw (default 0)")
    p.add_argument("--grid", default=None, metavar="JSON",
                   help='coarse grid at VOC scale as a JSON object or file, e.g. {"bi_w": [3, 4, 5, 6], '
                        '"bi_xy_std": [40, 60, 80, 100, 120], "bi_rgb_std": [3, 4, 5, 6]} (this is the default)')
    p.add_argument("--no-refine", action="store_true", help="coarse stage only")
    p.add_argument("--no-scale", action="store_true", help="do not scale sigma_alpha by image size")
    p.add_argument("--iterations", type=int, default=None, help="mean-field iterations (default 10)")
    p.add_argument("--cache-dir", default=None, help="where to cache the float16 probabilities (default: temp dir)")
    p.add_argument("-o", "--out", default=None, metavar="LOG.json",
                   help="search log (default: crf_search.json beside the model file)")
    p.add_argument("--write", action="store_true", help="store the best parameters in the model file's CRF config")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from deeplab.commands.evaluate import open_model_and_data
    from deeplab.engine.crf_search import crf_search, write_crf_to_checkpoint
    from deeplab.engine.evaluate import model_probs_fn
    from deeplab.io import atomic_write

    grid = json_object_arg(args.grid, "--grid") if args.grid else None
    path, loaded, dataset = open_model_and_data(args)
    bars: dict = {}

    def progress(stage: str, done: int, total: int) -> None:
        if args.no_progress:
            return
        if stage not in bars:
            bars[stage] = tqdm(total=total, desc=stage, unit="img")
        bar = bars[stage]
        bar.update(done - bar.n)
        if done == total:
            bar.close()

    probs_fn = model_probs_fn(loaded)
    log = crf_search(dataset, probs_fn, images=args.images, seed=args.seed, grid=grid,
                     refine=not args.no_refine, scale_spatial=not args.no_scale, iterations=args.iterations,
                     workers=args.workers, cache_dir=args.cache_dir, progress=progress)
    log = {"checkpoint": str(path), "dataset": args.dataset, "split": args.split, **log}
    out = Path(args.out) if args.out else path.with_name("crf_search.json")
    atomic_write(out, lambda f: f.write(json.dumps(log, indent=1)), mode="w")
    print(f"{len(log['trials'])} settings on {len(log['images'])} images: DCNN mIoU {100 * log['dcnn']['miou']:.2f}, "
          f"best CRF mIoU {100 * log['best_miou']:.2f} with {json.dumps(log['best'])}")
    print(f"wrote {out}")
    if args.write:
        write_crf_to_checkpoint(path, log["best"], log)
        print(f"stored the best CRF parameters in {path}")
    return 0
