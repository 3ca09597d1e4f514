"""Multi-scale (MSc) branches of DeepLab-MSc (paper Sec. 4, 'Multi-scale features').

A two-layer MLP (128 3x3 conv -> ReLU -> dropout -> 128 1x1 conv -> ReLU -> dropout) on the image and on
pool1-pool4, with the 3x3 conv strided (8, 4, 2, 1, 1) to land on the stride-8 grid. The paper
concatenates the five 128-channel maps with fc7 (+640 channels) before the softmax classifier; the
released Caffe nets implement that classifier as one 1x1 score conv per branch plus fc8, summed
(Eltwise SUM). The two are the same linear map; we keep the Caffe form (one `score` conv per branch)
so released weights import exactly (it has 5 x num_classes extra bias terms).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deeplab.models.vgg import scaled

# branch name (Caffe prefix) -> (backbone tap, stride of the 3x3 conv)
MSC_TAPS: tuple[tuple[str, str, int], ...] = (
    ("data", "image", 8),
    ("pool1", "pool1", 4),
    ("pool2", "pool2", 2),
    ("pool3", "pool3", 1),
    ("pool4", "pool4", 1),
)
MSC_CHANNELS = 128


class MScBranch(nn.Module):
    """forward((B, Cin, m, m')) -> (B, num_classes, ceil((m-1)/s)+1, ceil((m'-1)/s)+1) class scores.

    The input is zero-padded at the bottom/right so the strided conv rounds up like the ceil-mode pools
    of the backbone (no padding for sizes with (n-1) % 8 == 0, i.e. exactly Caffe there).
    """

    def __init__(
        self,
        cin: int,
        stride: int,
        num_classes: int,
        width: float = 1.0,
        batch_norm: bool = False,
        dropout: float = 0.5,
    ):
        super().__init__()
        c = scaled(MSC_CHANNELS, width)
        self.stride = stride
        self.conv = nn.Conv2d(cin, c, 3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm2d(c) if batch_norm else nn.Identity()
        self.fc = nn.Conv2d(c, c, 1)
        self.bn2 = nn.BatchNorm2d(c) if batch_norm else nn.Identity()
        self.drop = nn.Dropout(dropout)
        self.score = nn.Conv2d(c, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride
        if s > 1:
            h, w = x.shape[-2:]
            x = F.pad(x, (0, (s - (w - 1) % s) % s, 0, (s - (h - 1) % s) % s))
        x = self.drop(F.relu(self.bn1(self.conv(x))))
        x = self.drop(F.relu(self.bn2(self.fc(x))))
        return self.score(x)
