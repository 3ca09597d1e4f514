"""``deeplab segment INPUTS... -o OUTDIR [--model M] [--crf/--no-crf] [--overlay] [--save-probs npy|npz] ...``.

Writes ``OUTDIR/<name>.png`` (palette PNG of class ids, the model's colours) per input image (inputs: files and
folders; with --recursive, subfolders keep their layout under OUTDIR), with --overlay ``<name>_overlay.jpg``,
with --save-probs ``<name>_probs.npy|npz`` (float16 (C, h, w)), and with --summary a JSON file of every
image's size, seconds and class pixel fractions. Outputs are checked before any work (never an input file)
and written atomically. Exit code 0 when every image was segmented; 2 when an input is missing or an image
cannot be read (each named on stderr; the readable ones are still written).
"""

from __future__ import annotations

import argparse
import sys

from deeplab.commands.crf_flags import add_crf_flags, crf_flag_values

HELP = "segment images (files or folders) into palette PNG masks, with the fully connected CRF by default"
MAX_SIZE = 2048


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders of images")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument(
        "--model",
        default="default",
        help="'default' (the shipped model), or a model file: model.pt or checkpoint.pt of a run, "
        "a converted Caffe release",
    )
    p.add_argument(
        "--crf",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="refine with the dense CRF: the model's stored parameters or the defaults, changed by "
        "the flags below (default: on)",
    )
    add_crf_flags(p)
    p.add_argument("--overlay", action="store_true", help="also write <name>_overlay.jpg (mask blended over image)")
    p.add_argument(
        "--save-probs",
        choices=("npy", "npz"),
        default=None,
        help="also write the (CRF-refined) class probabilities, float16 (C, h, w), per image",
    )
    p.add_argument(
        "--summary",
        metavar="FILE.json",
        default=None,
        help="write a summary: per image size, seconds, class pixel fractions",
    )
    p.add_argument("--recursive", action="store_true", help="search input folders recursively")
    p.add_argument("--skip-existing", action="store_true", help="skip images whose outputs all exist already")
    p.add_argument(
        "--max-size",
        type=int,
        default=MAX_SIZE,
        metavar="PX",
        help=f"segment images larger than PX on their longer side at that size and upsample the "
        f"labels back to full size (bounds time and memory; 0 = no limit; default {MAX_SIZE})",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (the CRF then runs on the GPU too)")
    p.add_argument(
        "--backend",
        choices=("channels_last", "eager", "onnxruntime"),
        default="channels_last",
        help="CPU forward path (onnxruntime: exported once per model and cached on disk)",
    )
    p.add_argument("--batch-size", type=int, default=1, help="same-size images per forward pass (default 1)")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes for the CRF and the writing, overlapping the network (default: one per CPU core when "
        "the CRF runs on the CPU; 0 = everything inline, one image after the other)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads for the network (0: 1 beside CRF workers, else torch's default)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _check_numbers(args: argparse.Namespace) -> None:
    from deeplab.errors import InputError

    for flag, value, low in (
        ("--threads", args.threads, 0),
        ("--batch-size", args.batch_size, 1),
        ("--max-size", args.max_size, 0),
        ("--workers", args.workers, 0),
    ):
        if value is not None and value < low:
            raise InputError(f"{flag} must be >= {low}, got {value}")
    if 0 < args.max_size < 64:
        raise InputError(f"--max-size {args.max_size} is too small to segment anything (use 0 or >= 64)")


def run(args: argparse.Namespace) -> int:
    """Plan and check every output, then segment (under torchrun: each process every N-th image)."""
    from deeplab.engine import distributed as D
    from deeplab.engine import segment as pipeline
    from deeplab.errors import InputError
    from deeplab.outputs import check_output_dir, check_output_file

    _check_numbers(args)
    out = check_output_dir(args.out, "-o")
    summary_path = check_output_file(args.summary, (".json",), "--summary") if args.summary else None
    found, errors = pipeline.find_images(args.inputs, args.recursive)
    jobs = pipeline.plan_jobs(found, out, args.overlay, args.save_probs)
    skipped = 0
    if args.skip_existing:
        todo = [j for j in jobs if not all(p.is_file() for p in j.outputs())]
        skipped, jobs = len(jobs) - len(todo), todo
    if not jobs:
        for message in errors:
            print(f"deeplab segment: error: {message}", file=sys.stderr)
        if skipped or not errors:  # not when every input was missing or unreadable: the errors say it all
            print(f"deeplab segment: nothing to do ({skipped} image(s) already segmented in {out})")
        return 2 if errors else 0

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = torch.device(args.device)
    except RuntimeError as e:
        raise InputError(f"--device {args.device!r}: {e}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {args.device}: CUDA is not available here")
    env = D.setup(device.type)  # cuda under torchrun: each process's local GPU
    try:
        if env.is_main:
            for message in errors:
                print(f"deeplab segment: error: {message}", file=sys.stderr)
        if env.distributed:
            jobs, device = [jobs[i] for i in D.shard(len(jobs), env)], env.device
        return _segment(args, jobs, errors, skipped, device, env, summary_path, out)
    finally:
        D.cleanup(env, wait_for_all=True)


def _segment(args, jobs, errors, skipped, device, env, summary_path, out) -> int:
    """This process's share: model, CRF function, pipeline, then (rank 0) the report and summary."""
    import functools
    import os

    import torch

    from deeplab.crf import CRFParams, dense_crf
    from deeplab.engine import distributed as D
    from deeplab.engine import segment as pipeline
    from deeplab.errors import InputError
    from deeplab.models import load_model
    from deeplab.models.predict import predict_batch

    loaded = load_model(args.model, device=device)
    crf_params = None
    if args.crf:
        try:
            crf_params = CRFParams.from_dict({**(loaded.crf or {}), **crf_flag_values(args)})
        except (TypeError, ValueError) as e:
            raise InputError(f"CRF flags: {e}") from None
    on_gpu = device.type != "cpu"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = args.workers if args.workers is not None else (cores if crf_params and cores > 1 else 0)
    if on_gpu:
        workers = 0  # the CRF runs on the GPU in this process
    if workers and not args.threads:
        torch.set_num_threads(1)  # the workers take the other cores
    if crf_params is None:
        crf_fn = None
    elif on_gpu:
        from deeplab.models.inference import refine_with_crf

        def crf_fn(image, probs):
            return refine_with_crf([image], torch.from_numpy(probs)[None].to(device), crf_params)[0].cpu().numpy()
    else:
        crf_fn = functools.partial(dense_crf, params=crf_params, threads=1)

    def probs_fn(images):
        return list(predict_batch(loaded.model, images, loaded.preprocess, args.backend).cpu().numpy())

    from tqdm import tqdm

    palette = loaded.palette if len(loaded.palette) else None
    with tqdm(
        total=len(jobs),
        disable=args.no_progress or not jobs or not env.is_main,
        desc="segment",
        unit="img",
        dynamic_ncols=True,
    ) as bar:
        result = pipeline.run(
            jobs,
            probs_fn,
            crf_fn=crf_fn,
            palette=palette,
            classes=loaded.classes,
            max_size=args.max_size,
            batch_size=args.batch_size,
            workers=workers,
            progress=bar.update,
        )
    if env.distributed:
        result = pipeline.SegmentResult(
            D.gather_lists(result.records, env),
            D.gather_lists(result.failed, env),
            D.gather_lists(result.resized, env),
            max(D.gather_lists([result.seconds], env)),
        )
        if not env.is_main:
            return 2 if result.failed or errors else 0
    for line in result.resized:
        print(
            f"deeplab segment: {line}: segmented at --max-size {args.max_size}, labels upsampled to full size",
            file=sys.stderr,
        )
    if summary_path is not None:
        pipeline.write_summary(
            summary_path,
            result,
            {
                "model": str(args.model),
                "crf": crf_params.to_dict() if crf_params else None,
                "backend": args.backend,
                "device": str(device),
                "workers": workers,
                "skipped_existing": skipped,
            },
        )
    done = len(result.records)
    rate = f", {done / result.seconds:.2f} images/s" if done and result.seconds > 0 else ""
    print(
        f"deeplab segment: {done} of {done + len(result.failed)} images segmented into {out}"
        f" ({'with' if crf_params else 'without'} CRF{rate})" + (f"; {skipped} skipped (existing)" if skipped else "")
    )
    for message in result.failed:
        print(f"deeplab segment: error: {message}", file=sys.stderr)
    if result.failed or errors:
        print(
            f"deeplab segment: error: {len(result.failed) + len(errors)} input(s) could not be segmented",
            file=sys.stderr,
        )
        return 2
    return 0
