"""``deeplab segment INPUTS... -o OUTDIR [--model PATH|default] [--crf/--no-crf] [--overlay]``.

Writes ``OUTDIR/<name>.png`` (palette PNG of class ids, the model's colours) per input image and, with
--overlay, ``OUTDIR/<name>_overlay.jpg``. Exit code 0 when every image was segmented; 2 when an input is
missing or an image cannot be read (each named on stderr; the readable ones are still written).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "segment images (files or folders) into palette PNG masks, with the fully connected CRF by default"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders of images (not recursive)")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--model", default="default",
                   help="model file written by `deeplab train`, or 'default' for the shipped model (default)")
    p.add_argument("--crf", action=argparse.BooleanOptionalAction, default=True,
                   help="refine with the dense CRF, using the model's stored CRF parameters or the defaults "
                        "(default: on)")
    p.add_argument("--overlay", action="store_true", help="also write <name>_overlay.jpg (mask blended over image)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")


def collect_images(inputs: list[str]) -> list[Path]:
    """Input files as given, plus the image files (by suffix, sorted) of input folders.

    InputError for a missing input, an empty folder, or two inputs that would write the same <name>.png.
    """
    from deeplab.data.images import IMAGE_SUFFIXES
    from deeplab.errors import InputError

    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise InputError(f"{path}: folder has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(f"input not found: {path}")
    seen: dict[str, Path] = {}
    for f in files:
        if f.stem in seen:
            raise InputError(f"{seen[f.stem]} and {f} would both be written as {f.stem}.png")
        seen[f.stem] = f
    return files


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from PIL import Image

    from deeplab.crf import CRFParams, dense_crf
    from deeplab.data.images import load_rgb
    from deeplab.data.palette import overlay, save_label_png
    from deeplab.errors import InputError
    from deeplab.models import load_model, predict
    from deeplab.weights import resolve_model_path

    if args.threads:
        torch.set_num_threads(args.threads)
    files = collect_images(args.inputs)
    loaded = load_model(resolve_model_path(args.model))
    crf_params = (CRFParams.from_dict(loaded.crf) if loaded.crf else CRFParams()) if args.crf else None
    palette = loaded.palette if len(loaded.palette) else None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = []
    for path in files:
        try:
            image = load_rgb(path)
        except InputError as e:
            print(f"deeplab segment: error: {e}", file=sys.stderr)
            failed.append(path)
            continue
        probs = predict(loaded.model, image, loaded.preprocess)
        if crf_params is not None:
            probs = dense_crf(image, probs, crf_params)
        labels = probs.argmax(0).astype(np.uint8)
        save_label_png(out / f"{path.stem}.png", labels, palette)
        if args.overlay:
            Image.fromarray(overlay(image, labels, palette)).save(out / f"{path.stem}_overlay.jpg", quality=90)
    done = len(files) - len(failed)
    print(f"deeplab segment: {done} of {len(files)} images segmented into {out}"
          f" ({'with' if crf_params else 'without'} CRF)")
    if failed:
        print(f"deeplab segment: error: could not read {len(failed)} image(s): {', '.join(map(str, failed))}",
              file=sys.stderr)
        return 2
    return 0
