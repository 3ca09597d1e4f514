"""Training configuration: a dataclass schema loaded from YAML, with ``section.key=value`` overrides.

Every key is checked: an unknown key, a wrong type or an out-of-range value raises InputError naming
``section.key`` (and the file). Defaults are the paper's recipe (DeepLab v1, Chen et al. 2015, sec. 4):
SGD momentum 0.9, weight decay 5e-4, batch 20, lr 1e-3 (x10 on the classifier, x2 on biases as in the
released Caffe prototxts), x0.1 every 2000 iterations, 6000 iterations, 321x321 crops.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from deeplab.errors import InputError


@dataclass
class ModelConfig:
    """Network: ``arch`` as deeplab.models.build_model names it.

    ``init``: null (from scratch), a torchvision VGG-16 state dict (ImageNet weights, fc6/fc7 decimated), or a
    trained deeplab model file (``model.pt`` or ``checkpoint.pt`` of a run): every tensor it holds is copied
    into the new model, which may add layers (e.g. the MSc branches of the paper's second stage).
    """

    arch: str = "deeplab-largefov"
    width: float = 1.0
    batch_norm: bool = False
    init: str | None = None


@dataclass
class DataConfig:
    """Training data (deeplab.data.build_dataset) and the joint crop/scale/flip augmentation.

    ``root`` relative paths are taken from the current directory. ``val_split``: optional split for
    periodic mIoU (train.val_every); ``val_max_images``: cap on its size (0 = all). ``test_split``: optional
    second split scored at the same times (all its images), for learning curves only (never used to choose).
    """

    dataset: str = "voc"
    root: str = "../shared/data/voc_mini"
    split: str = "train"
    crop_size: int = 321
    scale_min: float = 1.0
    scale_max: float = 1.0
    flip: bool = True
    workers: int = 0
    val_split: str | None = None
    val_max_images: int = 0
    test_split: str | None = None


@dataclass
class TrainConfig:
    """Optimisation. ``batch_size`` is the global batch (all processes); each process runs forward
    passes of ``micro_batch`` images and accumulates gradients until its share of the batch is done.

    schedule: "step" (lr * gamma ** (it // step_size)) or "poly" (lr * (1 - it / iterations) ** power).
    bias_lr_mult: learning-rate multiplier of convolution biases on top of their layer's (Caffe's
    ``lr_mult: 2``, the released DeepLab prototxts: x2 in the backbone, x20 on fc8); 1 turns it off.
    class_weighting: "none" (the paper), "median_frequency" (SegNet) or "enet" (1 / ln(1.02 + p), ENet):
    loss weights from the training labels, see deeplab.engine.class_weights.
    loss_resolution: "score_map" (the paper: stride-8 scores against labels subsampled by 8) or "image"
    (scores upsampled x8 as at test time, against the full-resolution labels).
    freeze: parameter names or name prefixes (``backbone``, ``head.fc6``, ...) that are not trained; their
    batch-norm layers keep their running statistics (the paper's MSc stage 2 freezes the trained DeepLab).
    precision: "fp32" or "bf16" (autocast: convolutions in bfloat16, forward and backward; the loss and
    the weights stay float32). channels_last: NHWC memory format (faster convolutions on CPU).
    threads: torch intra-op threads per process (0 = torch default). device: auto | cpu | cuda.
    checkpoint_every / log_every / val_every: in iterations (val_every 0 = never).
    """

    iterations: int = 6000
    batch_size: int = 20
    micro_batch: int = 20
    lr: float = 1e-3
    classifier_lr_mult: float = 10.0
    bias_lr_mult: float = 2.0
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "step"
    step_size: int = 2000
    gamma: float = 0.1
    power: float = 0.9
    class_weighting: str = "none"
    loss_resolution: str = "score_map"
    freeze: list[str] = field(default_factory=list)
    precision: str = "fp32"
    channels_last: bool = True
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 10
    val_every: int = 0
    threads: int = 0
    device: str = "auto"


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


SCHEDULES = ("step", "poly")
CLASS_WEIGHTINGS = ("none", "median_frequency", "enet")
LOSS_RESOLUTIONS = ("score_map", "image")
PRECISIONS = ("fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda")


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check/convert one YAML value against a field type (str, int, float, bool, list[str], or X | None)."""
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        if isinstance(value, str):  # a single name: ``train.freeze=backbone``
            value = [value]
        if not isinstance(value, list):
            raise InputError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    args = typing.get_args(hint)
    if type(None) in args:
        if value is None:
            return None
        (hint,) = [a for a in args if a is not type(None)]
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif hint is float:
        number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        if isinstance(value, str):  # PyYAML reads "1e-3" (no dot) as a string
            with contextlib.suppress(ValueError):
                number = float(value)
        if number is not None and math.isfinite(number):
            return float(number)
    elif hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    name = getattr(hint, "__name__", str(hint))
    raise InputError(f"{key}: expected {name}, got {value!r}")


def _section(cls: type, values: Any, prefix: str) -> Any:
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise InputError(f"{prefix}: expected a mapping of keys, got {values!r}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for k, v in values.items():
        if k not in hints:
            raise InputError(f"unknown key '{prefix}.{k}' (known: {', '.join(known)})")
        kwargs[k] = _coerce(v, hints[k], f"{prefix}.{k}")
    return cls(**kwargs)


def _validate(c: Config) -> None:
    def need(ok: bool, key: str, msg: str) -> None:
        if not ok:
            raise InputError(f"{key}: {msg}, got {_get(c, key)!r}")

    need(c.model.width > 0, "model.width", "must be > 0")
    need(
        c.data.crop_size >= 9 and c.data.crop_size % 8 == 1,
        "data.crop_size",
        "must be 8k+1 (e.g. 321) so the stride-8 score map and the subsampled labels line up",
    )
    need(0 < c.data.scale_min <= c.data.scale_max, "data.scale_min", "must satisfy 0 < scale_min <= scale_max")
    need(c.data.workers >= 0, "data.workers", "must be >= 0")
    need(c.data.val_max_images >= 0, "data.val_max_images", "must be >= 0")
    t = c.train
    need(t.iterations >= 1, "train.iterations", "must be >= 1")
    need(t.batch_size >= 1, "train.batch_size", "must be >= 1")
    need(1 <= t.micro_batch <= t.batch_size, "train.micro_batch", "must lie in [1, train.batch_size]")
    need(t.batch_size % t.micro_batch == 0, "train.micro_batch", f"must divide train.batch_size={t.batch_size}")
    need(t.lr > 0, "train.lr", "must be > 0")
    need(t.classifier_lr_mult > 0, "train.classifier_lr_mult", "must be > 0")
    need(t.bias_lr_mult > 0, "train.bias_lr_mult", "must be > 0")
    need(0 <= t.momentum < 1, "train.momentum", "must lie in [0, 1)")
    need(t.weight_decay >= 0, "train.weight_decay", "must be >= 0")
    need(t.schedule in SCHEDULES, "train.schedule", f"must be one of {SCHEDULES}")
    need(t.step_size >= 1, "train.step_size", "must be >= 1")
    need(0 < t.gamma <= 1, "train.gamma", "must lie in (0, 1]")
    need(t.power > 0, "train.power", "must be > 0")
    need(t.class_weighting in CLASS_WEIGHTINGS, "train.class_weighting", f"must be one of {CLASS_WEIGHTINGS}")
    need(t.loss_resolution in LOSS_RESOLUTIONS, "train.loss_resolution", f"must be one of {LOSS_RESOLUTIONS}")
    need(t.precision in PRECISIONS, "train.precision", f"must be one of {PRECISIONS}")
    need(all(t.freeze), "train.freeze", "names must not be empty")
    need(t.checkpoint_every >= 1, "train.checkpoint_every", "must be >= 1")
    need(t.log_every >= 1, "train.log_every", "must be >= 1")
    need(t.val_every >= 0, "train.val_every", "must be >= 0")
    need(
        t.val_every == 0 or c.data.val_split is not None or c.data.test_split is not None,
        "train.val_every",
        "needs data.val_split or data.test_split to be set",
    )
    need(t.threads >= 0, "train.threads", "must be >= 0")
    need(t.device in DEVICES, "train.device", f"must be one of {DEVICES}")


def _get(c: Config, key: str) -> Any:
    section, name = key.split(".")
    return getattr(getattr(c, section), name)


def config_from_dict(d: Any) -> Config:
    """Build and validate a Config from nested dicts (sections model/data/train, all optional)."""
    if d is None:
        d = {}
    if not isinstance(d, dict):
        raise InputError(f"config must be a mapping with sections model/data/train, got {type(d).__name__}")
    sections = {f.name: typing.get_type_hints(Config)[f.name] for f in dataclasses.fields(Config)}
    for k in d:
        if k not in sections:
            raise InputError(f"unknown config section '{k}' (known: {', '.join(sections)})")
    c = Config(**{k: _section(cls, d.get(k), k) for k, cls in sections.items()})
    _validate(c)
    return c


def parse_overrides(pairs: list[str]) -> dict:
    """``["train.lr=0.01", "model.init=null"]`` -> nested dict; values are parsed as YAML scalars."""
    out: dict = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) != 2 or not all(parts):
            raise InputError(f"override {pair!r}: expected section.key=value, e.g. train.lr=0.01")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as e:
            raise InputError(f"override {pair!r}: bad value ({e})") from e
        out.setdefault(parts[0], {})[parts[1]] = value
    return out


def merge(base: dict, extra: dict) -> dict:
    """Nested dict update (extra wins); neither input is modified."""
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> Config:
    """Read a YAML config file, apply ``section.key=value`` overrides, validate. Errors name the file and key."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid YAML ({e})") from e
    if raw is not None and not isinstance(raw, dict):
        raise InputError(f"{path}: expected a mapping with sections model/data/train")
    try:
        return config_from_dict(merge(raw or {}, parse_overrides(overrides or [])))
    except InputError as e:
        raise InputError(f"{path}: {e}") from None


def dump_config(c: Config) -> str:
    """YAML text that load_config reads back to the same Config."""
    return yaml.safe_dump(c.to_dict(), sort_keys=False)
