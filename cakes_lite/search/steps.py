"""The step hook of :func:`~cakes_lite.run_search`: what runs between backward and the step.

Warm-up, the L1 step on γ and the cost-target controller live here, so that what ran can be
counted (``run_search`` records it in its history and settings) and checked by the tests.
"""

from __future__ import annotations

import warnings

from torch import nn

from ..layout import Layout
from ..train.epoch import StepContext
from .derive import BudgetWarning, derive_layout
from .monitor import check_gradients
from .sparsity import sparsity_step
from .supernet import search_layers
from .target import CostTarget


def derive_quietly(net, budget, round_to, metric) -> Layout:
    """derive_layout without its "closest layout" warning (the final derivation gives it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BudgetWarning)
        return derive_layout(net, budget, round_to, metric)


class SearchStepHook:
    """What runs between backward and the optimiser step (``ctx.step_hook``).

    On the very first step: fail fast on an impossible budget, check that γ receives
    gradients. While γ learns: the L1 step on γ — the fixed-strength subgradient step
    (:func:`sparsity_step`, strength ``s``) or, with a cost target, the controller's proximal
    step (:class:`~cakes_lite.search.target.CostTarget`) — counted. During the weight warm-up:
    γ's gradient is dropped, so the optimiser leaves γ *and its momentum buffer* untouched (an
    lr of 0 would not: SGD's buffer would still accumulate the warm-up's gradients and apply
    them once γ's lr is restored), and no L1 step runs.
    """

    def __init__(self, ctx: StepContext, mode: str, s: float, control: CostTarget | None,
                 budget, round_to: int, metric: str) -> None:
        self.ctx, self.mode, self.s, self.control = ctx, mode, s, control
        self.budget, self.round_to, self.metric = budget, round_to, metric
        self.learn_gamma = True
        self.l1_steps = self.frozen_steps = 0
        self.l1_sum = 0.0  # Σ strength (fixed s) or Σ price (target) over the L1 steps

    def __call__(self, net: nn.Module) -> None:
        if self.ctx.step == 0:
            if self.budget is not None:  # output sizes are known after the first forward
                derive_quietly(net, self.budget, self.round_to, self.metric)
            check_gradients(net)
        if not self.learn_gamma:
            for _, layer in search_layers(net):
                if layer.bn.weight is not None:
                    layer.bn.weight.grad = None
            self.frozen_steps += 1
            return
        if self.control is not None:
            self.l1_sum += self.control.step()
            self.l1_steps += 1
        elif self.s:
            sparsity_step(net, self.s, weighted=(self.mode == "cost"))
            self.l1_steps += 1
            self.l1_sum += self.s
