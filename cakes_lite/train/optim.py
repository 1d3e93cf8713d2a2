"""Optimiser set-up for :func:`~.loop.fit`: parameter groups (where weight decay applies) and
the optimiser by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn


def default_param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on weights with ≥ 2 dims only; none on BN γ/β and biases (nor on the
    supernet's γ, whose L1 step the search applies instead)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(name: str | Callable, groups: list[dict], lr: float,
                   momentum: float = 0.9) -> torch.optim.Optimizer:
    """``"adamw"``, ``"sgd"`` (Nesterov momentum) or a factory ``f(param_groups) -> Optimizer``."""
    if callable(name):
        return name(groups)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0)
    raise ValueError(f"optimizer: expected 'adamw', 'sgd' or a callable, got {name!r}")
