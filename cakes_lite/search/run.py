"""``run_search``: build the supernet, train it, derive the layout, keep a history.

One call does the whole "Automatic" part of CAKES on any model and any iterable of
``(inputs, targets)`` batches: :func:`supernet` → SGD training (cost priority adds the
cost-weighted L1 step on γ after every backward) → :func:`derive_layout`.

Importance is only worth reading once the supernet has learnt something: the first
``warmup_epochs`` (default a quarter of the run, at least one from two epochs on) train the
weights alone — γ is left out of the optimiser step (its momentum buffer included) and no L1
runs — then γ and the weights train together. γ has its own optimizer group (``gamma_lr``, a
multiple of ``lr``). Cost priority can aim at a cost (``target=``): the L1 strength is then
adapted during the search (:mod:`.target`). The history keeps, per epoch, the mean loss, the
supernet's training accuracy (argmax hits, for classification and segmentation logits), how far
|γ| moved from its start per layer, every candidate channel's |γ| (plain lists), the layout
derived at that point and what ran (γ trained or frozen, L1 steps and strength, sampling); the
result's ``settings`` sum up what ran, and ``warning`` says in one line when the supernet stayed
near chance or |γ| barely moved (:mod:`.monitor`). A search that cannot move importance (no
searched layer reaches the loss, γ not trainable) raises. Under ``torchrun`` the search runs
with DistributedDataParallel, all processes holding the same γ (:mod:`.distributed`).
Walkthrough: ``notebooks/02_search.ipynb``; defaults and what they were measured on:
docs/search.md.
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
from ..train.epoch import NonFiniteLossError, StepContext, amp_dtype, train_step
from ..train.distributed import world_size
from ..train.schedule import warmup_cosine
from .arguments import DEFAULT_GAMMA_LR, DEFAULT_SPARSITY, default_warmup  # noqa: F401 - API
from .arguments import check_arguments
from .derive import derive_layout
from .distributed import epoch_sums, new_epoch, shard, wrap
from .monitor import correct, gamma_shift, gamma_start, label_counts, relative_shift, verdict
from .sparsity import importance, param_groups
from .steps import SearchStepHook, derive_quietly
from .supernet import search_layers, supernet
from .target import CostTarget

#: what the history records per epoch
HISTORY_KEYS = ("loss", "accuracy", "gamma_shift", "importance", "layout", "seconds",
                "gamma_trained", "l1_steps", "sparsity", "sampling_power", "cost_fraction")


@dataclass
class SearchResult:
    """What :func:`run_search` returns.

    Attributes:
        layout: the derived :class:`~cakes_lite.Layout`, keyed by the given model's Conv3d names.
        history: per epoch (lists, one entry each): ``loss`` (mean), ``accuracy`` (supernet
            training accuracy, None if the targets are not class indices), ``gamma_shift``
            ({layer: mean over candidates of | |γ| − |γ| at the start |}), ``importance``
            ({layer: {sub-kernel: [|γ| per channel]}}), ``layout`` ({layer: split}),
            ``seconds``, ``gamma_trained`` (False in warm-up epochs), ``l1_steps`` and
            ``sparsity`` (L1 steps run and their mean strength s; with a target: the mean
            price λ of its proximal steps), ``sampling_power``, ``cost_fraction`` (of the
            layout derived then; None if unknown).
        supernet: the trained supernet (eval mode), e.g. to derive other budgets.
        settings: what actually ran: ``epochs``, ``steps``, ``lr``, ``gamma_lr``,
            ``warmup_epochs`` (and ``warmup_default``: chosen by run_search),
            ``gamma_frozen_steps``, ``l1_steps``, ``sparsity`` (a number, or how a target
            steered it),
            ``sampling``, ``target``, ``metric``, ``cost_fraction``, ``target_met``,
            ``gamma_moved`` ({layer: mean |γ| shift / mean |γ| at start}), ``sync_bn``,
            ``channels_last``, ``lr_schedule``, ``world_size``.
        warning: one line when the layout should not be trusted (supernet near chance, |γ|
            barely moved), else None; also issued as a UserWarning.
    """

    layout: Layout
    history: dict[str, list[Any]] = field(default_factory=dict)
    supernet: nn.Module | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    warning: str | None = None


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


def run_search(model: nn.Module, train_loader: Iterable, *, space="video-123d",
               mode: str = "performance", epochs: int, lr: float = 0.1,
               gamma_lr: float | None = None, warmup_epochs: int | None = None,
               sampling_power: float = 0.0, sparsity: float | None = None,
               target: float | None = None, budget: float | None = None, round_to: int = 1,
               metric: str = "macs", loss_fn: Callable | None = None, device=None,
               seed: int = 0, weight_decay: float = 1e-4, momentum: float = 0.9,
               lr_schedule: Callable[[int, int], float] | None = None,
               grad_clip: float | None = None, amp: bool | str = False, sync_bn: bool = False,
               channels_last: bool = False, callback: Callable[[dict], Any] | None = None,
               progress: bool = True) -> SearchResult:
    """Search a per-layer kernel layout for ``model`` on ``train_loader``.

    Args:
        model: any network with searchable k×k×k ``nn.Conv3d`` layers (not modified).
        train_loader: re-iterable of ``(inputs, targets)`` batches (a DataLoader, a list).
            Under torchrun a plain DataLoader is sharded over the processes (as ``fit``
            does); other iterables must already be this process's share.
        space: search space name or list of sub-kernels (e.g. ``"video-123d"``).
        mode: ``"performance"`` (CAKES^P, sampled channels) or ``"cost"`` (CAKES^C, L1 on γ).
        epochs: passes over ``train_loader`` (warm-up included).
        lr: SGD learning rate of the weights (cosine-annealed to 0 over the run unless
            ``lr_schedule``; momentum ``momentum``).
        gamma_lr: learning rate of the importances γ as a multiple of ``lr``; None:
            ``DEFAULT_GAMMA_LR`` (γ ≈ 1 while conv weights are ≈ 0.02, see docs/search.md).
        warmup_epochs: epochs at the start in which only the weights train (γ left out of the
            optimiser step, no L1), so that importance is learnt on features that mean
            something; None: :func:`default_warmup` (a quarter, at least 1 from 2 epochs on;
            a 1-epoch search warns that it has none); 0: the paper (γ trains from the start).
        sampling_power: performance priority: 0 (the paper, default) samples each channel's
            candidate uniformly; a > 0 samples ∝ |γ|^a after the warm-up, a ramping up to its
            value over the run (an option; it did not help on the planted tasks).
        sparsity: fixed L1 strength s on γ (see :func:`sparsity_step`); None:
            ``DEFAULT_SPARSITY[mode]`` (the paper's 1e-2 for cost priority), or steered by
            ``target``.
        target: cost priority only: the cost the derived layout should have, a fraction in
            (0, 1] of the searched layers' full k×k×k ``metric``; the L1 strength is adapted
            during the search (a price on cost steers a proximal L1 step,
            :mod:`cakes_lite.search.target`) and the layout is derived by the paper's rule,
            no budget. Met within 5 % on the nets measured
            (docs/search.md); ``settings["target_met"]`` says whether it was here, and a miss
            warns.
        budget, round_to, metric: passed to :func:`derive_layout` (``metric`` also measures
            ``target``). ``budget`` and ``target`` exclude each other.
        loss_fn: ``loss_fn(outputs, targets)``; default cross-entropy (works for
            classification (N, K) and segmentation (N, K, D, H, W) logits alike).
        device: where to train; None: where ``model`` is (nothing is moved silently).
        seed: seeds supernet init, channel sampling and loader shuffling; the caller's global
            RNG state (CPU, and CUDA if used) is restored afterwards. Same seed ⇒ same layout
            on one machine.
        weight_decay: on conv/linear weights only (never on γ, β, biases).
        lr_schedule: ``f(step, steps_per_epoch) -> factor`` of every group's lr instead of the
            cosine (e.g. :class:`~cakes_lite.train.MultiStepWarmup`, the paper's warm-up and
            steps); needs a loader with a length.
        grad_clip: clip the gradient norm (weights and γ) to this before the L1 step.
        amp: mixed precision on CUDA (as :func:`~cakes_lite.train.fit`); ignored on CPU.
        sync_bn: BatchNorm statistics over all processes' batches under torchrun (every BN,
            the supernet layers' too, becomes a SyncBatchNorm3d; one process then computes
            them in two passes).
        channels_last: run the supernet's 5D weights and every 5D batch in
            ``torch.channels_last_3d`` memory (the same values up to float rounding; oneDNN's
            faster convolution layout on CPU, as ``fit(channels_last=True)``). The returned
            supernet is back in NCDHW memory.
        callback: called after every epoch with ``{"epoch", "loss", "accuracy", "gamma_shift",
            "importance", "layout", "supernet"}``.
        progress: show a tqdm bar (widget in notebooks, text in terminals) with the loss, the
            supernet's accuracy and the mean |γ| shift.

    Returns:
        :class:`SearchResult` with ``.layout``, ``.history``, ``.supernet``, ``.settings``
        (what ran) and ``.warning``.

    Raises:
        ValueError: bad arguments, an empty loader, or no searched layer receiving a gradient.

    Warns:
        UserWarning: a 1-epoch search (no warm-up), layers without gradient, a missed
        ``target``, and the one-line :attr:`SearchResult.warning`.
    """
    g_lr, warm, s = check_arguments(mode, epochs, lr, gamma_lr, warmup_epochs, target, budget,
                                    sparsity, metric, sampling_power)
    if not any(p.requires_grad for p in model.parameters()):
        warnings.warn("run_search: model is frozen (no parameter requires grad); the supernet's "
                      "searched layers are trained anyway, every other layer stays fixed",
                      stacklevel=2)
    if warm == 0 and warmup_epochs is None:
        warnings.warn("run_search: a 1-epoch search has no weight warm-up: γ and its L1 step "
                      "start with untrained features (2 or more epochs get at least one "
                      "warm-up epoch)", stacklevel=2)
    device = _model_device(model) if device is None else torch.device(device)
    loss_fn = loss_fn or F.cross_entropy
    history: dict[str, list[Any]] = {key: [] for key in HISTORY_KEYS}
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        net = supernet(model, space, mode).to(device)
        if channels_last:  # before the optimiser and DDP see the parameters
            net = net.to(memory_format=torch.channels_last_3d)
        net.cakes_search["seed"] = seed
        train_model = wrap(net, device, sync_bn)  # DDP under torchrun
        train_loader = shard(train_loader, seed)  # under torchrun: this process's share
        groups = param_groups(net, weight_decay)
        gammas = {id(layer.bn.weight) for _, layer in search_layers(net)
                  if layer.bn.weight is not None}
        # γ in a group of its own: lr · gamma_lr
        groups.append({"params": [p for p in groups[1]["params"] if id(p) in gammas],
                       "weight_decay": 0.0, "gamma": True})
        groups[1]["params"] = [p for p in groups[1]["params"] if id(p) not in gammas]
        if not groups[2]["params"]:
            raise ValueError("model: the searched layers' importances γ are not trainable "
                             "(requires_grad=False?); the search could not move them")
        for g in groups:
            g["lr"] = lr * (g_lr if g.get("gamma") else 1.0)
        opt = torch.optim.SGD(groups, lr=lr, momentum=momentum)
        try:
            steps_per_epoch = len(train_loader)  # type: ignore[arg-type]
        except TypeError:
            steps_per_epoch = None
        total = epochs * steps_per_epoch if steps_per_epoch else None
        if lr_schedule is not None and not total:
            raise ValueError("lr_schedule: needs a train_loader with a length (steps per epoch)")
        lr_factor = ((lambda i: lr_schedule(i, steps_per_epoch)) if lr_schedule is not None else
                     (lambda i: warmup_cosine(i, total)) if total else (lambda i: 1.0))
        control = CostTarget(net, target, metric) if target is not None else None
        # the training loop's step and schedule: lr_schedule, else cosine over the whole run
        # (constant without a known length); the L1 step on γ between backward and step
        ctx = StepContext(model=net, train_model=train_model, optimizer=opt, loss_fn=loss_fn,
                          device=device, amp=amp, lr_factor=lr_factor, grad_clip=grad_clip,
                          channels_last=channels_last, scaler=torch.amp.GradScaler("cuda")
                          if amp_dtype(device, amp) == torch.float16 else None)
        hook = ctx.step_hook = SearchStepHook(ctx, mode, s, control, budget, round_to, metric)
        bar = progress_bar(total=total, desc=f"search ({mode})", disable=not progress,
                           leave=False)
        start_gamma = gamma_start(net)
        labels = None
        try:
            for epoch in range(1, epochs + 1):
                train_model.train()  # the DDP wrapper too
                new_epoch(train_loader, epoch - 1)
                hook.learn_gamma = epoch > warm
                l1_before, sum_before = hook.l1_steps, hook.l1_sum
                # performance priority: sampling ∝ |γ|^a, a ramping 0 -> sampling_power after
                # the warm-up (0: the paper's uniform sampling throughout)
                power = sampling_power * max(0, epoch - 1 - warm) / max(1, epochs - 1 - warm)
                for _, layer in search_layers(net):
                    layer.sampling_power = power
                start, loss_sum, n_batches, right, seen = time.perf_counter(), 0.0, 0, 0, 0
                labels = None
                for batch in train_loader:
                    x, y = _to(batch, device)
                    try:
                        _, out, loss_value = train_step(ctx, x, y)
                    except NonFiniteLossError as e:
                        raise RuntimeError(f"run_search: loss became non-finite at epoch "
                                           f"{epoch}, step {ctx.step}; try a smaller lr ({e})"
                                           ) from None
                    c, m = correct(out, y)
                    right, seen = right + c, seen + m
                    counts = label_counts(out, y)
                    if counts is not None:
                        labels = counts if labels is None else labels + counts
                    loss_sum, n_batches = loss_sum + loss_value, n_batches + 1
                    bar.update(1)
                    bar.set_postfix(epoch=epoch, loss=f"{loss_value:.3f}",
                                    acc=f"{right / seen:.2f}" if seen else "-")
                if n_batches == 0:
                    raise ValueError("train_loader: yielded no batches")
                right, seen, labels = epoch_sums(right, seen, labels)  # over all processes
                net.eval()
                layout = derive_quietly(net, budget, round_to, metric)
                shift = gamma_shift(net, start_gamma)
                l1 = hook.l1_steps - l1_before
                record = {
                    "loss": loss_sum / n_batches, "accuracy": right / seen if seen else None,
                    "gamma_shift": shift, "importance": importance(net),
                    "layout": {k: dict(v) for k, v in layout.items()},
                    "seconds": time.perf_counter() - start, "gamma_trained": hook.learn_gamma,
                    "l1_steps": l1, "sparsity": (hook.l1_sum - sum_before) / l1 if l1 else 0.0,
                    "sampling_power": power, "cost_fraction": layout.meta.get("cost_fraction")}
                for key in HISTORY_KEYS:
                    history[key].append(record[key])
                bar.set_postfix(epoch=epoch, loss=f"{record['loss']:.3f}",
                                acc="-" if record["accuracy"] is None
                                else f"{record['accuracy']:.2f}",
                                dgamma=f"{max(shift.values()):.3f}")
                if callback is not None:
                    callback({"epoch": epoch, "loss": record["loss"],
                              "accuracy": record["accuracy"], "gamma_shift": shift,
                              "importance": record["importance"], "layout": layout,
                              "supernet": net})
        finally:
            bar.close()
            for _, layer in search_layers(net):
                layer.sampling_power = 0.0  # the returned supernet samples uniformly again
            if channels_last:
                net.to(memory_format=torch.contiguous_format)
    layout = derive_layout(net, budget, round_to, metric)  # warns if a budget was out of reach
    moved = relative_shift(history["gamma_shift"][-1], start_gamma)
    settings = {
        "epochs": epochs, "steps": ctx.step, "lr": lr, "gamma_lr": g_lr,
        "warmup_epochs": warm, "warmup_default": warmup_epochs is None,
        "gamma_frozen_steps": hook.frozen_steps, "l1_steps": hook.l1_steps,
        "sparsity": "target (price-steered proximal L1)" if control is not None else s,
        "sampling": "uniform" if not sampling_power else f"|γ|^a, a ramping to {sampling_power}",
        "target": target, "metric": metric, "cost_fraction": layout.meta.get("cost_fraction"),
        "target_met": None, "gamma_moved": moved, "world_size": world_size(),
        "sync_bn": sync_bn, "channels_last": channels_last,
        "lr_schedule": "cosine" if lr_schedule is None else repr(lr_schedule)}
    if control is not None:
        cost = layout.meta["cost_fraction"]
        settings["target_met"] = control.met(cost)
        if not settings["target_met"]:
            warnings.warn(control.miss(cost), stacklevel=2)
    majority = float(labels.max() / labels.sum()) if labels is not None else None
    warning = verdict(history["accuracy"][-1], majority, moved)
    if warning:
        warnings.warn(warning, stacklevel=2)
    layout.meta.update({"epochs": epochs, "lr": lr, "gamma_lr": g_lr, "warmup_epochs": warm,
                        "sparsity": settings["sparsity"], "target": target,
                        "l1_steps": hook.l1_steps})
    return SearchResult(layout=layout, history=history, supernet=net, settings=settings,
                        warning=warning)
