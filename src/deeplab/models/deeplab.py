"""The DeepLab v1 DCNN: atrous VGG-16 + fc6/fc7 head + fc8 classifier (+ MSc branches), and its registry."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deeplab.errors import InputError
from deeplab.models.heads import FCHead
from deeplab.models.msc import MSC_TAPS, MScBranch
from deeplab.models.variants import HEADS, MSC_SUFFIX, list_models
from deeplab.models.vgg import AtrousVGG16, output_size
from deeplab.preprocess import Preprocess


class DeepLab(nn.Module):
    """DeepLab v1 network.

    forward(x: (B, 3, H, W) float32, preprocessed) -> (B, C, h, w) logits on the stride-8 grid,
    h = ceil((H-1)/8)+1 (= (H-1)//8+1 when (H-1) % 8 == 0, e.g. 321 -> 41, 513 -> 65).
    """

    # set by load_model / the builders (deeplab.models.checkpoint): how to use the weights
    preprocess: Preprocess
    classes: list[str]
    palette: np.ndarray
    crf: dict | None

    def __init__(self, arch: str, num_classes: int = 21, width: float = 1.0, batch_norm: bool = False):
        super().__init__()
        if arch not in list_models():
            raise InputError(f"unknown arch {arch!r}; choose from {', '.join(list_models())}")
        if num_classes < 1:
            raise InputError(f"num_classes must be >= 1, got {num_classes}")
        if not (0 < width <= 4):
            raise InputError(f"width must be in (0, 4], got {width}")
        self.arch = arch
        self.num_classes = int(num_classes)
        self.width = float(width)
        self.batch_norm = bool(batch_norm)
        self.msc = arch.endswith(MSC_SUFFIX)
        head = HEADS[arch[: -len(MSC_SUFFIX)] if self.msc else arch]
        self.backbone = AtrousVGG16(width, batch_norm)
        self.head = FCHead(head, self.backbone.out_channels, width, batch_norm)
        self.classifier = nn.Conv2d(self.head.out_channels, num_classes, 1)  # Caffe fc8_*
        if self.msc:
            cins = {"image": 3, **{f"pool{i + 1}": c for i, c in enumerate(self.backbone.stage_channels)}}
            self.branches = nn.ModuleDict(
                {name: MScBranch(cins[tap], stride, num_classes, width, batch_norm) for name, tap, stride in MSC_TAPS}
            )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming (fan_out, ReLU) convs, BN = identity, fc8 ~ N(0, 0.01^2), MSc score convs ~ N(0, 0.001^2),
        biases 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for score, std in [(self.classifier, 0.01)] + [(b.score, 0.001) for b in self.msc_branches()]:
            nn.init.normal_(score.weight, std=std)
            nn.init.zeros_(bias_of(score))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.backbone(x)
        out = self.classifier(self.head(feats["pool5"]))
        if self.msc:
            feats["image"] = x
            for name, tap, _ in MSC_TAPS:
                out = out + self.branches[name](feats[tap])
        return out

    def upsample(self, logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Stride-8 logits -> (B, C, H, W); see upsample_logits."""
        return upsample_logits(logits, size)

    def _classifier_modules(self) -> list[nn.Module]:
        mods: list[nn.Module] = [self.classifier]
        mods += [b.score for b in self.msc_branches()]
        return mods

    def msc_branches(self) -> list[MScBranch]:
        """The five multi-scale branches (MSc variants), else none."""
        return [b for b in self.branches.values() if isinstance(b, MScBranch)] if self.msc else []

    def classifier_parameters(self) -> Iterator[nn.Parameter]:
        """fc8 and the MSc score convs: the layers the paper trains at 10x learning rate."""
        for m in self._classifier_modules():
            yield from m.parameters()

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        """Every parameter not in classifier_parameters() (VGG convs, fc6/fc7, MSc MLP layers)."""
        ids = {id(p) for p in self.classifier_parameters()}
        return (p for p in self.parameters() if id(p) not in ids)

    def predict(self, images, **kwargs):
        """Labels (or probabilities) at each input image's size: deeplab.models.inference.segment with this
        model (preprocessing, padding, x8 upsampling, cropping, optional CRF)."""
        from deeplab.models.inference import segment

        return segment(images, self, **kwargs)

    def config(self) -> dict:
        """Constructor arguments: build_model(**model.config()) rebuilds the architecture."""
        return {"arch": self.arch, "num_classes": self.num_classes, "width": self.width, "batch_norm": self.batch_norm}


def bias_of(conv: nn.Conv2d) -> torch.Tensor:
    """A convolution's bias (every DeepLab convolution has one)."""
    if conv.bias is None:
        raise ValueError(f"{conv} has no bias")
    return conv.bias


def build_model(arch: str, num_classes: int = 21, width: float = 1.0, batch_norm: bool = False) -> DeepLab:
    """A freshly initialised DeepLab of the named variant (see list_models())."""
    return DeepLab(arch, num_classes, width, batch_norm)


def upsample_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Caffe Interp x8 then crop: (B, C, h, w) -> bilinear (align_corners) to (8h-7, 8w-7) -> [:H, :W].

    size: the image (H, W); it must satisfy H <= 8h-7, W <= 8w-7 (true for the model's own output).
    """
    h, w = logits.shape[-2:]
    H, W = int(size[0]), int(size[1])
    if 8 * h - 7 < H or 8 * w - 7 < W:
        raise InputError(
            f"upsample_logits: a {h}x{w} score map covers at most {8 * h - 7}x{8 * w - 7} pixels, asked {H}x{W}"
        )
    up = F.interpolate(logits, size=(8 * h - 7, 8 * w - 7), mode="bilinear", align_corners=True)
    return up[..., :H, :W]


def aligned_size(n: int) -> int:
    """Smallest n' >= n with (n'-1) % 8 == 0 (the sizes where the stride-8 grid hits both borders)."""
    return 8 * (output_size(n) - 1) + 1


__all__ = ["DeepLab", "aligned_size", "build_model", "list_models", "output_size", "upsample_logits"]
