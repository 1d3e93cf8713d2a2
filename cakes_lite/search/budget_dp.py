"""Exact-cost fallback of the budgeted derivation: dynamic programming over layers.

:func:`~cakes_lite.derive_layout`'s Lagrangian derivation plus local moves meets almost every
budget, but in a small network with coarse units (few channels per layer, ``round_to`` blocks,
layers whose one channel costs several % of the total) it can stop short although a layout
within the tolerance exists: reaching it may need one coarse layer to get cheaper *and* several
fine layers to get more expensive. This module searches that space directly.

Within a layer, sub-kernels of equal kernel volume cost the same per unit, so a layer's choice
is how many of its m units go to each *volume class* (at most 4 classes: k³, k², k, 1), and for
a given choice the best units are the top ones of each class by |γ| (prefixes, as everywhere
in the derivation). The DP walks the layers keeping, per cost cell of width δ, the choice with
the highest kept importance (δ = tolerance · budget / (2 · layers), so rounding drifts the cost
by at most half the tolerance); it returns the best layout within the tolerance, else the
closest one. It is skipped (None) when the work would exceed ``MAX_WORK`` pairings.
"""

from __future__ import annotations

import math

import numpy as np

#: largest Σ_layers (cells × options) the fallback takes on (~ a second of numpy)
MAX_WORK = 30_000_000


def _classes(u) -> list[float]:
    return sorted(set(u.cost.tolist()))


def _n_options(u) -> int:
    """Upper bound on a layer's choices: compositions of its units into its volume classes."""
    return math.comb(u.k + len(_classes(u)) - 1, len(_classes(u)) - 1)


def _compositions(sizes: list[int], total: int) -> np.ndarray:
    """(K, q) every vector of counts with 0 ≤ t_q ≤ sizes[q] and Σ t = total."""
    parts = np.zeros((1, 0), dtype=np.int64)
    for q, size in enumerate(sizes):
        used = parts.sum(axis=1)
        if q == len(sizes) - 1:  # the last class takes the rest
            last = total - used
            ok = (last >= 0) & (last <= size)
            return np.concatenate([parts[ok], last[ok, None]], axis=1)
        rows = [np.concatenate([parts[used + t <= total], np.full(((used + t <= total).sum(), 1),
                                                                t)], axis=1)
                for t in range(min(size, total) + 1)]
        parts = np.concatenate(rows, axis=0)
    return parts


def _options(u) -> tuple[np.ndarray, np.ndarray, list, np.ndarray]:
    """One layer's choices: (cost (K,), score (K,), classes [(unit indices by |γ|)], counts
    (K, q)) for every way to spread its units over the volume classes."""
    classes = _classes(u)
    members = []
    for c in classes:
        idx = np.flatnonzero(u.cost == c)
        # best first; ties by rank within the sub-kernel, then sub-kernel (derive's order)
        members.append(idx[np.lexsort((u.op[idx], u.rank[idx], -u.score[idx]))])
    prefix = [np.concatenate([[0.0], np.cumsum(u.score[m])]) for m in members]
    counts = _compositions([len(m) for m in members], u.k)  # (K, q) units per class
    cost = counts @ np.asarray(classes, dtype=np.float64)
    score = sum(prefix[q][counts[:, q]] for q in range(len(classes)))
    return cost, score, members, counts


def dp_budget(units: list, budget: float, tolerance: float) -> tuple[list, float] | None:
    """Masks of the best-scoring layout within ``tolerance`` of ``budget`` (else the closest),
    and its cost; None when the search is too large (see ``MAX_WORK``)."""
    delta = tolerance * budget / (2 * len(units))
    states, work = 1, 0
    for u in units:  # bound the work before enumerating anything
        work += states * _n_options(u)
        states = min(states * _n_options(u), int(3 * len(units) / tolerance) + 1)
    if work > MAX_WORK:
        return None
    opts = [_options(u) for u in units]
    lo_rest = np.cumsum([o[0].min() for o in opts][::-1])[::-1]  # cheapest of layers l…
    hi_rest = np.cumsum([o[0].max() for o in opts][::-1])[::-1]
    cost, score = np.zeros(1), np.zeros(1)
    back = []  # per layer: (previous state, option) of every kept state
    for li, (oc, osc, _, _) in enumerate(opts):
        c = (cost[:, None] + oc[None, :]).reshape(-1)
        s = (score[:, None] + osc[None, :]).reshape(-1)
        rest_lo = lo_rest[li + 1] if li + 1 < len(opts) else 0.0
        rest_hi = hi_rest[li + 1] if li + 1 < len(opts) else 0.0
        # keep states that can still end within the tolerance band (or near it)
        ok = (c + rest_lo <= budget * (1 + tolerance) + delta) & (
            c + rest_hi >= budget * (1 - tolerance) - delta)
        if not ok.any():  # nothing can land inside: keep what ends closest
            ends = np.minimum(np.abs(c + rest_lo - budget), np.abs(c + rest_hi - budget))
            ok = ends <= ends.min() + delta
        idx = np.flatnonzero(ok)
        cell = np.floor(c[idx] / delta).astype(np.int64)
        order = np.lexsort((-s[idx], cell))  # by cell, best score first
        first = np.ones(len(order), dtype=bool)
        first[1:] = cell[order][1:] != cell[order][:-1]
        keep = idx[order[first]]
        back.append(np.divmod(keep, len(oc)))
        cost, score = c[keep], s[keep]
    inside = np.abs(cost - budget) <= tolerance * budget
    best = (int(np.flatnonzero(inside)[np.argmax(score[inside])]) if inside.any()
            else int(np.argmin(np.abs(cost - budget))))
    masks = []
    state = best
    for li in range(len(opts) - 1, -1, -1):
        prev, opt = back[li][0][state], back[li][1][state]
        _, _, members, counts = opts[li]
        mask = np.zeros(len(units[li].score), dtype=bool)
        for q, m in enumerate(members):
            mask[m[: counts[opt, q]]] = True
        masks.append(mask)
        state = prev
    return masks[::-1], float(cost[best])
