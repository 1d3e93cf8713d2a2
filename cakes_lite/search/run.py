"""``run_search``: build the supernet, train it, derive the layout, keep a history.

One call does the whole "Automatic" part of CAKES on any model and any iterable of
``(inputs, targets)`` batches: :func:`supernet` → SGD training (cost priority adds the
cost-weighted L1 step on γ after every backward) → :func:`derive_layout`.

Importance is only worth reading once the supernet has learnt something: the first
``warmup_epochs`` (default a quarter of the run) train the weights alone (γ frozen, no L1), then
γ and the weights train together. γ has its own optimizer group (``gamma_lr``, a multiple of
``lr``). The history keeps, per epoch, the mean loss, the supernet's training accuracy (argmax
hits, for classification and segmentation logits), how far |γ| moved from its start per layer,
every candidate channel's |γ| (plain lists) and the layout derived at that point, so a notebook
can judge and animate the search. A search that cannot move importance (no searched layer
reaches the loss, γ not trainable) raises; layers without gradient and a search in which no
|γ| moved warn. Walkthrough: ``notebooks/02_search.ipynb``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..layout import Layout
from ..progress import progress_bar
from ..train.epoch import NonFiniteLossError, StepContext, train_step
from ..train.schedule import warmup_cosine
from .derive import derive_layout
from .layer import check_mode
from .sparsity import importance, param_groups, sparsity_step
from .supernet import search_layers, supernet

#: L1 strength on γ when ``sparsity=None``: cost priority needs it, performance priority
#: ranks by what training alone makes of γ (the paper). Sized for short searches on small data
#: (tens to hundreds of SGD steps at lr 0.1–0.4); long searches on big data want ~1e-4.
DEFAULT_SPARSITY = {"performance": 0.0, "cost": 1e-2}
#: γ's learning rate as a multiple of the weights' (the paper: the same). γ ≈ 1 gets about the
#: gradient of a conv weight ≈ 0.02, so it moves ~50× less relative to its size; on the planted
#: tasks ×3 … ×30 moved it more but recovered the planted layout no better (README).
DEFAULT_GAMMA_LR = 1.0


@dataclass
class SearchResult:
    """What :func:`run_search` returns.

    Attributes:
        layout: the derived :class:`~cakes_lite.Layout`, keyed by the given model's Conv3d names.
        history: ``{"loss": [per-epoch mean], "accuracy": [per-epoch supernet training
            accuracy, None if the targets are not class indices], "gamma_shift": [per-epoch
            {layer: mean over candidates of | |γ| − |γ| at the start |}], "importance":
            [per-epoch {layer: {sub-kernel: [|γ| per channel]}}], "layout": [per-epoch
            {layer: split}], "seconds": [...]}``.
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


def _model_device(model: nn.Module) -> torch.device:
    """Where the model's parameters (else buffers) live; CPU for a model without either."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def _correct(outputs: torch.Tensor, targets: torch.Tensor) -> tuple[int, int]:
    """(correct, counted) argmax predictions for class logits (N, K, …) vs targets (N, …);
    (0, 0) where that does not apply (regression, soft targets)."""
    if (outputs.dim() < 2 or targets.dtype not in (torch.int64, torch.int32)
            or tuple(targets.shape) != (outputs.shape[0], *outputs.shape[2:])):
        return 0, 0
    return int((outputs.argmax(1) == targets).sum()), targets.numel()


def _gamma_start(net: nn.Module) -> dict[str, torch.Tensor]:
    return {name: layer.importance().clone() for name, layer in search_layers(net)}


def _gamma_shift(net: nn.Module, start: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per layer: mean over candidates of | |γ| now − |γ| at the start |."""
    return {name: float((layer.importance() - start[name]).abs().mean())
            for name, layer in search_layers(net)}


def _check_gradients(net: nn.Module) -> None:
    """After the first backward: every searched layer's γ must have received a gradient."""
    dead = [name for name, layer in search_layers(net)
            if layer.bn.weight is None or layer.bn.weight.grad is None
            or not bool(layer.bn.weight.grad.any())]
    if len(dead) == len(search_layers(net)):
        raise ValueError(f"model: no searched layer received a gradient ({dead}); their "
                         "importance |γ| cannot move (is the loss connected to them?)")
    if dead:
        warnings.warn(f"run_search: searched layers {dead} received no gradient in the first "
                      "step; their layout will be the even split (tie-break), not searched",
                      stacklevel=3)


def _step_hook(s: float, mode: str, budget, round_to: int, metric: str,
               ctx: StepContext) -> Callable[[nn.Module], None]:
    """What runs between backward and the optimiser step: on the very first step, fail fast on
    an impossible budget and check that γ receives gradients; then the L1 step on γ (cost
    priority weights it by sub-kernel cost; ``s = 0`` during the warm-up)."""
    def hook(net: nn.Module) -> None:
        if ctx.step == 0:
            if budget is not None:  # output sizes are known after the first forward
                derive_layout(net, budget, round_to, metric)
            _check_gradients(net)
        if s:
            sparsity_step(net, s, weighted=(mode == "cost"))
    return hook


def run_search(model: nn.Module, train_loader: Iterable, *, space="video-123d",
               mode: str = "performance", epochs: int, lr: float = 0.1,
               gamma_lr: float | None = None, warmup_epochs: int | None = None,
               sampling_power: float = 0.0,
               sparsity: float | None = None, budget: float | None = None, round_to: int = 1,
               metric: str = "macs", loss_fn: Callable | None = None, device=None,
               seed: int = 0, weight_decay: float = 1e-4, momentum: float = 0.9,
               callback: Callable[[dict], Any] | None = None,
               progress: bool = True) -> SearchResult:
    """Search a per-layer kernel layout for ``model`` on ``train_loader``.

    Args:
        model: any network with searchable k×k×k ``nn.Conv3d`` layers (not modified).
        train_loader: re-iterable of ``(inputs, targets)`` batches (a DataLoader, a list).
        space: search space name or list of sub-kernels (e.g. ``"video-123d"``).
        mode: ``"performance"`` (CAKES^P, sampled channels) or ``"cost"`` (CAKES^C, L1 on γ).
        epochs: passes over ``train_loader`` (warm-up included).
        lr: SGD learning rate of the weights (cosine-annealed to 0 over the run; momentum
            ``momentum``).
        gamma_lr: learning rate of the importances γ as a multiple of ``lr``; None:
            ``DEFAULT_GAMMA_LR`` (γ ≈ 1 while conv weights are ≈ 0.02, see the README).
        warmup_epochs: epochs at the start in which only the weights train (γ frozen, no L1),
            so that importance is learnt on features that mean something; None:
            ``epochs // 4``; 0: the paper (γ trains from the first step).
        sampling_power: performance priority: 0 (the paper, default) samples each channel's
            candidate uniformly; a > 0 samples ∝ |γ|^a after the warm-up, a ramping up to its
            value over the run (an option; it did not help on the planted tasks).
        sparsity: L1 strength s on γ (see :func:`sparsity_step`); None: DEFAULT_SPARSITY[mode].
        budget, round_to, metric: passed to :func:`derive_layout`.
        loss_fn: ``loss_fn(outputs, targets)``; default cross-entropy (works for
            classification (N, K) and segmentation (N, K, D, H, W) logits alike).
        device: where to train; None: where ``model`` is (nothing is moved silently).
        seed: seeds supernet init, channel sampling and loader shuffling; the caller's global
            RNG state (CPU, and CUDA if used) is restored afterwards. Same seed ⇒ same layout
            on one machine.
        weight_decay: on conv/linear weights only (never on γ, β, biases).
        callback: called after every epoch with ``{"epoch", "loss", "accuracy", "gamma_shift",
            "importance", "layout", "supernet"}``.
        progress: show a tqdm bar (widget in notebooks, text in terminals) with the loss, the
            supernet's accuracy and the mean |γ| shift.

    Returns:
        :class:`SearchResult` with ``.layout``, ``.history`` and ``.supernet``.

    Raises:
        ValueError: bad arguments, an empty loader, or no searched layer receiving a gradient.
    """
    check_mode(mode)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs: expected a positive int, got {epochs!r}")
    for what, v in (("lr", lr), ("gamma_lr", 1.0 if gamma_lr is None else gamma_lr)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ValueError(f"{what}: expected a positive number, got {v!r}")
    g_lr = DEFAULT_GAMMA_LR if gamma_lr is None else gamma_lr
    warm = epochs // 4 if warmup_epochs is None else warmup_epochs
    if isinstance(warm, bool) or not isinstance(warm, int) or not 0 <= warm < epochs:
        raise ValueError(f"warmup_epochs: expected an int in [0, epochs) = [0, {epochs}), "
                         f"got {warmup_epochs!r}")
    s = DEFAULT_SPARSITY[mode] if sparsity is None else sparsity
    if isinstance(s, bool) or not isinstance(s, (int, float)) or s < 0:
        raise ValueError(f"sparsity: expected a non-negative number, got {sparsity!r}")
    if isinstance(sampling_power, bool) or not isinstance(sampling_power, (int, float)) or not (
            sampling_power >= 0):
        raise ValueError(f"sampling_power: expected a number ≥ 0, got {sampling_power!r}")
    if not any(p.requires_grad for p in model.parameters()):
        warnings.warn("run_search: model is frozen (no parameter requires grad); the supernet's "
                      "searched layers are trained anyway, every other layer stays fixed",
                      stacklevel=2)
    device = _model_device(model) if device is None else torch.device(device)
    loss_fn = loss_fn or F.cross_entropy
    history: dict[str, list[Any]] = {"loss": [], "accuracy": [], "gamma_shift": [],
                                     "importance": [], "layout": [], "seconds": []}
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        net = supernet(model, space, mode).to(device)
        net.cakes_search["seed"] = seed
        groups = param_groups(net, weight_decay)
        gammas = {id(layer.bn.weight) for _, layer in search_layers(net)
                  if layer.bn.weight is not None}
        # γ in a group of its own: lr · gamma_lr, 0 during the warm-up
        groups.append({"params": [p for p in groups[1]["params"] if id(p) in gammas],
                       "weight_decay": 0.0, "gamma": True})
        groups[1]["params"] = [p for p in groups[1]["params"] if id(p) not in gammas]
        if not groups[2]["params"]:
            raise ValueError("model: the searched layers' importances γ are not trainable "
                             "(requires_grad=False?); the search could not move them")
        opt = torch.optim.SGD(groups, lr=lr, momentum=momentum)
        try:
            steps_per_epoch = len(train_loader)  # type: ignore[arg-type]
        except TypeError:
            steps_per_epoch = None
        total = epochs * steps_per_epoch if steps_per_epoch else None
        # the training loop's step and schedule: cosine over the whole run (constant without a
        # known length), the cost-priority L1 step between backward and the optimiser step
        ctx = StepContext(model=net, train_model=net, optimizer=opt, loss_fn=loss_fn,
                          device=device, amp=False,
                          lr_factor=(lambda i: warmup_cosine(i, total)) if total else
                          (lambda i: 1.0))
        bar = progress_bar(total=total, desc=f"search ({mode})", disable=not progress,
                           leave=False)
        start_gamma = _gamma_start(net)
        try:
            for epoch in range(1, epochs + 1):
                net.train()
                learn_gamma = epoch > warm
                for g in opt.param_groups:  # γ: lr · gamma_lr, 0 during the warm-up
                    g["base_lr"] = lr * ((g_lr if learn_gamma else 0.0) if g.get("gamma")
                                         else 1.0)
                ctx.step_hook = _step_hook(s if learn_gamma else 0.0, mode, budget, round_to,
                                           metric, ctx)
                # performance priority: sampling ∝ |γ|^a, a ramping 0 -> sampling_power after
                # the warm-up (0: the paper's uniform sampling throughout)
                power = sampling_power * max(0, epoch - 1 - warm) / max(1, epochs - 1 - warm)
                for _, layer in search_layers(net):
                    layer.sampling_power = power
                start, loss_sum, n_batches, right, seen = time.perf_counter(), 0.0, 0, 0, 0
                for batch in train_loader:
                    x, y = _to(batch, device)
                    try:
                        _, out, loss_value = train_step(ctx, x, y)
                    except NonFiniteLossError as e:
                        raise RuntimeError(f"run_search: loss became non-finite at epoch "
                                           f"{epoch}, step {ctx.step}; try a smaller lr ({e})"
                                           ) from None
                    c, m = _correct(out, y)
                    right, seen = right + c, seen + m
                    loss_sum, n_batches = loss_sum + loss_value, n_batches + 1
                    bar.update(1)
                    bar.set_postfix(epoch=epoch, loss=f"{loss_value:.3f}",
                                    acc=f"{right / seen:.2f}" if seen else "-")
                if n_batches == 0:
                    raise ValueError("train_loader: yielded no batches")
                net.eval()
                layout = derive_layout(net, budget, round_to, metric)
                shift = _gamma_shift(net, start_gamma)
                history["loss"].append(loss_sum / n_batches)
                history["accuracy"].append(right / seen if seen else None)
                history["gamma_shift"].append(shift)
                history["importance"].append(importance(net))
                history["layout"].append({k: dict(v) for k, v in layout.items()})
                history["seconds"].append(time.perf_counter() - start)
                bar.set_postfix(epoch=epoch, loss=f"{history['loss'][-1]:.3f}",
                                acc=f"{right / seen:.2f}" if seen else "-",
                                dgamma=f"{max(shift.values()):.3f}")
                if callback is not None:
                    callback({"epoch": epoch, "loss": history["loss"][-1],
                              "accuracy": history["accuracy"][-1], "gamma_shift": shift,
                              "importance": history["importance"][-1], "layout": layout,
                              "supernet": net})
        finally:
            bar.close()
            for _, layer in search_layers(net):
                layer.sampling_power = 0.0  # the returned supernet samples uniformly again
    if max(history["gamma_shift"][-1].values()) == 0.0:
        warnings.warn("run_search: no importance |γ| moved from its start; the layout is the "
                      "tie-break (even split), not a search result", stacklevel=2)
    layout.meta.update({"epochs": epochs, "lr": lr, "gamma_lr": g_lr, "warmup_epochs": warm,
                        "sparsity": s})
    return SearchResult(layout=layout, history=history, supernet=net)
