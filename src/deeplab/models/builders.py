"""torchvision-style builders of the paper's variants, with optional trained weights, and their registry.

    model = deeplab_largefov(num_classes=21)                 # the paper's DeepLab-LargeFOV, fresh weights
    model = deeplab_largefov(weights="camvid")               # the shipped CamVid model (11 classes)
    model = get_model("deeplab-largefov-msc", weights="runs/voc/model.pt")
    labels = model.predict(images)                           # deeplab.models.inference.segment

``weights``: None (the paper's initialisation), "camvid" (the model shipped in the package) or a model file
(``model.pt`` or ``checkpoint.pt`` of a run, or a converted Caffe release). Architecture options left at None
follow the weights; given ones must agree with them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial

from deeplab.errors import InputError
from deeplab.models.checkpoint import load_model
from deeplab.models.deeplab import DeepLab, build_model
from deeplab.models.variants import list_models
from deeplab.preprocess import Preprocess

WEIGHTS = {"camvid": "default"}  # name -> load_model argument


def _build(
    arch: str,
    num_classes: int | None = None,
    weights: str | os.PathLike | None = None,
    *,
    width: float | None = None,
    batch_norm: bool | None = None,
    device=None,
) -> DeepLab:
    if weights is None:
        model = build_model(
            arch, 21 if num_classes is None else num_classes, 1.0 if width is None else width, bool(batch_norm)
        )
        model.preprocess = Preprocess()
        return model.to(device) if device is not None else model
    loaded = load_model(WEIGHTS.get(str(weights), weights), device=device)
    wanted = {"arch": arch, "num_classes": num_classes, "width": width, "batch_norm": batch_norm}
    have = loaded.model.config()
    bad = [f"{k}={v!r} (the weights have {have[k]!r})" for k, v in wanted.items() if v is not None and v != have[k]]
    if bad:
        raise InputError(f"weights {weights}: {', '.join(bad)}")
    return loaded.model


def _builder(arch: str) -> Callable[..., DeepLab]:
    fn = partial(_build, arch)
    fn.__doc__ = (
        f"The paper's {arch} (see deeplab.models.builders): ``(num_classes=None, weights=None, *, width=None, "
        "batch_norm=None, device=None)``."
    )
    return fn


def builder_name(arch: str) -> str:
    """Python name of an architecture's builder: deeplab -> deeplab_vgg16, deeplab-4x4-msc -> deeplab_4x4_msc."""
    return (
        arch.replace("deeplab", "deeplab_vgg16", 1).replace("-", "_")
        if arch in ("deeplab", "deeplab-msc")
        else arch.replace("-", "_")
    )


BUILDERS: dict[str, Callable[..., DeepLab]] = {builder_name(a): _builder(a) for a in list_models()}
ARCHS: dict[str, str] = {builder_name(a): a for a in list_models()}

deeplab_vgg16 = BUILDERS["deeplab_vgg16"]
deeplab_vgg16_msc = BUILDERS["deeplab_vgg16_msc"]
deeplab_4x4 = BUILDERS["deeplab_4x4"]
deeplab_4x4_msc = BUILDERS["deeplab_4x4_msc"]
deeplab_7x7 = BUILDERS["deeplab_7x7"]
deeplab_7x7_msc = BUILDERS["deeplab_7x7_msc"]
deeplab_largefov = BUILDERS["deeplab_largefov"]
deeplab_largefov_msc = BUILDERS["deeplab_largefov_msc"]


def list_builders() -> list[str]:
    """Builder names (deeplab_vgg16, deeplab_4x4, ..., deeplab_largefov_msc)."""
    return list(BUILDERS)


def get_model(name: str, **kwargs) -> DeepLab:
    """Build a model by builder name or architecture name ("deeplab_largefov" or "deeplab-largefov")."""
    key = name if name in BUILDERS else builder_name(name)
    if key not in BUILDERS:
        raise InputError(f"unknown model {name!r}; choose from {', '.join(BUILDERS)}")
    return BUILDERS[key](**kwargs)
