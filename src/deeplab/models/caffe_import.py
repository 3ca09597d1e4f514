"""Released Caffe DeepLab nets <-> our DeepLab state dict.

Layer names (released DeepLab v1 prototxts): conv1_1 ... conv5_3, fc6, fc7, and the classifier fc8_<dataset>
(fc8_voc12 for the VOC nets). Each is a Convolution with blobs [weight (O, I, kh, kw), bias (O,) or legacy
(1, 1, 1, O)]. MSc branches: `<tap>_conv` (128 3x3), `<tap>_fc` (128 1x1) and the score conv `<tap>_ms`
(optionally `<tap>_ms_<suffix>`) for tap in data, pool1..pool4 -- see the README for where these names come from.
Caffe's pooling/conv geometry is identical to ours, so imported nets give the Caffe outputs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from deeplab.errors import InputError
from deeplab.models.caffe_proto import Blob, Layer, Net, read_caffemodel
from deeplab.models.deeplab import DeepLab, build_model
from deeplab.models.msc import MSC_TAPS
from deeplab.models.variants import MSC_SUFFIX
from deeplab.models.vgg import CONV_NAMES

DEFAULT_FC8 = "fc8_voc12"


def caffe_layer_map(model: DeepLab, fc8: str = DEFAULT_FC8, msc_suffix: str = "") -> dict[str, str]:
    """Caffe layer name -> our module path (its .weight/.bias are the layer's blobs 0/1), in Caffe net order."""
    names = {name: f"backbone.{name}.conv" for name in CONV_NAMES}
    names.update({"fc6": "head.fc6.conv", "fc7": "head.fc7.conv", fc8: "classifier"})
    if model.msc:
        for tap, _, _ in MSC_TAPS:
            names[f"{tap}_conv"] = f"branches.{tap}.conv"
            names[f"{tap}_fc"] = f"branches.{tap}.fc"
            names[f"{tap}_ms{msc_suffix}"] = f"branches.{tap}.score"
    return names


@dataclass(frozen=True)
class CaffeNaming:
    """How a caffemodel names its classifier layers: fc8 layer name and the suffix after `<tap>_ms`."""

    fc8: str = DEFAULT_FC8
    msc_suffix: str = ""
    v1: bool = True
    legacy_shape: bool = True


def _strip_ones(shape) -> tuple[int, ...]:
    shape = tuple(int(d) for d in shape)
    while len(shape) > 1 and shape[0] == 1:
        shape = shape[1:]
    return shape


def inspect_net(net: Net, source: str = "caffemodel") -> tuple[dict[str, Layer], CaffeNaming, bool]:
    """Parameter layers by name, the naming convention in use, and whether MSc branches are present."""
    params = {layer.name: layer for layer in net.layers if layer.blobs}
    fc8 = [n for n in params if n.startswith("fc8")]
    if len(fc8) != 1:
        raise InputError(f"{source}: expected one classifier layer named fc8*, found {fc8 or 'none'}")
    score = [n for n in params if n.startswith("pool4_ms")]
    msc = bool(score)
    suffix = score[0][len("pool4_ms") :] if msc else ""
    first = params[fc8[0]]
    return params, CaffeNaming(fc8[0], suffix, first.v1, first.blobs[0].legacy), msc


def net_to_model(net: Net, arch: str, source: str = "caffemodel") -> tuple[DeepLab, CaffeNaming]:
    """Build `arch` (num_classes and width read from the blobs) holding the caffemodel's weights."""
    params, naming, has_msc = inspect_net(net, source)
    if has_msc != arch.endswith(MSC_SUFFIX):
        raise InputError(
            f"{source}: the net {'has' if has_msc else 'has no'} MSc branches (pool4_ms...) but --arch is {arch}"
        )
    if "conv1_1" not in params:
        raise InputError(f"{source}: no conv1_1 layer with weights")
    num_classes = int(_strip_ones(params[naming.fc8].blobs[0].data.shape)[0])
    width = params["conv1_1"].blobs[0].data.shape[0] / 64
    model = build_model(arch, num_classes=num_classes, width=width)
    mapping = caffe_layer_map(model, naming.fc8, naming.msc_suffix)
    unknown = sorted(set(params) - set(mapping))
    missing = [n for n in mapping if n not in params]
    if unknown or missing:
        raise InputError(
            f"{source}: layers do not match {arch}: missing {missing or 'none'}, unexpected {unknown or 'none'}"
        )
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, path in mapping.items():
            layer, module = params[name], modules[path]
            if len(layer.blobs) != 2:
                raise InputError(f"{source}: layer {name} has {len(layer.blobs)} blobs, expected weight and bias")
            for blob, p in zip(layer.blobs, (module.weight, module.bias), strict=True):
                if _strip_ones(blob.data.shape) != _strip_ones(p.shape):
                    raise InputError(
                        f"{source}: layer {name} blob of shape {blob.data.shape} does not fit {arch} "
                        f"(needs {tuple(p.shape)}; wrong --arch?)"
                    )
                p.copy_(torch.from_numpy(np.ascontiguousarray(blob.data, dtype=np.float32)).view(p.shape))
    return model.eval(), naming


def model_to_net(model: DeepLab, naming: CaffeNaming = CaffeNaming(), name: str = "") -> Net:
    """The model's weights as a caffemodel Net (parameter layers only, in Caffe net order)."""
    if model.batch_norm:
        raise InputError("models with batch_norm=True have no Caffe DeepLab counterpart")
    modules = dict(model.named_modules())
    layers = []
    for lname, path in caffe_layer_map(model, naming.fc8, naming.msc_suffix).items():
        m = modules[path]
        blobs = []
        for p in (m.weight, m.bias):
            data = p.detach().cpu().numpy().astype(np.float32)
            if naming.legacy_shape and data.ndim == 1:
                data = data.reshape(1, 1, 1, -1)  # old Caffe stored biases as 1 x 1 x 1 x O
            blobs.append(Blob(data, legacy=naming.legacy_shape))
        layers.append(Layer(lname, "Convolution", blobs, v1=naming.v1))
    return Net(name, layers)


def import_caffemodel(path: str | os.PathLike, arch: str) -> tuple[DeepLab, CaffeNaming]:
    """Read a released DeepLab .caffemodel into a `arch` model (eval mode)."""
    return net_to_model(read_caffemodel(path), arch, source=str(path))
