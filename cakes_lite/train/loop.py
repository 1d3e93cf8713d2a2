"""``fit()`` and ``evaluate()``: the training loop for classification and segmentation.

Seeded and resumable: at the start of epoch e every RNG (and the loader's shuffling, its own
``torch.Generator`` included) is seeded from ``(seed, e)``, and the learning rate is a pure
function of the global step, so a run interrupted after any epoch — or, with
``checkpoint_every``, inside one — and resumed from its checkpoint ends with the same weights as
an uninterrupted one (bit-exact on CPU). Under ``torchrun`` the same call trains with DDP (the
``DistributedSampler`` reshuffles every epoch). One epoch is :func:`.epoch.train_one_epoch`.
Walkthrough: ``notebooks/03_video_training.ipynb``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from ..progress import progress_bar

from . import distributed as D
from .checkpoint import JSON_NAME, Checkpoint, load_checkpoint, save_checkpoint
from .epoch import (NonFiniteLossError, StepContext, amp_dtype, autocast, loader_generators,
                    seed_epoch, train_one_epoch)
from .metrics import Meter, default_loss
from .optim import default_param_groups, make_optimizer
from .schedule import warmup_cosine

__all__ = ["FitResult", "NonFiniteLossError", "default_param_groups", "evaluate", "fit",
           "make_optimizer", "seed_epoch"]

TASKS = ("classification", "segmentation")


@dataclass
class FitResult:
    """What ``fit`` returns: the trained model (unwrapped) and one record per epoch."""

    model: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def last(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


def _num_classes(model: nn.Module, num_classes: int | None) -> int | None:
    cfg = getattr(getattr(model, "module", model), "config", None)
    return num_classes or getattr(cfg, "num_classes", None)


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, task: str = "classification", *,
             loss_fn: Callable | None = None, num_classes: int | None = None,
             device: str | torch.device | None = None, amp: bool | str = True,
             progress: bool = False, reduce: bool | None = None) -> dict[str, Any]:
    """Evaluate ``model`` on ``loader`` of (inputs, targets) batches.

    Args:
        model: classifier (N, …) -> (N, C) or segmenter (N, …) -> (N, C, D, H, W).
        loader: iterable of batches; targets (N,) class ids or (N, D, H, W) label maps.
        task: ``"classification"`` or ``"segmentation"``.
        loss_fn: ``f(logits, targets)``; default cross-entropy (+ soft Dice for segmentation).
        num_classes: segmentation classes (default: ``model.config.num_classes`` or logits').
        device: default: where the model's parameters are.
        amp: autocast on CUDA (ignored elsewhere); see :func:`fit`.
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
    for x, y in progress_bar(loader, desc="eval", leave=False, disable=not progress):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast(device, amp):
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
        amp: bool | str = True, seed: int = 0, deterministic: bool = False,
        checkpoint_dir: str | Path | None = None, resume: bool | str | Path = False,
        meta: dict | None = None, callback: Callable[[dict], Any] | None = None,
        step_hook: Callable[[nn.Module], Any] | None = None, grad_clip: float | None = None,
        max_steps_per_epoch: int | None = None, checkpoint_every: int | None = None,
        progress: bool = True, lr_schedule: Callable[[int, int], float] | None = None,
        nesterov: bool | None = None, channels_last: bool = False) -> FitResult:
    """Train ``model`` with AdamW/SGD, linear warm-up + cosine decay, per-epoch checkpoints.

    Args:
        model: the network; trained in place (moved to ``device``).
        train_loader: a DataLoader of (inputs, targets); its shuffling (its own generator, its
            sampler's) is re-seeded per epoch.
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
        amp: mixed precision on CUDA (ignored elsewhere): ``True`` = bf16 where supported,
            else fp16 with a GradScaler; ``"float16"`` / ``"bfloat16"`` force one.
        seed: seeds weights-independent randomness (data order, dropout) per epoch.
        deterministic: cuDNN deterministic, no benchmark (CPU is deterministic anyway).
        checkpoint_dir: write a checkpoint after every epoch (rank 0).
        resume: ``True`` continues from ``checkpoint_dir`` if it holds a checkpoint; a path
            continues from that checkpoint (which must exist). A mid-epoch checkpoint resumes
            at its batch: the loader is replayed up to there, the RNG states restored.
        meta: extra JSON-able metadata stored in the checkpoint.
        callback: ``f(record)`` after every epoch (rank 0); returning ``True`` stops the run.
        step_hook: ``f(model)`` between ``backward()`` and ``optimizer.step()`` (gradients
            unscaled), e.g. the search's L1-on-γ step.
        grad_clip: clip the global gradient norm to this value.
        max_steps_per_epoch: cap on batches per epoch (quick runs).
        checkpoint_every: also write a checkpoint every this many batches inside an epoch
            (needs ``checkpoint_dir``), for runs that may be stopped mid-epoch.
        progress: tqdm progress bars.
        lr_schedule: ``f(step, steps_per_epoch) -> factor`` of every group's lr, replacing
            the warm-up + cosine (then ``warmup_epochs`` / ``min_lr_factor`` must stay 0),
            e.g. :class:`~.schedule.MultiStepWarmup`.
        nesterov: for ``optimizer="sgd"``: ``False`` for plain momentum (default Nesterov).
        channels_last: keep the model's 5D weights and every 5D batch in
            ``torch.channels_last_3d`` memory (the same values up to float rounding; oneDNN's
            faster convolution layout on CPU: ``benchmarks/train_speed.py`` times a step both
            ways). A model whose forward calls ``.view`` on a 5D activation may need
            ``.reshape`` instead.

    Returns:
        :class:`FitResult` with ``.model`` and ``.history`` (one dict per epoch: ``epoch``,
        ``step``, ``lr``, ``time_s``, ``train_loss``, ``train_top1`` / ``train_mean_dice``,
        ``val_…``).

    Raises:
        NonFiniteLossError: the loss became NaN/inf (the last good checkpoint stays).
    """
    _check_fit_args(task, epochs, lr, checkpoint_every, checkpoint_dir)
    if lr_schedule is not None and (warmup_epochs or min_lr_factor):
        raise ValueError(f"lr_schedule: replaces warmup_epochs / min_lr_factor, which must stay "
                         f"0; got {warmup_epochs} / {min_lr_factor}")
    dist_on = D.is_distributed()
    device = _fit_device(device, dist_on, deterministic)
    torch.manual_seed(seed)
    loss_fn = loss_fn or default_loss(task)
    n_cls = _num_classes(model, num_classes) if task == "segmentation" else None
    model = model.to(device)
    if channels_last:  # before the optimiser: its state is made like the parameters
        model = model.to(memory_format=torch.channels_last_3d)
    opt = make_optimizer(optimizer, param_groups or default_param_groups(model, weight_decay),
                         lr, momentum, nesterov)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype(device, amp) == torch.float16 else None
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir else None
    ck = _load_resume(resume, ckpt_dir, model, opt, scaler, device)

    train_model: nn.Module = model
    if dist_on:
        train_loader = D.distributed_train_loader(train_loader, seed)
        val_loader = D.sharded_eval_loader(val_loader) if val_loader is not None else None
        train_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    steps = _steps_per_epoch(train_loader, max_steps_per_epoch)
    total, warmup = epochs * steps, round(warmup_epochs * steps)
    factor = ((lambda s: lr_schedule(s, steps)) if lr_schedule is not None else
              (lambda s: warmup_cosine(s, total, warmup, min_lr_factor)))
    ctx = StepContext(model, train_model, opt, loss_fn, device, factor, amp=amp,
                      scaler=scaler, grad_clip=grad_clip, step_hook=step_hook,
                      step=int(ck.info.get("step", 0)) if ck else 0,
                      where=lambda: _checkpoint_hint(ckpt_dir), channels_last=channels_last)
    run_meta = {"task": task, "fit": {"epochs": epochs, "lr": lr, "seed": seed,
                                      "optimizer": optimizer if isinstance(optimizer, str)
                                      else "custom", "weight_decay": weight_decay,
                                      "warmup_epochs": warmup_epochs,
                                      **_schedule_meta(lr_schedule, nesterov)}, **(meta or {})}
    gens, main = loader_generators(train_loader), D.is_main()
    history = ck.history if ck else []

    def save(epoch_done: int, batch: int = 0, meter: Meter | None = None) -> None:
        # a mid-epoch checkpoint keeps this epoch's metric sums (over all ranks) so far
        extra = {"meter": D.all_reduce_sum(meter.as_tensor())} if meter is not None else None
        if main:
            save_checkpoint(ckpt_dir, model, optimizer=opt, epoch=epoch_done, step=ctx.step,
                            history=history, meta=run_meta, scaler=scaler, batch=batch,
                            generators=gens, extra=extra)

    for epoch in range(ck.epoch if ck else 0, epochs):
        seed_epoch(seed, epoch, train_loader)
        train_model.train()
        meter, t0 = Meter(task, n_cls), time.perf_counter()
        resume_here = ck is not None and ck.batch > 0 and epoch == ck.epoch

        def after(b: int, epoch=epoch, meter=meter) -> None:  # mid-epoch checkpoints
            if checkpoint_every and b % checkpoint_every == 0 and b < steps:
                save(epoch, b, meter)

        train_one_epoch(ctx, train_loader, meter, epoch=epoch, steps=steps,
                        start_batch=ck.batch if resume_here else 0, after_batch=after,
                        before_first=(lambda: _restore_mid_epoch(ck, gens, meter))
                        if resume_here else None,
                        desc=f"epoch {epoch + 1}/{epochs}", progress=progress and main)
        record = {"epoch": epoch + 1, "step": ctx.step, "lr": ctx.lr,
                  "time_s": time.perf_counter() - t0, **_epoch_metrics(meter, model, dist_on)}
        if val_loader is not None:
            val = evaluate(model, val_loader, task, loss_fn=loss_fn, num_classes=n_cls,
                           device=device, amp=amp, reduce=dist_on)
            record.update({f"val_{k}": v for k, v in val.items()})
        history.append(record)
        if ckpt_dir is not None:
            save(epoch + 1)
        if _should_stop(callback, record, main, dist_on):
            break
    return FitResult(model=model, history=history)


def _check_fit_args(task: str, epochs: Any, lr: Any, checkpoint_every: Any,
                    checkpoint_dir: Any) -> None:
    if task not in TASKS:
        raise ValueError(f"task: expected one of {TASKS}, got {task!r}")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs: expected a positive int, got {epochs!r}")
    if not (lr > 0):
        raise ValueError(f"lr: expected a positive float, got {lr!r}")
    if checkpoint_every is not None and (not isinstance(checkpoint_every, int)
                                         or checkpoint_every < 1 or not checkpoint_dir):
        raise ValueError(f"checkpoint_every: expected a positive int together with "
                         f"checkpoint_dir, got {checkpoint_every!r} (checkpoint_dir="
                         f"{checkpoint_dir!r})")


def _schedule_meta(lr_schedule: Any, nesterov: bool | None) -> dict[str, Any]:
    """The non-default schedule / momentum of a run, JSON-able, for the checkpoint."""
    out: dict[str, Any] = {} if nesterov is None else {"nesterov": bool(nesterov)}
    if lr_schedule is not None:
        out["lr_schedule"] = ({"name": type(lr_schedule).__name__, **asdict(lr_schedule)}
                              if is_dataclass(lr_schedule) else "custom")
    return out


def _fit_device(device: Any, dist_on: bool, deterministic: bool) -> torch.device:
    device = torch.device(device) if device else (
        D.init_distributed().device if dist_on else
        torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic
    return device


def _load_resume(resume: bool | str | Path, ckpt_dir: Path | None, model: nn.Module,
                 opt: torch.optim.Optimizer, scaler: Any, device: torch.device
                 ) -> Checkpoint | None:
    """The checkpoint to continue from (weights, optimizer and scaler loaded), or None."""
    explicit = isinstance(resume, (str, Path))
    source = Path(resume) if explicit else ckpt_dir if resume else None
    if source is None or not (explicit or (source / JSON_NAME).exists()):
        return None
    return load_checkpoint(source, model, optimizer=opt, scaler=scaler, map_location=device)


def _steps_per_epoch(loader: Any, cap: int | None) -> int:
    steps = len(loader) if not cap else min(len(loader), cap)
    if steps < 1:
        raise ValueError("train_loader: expected at least one batch, got an empty loader")
    return steps


def _restore_mid_epoch(ck: Checkpoint, gens: list[torch.Generator], meter: Meter) -> None:
    """After replaying the finished batches: RNG states and metric sums as they were saved.
    The sums are over all ranks, so only rank 0 starts from them (the epoch end sums ranks)."""
    ck.restore_rng(gens)
    if D.is_main() and "meter" in ck.extra:
        meter.load_tensor(ck.extra["meter"])


def _epoch_metrics(meter: Meter, model: nn.Module, dist_on: bool) -> dict[str, Any]:
    if dist_on:
        meter.load_tensor(D.all_reduce_sum(meter.as_tensor()))
        D.broadcast_buffers(model)
    return meter.result("train_")


def _checkpoint_hint(ckpt_dir: Path | None) -> str:
    if ckpt_dir is None:
        return ""
    if (ckpt_dir / JSON_NAME).exists():
        return f"; the last good checkpoint is in {str(ckpt_dir)!r}"
    return "; no checkpoint was written yet"


def _should_stop(callback: Callable | None, record: dict, main: bool, dist_on: bool) -> bool:
    stop = bool(callback(record)) if (callback is not None and main) else False
    if dist_on:
        stop = bool(D.all_reduce_sum(torch.tensor([float(stop)])).item())
        D.barrier()
    return stop
