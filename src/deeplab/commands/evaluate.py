"""``deeplab evaluate --checkpoint M.pt --dataset camvid --data ROOT --split test [--crf] [--trimap] -o OUT``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from deeplab.commands.crf_flags import add_crf_flags, crf_flag_values

HELP = "score a model on a data set: IoU, accuracies, optional CRF and boundary trimap (paper Fig. 5)"



def add_data_arguments(p: argparse.ArgumentParser, default_split: str) -> None:
    """--checkpoint/--model, --dataset, --data, --split, --workers (shared with crf-search)."""
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", metavar="M.pt", help="model file (written by `deeplab train` / save_model)")
    which.add_argument("--model", metavar="NAME", help="'default' for the shipped model, or a model file")
    p.add_argument("--dataset", required=True, help="data set format: voc, sbd, camvid or folder")
    p.add_argument("--data", required=True, metavar="ROOT", help="data set root folder")
    p.add_argument("--split", default=default_split, help=f"split to use (default {default_split})")
    p.add_argument("--workers", type=int, default=2, help="worker processes for CRF and metrics (0 = inline; default 2)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_arguments(p, "val")
    p.add_argument("--crf", action="store_true", help="also score the fully connected CRF's refinement")
    p.add_argument("--crf-params", metavar="JSON", default=None,
                   help="CRF parameters as a JSON object or file (default: the checkpoint's, else the CRF defaults)")
    add_crf_flags(p)
    p.add_argument("--trimap", type=int, nargs="?", const=40, default=0, metavar="W",
                   help="boundary trimap scores for band widths 1..W px (default W 40)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="first N images only")
    p.add_argument("-o", "--out", required=True, metavar="OUTDIR", help="writes metrics.json (and trimap.png)")
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
        raise InputError(f"{flag}: expected a JSON object, e.g. {{\"bi_w\": 4}}")
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

    path = resolve_model_path(args.model) if args.model else Path(args.checkpoint)
    loaded = load_model(path)
    dataset = build_dataset(args.dataset, args.data, args.split)
    if loaded.model.num_classes != dataset.num_classes:
        raise InputError(f"{path}: model has {loaded.model.num_classes} classes, data set "
                         f"{args.dataset} has {dataset.num_classes}")
    return path, loaded, dataset


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from deeplab.engine.evaluate import evaluate, format_table, model_probs_fn, run_backend
    from deeplab.engine.trimap import plot_trimap
    from deeplab.errors import InputError
    from deeplab.io import atomic_write

    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be >= 1, got {args.limit}")
    path, loaded, dataset = open_model_and_data(args)
    params = crf_params_from_args(args, loaded.crf) if args.crf else None
    total = len(dataset) if args.limit is None else min(args.limit, len(dataset))
    probs_fn = model_probs_fn(loaded, backend=run_backend(total))
    with tqdm(total=total, disable=args.no_progress, desc="evaluate", unit="img") as bar:
        result = evaluate(dataset, probs_fn, crf=args.crf, crf_params=params,
                          trimap_width=args.trimap, limit=args.limit, workers=args.workers,
                          progress=lambda done, _: bar.update(done - bar.n))
    summary = {"checkpoint": str(path), "dataset": args.dataset, "split": args.split, **result.to_json()}
    out = Path(args.out)
    atomic_write(out / "metrics.json", lambda f: f.write(json.dumps(summary, indent=1)), mode="w")
    print(format_table(summary))
    written = [out / "metrics.json"]
    if args.trimap:
        written.append(plot_trimap(summary["trimap"], out / "trimap.png",
                                   title=f"{args.dataset} {args.split}: {result.n_images} images"))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0
