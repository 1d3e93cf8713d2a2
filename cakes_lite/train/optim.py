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


_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm,
          nn.modules.instancenorm._InstanceNorm)


def bn_bias_param_groups(model: nn.Module, weight_decay: float = 3e-4,
                         bias_lr_mult: float = 2.0) -> list[dict[str, Any]]:
    """The parameter groups of TSN-style video training (the CAKES authors' optimiser policy).

    * conv and linear weights: weight decay;
    * normalisation layers' γ and β (BatchNorm, GroupNorm, LayerNorm, InstanceNorm): no decay;
    * conv and linear biases: no decay and the learning rate × ``bias_lr_mult``;
    * any other parameter: decay if it has ≥ 2 dims, none otherwise.

    The authors' code switches the bias multiplier and the no-decay rules on only after the
    warm-up epochs; here they hold from the first step. Frozen parameters are left out.

    Returns:
        ``[{"params", "weight_decay": weight_decay, "name": "weights"},
        {…, 0.0, "norm"}, {…, 0.0, "lr_mult": bias_lr_mult, "name": "bias"}]`` — ``lr_mult``
        is applied by the schedule (:func:`~.schedule.set_lr`) on every step.
    """
    decay, norm, bias, seen = [], [], [], set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            if isinstance(module, _NORMS):
                norm.append(p)
            elif name == "bias" and p.ndim == 1:
                bias.append(p)
            else:
                (decay if p.ndim >= 2 else norm).append(p)
    return [{"params": decay, "weight_decay": weight_decay, "name": "weights"},
            {"params": norm, "weight_decay": 0.0, "name": "norm"},
            {"params": bias, "weight_decay": 0.0, "lr_mult": float(bias_lr_mult),
             "name": "bias"}]


def make_optimizer(name: str | Callable, groups: list[dict], lr: float,
                   momentum: float = 0.9, nesterov: bool | None = None) -> torch.optim.Optimizer:
    """``"adamw"``, ``"sgd"`` or a factory ``f(param_groups) -> Optimizer``.

    ``"sgd"`` uses Nesterov momentum unless ``nesterov=False`` (the video papers' plain
    momentum); ``nesterov=None`` keeps the default (Nesterov whenever momentum > 0).
    """
    if callable(name):
        return name(groups)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "sgd":
        nesterov = momentum > 0 if nesterov is None else bool(nesterov)
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov)
    raise ValueError(f"optimizer: expected 'adamw', 'sgd' or a callable, got {name!r}")
