"""Optimiser set-up for :func:`~.loop.fit`: parameter groups (where weight decay applies) and
the optimiser by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn


def default_param_groups(model: nn.Module, weight_decay: float = 1e-4) -> list[dict[str, Any]]:
    """The one weight-decay rule of cakes_lite, for training (:func:`~.loop.fit`) and search
    (``cakes_lite.search.param_groups`` is this function).

    Weight decay on parameters with ≥ 2 dims (conv and linear weights); none on those with ≤ 1
    (BN γ/β, biases — and the supernet's γ, which the search's L1 step drives instead: decay
    would shrink every γ alike and blur the ranking). Frozen parameters
    (``requires_grad=False``) are left out of both groups.

    Returns:
        ``[{"params": decay, "weight_decay": weight_decay}, {"params": no_decay,
        "weight_decay": 0.0}]``.

    >>> opt = torch.optim.SGD(default_param_groups(net, 1e-4), lr=0.1, momentum=0.9)
    """
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
