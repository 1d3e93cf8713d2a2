"""Deriving a :class:`~cakes_lite.Layout` from a trained supernet, optionally under a budget.

Default (the paper): per layer keep the top C_out of the n·C_out candidate channels by |γ|
(ties: round robin over sub-kernels, see :func:`rank_candidates`) and count them per sub-kernel.

Budgeted (beyond the paper). Choose per layer l counts n_{l,i} (Σ_i n_{l,i} = C_l, multiples of
``round_to``) maximising the kept importance  Σ_l Σ_i U_{l,i}(n_{l,i})  (U = sum of the top
n_{l,i} |γ| of sub-kernel i, concave in n) subject to  Σ_l Σ_i n_{l,i} a_{l,i} ≈ B, where a is
the cost of one output channel (C_in · kernel volume · output voxels for MACs, C_in · kernel
volume for params). The Lagrangian relaxation decouples the layers: for a price λ each layer
keeps its C_l channels with the highest |γ| − λ·a (one global price, so importance is traded
against cost across the whole network, not per layer). Cost falls monotonically with λ;
bisection finds the two solutions around B, and the channel swaps between them are applied one
by one while the cost stays ≤ B; if that is still more than 2 % off (coarse units in a small
network), single channel moves — or pairs of moves in two layers, when every single move
overshoots — that get closer to B, losing the least importance, finish it. A budget inside
the reachable range that this still misses returns the closest layout found, with a
:class:`BudgetWarning` saying how far it is.
With ``round_to = r`` the unit is a block of r channels (block score = sum of its |γ|).

MACs depend on each layer's output size: SearchConv3d records it at every forward, so after
training (or after one forward with ``input_shape=``) the sizes are known. Walkthrough:
``notebooks/02_search.ipynb``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import nn

from ..cost import profile
from ..kernels import kernel_volume
from ..layout import Layout
from .budget_dp import dp_budget
from .layer import SearchConv3d
from .supernet import search_layers

TOLERANCE = 0.02  # |cost / budget - 1| the budgeted derivation aims at (else: closest + warning)
EDGE = 1e-9  # budgets within this relative distance of the reachable range are clamped into it
MAX_DOUBLINGS = 2000  # bracket search bound (2**2000 overflows to inf long before)


class BudgetWarning(UserWarning):
    """A budget inside the reachable range that no layout found meets within the tolerance
    (coarse channel costs in a tiny network): the closest layout found is returned."""


class _Units:
    """The selectable units (blocks of ``round_to`` channels) of one layer, as flat arrays."""

    def __init__(self, layer: SearchConv3d, r: int, unit_cost: list[float]):
        # .cpu() first: MPS has no float64
        scores = layer.importance().cpu().to(torch.float64).numpy()  # (n, C_out)
        n, c_out = scores.shape
        m = c_out // r
        # within each sub-kernel: sort descending, blocks of r -> (n, m) block scores
        blocks = -np.sort(-scores, axis=1).reshape(n, m, r).sum(axis=2)
        self.op = np.repeat(np.arange(n), m)            # (n·m,) sub-kernel of the unit
        self.rank = np.tile(np.arange(m), n)            # (n·m,) its rank within the sub-kernel
        self.score = blocks.reshape(-1)
        self.cost = np.repeat(np.asarray(unit_cost, dtype=np.float64) * r, m)
        self.k = m                                      # units kept per layer

    def select(self, lam: float) -> np.ndarray:
        """Boolean mask of the k units with the highest score − λ·cost (round-robin ties)."""
        key = self.score - lam * self.cost
        order = np.lexsort((self.op, self.rank, -key))
        mask = np.zeros(len(key), dtype=bool)
        mask[order[: self.k]] = True
        return mask


def _factor(layer: SearchConv3d, name: str, metric: str, required: bool) -> float | None:
    """Cost of one output channel per unit of kernel volume: C_in (params) or C_in · output
    voxels (MACs); None if the output size is unknown and not ``required``."""
    if metric == "params":
        return float(layer.in_channels)
    if layer.output_size is None:
        if not required:
            return None
        raise ValueError(f"layer {name!r}: output size unknown; pass input_shape= or run a "
                         "forward pass through the supernet before a MACs budget")
    return float(layer.in_channels * math.prod(layer.output_size))


def _bisect(units: list[_Units], budget: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Selections at prices λ_hi (cost ≤ budget) and λ_lo (cost ≥ budget), λ_hi − λ_lo tiny."""
    def cost(masks):
        return sum(float(u.cost[m].sum()) for u, m in zip(units, masks))

    def at(lam):
        return [u.select(lam) for u in units]

    scale = max(max(float(np.abs(u.score).max()) for u in units), 1e-12)
    unit = min(float(u.cost.min()) for u in units)
    hi, lo = scale / unit, -scale / unit
    # the caller clamps the budget into [all-cheapest, all-most-expensive] (costs are integers,
    # summed exactly), so a large enough |λ| reaches it; bounded regardless
    for _ in range(MAX_DOUBLINGS):
        if cost(at(hi)) <= budget:
            break
        hi *= 2
    else:
        raise ValueError(f"budget: {budget:.6g} is below every reachable cost")
    for _ in range(MAX_DOUBLINGS):
        if cost(at(lo)) >= budget:
            break
        lo *= 2
    else:
        raise ValueError(f"budget: {budget:.6g} is above every reachable cost")
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if cost(at(mid)) > budget:
            lo = mid
        else:
            hi = mid
    return at(hi), at(lo)


def _budgeted(units: list[_Units], budget: float) -> list[np.ndarray]:
    below, above = _bisect(units, budget)
    current = [m.copy() for m in below]
    total = sum(float(u.cost[m].sum()) for u, m in zip(units, current))
    for li, (u, b, a) in enumerate(zip(units, below, above)):
        adds = np.flatnonzero(a & ~b)
        rems = np.flatnonzero(b & ~a)
        # prefix order inside each sub-kernel: add best-ranked first, remove worst-ranked first
        adds = adds[np.lexsort((u.op[adds], u.rank[adds]))]
        rems = rems[np.lexsort((u.op[rems], -u.rank[rems]))]
        for add, rem in zip(adds, rems):
            delta = u.cost[add] - u.cost[rem]
            if total + delta > budget:
                break
            current[li][add], current[li][rem] = True, False
            total += delta
    return _refine(units, current, total, budget)


def _moves(u: _Units, mask: np.ndarray):
    """Single-unit moves of one layer: drop the worst kept unit of sub-kernel i, keep the best
    dropped unit of j (prefixes stay prefixes). Yields (drop, keep, Δcost, Δscore)."""
    ops = np.unique(u.op)
    last = {i: np.flatnonzero(mask & (u.op == i)) for i in ops}
    first = {i: np.flatnonzero(~mask & (u.op == i)) for i in ops}
    for i in ops:
        for j in ops:
            if i != j and len(last[i]) and len(first[j]):
                drop, keep = last[i][-1], first[j][0]
                yield drop, keep, u.cost[keep] - u.cost[drop], u.score[keep] - u.score[drop]


def _move_arrays(units: list[_Units], masks: list[np.ndarray]):
    """Every single-unit move of every layer as arrays (layer, drop, keep, Δcost, Δscore)."""
    rows = [(li, d, k, dc, ds) for li, u in enumerate(units)
            for d, k, dc, ds in _moves(u, masks[li])]
    if not rows:
        return None
    li, drop, keep, dc, ds = (np.array(c) for c in zip(*rows))
    return li, drop, keep, dc.astype(np.float64), ds.astype(np.float64)


def _best(gaps: np.ndarray, gains: np.ndarray, gap: float, tol: float):
    """Index of the best move by (lands within tol, then Δscore; else the smallest gap), or
    None if no move gets closer than ``gap``."""
    closer = gaps < gap
    if not closer.any():
        return None
    inside = closer & (gaps <= tol)
    if inside.any():
        return int(np.flatnonzero(inside)[np.argmax(gains[inside])])
    return int(np.flatnonzero(closer)[np.argmin(gaps[closer])])


def _refine(units: list[_Units], masks: list[np.ndarray], total: float, budget: float):
    """Local search when the breakpoint swaps cannot reach the tolerance (coarse units): apply
    the single move — or, when none gets closer, the pair of moves in two different layers —
    that lands within it losing the least importance, else the one that gets closest; stop
    when nothing gets closer. Pairs matter where every single move overshoots: one layer's
    channel gets more expensive while another's gets cheaper."""
    tol = TOLERANCE * budget
    for _ in range(10_000):
        gap = abs(total - budget)
        if gap <= tol:
            break
        moves = _move_arrays(units, masks)
        if moves is None:
            break
        li, drop, keep, dc, ds = moves
        i = _best(np.abs(total + dc - budget), ds, gap, tol)
        if i is not None and abs(total + dc[i] - budget) <= tol:
            chosen = [i]
        else:  # pairs of moves in two different layers (a layer's own pairs would interfere)
            pair_gap = np.abs(total + dc[:, None] + dc[None, :] - budget)
            pair_gap[li[:, None] == li[None, :]] = np.inf
            j = _best(pair_gap.reshape(-1), (ds[:, None] + ds[None, :]).reshape(-1),
                      gap if i is None else abs(total + dc[i] - budget), tol)
            chosen = list(divmod(j, len(dc))) if j is not None else ([i] if i is not None
                                                                     else [])
        if not chosen:
            break
        for c in chosen:
            masks[li[c]][drop[c]], masks[li[c]][keep[c]] = False, True
            total += dc[c]
    return masks


def derive_layout(supernet_model: nn.Module, budget: float | None = None, round_to: int = 1,
                  metric: str = "macs", input_shape=None) -> Layout:
    """Derive a per-layer split from a trained supernet's |γ|.

    Args:
        supernet_model: a model from :func:`supernet` (trained, e.g. by :func:`run_search`).
        budget: ``None`` (paper: top C_out per layer), a fraction 0 < b ≤ 1 of what the
            searched layers cost as full k×k×k convs, or an absolute cost (> 1) in ``metric``
            units. Met within 2 % (sum over the searched layers only) where such a layout is
            found; otherwise the closest one found is returned with a :class:`BudgetWarning`
            saying how far it is. A budget within 1e-9 (relative) of the reachable range is
            clamped into it.
        round_to: every group is a multiple of this (each layer's C_out must be one too).
            On CPU, 16 (AVX-512) or 8 (AVX2) turns saved MACs into saved time: oneDNN computes
            output channels in blocks of that size, so a 5-channel group costs a whole block,
            and a layer left with one group runs as one call (the bundled
            ``video_cakes_block16`` runs at 0.79× its 3D parent's time at batch 8, the
            unaligned layout at the same budget at ~1.1×; benchmarks/model_speed.py).
        metric: ``"macs"`` (needs output sizes, see ``input_shape``) or ``"params"``.
        input_shape: e.g. ``(1, 3, 8, 32, 32)``: run one eval forward to record output sizes.

    Returns:
        Layout ``{conv name: {sub-kernel: channels}}`` with meta (space, mode, seed, budget,
        metric, round_to, kernel_size, method, cost_fraction when known).

    Raises:
        ValueError: no SearchConv3d, bad arguments, budget below the all-cheapest layout
            (the message gives the smallest reachable value) or above the all-expensive one.

    Warns:
        BudgetWarning: no layout found within 2 % of a budget inside the reachable range.
    """
    layers = search_layers(supernet_model)
    if not layers:
        raise ValueError("supernet_model: expected a model with SearchConv3d layers (from "
                         "cakes_lite.supernet), found none")
    if isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1:
        raise ValueError(f"round_to: expected a positive int, got {round_to!r}")
    if metric not in ("macs", "params"):
        raise ValueError(f"metric: expected 'macs' or 'params', got {metric!r}")
    for name, layer in layers:
        if layer.out_channels % round_to:
            raise ValueError(f"layer {name!r}: out_channels={layer.out_channels} is not a "
                             f"multiple of round_to={round_to}")
    if input_shape is not None:  # one eval forward records every output_size
        profile(supernet_model, input_shape)
    factors = [_factor(m, n, metric, budget is not None) for n, m in layers]
    known = all(f is not None for f in factors)
    units = [_Units(m, round_to, [(f if known else 1.0) * kernel_volume(op, m.kernel_size)
                                  for op in m.candidates])
             for (_, m), f in zip(layers, factors)]
    # what the searched layers cost as full k×k×k convolutions
    full = sum(m.out_channels * f * m.kernel_size**3 for (_, m), f in zip(layers, factors)) \
        if known else None
    if budget is None:
        masks = [u.select(0.0) for u in units]
    else:
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget <= 0:
            raise ValueError(f"budget: expected a fraction in (0, 1] or an absolute {metric} "
                             f"count > 1, got {budget!r}")
        target = budget * full if budget <= 1 else float(budget)
        lowest = sum(u.k * float(u.cost.min()) for u in units)
        highest = sum(u.k * float(u.cost.max()) for u in units)
        if target < lowest * (1 - EDGE):
            raise ValueError(
                f"budget: {budget} ({target:.4g} {metric}) is below the smallest reachable "
                f"value, the all-cheapest layout: {lowest:.6g} {metric} = "
                f"{lowest / full:.4f} of the full k×k×k cost")
        if target > highest * (1 + EDGE):
            raise ValueError(
                f"budget: {budget} ({target:.4g} {metric}) is above the largest reachable "
                f"value, the all-most-expensive layout: {highest:.6g} {metric} = "
                f"{highest / full:.4f} of the full k×k×k cost")
        # within EDGE of the range (e.g. volume-2d, where every layout costs exactly 1/3):
        # clamp, so the bracket search terminates
        target = min(max(target, lowest), highest)
        masks = _budgeted(units, target)
        got = sum(float(u.cost[m].sum()) for u, m in zip(units, masks))
        if abs(got / target - 1) > TOLERANCE:  # coarse units: the exact-cost DP fallback
            found = dp_budget(units, target, 0.99 * TOLERANCE)  # inside, not on the edge
            if found is not None and abs(found[1] - target) < abs(got - target):
                masks, got = found
        if abs(got / target - 1) > TOLERANCE:
            warnings.warn(
                f"derive_layout: no layout found within {TOLERANCE:.0%} of the budget "
                f"{budget} ({target:.6g} {metric}); returning the closest found, which costs "
                f"{got:.6g} {metric} ({got / target - 1:+.1%})"
                + (f" (groups in multiples of round_to={round_to} channels)" if round_to > 1
                   else ""), BudgetWarning, stacklevel=2)
    splits = {}
    for (name, layer), u, mask in zip(layers, units, masks):
        per_op = np.bincount(u.op[mask], minlength=len(layer.candidates)) * round_to
        splits[name] = {op: int(c) for op, c in zip(layer.candidates, per_op)}
    return Layout(splits, _meta(supernet_model, layers, budget, round_to, metric, units, masks,
                                full))


def _meta(model, layers, budget, round_to, metric, units, masks, full) -> dict:
    info = getattr(model, "cakes_search", {}) or {}
    modes = sorted({m.mode for _, m in layers})
    ks = sorted({m.kernel_size for _, m in layers})
    meta = {
        "space": info.get("space", list(layers[0][1].candidates)),
        "mode": modes[0] if len(modes) == 1 else modes,
        "seed": info.get("seed"),
        "budget": budget, "metric": metric, "round_to": round_to,
        "kernel_size": ks[0] if len(ks) == 1 else ks,
        "method": f"search-{modes[0]}" + ("-budget" if budget is not None else ""),
    }
    if full:
        meta["cost_fraction"] = sum(float(u.cost[m].sum()) for u, m in zip(units, masks)) / full
    return meta
