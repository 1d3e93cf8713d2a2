"""Cost priority aimed at a cost: the L1 strength adapted during the search.

With a fixed L1 strength s, where cost priority lands depends on the data, the network, the
search length and the learning rate (docs/search.md). :class:`CostTarget` instead adapts s so
that the layout the paper's rule derives (top C_out of the n·C_out candidates by |γ| per layer)
costs ``target`` — a fraction of the searched layers' full k×k×k MACs or params.

The strength is written as  s_t = κ_t · ḡ_t :

* ḡ_t is a running mean (EMA) of the task loss's gradient magnitude on γ, mean |∂L/∂γ|, measured
  after every backward before the L1 term is added (during the warm-up too, where γ is frozen
  but its gradient is computed), so κ is dimensionless: at κ = 1 the L1 pushes a candidate of
  average cost weight as hard as the task pulls an average γ;
* κ_t is the price of cost, a dual-ascent (integral) controller on the relative error of the
  derived layout's cost,  log κ_{t+1} = log κ_t + η · (c_t − T) / T,  where c_t is the cost of
  the layout derived from the current |γ| (computed every step; cheap next to the step itself).

κ > 0 always: cost priority can only push cost down. If the task alone keeps the layout below
the target, κ shrinks towards 0 and the search lands below it (the result says so).
Walkthrough: ``notebooks/02_search.ipynb``; measurements behind the defaults: docs/search.md.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..kernels import kernel_volume
from .supernet import search_layers

#: dual-ascent gain η per step on log κ (per unit relative cost error)
GAIN = 0.05
#: κ at the end of the warm-up (the L1 pushes like the task pulls)
KAPPA_START = 1.0
#: κ stays within [KAPPA_MIN, KAPPA_MAX] (the integral cannot wind up without bound)
KAPPA_MIN, KAPPA_MAX = 1e-4, 1e4
#: EMA weight of the newest gradient measurement in ḡ
GRAD_EMA = 0.1
#: the search "met" its target when the derived cost is within this relative distance of it
TOLERANCE = 0.05


def check_target(target: object) -> float:
    """A cost target: a fraction in (0, 1] of the searched layers' full k×k×k cost."""
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not (
            0 < target <= 1):
        raise ValueError(f"target: expected a fraction in (0, 1] of the searched layers' full "
                         f"k×k×k cost, got {target!r}")
    return float(target)


class CostTarget:
    """The κ controller and the per-step cost of the derived layout (module docstring).

    Args:
        net: the supernet (its SearchConv3d layers; MACs need ``output_size``, known after the
            first forward).
        target: fraction of the searched layers' full k×k×k cost.
        metric: ``"macs"`` or ``"params"``.
        gain: η; 0 keeps κ fixed (s then only follows the gradient scale).
        kappa: κ at the start.
        scale: None (ḡ measured) or a fixed s per unit κ (a controller on s itself).
    """

    def __init__(self, net: nn.Module, target: float, metric: str = "macs", gain: float = GAIN,
                 kappa: float = KAPPA_START, scale: float | None = None) -> None:
        self.layers = [layer for _, layer in search_layers(net)]
        self.target, self.metric = check_target(target), metric
        self.gain, self.kappa = gain, kappa
        self.scale = scale  # a fixed ḡ instead of the measured one (s = κ · scale)
        self.grad: float | None = scale  # ḡ
        self.cost: float | None = None  # c_t of the last update
        self._unit: list[np.ndarray] | None = None

    def _unit_costs(self) -> list[np.ndarray]:
        """Per layer: (n,) cost of one output channel of each sub-kernel, over the full cost."""
        if self._unit is None:
            rows, full = [], 0.0
            for layer in self.layers:
                per = float(layer.in_channels)
                if self.metric == "macs":
                    per *= math.prod(layer.output_size)  # set by the first forward
                rows.append(np.array([per * kernel_volume(op, layer.kernel_size)
                                      for op in layer.candidates]))
                full += per * layer.out_channels * layer.kernel_size ** 3
            self._unit = [r / full for r in rows]
        return self._unit

    def derived_cost(self) -> float:
        """Cost fraction of the layout derived now (top C_out by |γ| per layer), as
        :func:`~cakes_lite.derive_layout` without a budget computes it."""
        total = 0.0
        for layer, unit in zip(self.layers, self._unit_costs()):
            scores = layer.importance().cpu().to(torch.float64).numpy()  # (n, C_out)
            n, c_out = scores.shape
            # derive_layout's order: by score, ties by rank within the sub-kernel, then by it
            ranks = np.argsort(np.argsort(-scores, axis=1, kind="stable"), axis=1)
            ops = np.repeat(np.arange(n), c_out)
            keep = np.lexsort((ops, ranks.reshape(-1), -scores.reshape(-1)))[:c_out]
            total += float(unit[ops[keep]].sum())
        return total

    def measure(self, net: nn.Module) -> None:
        """Fold the task gradient on γ (before any L1 term is added) into ḡ."""
        grads = [layer.bn.weight.grad.abs().mean() for layer in self.layers
                 if layer.bn.weight is not None and layer.bn.weight.grad is not None]
        if not grads or self.scale is not None:
            return
        g = float(torch.stack(grads).mean())
        self.grad = g if self.grad is None else (1 - GRAD_EMA) * self.grad + GRAD_EMA * g

    def strength(self) -> float:
        """s = κ · ḡ for the L1 step of this step."""
        return self.kappa * (self.grad or 0.0)

    def update(self) -> float:
        """One dual-ascent step on log κ from the current derived cost; returns it."""
        self.cost = self.derived_cost()
        # log κ ← log κ + η · (c − T) / T
        step = self.gain * (self.cost - self.target) / self.target
        self.kappa = min(max(self.kappa * math.exp(step), KAPPA_MIN), KAPPA_MAX)
        return self.cost

    def met(self, cost: float | None = None) -> bool:
        c = self.derived_cost() if cost is None else cost
        return abs(c / self.target - 1) <= TOLERANCE

    def miss(self, cost: float) -> str:
        """One line on a missed target (``cost``: the derived layout's cost fraction)."""
        why = ("the task alone keeps the layout cheaper (cost priority's L1 can only push cost "
               "down)" if cost < self.target and self.kappa <= 2 * KAPPA_MIN else
               "the controller ran out of steps; a longer search (or a larger lr) gives it more")
        return (f"run_search: target {self.target} not met: the derived layout costs {cost:.3f} "
                f"of the full {self.metric} ({cost / self.target - 1:+.1%}); {why}")
