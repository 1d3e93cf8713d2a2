"""One epoch and one optimisation step of training, reusable outside :func:`~.loop.fit`.

:func:`seed_epoch` makes epoch ``e`` a pure function of ``(seed, e)``: it seeds every RNG and
every ``torch.Generator`` the loader shuffles with, and calls ``set_epoch`` on its sampler (a
``DistributedSampler`` shuffles differently each epoch only then). :func:`train_one_epoch` runs
the batches of one epoch, optionally starting after the first ``start_batch`` of them (the
loader is replayed up to there, so a mid-epoch resume sees exactly the remaining batches).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from ..progress import progress_bar

from . import distributed as D
from .metrics import Meter
from .schedule import set_lr

AMP_DTYPES = {"float16": torch.float16, "fp16": torch.float16, "bfloat16": torch.bfloat16,
              "bf16": torch.bfloat16}


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


def loader_generators(loader: Any) -> list[torch.Generator]:
    """Every distinct ``torch.Generator`` that ``loader`` draws from: its own (worker seeds,
    default shuffling), its sampler's and its batch sampler's (and that one's sampler's)."""
    batch_sampler = getattr(loader, "batch_sampler", None)
    owners = (loader, getattr(loader, "sampler", None), batch_sampler,
              getattr(batch_sampler, "sampler", None))
    found: list[torch.Generator] = []
    for owner in owners:
        gen = getattr(owner, "generator", None)
        if isinstance(gen, torch.Generator) and all(gen is not g for g in found):
            found.append(gen)
    return found


def seed_epoch(seed: int, epoch: int, loader: Any = None) -> None:
    """Seed torch / NumPy / Python RNGs and the loader's generators from ``(seed, epoch)``, and
    call ``set_epoch(epoch)`` on the loader's sampler, batch sampler and dataset where they have
    one (a ``DistributedSampler`` reshuffles per epoch only through it)."""
    s = (seed * 1_000_003 + epoch) % (2**31)
    torch.manual_seed(s)
    random.seed(s)
    np.random.seed(s)
    for owner in (getattr(loader, "dataset", None), getattr(loader, "sampler", None),
                  getattr(loader, "batch_sampler", None)):
        if hasattr(owner, "set_epoch"):  # e.g. MNI152Tissue draws fresh patches per epoch
            owner.set_epoch(epoch)
    for gen in loader_generators(loader):
        gen.manual_seed(s)


def amp_dtype(device: torch.device, amp: bool | str) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device``: None on CPU/MPS or when off; on CUDA
    ``True`` picks bfloat16 where supported, else float16; a name forces that dtype."""
    if isinstance(amp, str):
        if amp not in AMP_DTYPES:
            raise ValueError(f"amp: expected a bool or one of {tuple(AMP_DTYPES)}, got {amp!r}")
    elif not isinstance(amp, bool):
        raise ValueError(f"amp: expected a bool or one of {tuple(AMP_DTYPES)}, got {amp!r}")
    if not amp or device.type != "cuda":
        return None
    if isinstance(amp, str):
        return AMP_DTYPES[amp]
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device, amp: bool | str):
    """``torch.autocast`` for :func:`amp_dtype` (disabled where it is None)."""
    dtype = amp_dtype(device, amp)
    if dtype is None:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=dtype)


@dataclass
class StepContext:
    """Everything one optimisation step needs; ``step`` counts the steps done so far."""

    model: nn.Module  # unwrapped (clipping, step_hook)
    train_model: nn.Module  # what runs forward: the model or its DDP wrapper
    optimizer: torch.optim.Optimizer
    loss_fn: Callable
    device: torch.device
    lr_factor: Callable[[int], float]  # global step -> multiple of each group's peak lr
    amp: bool | str = True
    scaler: Any = None  # torch.amp.GradScaler for float16
    grad_clip: float | None = None
    step_hook: Callable[[nn.Module], Any] | None = None
    step: int = 0
    lr: float = 0.0  # the last learning rate set (first group)
    where: Callable[[], str] | None = None  # appended to a NonFiniteLossError's message
    channels_last: bool = False  # 5D batches in torch.channels_last_3d memory


def train_step(ctx: StepContext, x: torch.Tensor, y: torch.Tensor, *, at: str = ""
               ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """One step on batch ``(x, y)``: lr for ``ctx.step``, forward, backward, optimiser step.

    Args:
        ctx: model, optimiser, schedule; ``ctx.step`` is incremented.
        x, y: inputs (N, …) and targets (N,) or (N, D, H, W).
        at: where the batch is, for the error message (e.g. ``"at epoch 2, batch 3 "``).

    Returns:
        ``(loss, logits, loss_value)``: this rank's loss (0-d), the detached logits and the
        loss averaged over DDP ranks.

    Raises:
        NonFiniteLossError: the loss is NaN/inf (raised before any weight changes).
    """
    ctx.lr = set_lr(ctx.optimizer, ctx.lr_factor(ctx.step))
    x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
    if ctx.channels_last and x.dim() == 5:  # (N, C, D, H, W) values in (N, D, H, W, C) memory
        x = x.contiguous(memory_format=torch.channels_last_3d)
    with autocast(ctx.device, ctx.amp):
        out = ctx.train_model(x)
    loss = ctx.loss_fn(out.float(), y)
    loss_value = float(D.all_reduce_sum(loss.detach().reshape(1))) / D.world_size()
    if not math.isfinite(loss_value):
        where = ctx.where() if ctx.where is not None else ""
        raise NonFiniteLossError(
            f"training loss became {loss_value} {at}(global step {ctx.step + 1}, lr "
            f"{ctx.lr:.3g}){where}; try a lower lr, gradient clipping or a longer warm-up")
    opt, scaler = ctx.optimizer, ctx.scaler
    opt.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(opt)  # clipping and step_hook see true gradients
    else:
        loss.backward()
    if ctx.grad_clip:
        nn.utils.clip_grad_norm_(ctx.model.parameters(), ctx.grad_clip)
    if ctx.step_hook is not None:
        ctx.step_hook(ctx.model)
    if scaler is not None:
        scaler.step(opt)
        scaler.update()
    else:
        opt.step()
    ctx.step += 1
    return loss.detach(), out.detach(), loss_value


def skip_batches(batches: Iterator, n: int) -> None:
    """Draw and drop ``n`` batches (replays the loader's RNG use exactly; no training)."""
    for _ in range(n):
        next(batches)


def train_one_epoch(ctx: StepContext, loader: Any, meter: Meter, *, epoch: int, steps: int,
                    start_batch: int = 0, after_batch: Callable[[int], Any] | None = None,
                    before_first: Callable[[], Any] | None = None,
                    desc: str = "train", progress: bool = False) -> Meter:
    """Train on batches ``start_batch … steps - 1`` of one pass over ``loader``.

    Args:
        ctx: the model, optimiser and schedule (``ctx.step`` advances by one per batch).
        loader: iterable of ``(inputs, targets)``; call :func:`seed_epoch` before, for a
            reproducible order.
        meter: running sums this epoch's batches are added to.
        epoch: 0-based epoch (for error messages).
        steps: batches in this epoch (≤ ``len(loader)``).
        start_batch: batches already trained on (mid-epoch resume); they are drawn and dropped.
        after_batch: ``f(batches_done)`` after every step (e.g. a mid-epoch checkpoint).
        before_first: ``f()`` after skipping, before the first step (e.g. restore RNG states).
        desc, progress: tqdm bar label and switch.

    Returns:
        ``meter``.

    Raises:
        NonFiniteLossError: the loss became NaN/inf.
    """
    batches = iter(loader)
    skip_batches(batches, start_batch)
    if before_first is not None:
        before_first()
    bar = progress_bar(total=steps, initial=start_batch, desc=desc, leave=False,
                       disable=not progress)
    for i in range(start_batch, steps):
        x, y = next(batches)
        loss, out, loss_value = train_step(ctx, x, y, at=f"at epoch {epoch + 1}, batch {i + 1} ")
        meter.update(float(loss), out, y)
        bar.update()
        bar.set_postfix(loss=f"{loss_value:.4f}")
        if after_batch is not None:
            after_batch(i + 1)
    bar.close()
    return meter
