"""The fully convolutional fc6/fc7 heads of the DeepLab v1 variants (specs: deeplab.models.variants).

fc6 is atrous with a symmetric pad of rate*(k-1)/2 (Caffe: pad 6 for 4x4 rate 4, pad 12 for the others).
The 4x4 taps then sit at offsets -6, -2, +2, +6 (x rate/4) around each output pixel: no asymmetric pad needed.
"""

from __future__ import annotations

import torch
from torch import nn

from deeplab.models.variants import HeadSpec
from deeplab.models.vgg import ConvUnit, scaled


class FCHead(nn.Module):
    """[pool5a 3x3 avg] -> fc6 (atrous) -> ReLU -> dropout 0.5 -> fc7 (1x1) -> ReLU -> dropout 0.5.

    forward((B, Cin, h, w)) -> (B, out_channels, h, w).
    """

    def __init__(self, spec: HeadSpec, cin: int, width: float = 1.0, batch_norm: bool = False, dropout: float = 0.5):
        super().__init__()
        c = scaled(spec.channels, width)
        # Caffe AVE pooling with pad 1 divides by 9 everywhere for a 3x3 stride-1 window (count_include_pad).
        self.pool5a = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=True) if spec.avg_pool else nn.Identity()
        self.fc6 = ConvUnit(cin, c, spec.kernel, spec.rate, batch_norm)
        self.drop6 = nn.Dropout(dropout)
        self.fc7 = ConvUnit(c, c, 1, 1, batch_norm)
        self.drop7 = nn.Dropout(dropout)
        self.out_channels = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop7(self.fc7(self.drop6(self.fc6(self.pool5a(x)))))
