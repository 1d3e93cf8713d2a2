"""``run_search``: build the supernet, train it, derive the layout, keep a history.

One call does the whole "Automatic" part of CAKES on any model and any iterable of
``(inputs, targets)`` batches: :func:`supernet` → SGD training (cost priority adds the
cost-weighted L1 step on γ after every backward) → :func:`derive_layout`. The history keeps,
per epoch, the mean loss, every candidate channel's |γ| (plain lists) and the layout derived at
that point, so a notebook can animate how the allocation evolves. Walkthrough:
``notebooks/02_search.ipynb``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..layout import Layout
from .derive import derive_layout
from .layer import check_mode
from .sparsity import importance, param_groups, sparsity_step
from .supernet import supernet

#: L1 strength on γ when ``sparsity=None``: cost priority needs it, performance priority
#: ranks by what training alone makes of γ (the paper). Sized for short searches on small data
#: (tens to hundreds of SGD steps at lr 0.1–0.4); long searches on big data want ~1e-4.
DEFAULT_SPARSITY = {"performance": 0.0, "cost": 1e-2}


@dataclass
class SearchResult:
    """What :func:`run_search` returns.

    Attributes:
        layout: the derived :class:`~cakes_lite.Layout`, keyed by the given model's Conv3d names.
        history: ``{"loss": [per-epoch mean], "importance": [per-epoch {layer: {sub-kernel:
            [|γ| per channel]}}], "layout": [per-epoch {layer: split}], "seconds": [...]}``.
        supernet: the trained supernet (eval mode), e.g. to derive other budgets.
    """

    layout: Layout
    history: dict[str, list[Any]] = field(default_factory=dict)
    supernet: nn.Module | None = None


def _to(batch, device):
    if isinstance(batch, (list, tuple)) and len(batch) == 2:
        return batch[0].to(device), batch[1].to(device)
    raise ValueError(f"train_loader: expected batches of (inputs, targets), got "
                     f"{type(batch).__name__}")


def run_search(model: nn.Module, train_loader: Iterable, *, space="video-123d",
               mode: str = "performance", epochs: int, lr: float = 0.1,
               sparsity: float | None = None, budget: float | None = None, round_to: int = 1,
               metric: str = "macs", loss_fn: Callable | None = None, device="cpu",
               seed: int = 0, weight_decay: float = 1e-4, momentum: float = 0.9,
               callback: Callable[[dict], Any] | None = None,
               progress: bool = True) -> SearchResult:
    """Search a per-layer kernel layout for ``model`` on ``train_loader``.

    Args:
        model: any network with searchable k×k×k ``nn.Conv3d`` layers (not modified).
        train_loader: re-iterable of ``(inputs, targets)`` batches (a DataLoader, a list).
        space: search space name or list of sub-kernels (e.g. ``"video-123d"``).
        mode: ``"performance"`` (CAKES^P, sampled channels) or ``"cost"`` (CAKES^C, L1 on γ).
        epochs: passes over ``train_loader``.
        lr: SGD learning rate (cosine-annealed to 0 over the run; momentum ``momentum``).
        sparsity: L1 strength s on γ (see :func:`sparsity_step`); None: DEFAULT_SPARSITY[mode].
        budget, round_to, metric: passed to :func:`derive_layout`.
        loss_fn: ``loss_fn(outputs, targets)``; default cross-entropy (works for
            classification (N, K) and segmentation (N, K, D, H, W) logits alike).
        device: where to train.
        seed: seeds supernet init, channel sampling and loader shuffling; the caller's global
            RNG state is restored afterwards. Same seed ⇒ same layout on CPU.
        weight_decay: on conv/linear weights only (never on γ, β, biases).
        callback: called after every epoch with ``{"epoch", "loss", "importance", "layout",
            "supernet"}``.
        progress: show a tqdm bar (widget in notebooks, text in terminals).

    Returns:
        :class:`SearchResult` with ``.layout``, ``.history`` and ``.supernet``.
    """
    check_mode(mode)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs: expected a positive int, got {epochs!r}")
    if not isinstance(lr, (int, float)) or lr <= 0:
        raise ValueError(f"lr: expected a positive number, got {lr!r}")
    s = DEFAULT_SPARSITY[mode] if sparsity is None else sparsity
    if not isinstance(s, (int, float)) or s < 0:
        raise ValueError(f"sparsity: expected a non-negative number, got {sparsity!r}")
    loss_fn = loss_fn or F.cross_entropy
    history: dict[str, list[Any]] = {"loss": [], "importance": [], "layout": [], "seconds": []}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = supernet(model, space, mode).to(device)
        net.cakes_search["seed"] = seed
        opt = torch.optim.SGD(param_groups(net, weight_decay), lr=lr, momentum=momentum)
        try:
            steps_per_epoch = len(train_loader)  # type: ignore[arg-type]
        except TypeError:
            steps_per_epoch = None
        total = epochs * steps_per_epoch if steps_per_epoch else None
        bar = tqdm(total=total, desc=f"search ({mode})", disable=not progress, leave=False)
        step = 0
        try:
            for epoch in range(1, epochs + 1):
                net.train()
                start, loss_sum, n_batches = time.perf_counter(), 0.0, 0
                for batch in train_loader:
                    x, y = _to(batch, device)
                    if total:  # cosine schedule over the whole run
                        for g in opt.param_groups:
                            g["lr"] = 0.5 * lr * (1 + math.cos(math.pi * step / total))
                    loss = loss_fn(net(x), y)
                    if step == 0 and budget is not None:  # output sizes known: fail fast on
                        derive_layout(net, budget, round_to, metric)  # an impossible budget
                    if not torch.isfinite(loss):
                        raise RuntimeError(f"run_search: loss became {loss.item()} at epoch "
                                           f"{epoch}, step {step}; try a smaller lr")
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if s:
                        sparsity_step(net, s, weighted=(mode == "cost"))
                    opt.step()
                    loss_sum, n_batches, step = loss_sum + loss.item(), n_batches + 1, step + 1
                    bar.update(1)
                    bar.set_postfix(epoch=epoch, loss=f"{loss.item():.3f}")
                if n_batches == 0:
                    raise ValueError("train_loader: yielded no batches")
                net.eval()
                layout = derive_layout(net, budget, round_to, metric)
                history["loss"].append(loss_sum / n_batches)
                history["importance"].append(importance(net))
                history["layout"].append({k: dict(v) for k, v in layout.items()})
                history["seconds"].append(time.perf_counter() - start)
                if callback is not None:
                    callback({"epoch": epoch, "loss": history["loss"][-1],
                              "importance": history["importance"][-1], "layout": layout,
                              "supernet": net})
        finally:
            bar.close()
    layout.meta.update({"epochs": epochs, "lr": lr, "sparsity": s})
    return SearchResult(layout=layout, history=history, supernet=net)
