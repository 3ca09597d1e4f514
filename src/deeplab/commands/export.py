"""``deeplab export``: a deeplab checkpoint -> ONNX (checked against torch with onnxruntime)."""

from __future__ import annotations

import argparse

HELP = "export a deeplab checkpoint's network to ONNX (image -> stride-8 logits)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint", help="model file: 'default', model.pt or checkpoint.pt of a run, a converted Caffe model"
    )
    parser.add_argument("-o", "--output", required=True, help="ONNX file to write")
    parser.add_argument("--size", type=int, default=321, help="example input side used for tracing (8k+1)")
    parser.add_argument(
        "--static", action="store_true", help="fixed 1 x 3 x size x size input instead of dynamic B/H/W"
    )
    parser.add_argument("--no-check", action="store_true", help="skip the onnxruntime vs torch comparison")


def run(args: argparse.Namespace) -> int:
    import torch

    from deeplab.errors import InputError
    from deeplab.models.checkpoint import load_model
    from deeplab.models.deeplab import aligned_size
    from deeplab.outputs import check_output_file

    check_output_file(args.output, (".onnx",), "-o", [args.checkpoint])
    if args.size < 9:
        raise InputError(f"--size must be >= 9, got {args.size}")
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401

        from deeplab.models.onnx_export import OnnxRunner, export_onnx
    except ImportError as e:
        raise InputError(
            f"deeplab export needs the onnx extra ({e.name} is missing): pip install 'deeplab-v1[onnx]'"
        ) from None
    loaded = load_model(args.checkpoint)
    path = export_onnx(loaded.model, args.output, example_size=args.size, dynamic=not args.static)
    side = aligned_size(args.size)
    msg = f"wrote {path} ({loaded.arch}, input image: B x 3 x H x W"
    msg += ", H and W of the form 8k+1)" if not args.static else f" = 1 x 3 x {side} x {side})"
    print(msg)
    if not args.no_check:
        x = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(0)) * 50
        with torch.inference_mode():
            ref = loaded.model(x)
        diff = float((OnnxRunner(path)(x) - ref).abs().max())
        scale = float(ref.abs().max())
        print(f"onnxruntime vs torch on a {side}x{side} input: max |diff| {diff:.2e} (max |logit| {scale:.2e})")
        if diff > 1e-3 * max(1.0, scale):
            print("error: onnxruntime output disagrees with torch")
            return 1
    print("input: the Preprocess recorded in the checkpoint:", loaded.preprocess.to_dict())
    return 0
