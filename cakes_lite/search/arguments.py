"""The defaults and argument checks of :func:`~cakes_lite.run_search` (what it refuses, before
anything is built, with a ValueError naming the argument, what was expected and what was given).
"""

from __future__ import annotations

from .layer import check_mode
from .target import check_target

#: L1 strength on γ when ``sparsity=None`` and no ``target``: cost priority needs it,
#: performance priority ranks by what training alone makes of γ (the paper). What 1e-2 does
#: at this scale (it decides the layout once the task is solved): docs/search.md.
DEFAULT_SPARSITY = {"performance": 0.0, "cost": 1e-2}
#: γ's learning rate as a multiple of the weights' (the paper: the same). γ ≈ 1 gets about the
#: gradient of a conv weight ≈ 0.02, so it moves ~50× less relative to its size; on the planted
#: tasks ×3 … ×30 moved it more but recovered the planted layout no better (docs/search.md).
DEFAULT_GAMMA_LR = 1.0


def default_warmup(epochs: int) -> int:
    """Weight warm-up epochs when none are given: a quarter of the search, at least one
    whenever there are two or more epochs (a 1-epoch search cannot have one)."""
    return max(1, epochs // 4) if epochs >= 2 else 0


def check_arguments(mode, epochs, lr, gamma_lr, warmup_epochs, target, budget, sparsity, metric,
                    sampling_power) -> tuple[float, int, float]:
    """Check :func:`~cakes_lite.run_search`'s arguments of the same names.

    Returns:
        ``(gamma_lr, warmup_epochs, sparsity)`` with the defaults filled in.

    Raises:
        ValueError: naming the first bad argument.
    """
    check_mode(mode)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs: expected a positive int, got {epochs!r}")
    for what, v in (("lr", lr), ("gamma_lr", 1.0 if gamma_lr is None else gamma_lr)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ValueError(f"{what}: expected a positive number, got {v!r}")
    g_lr = DEFAULT_GAMMA_LR if gamma_lr is None else gamma_lr
    warm = default_warmup(epochs) if warmup_epochs is None else warmup_epochs
    if isinstance(warm, bool) or not isinstance(warm, int) or not 0 <= warm < epochs:
        raise ValueError(f"warmup_epochs: expected an int in [0, epochs) = [0, {epochs}), "
                         f"got {warmup_epochs!r}")
    if target is not None:
        check_target(target)
        if mode != "cost":
            raise ValueError(f"target: needs mode='cost' (the L1 on γ is what aims at a cost), "
                             f"got mode={mode!r}; for performance priority derive under a "
                             "budget= instead")
        for what, v in (("budget", budget), ("sparsity", sparsity)):
            if v is not None:
                raise ValueError(f"{what}: pass target= (the search adapts the L1 strength and "
                                 f"the paper's rule derives the layout) or {what}=, not both; "
                                 f"got target={target!r}, {what}={v!r}")
    if metric not in ("macs", "params"):
        raise ValueError(f"metric: expected 'macs' or 'params', got {metric!r}")
    s = DEFAULT_SPARSITY[mode] if sparsity is None else sparsity
    if isinstance(s, bool) or not isinstance(s, (int, float)) or s < 0:
        raise ValueError(f"sparsity: expected a non-negative number, got {sparsity!r}")
    if isinstance(sampling_power, bool) or not isinstance(sampling_power, (int, float)) or not (
            sampling_power >= 0):
        raise ValueError(f"sampling_power: expected a number ≥ 0, got {sampling_power!r}")
    return g_lr, warm, s
