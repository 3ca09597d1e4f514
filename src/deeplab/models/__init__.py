"""DeepLab v1 DCNN: atrous VGG-16 variants, inference, checkpoints, weight import and export."""

from deeplab.models.checkpoint import LoadedModel, load_model, save_model
from deeplab.models.deeplab import DeepLab, aligned_size, build_model, list_models, upsample_logits
from deeplab.models.predict import predict
from deeplab.models.vgg import output_size

__all__ = [
    "DeepLab",
    "LoadedModel",
    "aligned_size",
    "build_model",
    "list_models",
    "load_model",
    "output_size",
    "predict",
    "save_model",
    "upsample_logits",
]
