"""``fit()`` and ``evaluate()``: the training loop for classification and segmentation.

Seeded and resumable: at the start of epoch e every RNG (and the loader's shuffling) is seeded
from ``(seed, e)``, and the learning rate is a pure function of the global step, so a run
interrupted after any epoch and resumed from its checkpoint ends with the same weights as an
uninterrupted one (bit-exact on CPU). Under ``torchrun`` the same call trains with DDP.
Walkthrough: ``notebooks/03_training.ipynb``.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from . import distributed as D
from .checkpoint import JSON_NAME, load_checkpoint, save_checkpoint
from .metrics import Meter, default_loss
from .schedule import set_lr, warmup_cosine

TASKS = ("classification", "segmentation")


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class FitResult:
    """What ``fit`` returns: the trained model (unwrapped) and one record per epoch."""

    model: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def last(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


def default_param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on weights with ≥ 2 dims only; none on BN γ/β and biases (nor on the
    supernet's γ, whose L1 step the search applies instead)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(name: str | Callable, groups: list[dict], lr: float,
                   momentum: float = 0.9) -> torch.optim.Optimizer:
    """``"adamw"``, ``"sgd"`` (Nesterov momentum) or a factory ``f(param_groups) -> Optimizer``."""
    if callable(name):
        return name(groups)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0)
    raise ValueError(f"optimizer: expected 'adamw', 'sgd' or a callable, got {name!r}")


def seed_epoch(seed: int, epoch: int, loader: Any = None) -> None:
    """Seed torch / NumPy / Python RNGs and the loader's shuffling from ``(seed, epoch)``, and
    call ``set_epoch(epoch)`` on the loader's sampler and dataset where they have one."""
    s = (seed * 1_000_003 + epoch) % (2**31)
    torch.manual_seed(s)
    random.seed(s)
    np.random.seed(s)
    dataset = getattr(loader, "dataset", None)
    if hasattr(dataset, "set_epoch"):  # e.g. MNI152Tissue draws fresh patches per epoch
        dataset.set_epoch(epoch)
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    for gen in (getattr(loader, "generator", None), getattr(sampler, "generator", None)):
        if isinstance(gen, torch.Generator):
            gen.manual_seed(s)


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast(device.type, enabled=False)


def _num_classes(model: nn.Module, num_classes: int | None) -> int | None:
    cfg = getattr(getattr(model, "module", model), "config", None)
    return num_classes or getattr(cfg, "num_classes", None)


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, task: str = "classification", *,
             loss_fn: Callable | None = None, num_classes: int | None = None,
             device: str | torch.device | None = None, amp: bool = True,
             progress: bool = False, reduce: bool | None = None) -> dict[str, Any]:
    """Evaluate ``model`` on ``loader`` of (inputs, targets) batches.

    Args:
        model: classifier (N, …) -> (N, C) or segmenter (N, …) -> (N, C, D, H, W).
        loader: iterable of batches; targets (N,) class ids or (N, D, H, W) label maps.
        task: ``"classification"`` or ``"segmentation"``.
        loss_fn: ``f(logits, targets)``; default cross-entropy (+ soft Dice for segmentation).
        num_classes: segmentation classes (default: ``model.config.num_classes`` or logits').
        device: default: where the model's parameters are.
        amp: autocast on CUDA (ignored on CPU).
        progress: show a tqdm bar.
        reduce: sum metrics over DDP ranks (default: iff the loader is sharded by rank).

    Returns:
        ``{"loss", "n", "top1"}`` (classification) or ``{"loss", "n", "dice" (list per class,
        NaN where absent), "mean_dice" (over classes 1…C-1)}`` (segmentation; Dice over the
        whole set, not averaged per sample).
    """
    if task not in TASKS:
        raise ValueError(f"task: expected one of {TASKS}, got {task!r}")
    model = getattr(model, "module", model)
    device = torch.device(device) if device else next(model.parameters()).device
    loss_fn = loss_fn or default_loss(task)
    was_training = model.training
    model.eval()
    meter = Meter(task, _num_classes(model, num_classes) if task == "segmentation" else None)
    for x, y in tqdm(loader, desc="eval", leave=False, disable=not progress):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with _autocast(device, amp):
            out = model(x)
        meter.update(float(loss_fn(out.float(), y)), out, y)
    model.train(was_training)
    if reduce is None:
        reduce = isinstance(getattr(loader, "sampler", None), (D.ShardSampler,
                                                               D.DistributedSampler))
    if reduce and D.is_distributed():
        meter.load_tensor(D.all_reduce_sum(meter.as_tensor()))
    return meter.result()


def fit(model: nn.Module, train_loader: DataLoader, val_loader: Iterable | None = None, *,
        task: str = "classification", epochs: int = 1, lr: float = 1e-3,
        optimizer: str | Callable = "adamw", weight_decay: float = 0.05, momentum: float = 0.9,
        param_groups: list[dict] | None = None, warmup_epochs: float = 0.0,
        min_lr_factor: float = 0.0, loss_fn: Callable | None = None,
        num_classes: int | None = None, device: str | torch.device | None = None,
        amp: bool = True, seed: int = 0, deterministic: bool = False,
        checkpoint_dir: str | Path | None = None, resume: bool | str | Path = False,
        meta: dict | None = None, callback: Callable[[dict], Any] | None = None,
        step_hook: Callable[[nn.Module], Any] | None = None, grad_clip: float | None = None,
        max_steps_per_epoch: int | None = None, progress: bool = True) -> FitResult:
    """Train ``model`` with AdamW/SGD, linear warm-up + cosine decay, per-epoch checkpoints.

    Args:
        model: the network; trained in place (moved to ``device``).
        train_loader: a DataLoader of (inputs, targets); its shuffling is re-seeded per epoch.
        val_loader: evaluated after every epoch (``val_``-prefixed metrics).
        task: ``"classification"`` (top-1) or ``"segmentation"`` (per-class Dice).
        epochs: total epochs of the run (a resumed run counts the finished ones).
        lr: peak learning rate (param groups / a factory may set their own).
        optimizer: ``"adamw"``, ``"sgd"`` or a factory ``f(param_groups) -> Optimizer``.
        weight_decay: for weights with ≥ 2 dims (see :func:`default_param_groups`).
        momentum: SGD momentum.
        param_groups: explicit torch param groups (replaces the default split).
        warmup_epochs: linear warm-up length in epochs (fractions allowed).
        min_lr_factor: the cosine ends at ``lr · min_lr_factor``.
        loss_fn: ``f(logits, targets) -> loss``; default CE (+ soft Dice for segmentation).
        num_classes: segmentation classes for Dice (default ``model.config.num_classes``).
        device: default CUDA if available (``cuda:LOCAL_RANK`` under torchrun), else CPU.
        amp: mixed precision on CUDA (bf16, or fp16 with a GradScaler); ignored on CPU.
        seed: seeds weights-independent randomness (data order, dropout) per epoch.
        deterministic: cuDNN deterministic, no benchmark (CPU is deterministic anyway).
        checkpoint_dir: write a checkpoint after every epoch (rank 0).
        resume: ``True`` continues from ``checkpoint_dir`` if it holds a checkpoint; a path
            continues from that checkpoint (which must exist).
        meta: extra JSON-able metadata stored in the checkpoint.
        callback: ``f(record)`` after every epoch (rank 0); returning ``True`` stops the run.
        step_hook: ``f(model)`` between ``backward()`` and ``optimizer.step()`` (gradients
            unscaled), e.g. the search's L1-on-γ step.
        grad_clip: clip the global gradient norm to this value.
        max_steps_per_epoch: cap on batches per epoch (quick runs).
        progress: tqdm progress bars.

    Returns:
        :class:`FitResult` with ``.model`` and ``.history`` (one dict per epoch: ``epoch``,
        ``step``, ``lr``, ``time_s``, ``train_loss``, ``train_top1`` / ``train_mean_dice``,
        ``val_…``).

    Raises:
        NonFiniteLossError: the loss became NaN/inf (the last good checkpoint stays).
    """
    if task not in TASKS:
        raise ValueError(f"task: expected one of {TASKS}, got {task!r}")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs: expected a positive int, got {epochs!r}")
    if not (lr > 0):
        raise ValueError(f"lr: expected a positive float, got {lr!r}")
    dist_on = D.is_distributed()
    device = torch.device(device) if device else (
        D.init_distributed().device if dist_on else
        torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic
    torch.manual_seed(seed)
    loss_fn = loss_fn or default_loss(task)
    n_cls = _num_classes(model, num_classes) if task == "segmentation" else None
    model = model.to(device)
    opt = make_optimizer(optimizer, param_groups or default_param_groups(model, weight_decay),
                         lr, momentum)
    use_scaler = amp and device.type == "cuda" and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda") if use_scaler else None

    history: list[dict] = []
    start_epoch = step = 0
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir else None
    source = Path(resume) if isinstance(resume, (str, Path)) else ckpt_dir if resume else None
    if source is not None and (isinstance(resume, (str, Path)) or (source / JSON_NAME).exists()):
        ck = load_checkpoint(source, model, optimizer=opt, scaler=scaler, restore_rng=True,
                             map_location=device)
        start_epoch, step, history = ck.epoch, int(ck.info.get("step", 0)), ck.history

    train_model: nn.Module = model
    if dist_on:
        train_loader = D.distributed_train_loader(train_loader, seed)
        val_loader = D.sharded_eval_loader(val_loader) if val_loader is not None else None
        train_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    steps_per_epoch = len(train_loader)
    if max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, max_steps_per_epoch)
    if steps_per_epoch < 1:
        raise ValueError("train_loader: expected at least one batch, got an empty loader")
    total = epochs * steps_per_epoch
    warmup = round(warmup_epochs * steps_per_epoch)
    run_meta = {"task": task, "fit": {"epochs": epochs, "lr": lr, "seed": seed,
                                      "optimizer": optimizer if isinstance(optimizer, str)
                                      else "custom", "weight_decay": weight_decay,
                                      "warmup_epochs": warmup_epochs}, **(meta or {})}
    main = D.is_main()

    for epoch in range(start_epoch, epochs):
        seed_epoch(seed, epoch, train_loader)
        train_model.train()
        meter = Meter(task, n_cls)
        t0 = time.perf_counter()
        bar = tqdm(train_loader, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{epochs}",
                   leave=False, disable=not (progress and main))
        for i, (x, y) in enumerate(bar):
            if i >= steps_per_epoch:
                break
            lr_now = set_lr(opt, warmup_cosine(step, total, warmup, min_lr_factor))
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with _autocast(device, amp):
                out = train_model(x)
            loss = loss_fn(out.float(), y)
            loss_value = float(D.all_reduce_sum(loss.detach().reshape(1))) / D.world_size()
            if not math.isfinite(loss_value):
                where = "" if ckpt_dir is None else (
                    f"; the last good checkpoint is in {str(ckpt_dir)!r}"
                    if (ckpt_dir / JSON_NAME).exists() else "; no checkpoint was written yet")
                raise NonFiniteLossError(
                    f"training loss became {loss_value} at epoch {epoch + 1}, batch {i + 1} "
                    f"(global step {step + 1}, lr {lr_now:.3g}){where}; try a lower lr, "
                    f"gradient clipping or a longer warm-up")
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
            else:
                loss.backward()
            if grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            if step_hook is not None:
                step_hook(model)
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            step += 1
            meter.update(float(loss.detach()), out.detach(), y)
            bar.set_postfix(loss=f"{loss_value:.4f}")
        bar.close()
        if D.is_distributed():
            meter.load_tensor(D.all_reduce_sum(meter.as_tensor()))
            D.broadcast_buffers(model)
        record = {"epoch": epoch + 1, "step": step, "lr": lr_now,
                  "time_s": time.perf_counter() - t0, **meter.result("train_")}
        if val_loader is not None:
            val = evaluate(model, val_loader, task, loss_fn=loss_fn, num_classes=n_cls,
                           device=device, amp=amp, reduce=dist_on)
            record.update({f"val_{k}": v for k, v in val.items()})
        history.append(record)
        if ckpt_dir is not None and main:
            save_checkpoint(ckpt_dir, model, optimizer=opt, epoch=epoch + 1, step=step,
                            history=history, meta=run_meta, scaler=scaler)
        stop = bool(callback(record)) if (callback is not None and main) else False
        if dist_on:
            stop = bool(D.all_reduce_sum(torch.tensor([float(stop)])).item())
            D.barrier()
        if stop:
            break
    return FitResult(model=model, history=history)
