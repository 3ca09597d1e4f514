"""SGD parameter groups (classifier lr multiplier, no weight decay on biases) and the learning-rate schedule."""

from __future__ import annotations

import torch
from torch import nn

from deeplab.engine.config import TrainConfig


def param_groups(model: nn.Module, weight_decay: float, classifier_lr_mult: float) -> list[dict]:
    """Split parameters into up to four SGD groups, each carrying ``lr_mult``.

    Classifier parameters (``model.classifier_parameters()``) get ``lr_mult = classifier_lr_mult``, the rest 1.
    One-dimensional parameters (biases, batch-norm scales and shifts) get no weight decay.
    Frozen parameters (requires_grad False) are left out.
    """
    classifier = {id(p) for p in model.classifier_parameters()}
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for p in model.parameters():
        if p.requires_grad:
            groups.setdefault((id(p) in classifier, p.ndim > 1), []).append(p)
    return [
        {"params": params, "lr_mult": classifier_lr_mult if is_cls else 1.0,
         "weight_decay": weight_decay if decays else 0.0, "name": f"{'classifier' if is_cls else 'backbone'}"
         f"{'' if decays else '_no_decay'}"}
        for (is_cls, decays), params in sorted(groups.items())
    ]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    """SGD with momentum over param_groups; learning rates are set each iteration by set_lr."""
    groups = param_groups(model, cfg.weight_decay, cfg.classifier_lr_mult)
    for g in groups:
        g["lr"] = cfg.lr * g["lr_mult"]
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)


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
