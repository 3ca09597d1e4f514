"""SGD parameter groups (classifier and bias lr multipliers, no weight decay on biases), frozen layers and the
learning-rate schedule."""

from __future__ import annotations

import torch
from torch import nn

from deeplab.engine.config import TrainConfig
from deeplab.errors import InputError


def param_groups(
    model: nn.Module, weight_decay: float, classifier_lr_mult: float, bias_lr_mult: float = 1.0
) -> list[dict]:
    """Split the trainable parameters into SGD groups, each carrying ``lr_mult``.

    As the released Caffe prototxts: a convolution's weight learns at its layer's rate (x1, or
    ``classifier_lr_mult`` for ``model.classifier_parameters()``) with weight decay, its bias at
    ``bias_lr_mult`` times that without decay. Batch-norm scales and shifts learn at x1 without decay.
    Frozen parameters (requires_grad False) are left out.
    """
    classifier = {id(p) for p in model.classifier_parameters()}  # type: ignore[operator]
    conv_biases = {id(m.bias) for m in model.modules() if isinstance(m, nn.Conv2d) and m.bias is not None}
    groups: dict[tuple[bool, str], list[nn.Parameter]] = {}
    for p in model.parameters():
        if p.requires_grad:
            kind = "weight" if p.ndim > 1 else "bias" if id(p) in conv_biases else "norm"
            groups.setdefault((id(p) in classifier, kind), []).append(p)
    out = []
    for (is_cls, kind), params in sorted(groups.items()):
        mult = classifier_lr_mult if is_cls else 1.0
        out.append(
            {
                "params": params,
                "lr_mult": mult * (bias_lr_mult if kind == "bias" else 1.0),
                "weight_decay": weight_decay if kind == "weight" else 0.0,
                "name": ("classifier" if is_cls else "backbone") + ("" if kind == "weight" else f"_{kind}"),
            }
        )
    return out


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    """SGD with momentum over param_groups; learning rates are set each iteration by set_lr."""
    groups = param_groups(model, cfg.weight_decay, cfg.classifier_lr_mult, cfg.bias_lr_mult)
    if not groups:
        raise InputError("train.freeze: every parameter is frozen; nothing to train")
    for g in groups:
        g["lr"] = cfg.lr * g["lr_mult"]
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def freeze(model: nn.Module, prefixes: list[str]) -> list[str]:
    """Stop training every parameter whose name is, or starts with, one of ``prefixes`` (``backbone``,
    ``head.fc6``, ``classifier.bias``). Returns the frozen names; InputError names a prefix matching nothing."""
    names = [n for n, _ in model.named_parameters()]
    for prefix in prefixes:
        if not any(_matches(n, prefix) for n in names):
            tops = sorted({n.split(".")[0] for n in names})
            raise InputError(f"train.freeze: {prefix!r} names no parameter (top-level names: {', '.join(tops)})")
    frozen = []
    for name, p in model.named_parameters():
        if any(_matches(name, prefix) for prefix in prefixes):
            p.requires_grad_(False)
            frozen.append(name)
    return frozen


def frozen_norms(model: nn.Module) -> list[nn.Module]:
    """Batch-norm layers whose parameters are all frozen: the trainer keeps them in eval mode, so their
    running statistics stay those of the trained model."""
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in m.parameters())
    ]


def lr_at(iteration: int, cfg: TrainConfig) -> float:
    """Base learning rate for 0-based ``iteration``.

    step: lr * gamma ** (iteration // step_size); poly: lr * (1 - iteration / iterations) ** power.
    """
    if cfg.schedule == "step":
        return cfg.lr * cfg.gamma ** (iteration // cfg.step_size)
    if cfg.schedule == "poly":
        return cfg.lr * max(0.0, 1.0 - iteration / cfg.iterations) ** cfg.power
    raise ValueError(f"unknown schedule {cfg.schedule!r}")


def set_lr(optimizer: torch.optim.Optimizer, base_lr: float) -> None:
    """Give every group ``base_lr * lr_mult``."""
    for g in optimizer.param_groups:
        g["lr"] = base_lr * g.get("lr_mult", 1.0)
