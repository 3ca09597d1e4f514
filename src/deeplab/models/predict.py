"""Whole-image inference: pad to an aligned size, forward, Caffe-Interp upsample, crop, softmax.

Backends (deterministic: the same backend always runs, whatever the timing):
- ``channels_last`` (default): eager torch with NHWC memory format, the fastest path that needs no set-up
  (the model is converted in place once; its weights are unchanged).
- ``eager``: plain NCHW torch.
- ``onnxruntime``: the network exported to ONNX once per set of weights and cached on disk
  (``$DEEPLAB_CACHE_DIR`` or ``~/.cache/deeplab``, keyed by a hash of the weights and architecture), so a
  model pays the export once, not once per process. Falls back to ``channels_last`` with one warning if the
  ``onnx`` extra is missing or the export fails.
Models on a GPU always run eagerly there.
"""

from __future__ import annotations

import hashlib
import os
import warnings
import weakref
from collections.abc import Sequence
from itertools import chain
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from deeplab.errors import InputError
from deeplab.models.deeplab import DeepLab, aligned_size, upsample_logits
from deeplab.preprocess import Preprocess

BACKENDS = ("channels_last", "eager", "onnxruntime")
DEFAULT_BACKEND = "channels_last"


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


def cache_dir() -> Path:
    """Where exported ONNX files are kept: $DEEPLAB_CACHE_DIR, else $XDG_CACHE_HOME/deeplab or ~/.cache/deeplab."""
    if os.environ.get("DEEPLAB_CACHE_DIR"):
        return Path(os.environ["DEEPLAB_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "deeplab"


def weights_key(model: DeepLab) -> str:
    """Hex digest of the architecture and every weight and buffer (changes with any training step)."""
    h = hashlib.sha256(repr(sorted(model.config().items())).encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:24]


def _fingerprint(model: torch.nn.Module) -> tuple:
    """Changes whenever any parameter/buffer is replaced or modified in place (optimizer steps, load_state_dict)."""
    return tuple((t.data_ptr(), t._version) for t in chain(model.parameters(), model.buffers()))


_SESSIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> (fingerprint, runner or None)


def onnx_runner(model: DeepLab):
    """An onnxruntime runner of ``model``'s current weights: from the on-disk cache, exporting on a miss.
    None (after one warning) when onnxruntime is unavailable or the export fails."""
    fp = _fingerprint(model)
    cached = _SESSIONS.get(model)
    if cached is not None and cached[0] == fp:
        return cached[1]
    runner = None
    try:
        from deeplab.models.onnx_export import OnnxRunner, export_onnx

        path = cache_dir() / "onnx" / f"{model.arch}-{weights_key(model)}.onnx"
        if not path.is_file():
            export_onnx(model, path)  # atomic: concurrent processes each write a whole file
        runner = OnnxRunner(path, threads=torch.get_num_threads())
    except Exception as e:  # missing extra, exporter limits, unwritable cache: stay correct, just slower
        warnings.warn(
            f"onnxruntime backend unavailable ({type(e).__name__}: {e}); using channels_last torch "
            "(install the extra: pip install 'deeplab-v1[onnx]')",
            RuntimeWarning,
            stacklevel=3,
        )
    _SESSIONS[model] = (fp, runner)
    return runner


def forward(model: torch.nn.Module, x: torch.Tensor, backend: str = DEFAULT_BACKEND) -> torch.Tensor:
    """Stride-8 logits (B, C, h, w) of preprocessed, aligned input (B, 3, H', W'), on the model's device."""
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    device = next(model.parameters()).device
    x = x.to(device)
    if backend == "onnxruntime" and isinstance(model, DeepLab) and device.type == "cpu":
        runner = onnx_runner(model)
        if runner is not None:
            return runner(x)
        backend = "channels_last"
    if backend == "channels_last":
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        x = x.contiguous(memory_format=torch.channels_last)
    return model(x)


def probabilities(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, h, w) stride-8 logits -> (B, C, H, W) float32 softmax probabilities (upsampled, cropped)."""
    return torch.softmax(upsample_logits(logits.float(), size), dim=1)


def check_finite(logits: torch.Tensor, what: str = "the model") -> None:
    if not bool(torch.isfinite(logits).all()):
        raise InputError(f"{what} produced NaN or infinite scores: its weights are broken (a diverged training?)")


@torch.inference_mode()
def predict_batch(
    model: torch.nn.Module,
    images: Sequence[np.ndarray],
    preprocess: Preprocess | None = None,
    backend: str = DEFAULT_BACKEND,
) -> torch.Tensor:
    """Class probabilities of same-size images in one forward pass.

    images: B arrays (H, W, 3) uint8 RGB of one size. preprocess: defaults to model.preprocess (attached by
    load_model), else Caffe's. Returns (B, C, H, W) float32 on the model's device, summing to 1 over C.
    The model runs in eval mode (its mode is restored).
    """
    if not len(images):
        raise InputError("predict_batch: no images")
    sizes = {im.shape[:2] for im in images}
    if len(sizes) > 1:
        raise InputError(f"predict_batch: images of one size only, got {sorted(sizes)}")
    preprocess = preprocess or getattr(model, "preprocess", None) or Preprocess()
    x = torch.cat([padded_input(im, preprocess) for im in images])
    was_training = model.training
    model.eval()
    try:
        logits = forward(model, x, backend)
    finally:
        model.train(was_training)
    check_finite(logits)
    return probabilities(logits, images[0].shape[:2])


def predict(
    model: torch.nn.Module, image: np.ndarray, preprocess: Preprocess | None = None, backend: str = DEFAULT_BACKEND
) -> np.ndarray:
    """Class probabilities for one image: (H, W, 3) uint8 RGB -> (C, H, W) float32 NumPy, summing to 1 over C.

    preprocess: defaults to model.preprocess, else Caffe's. backend: channels_last (default), eager,
    onnxruntime (see the module docstring).
    """
    probs = predict_batch(model, [image], preprocess, backend)[0]
    return probs.cpu().numpy()
