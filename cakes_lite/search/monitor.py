"""What a search reports about itself: supernet accuracy, how far |γ| moved, and a verdict.

:func:`run_search` records, per epoch, the supernet's training accuracy (argmax hits) and each
searched layer's mean shift of |γ| from its start. Two things make a derived layout worthless,
and :func:`verdict` names them in one line at the end of a search:

* **the supernet stayed near chance**: its last-epoch training accuracy is less than 10 % of the
  way from the majority-class rate (what always answering the most frequent label scores) to
  1.0, so its |γ| rank candidates of a network that has not learnt the task;
* **|γ| barely moved**: no searched layer's mean | |γ| − |γ|₀ | reached 0.5 % of its mean |γ|₀:
  training hardly touched the importances, so the layout is close to the tie-break (even
  split). This is a floor, not a quality test: performance searches that clearly follow their
  data moved |γ| by only 0.7–3.6 % on a 3-conv planted net, and a weak search on
  something-something-lite by 0.5–1.9 % (docs/search.md); whether the ranking means something
  is what :func:`~cakes_lite.search.ablate` measures.

Walkthrough: ``notebooks/02_search.ipynb``.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from .supernet import search_layers

#: a supernet is "near chance" below majority + NEAR_CHANCE · (1 − majority) training accuracy
NEAR_CHANCE = 0.1
#: |γ| "barely moved" when no layer's mean | |γ| − |γ|₀ | reached this share of its mean |γ|₀
BARELY_MOVED = 0.005


def correct(outputs: torch.Tensor, targets: torch.Tensor) -> tuple[int, int]:
    """(correct, counted) argmax predictions for class logits (N, K, …) vs targets (N, …);
    (0, 0) where that does not apply (regression, soft targets)."""
    if not is_labelled(outputs, targets):
        return 0, 0
    return int((outputs.argmax(1) == targets).sum()), targets.numel()


def is_labelled(outputs: torch.Tensor, targets: torch.Tensor) -> bool:
    """True for class logits (N, K, …) with integer targets (N, …) of the matching shape."""
    return (outputs.dim() >= 2 and targets.dtype in (torch.int64, torch.int32)
            and tuple(targets.shape) == (outputs.shape[0], *outputs.shape[2:]))


def label_counts(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor | None:
    """(K,) how often each class occurs in ``targets`` (None where :func:`correct` is n/a)."""
    if not is_labelled(outputs, targets):
        return None
    return torch.bincount(targets.reshape(-1).cpu().long(), minlength=outputs.shape[1])


def gamma_start(net: nn.Module) -> dict[str, torch.Tensor]:
    """|γ| of every searched layer now, (n, C_out) per layer (the reference for shifts)."""
    return {name: layer.importance().clone() for name, layer in search_layers(net)}


def gamma_shift(net: nn.Module, start: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per layer: mean over candidates of | |γ| now − |γ| at the start |."""
    return {name: float((layer.importance() - start[name]).abs().mean())
            for name, layer in search_layers(net)}


def relative_shift(shift: dict[str, float], start: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per layer: the mean shift as a share of the layer's mean |γ| at the start."""
    return {name: s / max(float(start[name].mean()), 1e-12) for name, s in shift.items()}


def check_gradients(net: nn.Module) -> None:
    """After the first backward: every searched layer's γ must have received a gradient."""
    layers = search_layers(net)
    dead = [name for name, layer in layers
            if layer.bn.weight is None or layer.bn.weight.grad is None
            or not bool(layer.bn.weight.grad.any())]
    if len(dead) == len(layers):
        raise ValueError(f"model: no searched layer received a gradient ({dead}); their "
                         "importance |γ| cannot move (is the loss connected to them?)")
    if dead:
        warnings.warn(f"run_search: searched layers {dead} received no gradient in the first "
                      "step; their layout will be the even split (tie-break), not searched",
                      stacklevel=5)  # check_gradients < hook < train_step < run_search < caller


def verdict(accuracy: float | None, majority: float | None,
            moved: dict[str, float]) -> str | None:
    """One line on why the derived layout should not be trusted, or None.

    Args:
        accuracy: the supernet's last-epoch training accuracy (None: not a labelled task).
        majority: the majority-class rate of the last epoch's targets (None: unknown).
        moved: per layer, the mean |γ| shift as a share of its start (:func:`relative_shift`).
    """
    top = max(moved.values()) if moved else 0.0
    if top == 0.0:
        return ("run_search: no importance |γ| moved from its start; the layout is the "
                "tie-break (even split), not a search result")
    problems, advice = [], []
    if accuracy is not None and majority is not None:
        bar = majority + NEAR_CHANCE * (1.0 - majority)
        if accuracy < bar:
            problems.append(f"the supernet stayed near chance (training accuracy {accuracy:.3f}, "
                            f"majority class {majority:.3f})")
            advice.append("its |γ| rank candidates of a network that has not learnt the task")
    if top < BARELY_MOVED:
        problems.append(f"|γ| barely moved (at most {top:.1%} of its start in any layer, "
                        f"below {BARELY_MOVED:.1%})")
        advice.append("the layout is close to the tie-break (even split)")
    if not problems:
        return None
    return ("run_search: " + " and ".join(problems) + "; " + " and ".join(advice)
            + " — not a finding: search longer, at a larger lr, or on more data")
