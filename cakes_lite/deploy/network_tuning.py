"""Choosing each CAKES layer's plan inside the network it runs in (inference).

:mod:`cakes_lite.fast.autotune` times a layer's plans on their own, on an input that stays in
cache between repeats. Inside a network the layer reads what the previous layer just wrote and its
temporaries compete with the rest of the model for cache, so a plan that wins alone can lose in
place: in the bundled ``video_cakes_budget`` at batch 8 the tap-folded plan measured 10 % faster
than ``dense`` alone and made the whole model 4 % slower. :func:`tune_plans` therefore times the
*whole forward* with each candidate plan of one layer, the other layers fixed, layer after layer
(one pass of coordinate descent), and pins the winners (``layer.plan``). With ``dense`` among the
candidates (:func:`cakes_lite.deploy.inference.for_inference` allows it) a layer keeps a cheaper
plan only where that makes the network faster. Used by ``for_inference(model, example=x)``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..fast import autotune
from ..ops import CAKESConv3d
from ..speed import interleaved_samples


@torch.no_grad()
def tune_plans(model: nn.Module, example: torch.Tensor, repeats: int = 5) -> dict[str, str]:
    """Pin every CAKESConv3d's plan to the one that makes ``model(example)`` fastest.

    Each layer's candidates (:func:`cakes_lite.fast.autotune.candidates`; ``"dense"`` where the
    layer has ``allow_dense``) are timed as whole forwards, interleaved, ``repeats`` rounds after
    a warm-up (:func:`cakes_lite.speed.interleaved_samples`), the fastest round of each kept
    (interference only adds time). Costs about ``layers × candidates × (repeats + 1)`` forwards.

    Args:
        model: an eval-mode network (e.g. from :func:`cakes_lite.deploy.inference.for_inference`);
            changed in place: each CAKESConv3d's ``plan`` is set.
        example: an input of the shape that will be served (plans depend on shapes).
        repeats: timed rounds per layer.

    Returns:
        ``{layer name: plan}``, in module order.

    Raises:
        ValueError: ``repeats`` not a positive int, or no CAKESConv3d in ``model``.
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats: expected a positive int, got {repeats!r}")
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, CAKESConv3d)]
    if not layers:
        raise ValueError("model: expected a network with CAKESConv3d layers, found none")
    for _, layer in layers:
        layer.plan = None
    model(example)  # every layer measured alone first (cakes_lite/fast/autotune.py): the start
    for _, layer in layers:
        layer.plan = layer.last_plan if layer.impl == "fast" else None
    chosen = {}
    for name, layer in layers:
        if layer.impl != "fast":
            continue
        weights = [w.detach() for w in layer.weights.values()]
        plans = autotune.candidates(weights, layer.stride, layer.allow_dense)
        if len(plans) == 1:
            layer.plan = chosen[name] = plans[0]
            continue
        times = interleaved_samples({p: _forward_with(model, example, layer, p) for p in plans},
                                    repeats, warmup=1, device=example.device)
        layer.plan = min(plans, key=lambda p: min(times[p]))
        chosen[name] = layer.plan
        # drop the other plans' prepared weights (each a copy of the layer's weights)
        layer._prepared = {k: v for k, v in layer._prepared.items() if k == layer.plan}
    return chosen


def _forward_with(model: nn.Module, x: torch.Tensor, layer: CAKESConv3d, plan: str):
    """A no-argument callable: ``model(x)`` with ``layer`` pinned to ``plan``."""
    def step() -> None:
        layer.plan = plan
        model(x)
    return step
