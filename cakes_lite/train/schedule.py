"""Learning-rate schedule: linear warm-up then cosine decay, as a pure function of the step.

Being a pure function of the global step, the schedule needs no state of its own in a
checkpoint: a resumed run recomputes the same learning rate.
"""

from __future__ import annotations

import math

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


def set_lr(optimizer: Optimizer, factor: float) -> float:
    """Set every param group's lr to ``base_lr · factor`` (``base_lr`` stored in the group on
    first call); returns the first group's new lr."""
    for group in optimizer.param_groups:
        group.setdefault("base_lr", group["lr"])
        group["lr"] = group["base_lr"] * factor
    return optimizer.param_groups[0]["lr"]
