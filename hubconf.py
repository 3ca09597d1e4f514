"""torch.hub entry points (offline: ``torch.hub.load(repo_dir, "deeplab_largefov_camvid", source="local")``).

Each entry returns a DeepLab nn.Module in eval mode with ``.predict(images)``; see deeplab.models.builders.
"""

import os
import sys

dependencies = ["torch", "numpy", "scipy", "PIL", "numba", "yaml"]

try:
    import deeplab  # noqa: F401  (installed)
except ImportError:  # a source checkout: the package lives under src/
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))

from deeplab.models.builders import (  # noqa: E402
    deeplab_4x4,
    deeplab_4x4_msc,
    deeplab_7x7,
    deeplab_7x7_msc,
    deeplab_largefov,
    deeplab_largefov_msc,
    deeplab_vgg16,
    deeplab_vgg16_msc,
)

__all__ = [
    "deeplab_4x4",
    "deeplab_4x4_msc",
    "deeplab_7x7",
    "deeplab_7x7_msc",
    "deeplab_largefov",
    "deeplab_largefov_camvid",
    "deeplab_largefov_msc",
    "deeplab_vgg16",
    "deeplab_vgg16_msc",
]


def deeplab_largefov_camvid(pretrained: bool = True, **kwargs):
    """DeepLab-LargeFOV (width 0.25, batch norm) trained on CamVid: the model shipped in the package
    (11 classes; weights CC BY-NC 4.0). pretrained=False gives the same architecture, freshly initialised."""
    if pretrained:
        return deeplab_largefov(weights="camvid", **kwargs).eval()
    return deeplab_largefov(num_classes=11, width=0.25, batch_norm=True, **kwargs)
