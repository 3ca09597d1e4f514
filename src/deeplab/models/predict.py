"""Whole-image inference: pad to an aligned size, forward, Caffe-Interp upsample, crop, softmax.

The forward runs on onnxruntime when that pays off (it was the fastest CPU path in
benchmarks/bench_forward.py: 1.7-1.8x eager for LargeFOV at 513x513; see the README). Exporting costs a few
seconds, so backend="auto" runs eagerly until the eager forwards of the current weights have taken
AUTO_EXPORT_AFTER_S in total (rent-or-buy: never more than about twice the better choice), then exports once,
keeps the session in a per-model cache (dropped when any parameter or buffer changes) and falls back to
eager torch, with one warning, if export or session creation fails. backend="eager" bypasses all of this.
"""

from __future__ import annotations

import tempfile
import time
import warnings
import weakref
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from deeplab.errors import InputError
from deeplab.models.deeplab import DeepLab, aligned_size, upsample_logits
from deeplab.preprocess import Preprocess

BACKENDS = ("auto", "onnxruntime", "eager")
AUTO_EXPORT_AFTER_S = 5.0  # about the export + session time of full-width LargeFOV on 2 cores


def check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Validate an (H, W, 3) uint8 RGB array; returns it."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"{name} must be an (H, W, 3) RGB array, got {getattr(image, 'shape', type(image).__name__)}")
    if image.dtype != np.uint8:
        raise InputError(f"{name} must be uint8 (0-255), got {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InputError(f"{name} is empty: {image.shape}")
    return image


def padded_input(image: np.ndarray, preprocess: Preprocess) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, H', W') contiguous network input, zero-padded (= mean colour) at the
    bottom/right to H' = aligned_size(H), W' = aligned_size(W)."""
    x = preprocess(check_image(image))
    H, W = x.shape[-2:]
    return F.pad(x, (0, aligned_size(W) - W, 0, aligned_size(H) - H)).unsqueeze(0).contiguous()


def probabilities(logits: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(1, C, h, w) stride-8 logits -> (C, H, W) float32 softmax probabilities (upsampled, cropped)."""
    return torch.softmax(upsample_logits(logits.float(), size), dim=1)[0].numpy().astype(np.float32, copy=False)


@dataclass
class _OrtEntry:
    fingerprint: tuple
    eager_seconds: float = 0.0
    runner: object | None = None
    failed: bool = False


_ORT_CACHE: "weakref.WeakKeyDictionary[DeepLab, _OrtEntry]" = weakref.WeakKeyDictionary()


def _fingerprint(model: torch.nn.Module) -> tuple:
    """Changes whenever any parameter/buffer is replaced or modified in place (optimizer steps, load_state_dict)."""
    return tuple((t.data_ptr(), t._version) for t in chain(model.parameters(), model.buffers()))


def _ort_runner(model: DeepLab):
    from deeplab.models.onnx_export import OnnxRunner, export_onnx

    with tempfile.TemporaryDirectory(prefix="deeplab-onnx-") as tmp:
        return OnnxRunner(export_onnx(model, Path(tmp) / "model.onnx"), threads=torch.get_num_threads())


def _forward(model: torch.nn.Module, x: torch.Tensor, backend: str) -> torch.Tensor:
    device = next(model.parameters()).device
    if backend == "eager" or not isinstance(model, DeepLab) or device.type != "cpu":
        return model(x.to(device)).cpu()
    entry = _ORT_CACHE.get(model)
    fp = _fingerprint(model)
    if entry is None or entry.fingerprint != fp:
        entry = _ORT_CACHE[model] = _OrtEntry(fp, failed=entry.failed if entry else False)
    if entry.failed or (backend == "auto" and entry.runner is None and entry.eager_seconds < AUTO_EXPORT_AFTER_S):
        t0 = time.perf_counter()
        logits = model(x)
        entry.eager_seconds += time.perf_counter() - t0
        return logits
    if entry.runner is None:
        try:
            entry.runner = _ort_runner(model)
        except Exception as e:  # missing onnxruntime, exporter limits, ...: stay correct, just slower
            entry.failed = True
            warnings.warn(f"predict: onnxruntime path unavailable ({type(e).__name__}: {e}); using eager torch",
                          RuntimeWarning, stacklevel=3)
            return model(x)
    return entry.runner(x)


@torch.inference_mode()
def predict(model: torch.nn.Module, image: np.ndarray, preprocess: Preprocess | None = None,
            backend: str = "auto") -> np.ndarray:
    """Class probabilities for one image.

    image: (H, W, 3) uint8 RGB. preprocess: defaults to model.preprocess (attached by load_model), else Caffe's.
    backend: auto (onnxruntime once eager forwards took AUTO_EXPORT_AFTER_S), onnxruntime (at once), eager;
    models on a GPU always run eagerly there.
    Returns probs: (C, H, W) float32, sums to 1 over C. The model runs in eval mode (its mode is restored).
    """
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    preprocess = preprocess or getattr(model, "preprocess", None) or Preprocess()
    x = padded_input(image, preprocess)
    was_training = model.training
    model.eval()
    try:
        logits = _forward(model, x, backend)
    finally:
        model.train(was_training)
    return probabilities(logits, image.shape[:2])
