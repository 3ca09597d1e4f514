"""ONNX export of the DeepLab network (torch.export-based exporter) and an onnxruntime runner.

The graph maps image: (B, 3, H, W) float32 preprocessed input -> logits: (B, C, (H-1)/8+1, (W-1)/8+1).
B, H and W are dynamic, with H and W of the form 8k+1 (what predict() feeds after padding; 321, 513, ...):
for those sizes the stride-8 grids of the backbone and the MSc branches provably agree, which
torch.export needs to export the MSc sum.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from deeplab.errors import InputError
from deeplab.io import atomic_path
from deeplab.models.deeplab import DeepLab, aligned_size

OPSET = 18
MAX_SIDE = 8 * 1024 + 1


def export_onnx(
    model: DeepLab, path: str | os.PathLike, *, example_size: int = 321, dynamic: bool = True, opset: int = OPSET
) -> Path:
    """Write model (in eval mode) as ONNX. example_size: traced side (made 8k+1); dynamic: B/H/W symbolic."""
    path = Path(path)
    side = aligned_size(max(9, int(example_size)))
    x = torch.zeros(1, 3, side, side)
    dynamic_shapes = None
    if dynamic:
        k_h = torch.export.Dim("k_h", min=2, max=(MAX_SIDE - 1) // 8 + 1)
        k_w = torch.export.Dim("k_w", min=2, max=(MAX_SIDE - 1) // 8 + 1)
        dynamic_shapes = {"x": {0: torch.export.Dim("batch", min=1, max=1024), 2: 8 * k_h - 7, 3: 8 * k_w - 7}}
    # a private NCHW copy in eval mode: the caller's model keeps its mode and memory format (torch.export's
    # dynamic shapes do not trace channels_last weights)
    model = copy.deepcopy(model).to(memory_format=torch.contiguous_format).eval()  # type: ignore[call-overload]
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)  # "torchvision is not installed, skipping torchvision::nms" etc.
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.inference_mode(False):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model,
                (x,),
                dynamo=True,
                dynamic_shapes=dynamic_shapes,
                opset_version=opset,
                input_names=["image"],
                output_names=["logits"],
                external_data=False,
            )
            if program is None:
                raise RuntimeError("torch.onnx.export returned no program")
            with atomic_path(path) as tmp:
                program.save(str(tmp))
    finally:
        onnx_log.setLevel(level)
    return path


class OnnxRunner:
    """onnxruntime session with the model's calling convention: (B, 3, H, W) tensor -> (B, C, h, w) tensor."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise InputError(f"ONNX model not found: {path}")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        # no busy-waiting worker threads between runs: they would steal the CPU from torch code in between
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise InputError(f"{path}: not a loadable ONNX model ({e})") from e
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(x.detach().cpu().numpy(), np.float32)})
        return torch.from_numpy(out[0])
