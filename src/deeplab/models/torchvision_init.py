"""Initialise a DeepLab from ImageNet VGG-16 weights in torchvision's state-dict format.

Accepted keys: vgg16 (features.{0,2,5,...,28}.weight/bias) or vgg16_bn (convs plus BatchNorm at the
following index), and classifier.0 (fc6: 4096 x 25088) / classifier.3 (fc7: 4096 x 4096);
classifier.6 (ImageNet fc8) is ignored. As in the paper, fc6/fc7 become convolutions and fc6 is
decimated: spatially 7x7 -> k x k by taking every (6/(k-1))-th tap (4x4: rows/cols 0,2,4,6; 3x3: 0,3,6)
and, when the head is narrower than 4096 (LargeFOV: 1024), to a seeded random subset of channels
(the same subset is fc7's input; fc7's outputs are a second subset). fc8 ~ N(0, 0.01^2), bias 0.

torchvision's VGG expects RGB in [0, 1] normalised by mean/std per channel; we fold 1/(255 std) into
conv1_1 so the net takes RGB 0-255 minus TORCHVISION_MEAN_RGB: use the returned Preprocess with it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from deeplab.errors import InputError
from deeplab.io import load_torch_file
from deeplab.models.deeplab import DeepLab, bias_of
from deeplab.models.vgg import CONV_NAMES
from deeplab.preprocess import Preprocess

TORCHVISION_MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
TORCHVISION_STD_RGB = (0.229, 0.224, 0.225)
BN_KEYS = ("weight", "bias", "running_mean", "running_var")


def torchvision_preprocess() -> Preprocess:
    """Input convention of a torchvision-initialised model (std folded into conv1_1): RGB, 0-255, minus mean."""
    return Preprocess(mean=TORCHVISION_MEAN_RGB, bgr=False, scale=1.0)


def _feature_layers(sd: dict[str, torch.Tensor]) -> tuple[list[int], list[int]]:
    """Indices of conv layers (4-D weight) and BatchNorm layers (running_mean) under features.N."""
    idx = sorted({int(m.group(1)) for k in sd if (m := re.fullmatch(r"features\.(\d+)\.\w+", k))})
    convs = [i for i in idx if sd.get(f"features.{i}.weight", torch.empty(0)).dim() == 4]
    bns = [i for i in idx if f"features.{i}.running_mean" in sd]
    return convs, bns


def decimation_taps(kernel: int, full: int = 7) -> list[int]:
    """Evenly spaced taps of a `full`-wide kernel kept for a `kernel`-wide one (7->4: 0,2,4,6; 7->3: 0,3,6)."""
    if kernel == full:
        return list(range(full))
    if kernel < 1 or kernel > full or (full - 1) % max(kernel - 1, 1):
        raise InputError(f"cannot decimate a {full}x{full} fc6 to {kernel}x{kernel} evenly")
    step = (full - 1) // (kernel - 1) if kernel > 1 else 0
    return [i * step + (full - 1 - step * (kernel - 1)) // 2 for i in range(kernel)]


def _copy(dst: torch.Tensor, src: torch.Tensor, what: str) -> None:
    if dst.shape != src.shape:
        raise InputError(
            f"torchvision weights: {what} has shape {tuple(src.shape)}, model needs {tuple(dst.shape)} "
            "(torchvision init needs width=1)"
        )
    dst.copy_(src)


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a .pth state dict (weights only)."""
    path = Path(path)
    sd = load_torch_file(path, "torch state dict")
    if not isinstance(sd, dict):
        raise InputError(f"{path}: expected a state dict, got {type(sd).__name__}")
    return sd


@torch.no_grad()
def init_from_torchvision(
    model: DeepLab, state_dict: dict[str, torch.Tensor] | str | os.PathLike, seed: int = 0
) -> Preprocess:
    """Copy VGG-16 ImageNet weights into model (in place). Returns the Preprocess the weights expect."""
    sd = load_state_dict_file(state_dict) if isinstance(state_dict, (str, os.PathLike)) else state_dict
    convs, bns = _feature_layers(sd)
    if len(convs) != len(CONV_NAMES):
        raise InputError(f"torchvision weights: found {len(convs)} conv layers under features.*, VGG-16 has 13")
    if model.batch_norm and len(bns) not in (0, len(convs)):
        raise InputError(f"torchvision weights: {len(bns)} BatchNorm layers for 13 convs")
    bb = model.backbone
    for n, (name, i) in enumerate(zip(CONV_NAMES, convs, strict=True)):
        unit = getattr(bb, name)
        w = sd[f"features.{i}.weight"].float()
        if n == 0:
            std = torch.tensor(TORCHVISION_STD_RGB).view(1, 3, 1, 1)
            w = w / (255.0 * std)
        _copy(unit.conv.weight, w, f"features.{i}.weight")
        _copy(unit.conv.bias, sd[f"features.{i}.bias"], f"features.{i}.bias")
        if model.batch_norm and bns:
            j = bns[n]
            for key in BN_KEYS:
                _copy(getattr(unit.bn, key), sd[f"features.{j}.{key}"], f"features.{j}.{key}")
    if "classifier.0.weight" not in sd or "classifier.3.weight" not in sd:
        raise InputError("torchvision weights: classifier.0 / classifier.3 (fc6 / fc7) missing")
    fc6, fc7 = model.head.fc6.conv, model.head.fc7.conv
    c = fc6.out_channels
    w6 = sd["classifier.0.weight"].float()
    if w6.shape != (4096, 512 * 49):
        raise InputError(f"torchvision weights: classifier.0.weight is {tuple(w6.shape)}, expected (4096, 25088)")
    gen = torch.Generator().manual_seed(seed)
    keep6 = torch.arange(4096) if c == 4096 else torch.randperm(4096, generator=gen)[:c].sort().values
    keep7 = torch.arange(4096) if c == 4096 else torch.randperm(4096, generator=gen)[:c].sort().values
    taps = torch.tensor(decimation_taps(fc6.kernel_size[0]))
    w6 = w6.view(4096, 512, 7, 7)[keep6][:, :, taps][:, :, :, taps]
    _copy(fc6.weight, w6, "classifier.0.weight (decimated)")
    _copy(bias_of(fc6), sd["classifier.0.bias"][keep6], "classifier.0.bias")
    w7 = sd["classifier.3.weight"].float()[keep7][:, keep6]
    _copy(fc7.weight, w7.view(c, c, 1, 1), "classifier.3.weight")
    _copy(bias_of(fc7), sd["classifier.3.bias"][keep7], "classifier.3.bias")
    torch.nn.init.normal_(model.classifier.weight, std=0.01)
    torch.nn.init.zeros_(bias_of(model.classifier))
    return torchvision_preprocess()
