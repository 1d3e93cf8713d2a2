"""Classes of CAKES layers for network tuning (:mod:`cakes_lite.deploy.network_tuning`): layers
whose calls are identical (input shape and memory format, weight shapes, stride, bias, dtype,
device, candidate plans) are tuned once and share one plan."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..fast import autotune
from ..ops import CAKESConv3d


@dataclass
class PlanClass:
    """Layers whose calls are identical: tuned once, one plan for all (``"in_place"``).

    Attributes:
        names, layers: the member layers, in module order.
        plans: the candidate plans (:func:`cakes_lite.fast.autotune.candidates`).
        fallback: ``"dense"`` where allowed, else the static default (or the only candidate).
        times: plan -> the samples that decided (ms), filled by the tuning.
        chosen: the plan pinned on every member.
    """

    names: list[str]
    layers: list[CAKESConv3d]
    plans: list[str]
    fallback: str
    times: dict[str, list[float]] = field(default_factory=dict)
    chosen: str | None = None
    margin: float | None = None  # set where a choice is decided again (its segment's share)


def plan_classes(model: nn.Module, example: torch.Tensor) -> list[PlanClass]:
    """The fast-path CAKES layers of ``model`` that run on ``example``, grouped by their call;
    every layer pinned to its fallback."""
    layers = []
    for name, layer in model.named_modules():
        if isinstance(layer, CAKESConv3d) and layer.impl == "fast":
            weights = [w.detach() for w in layer.weights.values()]
            plans = autotune.candidates(weights, layer.stride, layer.dense_allowed())
            layer.plan = ("dense" if "dense" in plans else autotune.DEFAULT_PLAN
                          if autotune.DEFAULT_PLAN in plans else plans[0])
            layers.append((name, layer, plans, tuple(tuple(w.shape) for w in weights)))
    seen: dict[int, tuple] = {}

    def signature(module: nn.Module, args: tuple) -> None:
        x = args[0]
        seen.setdefault(id(module), (tuple(x.shape), x.stride(), x.dtype, str(x.device)))

    hooks = [layer.register_forward_pre_hook(signature) for _, layer, _, _ in layers]
    try:
        model(example)
    finally:
        for h in hooks:
            h.remove()
    groups: dict[tuple, PlanClass] = {}
    for name, layer, plans, shapes in layers:
        if id(layer) not in seen:  # not called on this input: left to per-layer autotuning
            layer.plan = None
            continue
        key = (seen[id(layer)], shapes, layer.bias is not None, layer.stride, tuple(plans))
        cls = groups.setdefault(key, PlanClass([], [], plans, layer.plan))
        cls.names.append(name)
        cls.layers.append(layer)
    return list(groups.values())


def pin(classes: list[PlanClass], plans: list[str]) -> None:
    """Pin ``plans[i]`` on every layer of ``classes[i]``."""
    for cls, plan in zip(classes, plans):
        for layer in cls.layers:
            layer.plan = plan


def decide(cls: PlanClass, best_of: dict[str, float], margin: float) -> str:
    """The fastest plan if it beats the fallback by more than ``margin``, else the fallback."""
    best = min(cls.plans, key=best_of.__getitem__)
    return best if best_of[best] < best_of[cls.fallback] * (1 - margin) else cls.fallback
