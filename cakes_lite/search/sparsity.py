"""Importance of candidate channels, the cost-weighted L1 step on γ, and optimizer groups.

Network slimming (Liu et al. 2017) as used by CAKES^C: after ``loss.backward()`` add the
subgradient of  s · Σ_j w_{op(j)} |γ_j|  to the γ gradients, with w_op proportional to the
sub-kernel's cost (its kernel volume, 27 : 9 : 3 for k×k×k : 1×k×k : k×1×1 at k = 3) and
normalised to sum to 1 over the layer's candidates. Expensive candidates are pushed towards 0
faster, so the derived layout leans to cheap sub-kernels unless the expensive ones earn their
keep. γ and β are excluded from weight decay (:func:`param_groups`, which is training's
:func:`~cakes_lite.train.default_param_groups`: one rule), otherwise decay would shrink all γ
alike and blur the ranking. Walkthrough: ``notebooks/02_search.ipynb``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..kernels import kernel_volume
from ..train.optim import default_param_groups as param_groups  # noqa: F401 (one rule)
from .layer import SearchConv3d
from .supernet import search_layers


def cost_weights(layer: SearchConv3d) -> dict[str, float]:
    """Sub-kernel -> w_op = volume / Σ volumes over the layer's candidates (sums to 1)."""
    vol = {name: kernel_volume(name, layer.kernel_size) for name in layer.candidates}
    total = float(sum(vol.values()))
    return {name: v / total for name, v in vol.items()}


@torch.no_grad()
def sparsity_step(model: nn.Module, s: float, weighted: bool = True, *,
                  scaler: torch.amp.GradScaler | None = None) -> int:
    """Add the cost-weighted L1 subgradient on γ of every SearchConv3d to its ``.grad``.

    Call between ``loss.backward()`` and ``optimizer.step()``. Under mixed precision with a
    ``GradScaler`` the gradients are still multiplied by the loss scale at that point: either
    call ``scaler.unscale_(optimizer)`` first and then this (recommended: one rule, the gradients
    are true gradients), or pass ``scaler=`` *without* unscaling, and the L1 term is multiplied
    by ``scaler.get_scale()`` so that ``scaler.step`` divides it back out. Either way the step
    equals the fp32 one; adding an unscaled term to scaled gradients would shrink it by the scale.

    Args:
        model: a supernet (or a single SearchConv3d).
        s: sparsity strength (≥ 0); 0 does nothing.
        weighted: w_op ∝ kernel volume (CAKES^C); False: the same w = 1/n for all candidates.
        scaler: the GradScaler whose scaled gradients are in ``.grad`` (not yet unscaled).

    Returns:
        Number of layers touched.
    """
    if not isinstance(s, (int, float)) or isinstance(s, bool) or s < 0:
        raise ValueError(f"s: expected a non-negative number, got {s!r}")
    if scaler is not None and not isinstance(scaler, torch.amp.GradScaler):
        raise ValueError(f"scaler: expected a torch.amp.GradScaler or None, got {scaler!r}")
    loss_scale = float(scaler.get_scale()) if scaler is not None and scaler.is_enabled() else 1.0
    layers = [model] if isinstance(model, SearchConv3d) else [m for _, m in search_layers(model)]
    touched = 0
    for layer in layers:
        gamma = layer.bn.weight
        if gamma is None or s == 0:
            continue
        n = len(layer.candidates)
        w = cost_weights(layer) if weighted else {name: 1.0 / n for name in layer.candidates}
        # per candidate channel: w_op(j), laid out like γ (n blocks of C_out)
        scale = torch.tensor([w[name] for name in layer.candidates], dtype=gamma.dtype,
                             device=gamma.device).repeat_interleave(layer.out_channels)
        if gamma.grad is None:
            gamma.grad = torch.zeros_like(gamma)
        # ∂/∂γ_j [ s · w_op(j) · |γ_j| ] = s · w_op(j) · sign(γ_j)
        # (× the loss scale when the gradients are still scaled, see the docstring)
        gamma.grad.add_(s * loss_scale * scale * torch.sign(gamma))
        touched += 1
    return touched


def importance(model: nn.Module) -> dict[str, dict[str, list[float]]]:
    """|γ| of every candidate channel: ``{layer name: {sub-kernel: [C_out floats]}}``.

    A pure function of the supernet's parameters (plain lists, JSON-able, for history and
    notebooks). For one layer as a tensor use :meth:`SearchConv3d.importance` ((n, C_out)).
    """
    out = {}
    for name, layer in search_layers(model):
        scores = layer.importance().cpu()  # .cpu() before any float64 (MPS has none)
        out[name] = {op: scores[i].tolist() for i, op in enumerate(layer.candidates)}
    return out
