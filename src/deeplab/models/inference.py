"""Batch inference in the ecosystem's shape: ``deeplab.segment(images)`` / ``model.predict(images)``.

Takes a (B, 3, H, W) or (3, H, W) tensor (uint8 0-255, or float in [0, 1] as torchvision's transforms
give), an (H, W, 3) / (B, H, W, 3) uint8 array, or a list of such images of any sizes. Does the model's
preprocessing, the padding to 8k+1, the x8 upsampling and the crop, optionally the dense CRF, and returns
per-pixel labels or probabilities at each input's size, on the model's device.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from deeplab.errors import InputError
from deeplab.models.predict import DEFAULT_BACKEND, predict_batch

OUTPUTS = ("labels", "probs")


def _hwc_uint8(image: Any, name: str) -> np.ndarray:
    """One image as an (H, W, 3) uint8 RGB array."""
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise InputError(f"{name}: a tensor image must be (3, H, W), got {tuple(image.shape)}")
        t = image.detach().cpu()
        if t.is_floating_point():
            if t.numel() and (float(t.min()) < 0 or float(t.max()) > 1):
                raise InputError(
                    f"{name}: float tensors must hold [0, 1] values (torchvision's convention), got "
                    f"[{float(t.min()):.3g}, {float(t.max()):.3g}]; pass uint8 for 0-255"
                )
            t = (t * 255).round()
        elif t.dtype != torch.uint8:
            raise InputError(f"{name}: tensor dtype {t.dtype}; use uint8 (0-255) or float (0-1)")
        return np.ascontiguousarray(t.to(torch.uint8).permute(1, 2, 0).numpy())
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InputError(f"{name}: an array image must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
        return image
    raise InputError(f"{name}: expected a torch tensor or a NumPy array, got {type(image).__name__}")


def as_image_list(images: Any) -> tuple[list[np.ndarray], str]:
    """(list of (H, W, 3) uint8 images, how to return: "single" | "stack" | "list")."""
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        return [_hwc_uint8(im, f"images[{i}]") for i, im in enumerate(images)], "stack"
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return [_hwc_uint8(im, f"images[{i}]") for i, im in enumerate(images)], "stack"
    if isinstance(images, (torch.Tensor, np.ndarray)):
        return [_hwc_uint8(images, "image")], "single"
    if isinstance(images, Sequence) and not isinstance(images, (str, bytes)):
        if not images:
            raise InputError("images: empty list")
        return [_hwc_uint8(im, f"images[{i}]") for i, im in enumerate(images)], "list"
    raise InputError(f"images: expected a tensor, an array or a list of them, got {type(images).__name__}")


def resolve_model(model: Any, device: str | torch.device | None = None):
    """A DeepLab nn.Module with .preprocess/.classes/.crf attached: from a module, a LoadedModel, "default"
    or a model file path."""
    from deeplab.models.checkpoint import LoadedModel, load_model

    if isinstance(model, (str, os.PathLike)):
        model = load_model(model, device=device)
    if isinstance(model, LoadedModel):
        model = model.model
    if not isinstance(model, torch.nn.Module):
        raise InputError(
            f"model: expected 'default', a model file, a LoadedModel or a DeepLab module, got {type(model).__name__}"
        )
    if device is not None:
        model.to(device)
    return model


def refine_with_crf(
    images: list[np.ndarray], probs: torch.Tensor, params, threads: int | None = 1, engine: str = "auto"
) -> torch.Tensor:
    """Dense CRF of same-size images: probs (B, C, H, W) -> refined (B, C, H, W), on probs' device.

    engine: "numpy" (the fused NumPy engine, CPU), "torch" (the pure-torch lattice, any device) or "auto"
    (numpy on CPU, torch elsewhere, e.g. CUDA)."""
    from deeplab.crf import dense_crf, dense_crf_torch

    if engine == "auto":
        engine = "numpy" if probs.device.type == "cpu" else "torch"
    if engine == "numpy":
        out = [dense_crf(im, p.cpu().numpy(), params, threads=threads) for im, p in zip(images, probs, strict=True)]
        return torch.from_numpy(np.stack(out)).to(probs.device)
    batch = torch.from_numpy(np.stack(images)).to(probs.device).permute(0, 3, 1, 2)
    return dense_crf_torch(batch, probs.clamp_min(1e-5).log(), params, backend="torch")


@torch.inference_mode()
def segment(
    images: Any,
    model: Any = "default",
    *,
    output: str = "labels",
    crf: bool = False,
    crf_params=None,
    backend: str = DEFAULT_BACKEND,
    batch_size: int = 4,
    device: str | torch.device | None = None,
    crf_threads: int | None = 1,
) -> Any:
    """Segment images with a DeepLab model.

    images: (B, 3, H, W) / (3, H, W) tensor (uint8, or float in [0, 1]), (H, W, 3) / (B, H, W, 3) uint8
    array, or a list of images of any sizes. model: "default" (the shipped model), a model file, a
    LoadedModel or a DeepLab module (moved to ``device`` if given). output: "labels" -> (H, W) int64 class
    ids, "probs" -> (C, H, W) float32 summing to 1 over C. crf: refine with the dense CRF (crf_params:
    CRFParams or dict; default the model's stored parameters, else DeepLab-LargeFOV's). Consecutive images
    of one size run batch_size at a time. Returns a tensor (B, ...) for a batch input, one result for one
    image, a list for a list; on the model's device.
    """
    from deeplab.crf import CRFParams

    if output not in OUTPUTS:
        raise InputError(f"output must be one of {OUTPUTS}, got {output!r}")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    net = resolve_model(model, device)
    params = None
    if crf:
        stored = getattr(net, "crf", None)
        params = (
            crf_params
            if isinstance(crf_params, CRFParams)
            else CRFParams.from_dict({**(stored or {}), **(crf_params or {})})
        )
    items, shape = as_image_list(images)
    results: list[torch.Tensor] = []
    start = 0
    while start < len(items):
        size = items[start].shape[:2]
        end = start + 1
        while end < len(items) and end - start < batch_size and items[end].shape[:2] == size:
            end += 1
        probs = predict_batch(net, items[start:end], getattr(net, "preprocess", None), backend)
        if params is not None:
            probs = refine_with_crf(items[start:end], probs, params, crf_threads).to(probs.device)
        results += list(probs.argmax(1) if output == "labels" else probs)
        start = end
    if shape == "single":
        return results[0]
    if shape == "stack":
        return torch.stack(results)
    return results
