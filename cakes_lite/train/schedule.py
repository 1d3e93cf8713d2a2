"""Learning-rate schedules as pure functions of the step: linear warm-up then cosine decay
(the default of ``fit``), and the video papers' step schedule with a linear warm-up.

Being pure functions of the global step, the schedules need no state of their own in a
checkpoint: a resumed run recomputes the same learning rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch.optim import Optimizer


def warmup_cosine(step: int, total_steps: int, warmup_steps: int = 0,
                  min_factor: float = 0.0) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based) of ``total_steps``.

    Warm-up:  f = (step + 1) / warmup_steps                      for step < warmup_steps
    Cosine:   f = m + (1 - m) · ½ (1 + cos(π · p)),  p = (step - warmup) / (total - warmup)

    Args:
        step: optimiser steps already taken.
        total_steps: steps of the whole run (> 0).
        warmup_steps: linear warm-up length (0 disables).
        min_factor: the factor m reached at the end of the cosine (0 … 1).
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps: expected a positive int, got {total_steps}")
    if not 0.0 <= min_factor <= 1.0:
        raise ValueError(f"min_factor: expected a value in [0, 1], got {min_factor}")
    warmup_steps = max(0, min(warmup_steps, total_steps - 1))
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    p = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * p))


@dataclass(frozen=True)
class MultiStepWarmup:
    """Linear warm-up, then the learning rate × ``gamma`` at each milestone epoch — the
    schedule of TSN / TSM / CAKES on Something-Something (warm-up from 0.01 to the peak over
    5 epochs, × 0.1 at epochs 50 and 60 of 70).

    As in the authors' code, the warm-up moves every optimiser step and reaches the peak at
    its last step; the steps apply from the first batch of the milestone epoch (0-based).

    Warm-up:  f = w0 + (1 − w0) · (step + 1) / W          for step < W = warmup_epochs · S
    Steps:    f = γ ^ |{m ∈ milestones : epoch ≥ m}|,      epoch = step // S

    Call it as ``schedule(step, steps_per_epoch)`` (what ``fit(lr_schedule=…)`` does).
    """

    milestones: tuple[int, ...] = (50, 60)  # epochs where the lr drops
    gamma: float = 0.1  # the drop
    warmup_epochs: float = 5.0  # linear warm-up length (0: none)
    warmup_start: float = 0.25  # w0, the warm-up's first factor (0.01 / 0.04 in the paper)

    def __post_init__(self):
        if list(self.milestones) != sorted(self.milestones) or any(m < 0 for m in self.milestones):
            raise ValueError(f"milestones: expected increasing epochs >= 0, got "
                             f"{self.milestones!r}")
        if not 0 < self.gamma <= 1 or self.warmup_epochs < 0 or not 0 <= self.warmup_start <= 1:
            raise ValueError(f"MultiStepWarmup: expected 0 < gamma <= 1, warmup_epochs >= 0 and"
                             f" 0 <= warmup_start <= 1, got {self.gamma}, {self.warmup_epochs},"
                             f" {self.warmup_start}")

    def __call__(self, step: int, steps_per_epoch: int) -> float:
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch: expected a positive int, got {steps_per_epoch}")
        warmup = round(self.warmup_epochs * steps_per_epoch)
        if step < warmup:
            return self.warmup_start + (1.0 - self.warmup_start) * (step + 1) / warmup
        epoch = step // steps_per_epoch
        return self.gamma ** sum(epoch >= m for m in self.milestones)


def linear_scaled_lr(global_batch: int, lr: float = 0.04, batch: int = 96) -> float:
    """The linear scaling rule (Goyal et al., 2017): ``lr · global_batch / batch`` — the
    paper's 0.04 at a batch of 96 clips becomes 0.01 at 24, 0.0033 at 8."""
    if global_batch < 1 or batch < 1:
        raise ValueError(f"global_batch, batch: expected positive ints, got {global_batch}, "
                         f"{batch}")
    return lr * global_batch / batch


def set_lr(optimizer: Optimizer, factor: float) -> float:
    """Set every param group's lr to ``base_lr · factor · lr_mult`` (``base_lr`` stored in the
    group on first call; ``lr_mult`` a group's optional multiplier, e.g. 2 for biases);
    returns the first group's new lr."""
    for group in optimizer.param_groups:
        group.setdefault("base_lr", group["lr"])
        group["lr"] = group["base_lr"] * factor * group.get("lr_mult", 1.0)
    return optimizer.param_groups[0]["lr"]
