"""Cost priority aimed at a cost: the L1 step on γ steered by a price during the search.

With a fixed L1 strength s, where cost priority lands depends on the data, the network, the
search length and the learning rate: on the planted tasks and on something-something-lite the
paper's s = 1e-2 takes the layout from the even split (0.51 of the full cost) to ≈ 0.2 within
one epoch after the warm-up, whatever the task (docs/search.md). :class:`CostTarget` instead
steers the L1 step so that the layout the *paper's rule* derives (top C_out of the n·C_out
candidates by |γ| per layer) costs ``target`` — a fraction of the searched layers' full k×k×k
MACs or params. No budgeted derivation is involved in the result.

After every backward (once the warm-up is over):

1. **price**: the smallest price λ (in |γ| per unit of cost fraction) at which the current
   |γ|, shifted by −λ·a_j (a_j: candidate j's share of the full cost, so within a layer the
   paper's 27 : 9 : 3), would derive a layout inside the band target · (1 ± 2.5 %) — the middle
   of the prices that do; where no price lands inside the band (coarse channel costs), the
   price at which the cost crosses the target, pushed on by 1 % of the mean |γ|. λ > 0: the
   layout is too expensive, λ < 0: too cheap (the price can pull expensive candidates up too);
2. **proximal L1 step**: |γ_j| ← max(|γ_j| − β·λ·a_j, floor_j), sign kept (applied to γ
   directly, outside SGD's momentum, like the proximal step of an L1 penalty), so each step
   closes a share β of the way to the price's layout while the task gradient keeps reshuffling
   γ. The floor (1e-4 for the layer's cheapest sub-kernel, less ∝ 1/cost for the others)
   keeps switched-off candidates ranked cheapest first instead of tying at 0.

We measured a plain feedback controller on the strength first (s = κ·ḡ, κ adapted from the
derived cost, ḡ the task gradient's magnitude on γ): the derived cost is a step function of
tiny |γ| differences and the L1's drift is coherent, so any κ near 1 collapsed the layout to
≈ 0.2 in one epoch and no gain brought it back within 5 % (docs/search.md).
Walkthrough: ``notebooks/02_search.ipynb``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..kernels import kernel_volume
from .supernet import search_layers

#: β: share of the way to the price's layout that one proximal step closes
STEP = 0.3
#: the search "met" its target when the derived cost is within this relative distance of it
TOLERANCE = 0.05
#: the price aims at the middle of target · (1 ± BAND) (half the tolerance: room for noise)
BAND = TOLERANCE / 2
#: where no price lands in the band: push past the crossing by this share of the mean |γ|
OVERSHOOT = 0.01
BISECTIONS = 40
#: |γ| at which the proximal step leaves the cheapest switched-off candidate (others: less)
FLOOR = 1e-4


def check_target(target: object) -> float:
    """A cost target: a fraction in (0, 1] of the searched layers' full k×k×k cost."""
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not (
            0 < target <= 1):
        raise ValueError(f"target: expected a fraction in (0, 1] of the searched layers' full "
                         f"k×k×k cost, got {target!r}")
    return float(target)


class CostTarget:
    """The price controller (module docstring) of one supernet.

    Args:
        net: the supernet (its SearchConv3d layers; MACs need ``output_size``, known after the
            first forward).
        target: fraction of the searched layers' full k×k×k cost.
        metric: ``"macs"`` or ``"params"``.
        step: β (None: ``STEP``).

    Attributes:
        cost: cost fraction of the layout derived at the last step.
        price: λ of the last step.
    """

    def __init__(self, net: nn.Module, target: float, metric: str = "macs",
                 step: float | None = None) -> None:
        self.layers = [layer for _, layer in search_layers(net)]
        self.target, self.metric = check_target(target), metric
        self.step_share = STEP if step is None else step
        self.cost: float | None = None
        self.price = 0.0
        self._unit: list[np.ndarray] | None = None

    def unit_costs(self) -> list[np.ndarray]:
        """Per layer: (n,) a of one output channel of each sub-kernel (share of the full cost)."""
        if self._unit is None:
            rows, full = [], 0.0
            for layer in self.layers:
                per = float(layer.in_channels)
                if self.metric == "macs":
                    if layer.output_size is None:
                        raise ValueError("target: a searched layer never ran a forward pass, "
                                         "so its MACs are unknown (is it on the loss path?); "
                                         "use metric='params'")
                    per *= math.prod(layer.output_size)  # set by the first forward
                rows.append(np.array([per * kernel_volume(op, layer.kernel_size)
                                      for op in layer.candidates]))
                full += per * layer.out_channels * layer.kernel_size ** 3
            self._unit = [r / full for r in rows]
        return self._unit

    def _scores(self) -> list[tuple[np.ndarray, np.ndarray, int]]:
        """Per layer: (|γ|, a, C_out) over the candidates, in derive_layout's tie order (rank
        of |γ| within the sub-kernel, then sub-kernel): a stable sort by key then reproduces
        derive_layout's selection. Within a sub-kernel a is constant, so the rank does not
        depend on the price."""
        out = []
        for layer, unit in zip(self.layers, self.unit_costs()):
            scores = layer.importance().cpu().to(torch.float64).numpy()  # (n, C_out)
            n, c_out = scores.shape
            rank = np.argsort(np.argsort(-scores, axis=1, kind="stable"), axis=1)  # (n, C_out)
            ops = np.repeat(np.arange(n), c_out)
            tie = np.lexsort((ops, rank.reshape(-1)))  # by rank, then sub-kernel
            out.append((scores.reshape(-1)[tie], np.repeat(unit, c_out)[tie], c_out))
        return out

    @staticmethod
    def _cost_at(rows, lam: float) -> float:
        """Cost fraction of the layout derived from |γ| − λ·a (top C_out per layer)."""
        total = 0.0
        for score, cost, c_out in rows:
            keep = np.argsort(lam * cost - score, kind="stable")[:c_out]
            total += float(cost[keep].sum())
        return total

    def derived_cost(self) -> float:
        """Cost fraction of the layout derived now (as :func:`~cakes_lite.derive_layout`
        without a budget computes it)."""
        return self._cost_at(self._scores(), 0.0)

    def _crossing(self, rows, level: float, span: float) -> float:
        """The price at which the derived cost falls to ≤ ``level`` (cost falls as λ rises)."""
        lo, hi = -span, span
        for _ in range(BISECTIONS):
            mid = 0.5 * (lo + hi)
            if self._cost_at(rows, mid) > level:
                lo = mid
            else:
                hi = mid
        return hi

    def find_price(self) -> float:
        """λ for the current |γ| (module docstring, step 1)."""
        rows = self._scores()
        mean_gamma = float(np.mean(np.concatenate([r[0] for r in rows])))
        a_min = min(float(r[1].min()) for r in rows)
        # beyond ±span every layer is all-cheapest / all-most-expensive
        span = 2 * max(float(np.abs(r[0]).max()) for r in rows) / a_min + 1.0
        upper = self._crossing(rows, self.target * (1 + BAND), span)  # cost ≤ T(1+b) from here
        lower = self._crossing(rows, self.target * (1 - BAND), span)  # cost < T(1−b) from here
        if lower > upper:  # prices in [upper, lower) land in the band: aim at their middle
            return 0.5 * (upper + lower)
        # coarse costs, no layout in the band: aim at the one of the two layouts around the
        # target that is closer to it, and stay (λ = 0) once there — pushing across the
        # crossing every step would flip between the two
        cross = self._crossing(rows, self.target, span)  # cost(λ) ≤ T from here on
        below, above = self._cost_at(rows, cross), self._cost_at(rows, cross - 1e-9 * span)
        now = self._cost_at(rows, 0.0)
        aim = below if abs(below - self.target) <= abs(above - self.target) else above
        if now == aim:
            return 0.0
        push = OVERSHOOT * mean_gamma / float(np.mean(np.concatenate([r[1] for r in rows])))
        return cross + push if aim == below else cross - push

    @torch.no_grad()
    def step(self) -> float:
        """One price update and proximal L1 step on every searched layer's γ; returns λ."""
        self.cost = self.derived_cost()
        self.price = self.find_price()
        for layer, unit in zip(self.layers, self.unit_costs()):
            gamma = layer.bn.weight
            if gamma is None:
                continue
            a = torch.as_tensor(unit, dtype=gamma.dtype, device=gamma.device)
            # |γ_j| ← max(|γ_j| − β·λ·a_j, floor_j), sign kept (λ < 0 pulls |γ_j| up)
            shift = (self.step_share * self.price * a).repeat_interleave(layer.out_channels)
            # a switched-off candidate stops at a tiny floor ∝ 1/cost instead of 0, so that
            # among switched-off candidates the cheaper one ranks first (exact zeros would tie,
            # and derive_layout's tie-break hands ties to the most expensive sub-kernel)
            floor = (FLOOR * a.min() / a).repeat_interleave(layer.out_channels)
            size = gamma.abs()
            sign = torch.where(gamma < 0, -1.0, 1.0).to(gamma.dtype)  # a γ at 0 can be pulled up
            gamma.copy_(sign * torch.maximum(size - shift, torch.minimum(size, floor)))
        return self.price

    def met(self, cost: float | None = None) -> bool:
        c = self.derived_cost() if cost is None else cost
        return abs(c / self.target - 1) <= TOLERANCE

    def miss(self, cost: float) -> str:
        """One line on a missed target (``cost``: the derived layout's cost fraction)."""
        return (f"run_search: target {self.target} not met: the derived layout costs {cost:.3f} "
                f"of the full {self.metric} ({cost / self.target - 1:+.1%}); the search ran out "
                "of steps to steer it (a longer search, or a larger lr, gives it more)")
