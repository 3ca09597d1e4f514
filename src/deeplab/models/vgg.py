"""The atrous VGG-16 backbone of DeepLab v1 (output stride 8).

Changes from ImageNet VGG-16 (paper Sec. 3.1, released prototxt):
pool1-3 are 3x3 stride 2 pad 1, pool4/pool5 are 3x3 stride 1 pad 1 (all Caffe ceil mode), and conv5_*
use atrous rate 2. A (H, W) input gives pool5 features of size (ceil((H-1)/8)+1, ceil((W-1)/8)+1),
i.e. (n-1)/8+1 when (n-1) % 8 == 0 (321 -> 41, 513 -> 65).
"""

from __future__ import annotations

import math

import torch
from torch import nn

# (stage, number of convs, output channels at width 1, pool stride, conv dilation)
VGG16_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 2, 64, 2, 1),
    (2, 2, 128, 2, 1),
    (3, 3, 256, 2, 1),
    (4, 3, 512, 1, 1),
    (5, 3, 512, 1, 2),
)

# Caffe layer names of the 13 convolutions, in order.
CONV_NAMES: tuple[str, ...] = tuple(f"conv{s}_{i + 1}" for s, n, _, _, _ in VGG16_STAGES for i in range(n))


def scaled(channels: int, width: float) -> int:
    """Channel count under a width multiplier (at least 1)."""
    return max(1, round(channels * width))


def output_size(n: int) -> int:
    """Spatial size of the stride-8 score map for an input side of n pixels: ceil((n-1)/8)+1."""
    if n < 1:
        raise ValueError(f"input size must be >= 1, got {n}")
    return math.ceil((n - 1) / 8) + 1


class ConvUnit(nn.Module):
    """conv (k x k, dilation d, 'same' padding) -> [BatchNorm] -> ReLU. State keys: conv.*, bn.*."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, dilation: int = 1, batch_norm: bool = False):
        super().__init__()
        pad = dilation * (kernel - 1)
        if pad % 2:
            raise ValueError(
                f"kernel {kernel} with dilation {dilation} has an even effective size; no symmetric padding"
            )
        self.conv = nn.Conv2d(cin, cout, kernel, padding=pad // 2, dilation=dilation)
        self.bn = nn.BatchNorm2d(cout) if batch_norm else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class AtrousVGG16(nn.Module):
    """VGG-16 conv1_1..pool5 re-purposed for dense prediction.

    forward(x: (B, 3, H, W)) -> dict with 'pool1'..'pool5' feature maps (pool1: stride 2, pool2: 4,
    pool3-pool5: 8). Submodules are named after the Caffe layers (conv1_1 ... conv5_3).
    """

    def __init__(self, width: float = 1.0, batch_norm: bool = False):
        super().__init__()
        self.stage_channels: list[int] = []
        cin = 3
        for stage, n, cout, stride, dilation in VGG16_STAGES:
            c = scaled(cout, width)
            for i in range(n):
                self.add_module(f"conv{stage}_{i + 1}", ConvUnit(cin, c, 3, dilation, batch_norm))
                cin = c
            self.add_module(f"pool{stage}", nn.MaxPool2d(3, stride=stride, padding=1, ceil_mode=True))
            self.stage_channels.append(c)
        self.out_channels = cin

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats: dict[str, torch.Tensor] = {}
        for stage, n, _, _, _ in VGG16_STAGES:
            for i in range(n):
                x = getattr(self, f"conv{stage}_{i + 1}")(x)
            x = getattr(self, f"pool{stage}")(x)
            feats[f"pool{stage}"] = x
        return feats
