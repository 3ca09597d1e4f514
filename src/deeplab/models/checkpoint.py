"""Model checkpoints: architecture + weights + everything needed to use them (classes, palette, Preprocess, CRF)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from deeplab.errors import InputError
from deeplab.io import atomic_torch_save, load_torch_file
from deeplab.models.deeplab import DeepLab, build_model
from deeplab.preprocess import Preprocess

FORMAT = "deeplab-model"
VERSION = 1
TRAIN_STATE_FORMAT = "deeplab-train-state"  # deeplab.engine.state: a run's checkpoint.pt


@dataclass
class LoadedModel:
    """A checkpoint loaded for use: model in eval mode (carrying .preprocess, .classes, .palette, .crf);
    palette (K, 3) uint8; meta = the raw non-weight fields."""

    model: DeepLab
    arch: str
    classes: list[str]
    palette: np.ndarray
    preprocess: Preprocess
    crf: dict | None = None
    meta: dict = field(default_factory=dict)

    def predict(self, images, **kwargs):
        """Labels (or probabilities) at each input's size; see deeplab.models.inference.segment."""
        return self.model.predict(images, **kwargs)


def save_model(
    path: str | os.PathLike,
    model: DeepLab,
    *,
    classes: list[str],
    palette: np.ndarray | list,
    preprocess: Preprocess,
    crf: dict | None = None,
    extra: dict | None = None,
) -> Path:
    """Write a self-describing checkpoint atomically. Returns the path."""
    if not isinstance(model, DeepLab):
        raise InputError(f"save_model: expected a DeepLab model, got {type(model).__name__}")
    classes = [str(c) for c in classes]
    if len(classes) != model.num_classes:
        raise InputError(f"save_model: {len(classes)} class names for a {model.num_classes}-class model")
    pal = np.asarray(palette, dtype=np.int64).reshape(-1, 3) if len(palette) else np.zeros((0, 3), np.int64)
    if pal.size and (pal.min() < 0 or pal.max() > 255):
        raise InputError("save_model: palette values must lie in [0, 255]")
    ckpt = {
        "format": FORMAT,
        "version": VERSION,
        **model.config(),
        "classes": classes,
        "palette": pal.astype(np.uint8).tolist(),
        "preprocess": preprocess.to_dict(),
        "crf": dict(crf) if crf is not None else None,
        "extra": dict(extra) if extra is not None else {},
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
    }
    return atomic_torch_save(ckpt, path)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load and validate a model file as a save_model dict (InputError naming the file if missing/corrupt/foreign).

    Accepts save_model files and the ``checkpoint.pt`` a training run writes (complete or interrupted).
    """
    path = Path(path)
    ckpt = load_torch_file(path, "model checkpoint")
    if isinstance(ckpt, dict) and ckpt.get("format") == TRAIN_STATE_FORMAT:
        ckpt = _from_train_state(ckpt, path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise InputError(f"{path}: not a deeplab model file (write one with `deeplab train` or save_model)")
    if ckpt.get("version", 0) > VERSION:
        raise InputError(f"{path}: checkpoint version {ckpt['version']} is newer than this deeplab ({VERSION})")
    missing = [k for k in ("arch", "num_classes", "width", "batch_norm", "state_dict", "preprocess") if k not in ckpt]
    if missing:
        raise InputError(f"{path}: deeplab checkpoint lacks {', '.join(missing)}")
    pre = ckpt["preprocess"]
    if not isinstance(pre, dict) or not {"mean", "bgr"} <= set(pre):
        raise InputError(f"{path}: its preprocess entry {pre!r} lacks 'mean' or 'bgr'")
    return ckpt


def _from_train_state(state: dict, path: Path) -> dict:
    """A training checkpoint as a save_model dict: architecture from its config, classes/palette/preprocess
    from its ``meta`` (older checkpoints: generic class names, the input convention implied by model.init)."""
    try:
        cfg, weights = state["config"]["model"], state["model"]
        num_classes = int(weights["classifier.weight"].shape[0])
    except (KeyError, TypeError, AttributeError) as e:
        raise InputError(f"{path}: training checkpoint without a model config or classifier weights ({e})") from e
    meta = state.get("meta") or {}
    if "preprocess" in meta:
        pre = meta["preprocess"]
    else:
        from deeplab.models.torchvision_init import torchvision_preprocess

        pre = (torchvision_preprocess() if cfg.get("init") else Preprocess()).to_dict()
    return {
        "format": FORMAT,
        "version": VERSION,
        "arch": cfg["arch"],
        "num_classes": num_classes,
        "width": cfg["width"],
        "batch_norm": cfg["batch_norm"],
        "classes": meta.get("classes") or [f"class{i}" for i in range(num_classes)],
        "palette": meta.get("palette") or [],
        "preprocess": pre,
        "crf": meta.get("crf"),
        "extra": {"config": state["config"], "iterations": state.get("iteration"), "train_state": str(path)},
        "state_dict": weights,
    }


def load_model(path: str | os.PathLike = "default", device: str | torch.device | None = None) -> LoadedModel:
    """Rebuild the model of a model file: ``"default"`` (the shipped model), a save_model file or a run's
    checkpoint.pt. Eval mode, on ``device`` (default CPU), its Preprocess attached as model.preprocess."""
    from deeplab.weights import resolve_model_path

    path = resolve_model_path(path)
    ckpt = read_checkpoint(path)
    try:
        model = build_model(ckpt["arch"], int(ckpt["num_classes"]), float(ckpt["width"]), bool(ckpt["batch_norm"]))
    except InputError as e:
        raise InputError(f"{path}: {e}") from e
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise InputError(f"{path}: weights do not fit arch {ckpt['arch']!r}: {e}") from e
    if not all(torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point()):
        raise InputError(f"{path}: the model's weights contain NaN or infinite values (a diverged training?)")
    model.eval()
    if device is not None:
        model.to(device)
    preprocess = Preprocess.from_dict(ckpt["preprocess"])
    model.preprocess = preprocess
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    palette = np.asarray(ckpt.get("palette") or np.zeros((0, 3)), dtype=np.uint8).reshape(-1, 3)
    classes = list(ckpt.get("classes") or [])
    model.classes, model.palette, model.crf = classes, palette, ckpt.get("crf")  # for model.predict(..., crf=True)
    return LoadedModel(model, ckpt["arch"], classes, palette, preprocess, ckpt.get("crf"), meta)
