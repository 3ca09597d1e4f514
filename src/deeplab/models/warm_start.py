"""Start a model from a weights file: ImageNet VGG-16 (torchvision state dict) or a trained deeplab model.

The second is the paper's two-stage MSc recipe: train DeepLab(-LargeFOV), then add the multi-scale branches
and train only them (``train.freeze``). Every tensor of the trained model is copied into the new one, which
may have more (the branches, left at their initialisation); a tensor of another shape or name is an error.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from deeplab.errors import InputError
from deeplab.io import load_torch_file
from deeplab.models.checkpoint import FORMAT, TRAIN_STATE_FORMAT, read_checkpoint
from deeplab.models.deeplab import DeepLab
from deeplab.models.torchvision_init import init_from_torchvision
from deeplab.preprocess import Preprocess


def is_deeplab_file(path: str | os.PathLike) -> bool:
    """True for a save_model file or a training checkpoint, False for anything else torch can read."""
    obj = load_torch_file(Path(path), "weights file")
    return isinstance(obj, dict) and obj.get("format") in (FORMAT, TRAIN_STATE_FORMAT)


@torch.no_grad()
def init_from_deeplab(model: DeepLab, path: str | os.PathLike) -> tuple[Preprocess, list[str]]:
    """Copy a trained deeplab model's weights into ``model`` (in place).

    Returns the Preprocess the weights expect and the names of the model's tensors left at their
    initialisation (those the file does not hold).
    """
    ckpt = read_checkpoint(path)
    if bool(ckpt["batch_norm"]) != model.batch_norm or float(ckpt["width"]) != model.width:
        raise InputError(
            f"model.init {path}: a {ckpt['arch']} of width {ckpt['width']} with batch_norm "
            f"{ckpt['batch_norm']}; the config asks width {model.width}, batch_norm {model.batch_norm}"
        )
    target = model.state_dict()
    for name, tensor in ckpt["state_dict"].items():
        if name not in target:
            raise InputError(
                f"model.init {path}: {name} has no counterpart in {model.arch} (the file holds a {ckpt['arch']})"
            )
        if target[name].shape != tensor.shape:
            raise InputError(
                f"model.init {path}: {name} is {tuple(tensor.shape)}, {model.arch} with "
                f"{model.num_classes} classes needs {tuple(target[name].shape)}"
            )
        target[name].copy_(tensor)
    fresh = [n for n in target if n not in ckpt["state_dict"]]
    return Preprocess.from_dict(ckpt["preprocess"]), fresh


def init_weights(model: DeepLab, path: str | os.PathLike, seed: int = 0) -> tuple[Preprocess, list[str]]:
    """``model.init``: a deeplab model file (init_from_deeplab) or torchvision VGG-16 weights
    (init_from_torchvision). Returns (Preprocess of the weights, names left at their initialisation)."""
    if is_deeplab_file(path):
        return init_from_deeplab(model, path)
    return init_from_torchvision(model, path, seed=seed), ["classifier.weight", "classifier.bias"]


def init_preprocess(path: str | os.PathLike) -> Preprocess:
    """The input convention a model started from ``path`` trains in (without loading it into a model)."""
    from deeplab.models.torchvision_init import torchvision_preprocess

    if is_deeplab_file(path):
        return Preprocess.from_dict(read_checkpoint(path)["preprocess"])
    return torchvision_preprocess()
