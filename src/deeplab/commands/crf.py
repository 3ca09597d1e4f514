"""``deeplab crf IMAGE (--probs P.npy | --labels MASK.png [--gt-prob P]) -o OUT.png [--overlay O.png]``.

Refines a coarse segmentation with the fully connected CRF and writes a palette PNG. The coarse input
is either class probabilities (L, H, W) in a .npy file (e.g. a DCNN's softmax) or a mask: a label
PNG (palette/greyscale values are labels; --unknown marks "no label", default 255) or a colour
annotation (distinct colours are labels, black unknown, as in the classic dense-CRF demo).
"""

from __future__ import annotations

import argparse

from deeplab.commands.crf_flags import add_crf_flags, crf_flag_values

HELP = "refine a coarse mask or probability map with the fully connected CRF"
MAX_SIZE = 2048

PRESETS = {
    "deeplab": {},  # CRFParams defaults: DeepLab-LargeFOV
    "densecrf-demo": {
        "bi_w": 10.0,
        "bi_xy_std": 80.0,
        "bi_rgb_std": 13.0,
        "pos_w": 3.0,
        "pos_xy_std": 3.0,
        "iterations": 5,
        "normalization": "NORMALIZE_SYMMETRIC",
    },
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", metavar="IMAGE", help="RGB image (grey/RGBA files are converted to RGB)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--probs", metavar="FILE.npy", help="class probabilities (L, H, W) float, summing to 1 over L")
    src.add_argument("--labels", metavar="MASK.png", help="coarse label PNG or colour annotation")
    p.add_argument(
        "--gt-prob",
        type=float,
        default=0.7,
        metavar="P",
        help="--labels: confidence of a labelled pixel, in (1/L, 1) for L labels (default 0.7)",
    )
    p.add_argument(
        "--unknown",
        default="255",
        metavar="V",
        help="--labels (label PNG): value meaning 'no label' ('none' for none; e.g. 0 for the "
        "classic 0 = unsure convention; default 255, VOC's void)",
    )
    p.add_argument(
        "--num-labels",
        type=int,
        default=None,
        metavar="L",
        help="--labels (label PNG): labels are 0..L-1 (default: the values present in the mask)",
    )
    p.add_argument("-o", "--out", required=True, metavar="OUT.png", help="refined labels (palette PNG)")
    p.add_argument("--overlay", metavar="OUT2.png", help="also write the labels blended over the image")
    p.add_argument("--save-probs", metavar="Q.npy", help="also write the refined probabilities (L, H, W) float32")
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="deeplab",
        help="parameter set: deeplab (DeepLab-LargeFOV, default) or densecrf-demo "
        "(Kraehenbuehl & Koltun's label-refinement demo); the flags below override it",
    )
    add_crf_flags(p)
    p.add_argument(
        "--normalization",
        default=None,
        choices=["NO_NORMALIZATION", "NORMALIZE_BEFORE", "NORMALIZE_AFTER", "NORMALIZE_SYMMETRIC"],
        help="kernel normalisation (deeplab preset: NORMALIZE_AFTER)",
    )
    p.add_argument("--threads", type=int, default=None, help="CPU threads, >= 1 (default: all)")
    p.add_argument(
        "--skip-tolerance",
        type=float,
        default=None,
        metavar="P",
        help="the middle iterations leave a pixel as it is until its probabilities may have moved by more than "
        "P (default: deeplab.crf's, 1e-3; 0 updates every pixel in every iteration)",
    )
    p.add_argument(
        "--max-size",
        type=int,
        default=MAX_SIZE,
        metavar="PX",
        help=f"refine images larger than PX on their longer side at that size (image and coarse input "
        f"shrunk), then upsample the labels to full size; --save-probs keeps the working size "
        f"(0 = no limit; default {MAX_SIZE})",
    )


def _params(args):
    from deeplab.crf import CRFParams

    values = {**PRESETS[args.preset], **crf_flag_values(args)}
    if args.normalization:
        values["normalization"] = args.normalization
    return CRFParams.from_dict(values)


def _shrink_maps(maps, size: tuple[int, int]):
    """(L, H, W) float maps -> (L, h, w) by area averaging (probabilities stay normalised)."""
    import numpy as np
    from PIL import Image

    h, w = size
    if maps.shape[1:] == (h, w):
        return maps
    out = np.stack(
        [
            np.asarray(Image.fromarray(np.ascontiguousarray(m, np.float32)).resize((w, h), Image.Resampling.BOX))
            for m in maps
        ]
    )
    return out / out.sum(0, keepdims=True)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from deeplab.crf import dense_crf, dense_crf_unary, unary_from_labels
    from deeplab.crf.annotation import read_annotation
    from deeplab.crf.meanfield import SKIP_TOLERANCE, check_skip_tolerance
    from deeplab.data.images import load_rgb
    from deeplab.data.palette import overlay, save_label_png, voc_palette
    from deeplab.errors import InputError
    from deeplab.io import atomic_write
    from deeplab.outputs import check_output_file
    from deeplab.resize import fit_within, fitted_size, upsampled_labels

    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads must be >= 1, got {args.threads}")
    if args.max_size < 0 or 0 < args.max_size < 16:
        raise InputError(f"--max-size must be 0 (no limit) or >= 16, got {args.max_size}")
    skip_tolerance = SKIP_TOLERANCE
    if args.skip_tolerance is not None:
        try:
            skip_tolerance = check_skip_tolerance(args.skip_tolerance)
        except InputError as e:
            raise InputError(f"--skip-tolerance: {e}") from None
    inputs = [args.image, args.probs or args.labels]
    check_output_file(args.out, (".png",), "-o", inputs)
    if args.overlay:
        check_output_file(args.overlay, (".png", ".jpg", ".jpeg"), "--overlay", inputs)
    if args.save_probs:
        check_output_file(args.save_probs, (".npy",), "--save-probs", inputs)
    params = _params(args)
    full_image = load_rgb(args.image)
    h, w = full_image.shape[:2]
    work = fitted_size(h, w, args.max_size)
    image = fit_within(full_image, args.max_size)
    if args.probs:
        try:
            probs = np.load(args.probs, allow_pickle=False, mmap_mode="r")
        except FileNotFoundError:
            raise InputError(f"--probs file not found: {args.probs}") from None
        except Exception as e:
            raise InputError(f"--probs {args.probs}: cannot read a .npy array ({e})") from e
        if probs.ndim == 3 and probs.shape[1:] == (h, w) and work != (h, w):
            probs = _shrink_maps(probs, work)
        try:
            q = dense_crf(image, np.asarray(probs), params, threads=args.threads, skip_tolerance=skip_tolerance)
        except InputError as e:
            raise InputError(f"--probs {args.probs}: {e}") from None
        values, palette = np.arange(q.shape[0]), voc_palette()[: min(q.shape[0], 256)]
    else:
        if not 0 < args.gt_prob < 1:
            raise InputError(f"--gt-prob must lie in (0, 1), got {args.gt_prob}")
        unknown = None if args.unknown.lower() == "none" else args.unknown
        try:
            unknown = None if unknown is None else int(unknown)
        except ValueError:
            raise InputError(f"--unknown must be an integer or 'none', got {args.unknown!r}") from None
        ann = read_annotation(args.labels, unknown, args.num_labels)
        if ann.index.shape != (h, w):
            raise InputError(f"--labels {args.labels} is {ann.index.shape} (H, W) but {args.image} is {(h, w)}")
        if args.gt_prob <= 1 / len(ann.classes):
            raise InputError(
                f"--gt-prob {args.gt_prob} carries no information with {len(ann.classes)} labels: "
                f"use a value above 1/{len(ann.classes)}"
            )
        index = ann.index
        if work != (h, w):  # nearest neighbour keeps label values (and -1 = unknown)
            index = np.asarray(Image.fromarray(index.astype(np.int32)).resize(work[::-1], Image.Resampling.NEAREST))
        unary = unary_from_labels(index, len(ann.classes), args.gt_prob, unknown=-1)
        q = dense_crf_unary(image, unary, params, threads=args.threads, skip_tolerance=skip_tolerance)
        values, palette = ann.classes, ann.palette
    index = upsampled_labels(q, (h, w)).astype(np.int64)
    if args.labels and ann.is_colour:
        labels, out_palette = index, palette
    else:
        if values.max() > 255:
            raise InputError(f"labels up to {values.max()} do not fit a palette PNG (0-255)")
        labels, out_palette = values[index], None
    if work != (h, w):
        print(
            f"deeplab crf: {args.image} is {w}x{h}: refined at {work[1]}x{work[0]} (--max-size {args.max_size}), "
            "labels upsampled to full size"
        )
    save_label_png(args.out, labels.astype(np.uint8), out_palette)
    if args.overlay:
        mixed = overlay(full_image, labels, out_palette)
        fmt = "PNG" if Path(args.overlay).suffix.lower() == ".png" else "JPEG"
        atomic_write(args.overlay, lambda f: Image.fromarray(mixed).save(f, format=fmt))
    if args.save_probs:
        atomic_write(args.save_probs, lambda f: np.save(f, q))
    return 0
