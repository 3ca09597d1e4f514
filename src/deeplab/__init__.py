"""DeepLab v1: dense-prediction DCNN (atrous VGG-16) + fully connected CRF.

    import deeplab
    model = deeplab.load_model("default")              # the shipped CamVid model (or a model file)
    labels = deeplab.segment(images, model, crf=True)  # images: tensor / array / list, any sizes
    q = deeplab.dense_crf(image, probs)                # the dense CRF alone

Names are imported on first use, so ``import deeplab`` (and the ``deeplab`` command's --help) stays light.
"""

from __future__ import annotations

from deeplab._lazy import lazy_exports

TYPE_CHECKING = False  # (not typing's: importing typing would slow every start of the command)

__version__ = "0.2.0"

_EXPORTS = {
    "load_model": "deeplab.models.checkpoint",
    "save_model": "deeplab.models.checkpoint",
    "build_model": "deeplab.models.deeplab",
    "list_models": "deeplab.models.variants",
    "get_model": "deeplab.models.builders",
    "list_builders": "deeplab.models.builders",
    "deeplab_vgg16": "deeplab.models.builders",
    "deeplab_4x4": "deeplab.models.builders",
    "deeplab_7x7": "deeplab.models.builders",
    "deeplab_largefov": "deeplab.models.builders",
    "deeplab_largefov_msc": "deeplab.models.builders",
    "segment": "deeplab.models.inference",
    "predict": "deeplab.models.predict",
    "CRFParams": "deeplab.crf.api",
    "dense_crf": "deeplab.crf.api",
    "dense_crf_unary": "deeplab.crf.api",
    "InputError": "deeplab.errors",
}

__all__ = ["__version__", *sorted(_EXPORTS)]

if TYPE_CHECKING:
    from deeplab.crf.api import CRFParams, dense_crf, dense_crf_unary
    from deeplab.errors import InputError
    from deeplab.models.builders import (
        deeplab_4x4,
        deeplab_7x7,
        deeplab_largefov,
        deeplab_largefov_msc,
        deeplab_vgg16,
        get_model,
        list_builders,
    )
    from deeplab.models.checkpoint import load_model, save_model
    from deeplab.models.deeplab import build_model
    from deeplab.models.inference import segment
    from deeplab.models.predict import predict
    from deeplab.models.variants import list_models


__getattr__, __dir__ = lazy_exports("deeplab", globals(), _EXPORTS)
