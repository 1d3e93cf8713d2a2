"""Is |γ| importance? Remove candidates by |γ| and measure what the supernet loses.

The derivation keeps, per layer, the candidates of largest |γ|: it assumes that a larger |γ|
means a candidate the network needs more. :func:`ablate` tests that on a trained supernet: in
each searched layer (and in all of them at once) it removes the ``fraction`` of candidates with
the **highest** |γ|, the same number with the **lowest** |γ|, and random ones, and scores the
supernet (eval mode) on the same batches each time. If |γ| ranks importance, removing the top
hurts far more than removing the bottom, with random in between.

Removing candidate (i, c) sets its BN scale γ_{i,c} to 0: it then passes no information about
the input, only its shift β_{i,c}, a constant that the next layer's bias can absorb (a network
retrained with the derived layout learns its own). Zeroing β too would measure the constant as
well: on a planted net trained with cost priority, candidates whose |γ| the L1 had pushed to
≈ 0 still carried offsets that mattered before the ReLU, and removing them that way hurt as much
as removing the top ones (docs/search.md). So:

* cost priority: the candidate's signal γ_{i,c} x̂_{i,c} drops out of the sum
  y_c = Σ_i (γ_{i,c} x̂_{i,c} + β_{i,c});
* performance priority: eval mode uses each channel's best candidate, argmax_i |γ_{i,c}|, so the
  channel falls back to its best *remaining* candidate (a channel whose candidates were all
  removed outputs a constant). Removing candidates that are not any channel's best changes
  nothing here: that is the measurement, not a shortcut (the derived layout drops them too).

Walkthrough: ``notebooks/02_search.ipynb``; measured on the planted tasks: docs/search.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..progress import progress_bar
from .layer import SearchConv3d, rank_candidates
from .monitor import correct
from .supernet import search_layers

WHICH = ("top", "bottom", "random")


@dataclass
class Ablation:
    """What :func:`ablate` measured.

    Attributes:
        base: ``{"loss", "accuracy"}`` of the intact supernet (accuracy None without labels).
        rows: one dict per (layer, which): ``layer`` (a searched layer's name, or ``"all"``:
            every layer at once), ``which`` (``"top"``, ``"bottom"``, ``"random"``),
            ``removed`` (candidates per layer), ``mean_gamma`` (mean |γ| of those removed),
            ``loss``, ``accuracy``, ``loss_increase`` and ``accuracy_drop`` (vs ``base``;
            random: the mean over ``repeats`` draws, each draw in ``draws``).
        fraction, seed: as given.
    """

    base: dict[str, float | None]
    rows: list[dict[str, Any]] = field(default_factory=list)
    fraction: float = 0.0
    seed: int = 0

    def increase(self, layer: str | None = None, metric: str = "loss") -> dict[str, float | None]:
        """``{which: loss increase}`` (``metric="accuracy"``: accuracy drop) for one layer;
        None: all layers at once (the only layer, in a one-layer supernet)."""
        if metric not in ("loss", "accuracy"):
            raise ValueError(f"metric: expected 'loss' or 'accuracy', got {metric!r}")
        key = "loss_increase" if metric == "loss" else "accuracy_drop"
        if layer is None:
            names = [r["layer"] for r in self.rows]
            layer = "all" if "all" in names else names[0]
        return {r["which"]: r[key] for r in self.rows if r["layer"] == layer}


def _score(net: nn.Module, batches: list, loss_fn: Callable) -> dict[str, float | None]:
    """Mean loss (weighted by batch size) and argmax accuracy of ``net`` on ``batches``."""
    loss_sum, n, right, seen = 0.0, 0, 0, 0
    with torch.no_grad():
        for x, y in batches:
            out = net(x)
            loss_sum += float(loss_fn(out, y)) * x.shape[0]
            n += x.shape[0]
            c, m = correct(out, y)
            right, seen = right + c, seen + m
    return {"loss": loss_sum / n, "accuracy": right / seen if seen else None}


@contextlib.contextmanager
def _removed(layers: list[SearchConv3d], picks: list[torch.Tensor]):
    """Candidates ``picks[l]`` (flat indices) of ``layers[l]`` pass no signal inside the block."""
    saved = [layer.bn.weight.detach().clone() for layer in layers]
    try:
        with torch.no_grad():
            for layer, idx in zip(layers, picks):
                layer.bn.weight[idx.to(layer.bn.weight.device)] = 0.0  # γ_j = 0: no signal
        yield
    finally:
        with torch.no_grad():
            for layer, w in zip(layers, saved):
                layer.bn.weight.copy_(w)


def ablate(supernet_model: nn.Module, loader: Iterable, fraction: float = 0.25, seed: int = 0,
           *, repeats: int = 3, loss_fn: Callable | None = None, device=None,
           progress: bool = False) -> Ablation:
    """Remove the top / bottom / random ``fraction`` of candidates by |γ| and score the rest.

    Args:
        supernet_model: a trained supernet (e.g. ``run_search(...).supernet``); restored
            exactly afterwards, left in eval mode.
        loader: ``(inputs, targets)`` batches to score on (read once; every ablation sees the
            same batches — pass held-out data to measure generalisation, training data to
            measure what the search saw).
        fraction: share of each layer's n·C_out candidates to remove (at least one), in (0, 1).
        seed: seeds the random removals (draw r uses ``seed + r``).
        repeats: random draws per layer (their mean is reported).
        loss_fn: ``loss_fn(outputs, targets)``; default cross-entropy.
        device: where to score; None: where the supernet is.
        progress: show a tqdm bar over the ablations.

    Returns:
        :class:`Ablation` (``.rows`` as plain dicts, ``.increase(layer)`` per layer).

    Raises:
        ValueError: no SearchConv3d, a fraction outside (0, 1), repeats < 1, an empty loader.
    """
    layers = search_layers(supernet_model)
    if not layers:
        raise ValueError("supernet_model: expected a model with SearchConv3d layers (from "
                         "cakes_lite.supernet), found none")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not (
            0 < fraction < 1):
        raise ValueError(f"fraction: expected a share in (0, 1), got {fraction!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats: expected a positive int, got {repeats!r}")
    loss_fn = loss_fn or F.cross_entropy
    if device is None:
        device = next(iter(supernet_model.parameters())).device
    batches = [(x.to(device), y.to(device)) for x, y in loader]
    if not batches:
        raise ValueError("loader: yielded no batches")
    supernet_model.eval()
    base = _score(supernet_model, batches, loss_fn)
    # per layer: candidates ordered by |γ|, most important first (derive_layout's tie-break)
    order = {name: rank_candidates(layer.importance()) for name, layer in layers}
    count = {name: max(1, round(fraction * len(order[name]))) for name, _ in layers}

    def picks(name: str, which: str, draw: int) -> torch.Tensor:
        k, ranked = count[name], order[name]
        if which == "top":
            return ranked[:k]
        if which == "bottom":
            return ranked[-k:]
        gen = torch.Generator().manual_seed(seed * 1000 + draw)
        return torch.randperm(len(ranked), generator=gen)[:k]

    groups = [(name, [(name, layer)]) for name, layer in layers]
    if len(layers) > 1:
        groups.append(("all", layers))
    bar = progress_bar(total=len(groups) * (2 + repeats), desc="ablate", disable=not progress,
                       leave=False)
    rows = []
    for label, members in groups:
        for which in WHICH:
            scores, gammas = [], []
            for draw in range(repeats if which == "random" else 1):
                idx = [picks(name, which, draw) for name, _ in members]
                gammas += [float(layer.importance().reshape(-1)[i.cpu()].mean())
                           for (_, layer), i in zip(members, idx)]
                with _removed([layer for _, layer in members], idx):
                    scores.append(_score(supernet_model, batches, loss_fn))
                bar.update(1)
            loss = sum(s["loss"] for s in scores) / len(scores)
            acc = None if base["accuracy"] is None else (
                sum(s["accuracy"] for s in scores) / len(scores))
            rows.append({
                "layer": label, "which": which, "removed": count[members[0][0]] if
                len(members) == 1 else {name: count[name] for name, _ in members},
                "mean_gamma": sum(gammas) / len(gammas), "loss": loss, "accuracy": acc,
                "loss_increase": loss - base["loss"],
                "accuracy_drop": None if acc is None else base["accuracy"] - acc,
                "draws": [s["loss"] for s in scores]})
    bar.close()
    return Ablation(base=base, rows=rows, fraction=float(fraction), seed=seed)
