"""The DeepLab v1 variants (paper Table 2) by name: fc6 kernel, atrous rate and width of each head.

Plain data without torch, so that listing the architectures (``deeplab convert --help``) stays cheap.
fc6 is an atrous k x k convolution; its effective size rate*(k-1)+1 is odd for every variant
(4x4 rate 4 -> 13, 4x4 rate 8 -> 25, 7x7 rate 4 -> 25, 3x3 rate 12 -> 25), so a symmetric pad keeps the
stride-8 map size. ``<name>-msc`` adds the multi-scale branches (deeplab.models.msc).
"""

from __future__ import annotations

from dataclasses import dataclass

MSC_SUFFIX = "-msc"


@dataclass(frozen=True)
class HeadSpec:
    """fc6 kernel size, atrous rate and fc6/fc7 channels (at width 1); avg_pool: the LargeFOV pool5a."""

    kernel: int
    rate: int
    channels: int
    avg_pool: bool = False


HEADS: dict[str, HeadSpec] = {
    "deeplab": HeadSpec(kernel=4, rate=4, channels=4096),
    "deeplab-4x4": HeadSpec(kernel=4, rate=8, channels=4096),
    "deeplab-7x7": HeadSpec(kernel=7, rate=4, channels=4096),
    "deeplab-largefov": HeadSpec(kernel=3, rate=12, channels=1024, avg_pool=True),
}


def list_models() -> list[str]:
    """All architecture names: deeplab, deeplab-4x4, deeplab-7x7, deeplab-largefov and their -msc versions."""
    return [name + msc for name in HEADS for msc in ("", MSC_SUFFIX)]
