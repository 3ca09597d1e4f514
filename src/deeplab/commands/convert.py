"""``deeplab convert``: a released Caffe DeepLab .caffemodel -> a deeplab checkpoint."""

from __future__ import annotations

import argparse

HELP = "convert a Caffe DeepLab .caffemodel into a deeplab checkpoint (.pt)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from deeplab.models.variants import list_models

    parser.add_argument("caffemodel", help="binary .caffemodel (V1 `layers` or V2 `layer` format)")
    parser.add_argument("-o", "--output", required=True, help="checkpoint to write (.pt)")
    parser.add_argument(
        "--arch",
        default="deeplab-largefov",
        choices=list_models(),
        help="network the weights belong to (fc6 kernel/rate are not in the weights)",
    )
    parser.add_argument(
        "--classes",
        default=None,
        help="voc, camvid, a comma-separated list, or a text file with one name per line "
        "(default: voc for 21 classes, else class0, class1, ...)",
    )


def class_names_and_palette(spec: str | None, num_classes: int):
    """(names, (K, 3) uint8 palette) for --classes."""
    from pathlib import Path

    from deeplab.data.camvid import CAMVID_CLASSES, CAMVID_PALETTE
    from deeplab.data.palette import voc_palette
    from deeplab.data.voc import VOC_CLASSES
    from deeplab.errors import InputError

    if spec is None:
        spec = "voc" if num_classes == len(VOC_CLASSES) else None
    if spec == "voc":
        names, palette = list(VOC_CLASSES), voc_palette(len(VOC_CLASSES))
    elif spec == "camvid":
        names, palette = list(CAMVID_CLASSES), CAMVID_PALETTE
    elif spec is None:
        names, palette = [f"class{i}" for i in range(num_classes)], voc_palette(num_classes)
    else:
        path = Path(spec)
        names = [s.strip() for s in (path.read_text().splitlines() if path.is_file() else spec.split(","))]
        names = [s for s in names if s]
        palette = voc_palette(len(names))
    if len(names) != num_classes:
        raise InputError(f"--classes {spec}: {len(names)} names but the net has {num_classes} classes")
    return names, palette


def run(args: argparse.Namespace) -> int:
    from deeplab.models.caffe_import import import_caffemodel
    from deeplab.models.checkpoint import save_model
    from deeplab.preprocess import Preprocess

    model, naming = import_caffemodel(args.caffemodel, args.arch)
    names, palette = class_names_and_palette(args.classes, model.num_classes)
    extra = {
        "caffe": {
            "source": str(args.caffemodel),
            "fc8": naming.fc8,
            "msc_suffix": naming.msc_suffix,
            "v1": naming.v1,
            "legacy_shape": naming.legacy_shape,
        }
    }
    path = save_model(args.output, model, classes=names, palette=palette, preprocess=Preprocess(), extra=extra)
    print(
        f"wrote {path}: {args.arch}, {model.num_classes} classes, width {model.width:g}, "
        f"{sum(p.numel() for p in model.parameters()):,} parameters"
    )
    return 0
