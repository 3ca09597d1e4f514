"""``deeplab evaluate --model M.pt --dataset camvid --data ROOT --split test [--crf] [--trimap] -o OUT``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from deeplab.commands.crf_flags import add_crf_flags, crf_flag_values

HELP = "score a model on a data set: IoU, accuracies, optional CRF and boundary trimap (paper Fig. 5)"


def add_data_arguments(p: argparse.ArgumentParser, default_split: str) -> None:
    """--checkpoint/--model, --dataset, --data, --split, --workers (shared with crf-search)."""
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--model",
        metavar="M",
        help="'default' (the shipped model) or a model file: model.pt or the "
        "checkpoint.pt of a run (also interrupted), a converted Caffe release",
    )
    which.add_argument("--checkpoint", metavar="M.pt", help="the same as --model M.pt")
    p.add_argument("--dataset", required=True, help="data set format: voc, sbd, camvid or folder")
    p.add_argument("--data", required=True, metavar="ROOT", help="data set root folder")
    p.add_argument("--split", default=default_split, help=f"split to use (default {default_split})")
    p.add_argument(
        "--workers", type=int, default=2, help="worker processes for CRF and metrics (0 = inline; default 2)"
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_arguments(p, "val")
    p.add_argument("--crf", action="store_true", help="also score the fully connected CRF's refinement")
    p.add_argument(
        "--crf-params",
        metavar="JSON",
        default=None,
        help="CRF parameters as a JSON object or file (default: the checkpoint's, else the CRF defaults)",
    )
    add_crf_flags(p)
    p.add_argument(
        "--trimap",
        type=int,
        nargs="?",
        const=40,
        default=0,
        metavar="W",
        help="boundary trimap scores for band widths 1..W px (default W 40)",
    )
    p.add_argument("--limit", type=int, default=None, metavar="N", help="first N images only")
    p.add_argument("-o", "--out", required=True, metavar="OUTDIR", help="writes metrics.json (and trimap.png)")
    p.add_argument(
        "--device",
        default="cpu",
        help="cpu, cuda or cuda:N for the network (under torchrun: cuda means each process's local GPU)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def json_object_arg(text: str, flag: str) -> dict:
    """A JSON object given inline ('{...}') or as a file path; InputError naming ``flag`` otherwise."""
    from deeplab.errors import InputError

    if not text.lstrip().startswith("{"):
        if not Path(text).is_file():
            raise InputError(f"{flag}: neither a JSON object nor a file: {text}")
        text = Path(text).read_text()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{flag}: invalid JSON ({e})") from e
    if not isinstance(value, dict):
        raise InputError(f'{flag}: expected a JSON object, e.g. {{"bi_w": 4}}')
    return value


def crf_params_from_args(args: argparse.Namespace, checkpoint_crf: dict | None):
    """CRFParams: the checkpoint's (or defaults), updated by --crf-params JSON (text or file), then by flags."""
    from deeplab.crf import CRFParams
    from deeplab.errors import InputError

    values = dict(checkpoint_crf or {})
    if args.crf_params:
        values.update(json_object_arg(args.crf_params, "--crf-params"))
    values.update(crf_flag_values(args))
    try:
        return CRFParams.from_dict(values)
    except (TypeError, ValueError) as e:
        raise InputError(f"bad CRF parameters {values}: {e}") from e


def open_model_and_data(args: argparse.Namespace):
    """(model path, LoadedModel, dataset) with matching class counts."""
    from deeplab.data import build_dataset
    from deeplab.errors import InputError
    from deeplab.models import load_model
    from deeplab.weights import resolve_model_path

    path = resolve_model_path(args.model or args.checkpoint)
    loaded = load_model(path)
    dataset = build_dataset(args.dataset, args.data, args.split)
    if loaded.model.num_classes != dataset.num_classes:
        raise InputError(
            f"{path}: model has {loaded.model.num_classes} classes, data set {args.dataset} has {dataset.num_classes}"
        )
    return path, loaded, dataset


def run(args: argparse.Namespace) -> int:
    """Under torchrun (WORLD_SIZE > 1) each process scores every N-th image and the integer confusion matrices
    are summed over the processes: the same metrics as one process; rank 0 writes the files."""
    from tqdm import tqdm

    from deeplab.engine import distributed as D
    from deeplab.engine.evaluate import evaluate, format_table, model_probs_fn
    from deeplab.engine.plots import PLOTS_EXTRA, plotting_available
    from deeplab.engine.trimap import plot_trimap
    from deeplab.errors import InputError
    from deeplab.io import atomic_write
    from deeplab.outputs import check_output_dir

    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be >= 1, got {args.limit}")
    if args.workers < 0:
        raise InputError(f"--workers must be >= 0, got {args.workers}")
    out = check_output_dir(args.out, "-o")
    path, loaded, dataset = open_model_and_data(args)
    params = crf_params_from_args(args, loaded.crf) if args.crf else None
    env = D.setup(args.device.split(":")[0])
    try:
        loaded.model.to(env.device)
        total = len(dataset) if args.limit is None else min(args.limit, len(dataset))
        with tqdm(
            total=len(D.shard(total, env)), disable=args.no_progress or not env.is_main, desc="evaluate", unit="img"
        ) as bar:
            result = evaluate(
                dataset,
                model_probs_fn(loaded),
                crf=args.crf,
                crf_params=params,
                trimap_width=args.trimap,
                limit=args.limit,
                workers=args.workers,
                progress=lambda done, _: bar.update(done - bar.n),
                shard=(env.rank, env.world_size),
            )
        if env.distributed:
            result = _sum_shards(result, env, len(dataset.classes), args.trimap)
    finally:
        D.cleanup(env, wait_for_all=True)
    if not env.is_main:
        return 0
    summary = {"checkpoint": str(path), "dataset": args.dataset, "split": args.split, **result.to_json()}
    atomic_write(out / "metrics.json", lambda f: f.write(json.dumps(summary, indent=1)), mode="w")
    print(format_table(summary))
    written = [out / "metrics.json"]
    if args.trimap and plotting_available():
        title = f"{args.dataset} {args.split}: {result.n_images} images"
        written.append(plot_trimap(summary["trimap"], out / "trimap.png", title=title))
    elif args.trimap:
        print(f"deeplab evaluate: matplotlib is not installed: no trimap.png ({PLOTS_EXTRA})", file=sys.stderr)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _sum_shards(result, env, num_classes: int, trimap: int):
    """One EvalResult from every rank's: confusions and counts summed, image names in data set order."""
    import numpy as np

    from deeplab.engine import distributed as D
    from deeplab.engine.evaluate import EvalResult

    shapes = {
        "conf": (num_classes,) * 2,
        "conf_crf": (num_classes,) * 2,
        "bands": (trimap, num_classes, num_classes),
        "bands_crf": (trimap, num_classes, num_classes),
    }
    merged = EvalResult(result.classes, crf_params=result.crf_params)
    for key, shape in shapes.items():
        if (key.startswith("bands") and not trimap) or (key.endswith("_crf") and result.crf_params is None):
            continue
        mine = getattr(result, key)
        setattr(merged, key, D.sum_over_ranks(np.zeros(shape, np.int64) if mine is None else mine, env))
    merged.n_images = int(D.sum_over_ranks(np.array([result.n_images]), env)[0])
    names = D.gather_lists([(env.rank + env.world_size * k, n) for k, n in enumerate(result.names)], env)
    merged.names = [n for _, n in sorted(names)]
    return merged
