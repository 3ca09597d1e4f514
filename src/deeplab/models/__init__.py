"""DeepLab v1 DCNN: atrous VGG-16 variants, inference, checkpoints, weight import and export.

Names are imported on first use (PEP 562), so ``import deeplab.models.variants`` (the architecture list)
does not import torch.
"""

from __future__ import annotations

from deeplab._lazy import lazy_exports

TYPE_CHECKING = False  # (not typing's: importing typing would slow every start of the command)

_EXPORTS = {
    "DeepLab": "deeplab.models.deeplab",
    "aligned_size": "deeplab.models.deeplab",
    "build_model": "deeplab.models.deeplab",
    "upsample_logits": "deeplab.models.deeplab",
    "list_models": "deeplab.models.variants",
    "output_size": "deeplab.models.vgg",
    "LoadedModel": "deeplab.models.checkpoint",
    "load_model": "deeplab.models.checkpoint",
    "save_model": "deeplab.models.checkpoint",
    "predict": "deeplab.models.predict",
    "predict_batch": "deeplab.models.predict",
    "segment": "deeplab.models.inference",
    "get_model": "deeplab.models.builders",
    "list_builders": "deeplab.models.builders",
    "deeplab_vgg16": "deeplab.models.builders",
    "deeplab_vgg16_msc": "deeplab.models.builders",
    "deeplab_4x4": "deeplab.models.builders",
    "deeplab_4x4_msc": "deeplab.models.builders",
    "deeplab_7x7": "deeplab.models.builders",
    "deeplab_7x7_msc": "deeplab.models.builders",
    "deeplab_largefov": "deeplab.models.builders",
    "deeplab_largefov_msc": "deeplab.models.builders",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from deeplab.models.builders import (
        deeplab_4x4,
        deeplab_4x4_msc,
        deeplab_7x7,
        deeplab_7x7_msc,
        deeplab_largefov,
        deeplab_largefov_msc,
        deeplab_vgg16,
        deeplab_vgg16_msc,
        get_model,
        list_builders,
    )
    from deeplab.models.checkpoint import LoadedModel, load_model, save_model
    from deeplab.models.deeplab import DeepLab, aligned_size, build_model, upsample_logits
    from deeplab.models.inference import segment
    from deeplab.models.predict import predict, predict_batch
    from deeplab.models.variants import list_models
    from deeplab.models.vgg import output_size


__getattr__, __dir__ = lazy_exports("deeplab.models", globals(), _EXPORTS)
