"""torch.hub entry points (offline: ``torch.hub.load(repo_dir, "deeplab_largefov_camvid", source="local")``).

Every builder of deeplab.models.builders (deeplab_vgg16, deeplab_4x4, deeplab_7x7, deeplab_largefov and their
_msc versions) and deeplab_largefov_camvid; each returns a DeepLab nn.Module with ``.predict(images)``.
"""

import os
import sys

dependencies = ["torch", "numpy", "scipy", "PIL", "numba", "yaml"]

try:
    import deeplab  # noqa: F401  (installed)
except ImportError:  # a source checkout: the package lives under src/
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))

from deeplab.models.builders import BUILDERS, deeplab_largefov  # noqa: E402

globals().update(BUILDERS)


def deeplab_largefov_camvid(pretrained: bool = True, **kwargs):
    """DeepLab-LargeFOV (width 0.25, batch norm) trained on CamVid: the model shipped in the package
    (11 classes; weights CC BY-NC 4.0). pretrained=False gives the same architecture, freshly initialised."""
    if pretrained:
        return deeplab_largefov(weights="camvid", **kwargs).eval()
    return deeplab_largefov(num_classes=11, width=0.25, batch_norm=True, **kwargs)
