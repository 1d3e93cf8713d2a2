"""Measured plan choice for CAKESConv3d's fast forward (like ``torch.backends.cudnn.benchmark``).

Which plan of :mod:`cakes_lite.fast.plans` is fastest depends on the machine (vector ISA, cache,
threads), the dtype, the device and the shapes; a static cost model describes one CPU. So the
first forward of a layer on a new (input shape and memory format, split, stride, bias, dtype,
device, threads, grad mode) key times every candidate plan, interleaved (forward, or forward +
backward when gradients are being recorded), and caches the fastest; later calls look it up.
This is the choice per LAYER, timed on its own; :mod:`cakes_lite.deploy.network_tuning` chooses
per NETWORK, timing whole forwards.

By default only inference calls (no gradient recorded) are measured: a call that records
gradients (training, a search) runs the static ``"mixed"`` plan, so a seeded training run or
search gives the same bits in every process and a resumed run continues bit-exactly (a plan
chosen by timing can differ between processes, and with it the float rounding). Measure
training plans too with ``set_autotune(True, training=True)`` (or ``CAKES_LITE_AUTOTUNE=all``):
faster steps, run-to-run rounding then depends on timing. Switch measuring off entirely with
``set_autotune(False)`` or ``CAKES_LITE_AUTOTUNE=0``: every layer then runs ``"mixed"``.
The ``"dense"`` plan (the parent k×k×k conv with the sub-kernels embedded in it: the same
function in one call, at the parent's MACs) is a candidate for layers in eval mode (a
CAKESConv3d's ``allow_dense`` left at None), for layers with ``allow_dense = True`` (what
:func:`cakes_lite.deploy.inference.for_inference` sets on its copy) and everywhere with
``set_autotune(True, dense=True)``: it wins where per-call overheads or oneDNN's channel blocks
eat the saved MACs (narrow layers, small inputs), so an eval-mode layer is never slower than its
parent conv measured alone. A layer in train mode (a fresh one, a training step) or with
``allow_dense = False`` does only its own MACs. Nothing is timed under
tracing, ``torch.compile``/``torch.export``, or a dispatch mode such as FlopCounterMode: a cached
plan is used if there is one, else ``"mixed"``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

from ..speed import interleaved_samples
from .plans import PLANS, Stride, Weights, fast, prepare, run, traced

_ENV = os.environ.get("CAKES_LITE_AUTOTUNE", "1").strip().lower()
_STATE = {"enabled": _ENV != "0", "training": _ENV == "all", "dense": False}
_CACHE: dict[tuple, str] = {}
_GENERATION = [0]  # bumped whenever the switch or the cache changes: layers re-check their plan


def generation() -> int:
    """A counter that changes with every :func:`set_autotune` / :func:`clear_cache`."""
    return _GENERATION[0]
DEFAULT_PLAN = "mixed"


def set_autotune(enabled: bool, dense: bool = False, training: bool = False) -> None:
    """Turn measured plan selection on or off; clears the cache of chosen plans.

    Args:
        enabled: measure plans (True) or always run ``"mixed"`` (False).
        dense: let the ``"dense"`` plan compete (see the module docstring).
        training: also measure calls that record gradients (training, searches); off by
            default so that seeded training is bit-reproducible across processes.
    """
    if not all(isinstance(v, bool) for v in (enabled, dense, training)):
        raise ValueError(f"set_autotune: expected bools, got enabled={enabled!r}, "
                         f"dense={dense!r}, training={training!r}")
    _STATE.update(enabled=enabled, dense=dense, training=training)
    clear_cache()


def autotune_enabled() -> bool:
    """Whether plans are measured (True) or the static ``"mixed"`` plan is used (False)."""
    return bool(_STATE["enabled"])


def cached_plans() -> dict[tuple, str]:
    """A copy of the cache: key -> chosen plan (see the module docstring for the key)."""
    return dict(_CACHE)


def clear_cache() -> None:
    """Forget every measured choice (e.g. after changing the number of threads elsewhere)."""
    _CACHE.clear()
    _GENERATION[0] += 1


def _tracing(x: torch.Tensor) -> bool:
    """True under jit tracing, torch.compile / export, or any dispatch / function mode."""
    return traced() or type(x) not in (torch.Tensor, torch.nn.Parameter)


def key(x: torch.Tensor, weights: Weights, bias, stride: Stride,
        dense: bool = False) -> tuple:
    grad = torch.is_grad_enabled() and (x.requires_grad or any(w.requires_grad for w in weights))
    return (tuple(x.shape), x.is_contiguous(memory_format=torch.channels_last_3d),
            tuple(tuple(w.shape) for w in weights), bias is not None,
            tuple(stride), x.dtype, str(x.device), torch.get_num_threads(), grad,
            dense or bool(_STATE["dense"]))


def candidates(weights: Weights, stride: Stride,
               dense: bool = False) -> list[str]:
    """The plans worth timing for these groups (plans that prepare the same calls dropped)."""
    out, seen = [], set()
    dense = dense or bool(_STATE["dense"])
    names = PLANS if dense else tuple(p for p in PLANS if p != "dense")
    for plan in names:
        prep = prepare([w.detach() for w in weights], None, stride, plan)
        shape = (plan == "direct", tuple((c[0], tuple(c[1].shape)) for c in prep.calls))
        if shape not in seen:
            seen.add(shape)
            out.append(plan)
    return out


def _step(x, weights, bias, stride, plan, grad: bool) -> Callable[[], None]:
    """One forward (+ backward on detached copies: the caller's .grad stay untouched); with
    gradients the plan is prepared inside the step, as the layer does then."""
    if not grad:  # inference: the layer caches the prepared weights, so time only the run
        with torch.no_grad():
            prep = prepare(weights, bias, stride, plan)

        def fwd() -> None:
            with torch.no_grad():
                run(x, prep, stride)
        return fwd
    xs = x.detach().requires_grad_(x.requires_grad)
    ws = [w.detach().requires_grad_(w.requires_grad) for w in weights]
    bs = None if bias is None else bias.detach().requires_grad_(bias.requires_grad)

    def fwd_bwd() -> None:
        y = fast(xs, ws, bs, stride, plan)
        y.backward(torch.ones_like(y))
        xs.grad = None
        for w in ws:
            w.grad = None
    return fwd_bwd


def measure(x: torch.Tensor, weights: Weights, bias, stride: Stride,
            plans: list[str], repeats: int = 7, grad: bool = False) -> dict[str, float]:
    """Milliseconds of each plan: the fastest of ``repeats`` interleaved rounds after one warm-up
    round (:func:`cakes_lite.speed.interleaved_samples`). The minimum, because interference from
    other processes only ever adds time, and with several threads one descheduled thread stalls
    the others, so a median of a few rounds could still crown a plan that is 2× slower in steady
    state; it did, under load 1.4 on a 2-core machine.

    On CPU with one intra-op thread the clock is the thread's CPU time (time spent descheduled
    by other processes on a shared machine does not count), else wall-clock time.
    """
    steps = {p: _step(x, weights, bias, stride, p, grad) for p in plans}
    cpu_one = x.device.type == "cpu" and torch.get_num_threads() == 1
    times = interleaved_samples(steps, repeats, warmup=1, clock="thread" if cpu_one else "wall",
                                device=x.device)
    return {p: min(t) for p, t in times.items()}


def choose(x: torch.Tensor, weights: Weights, bias, stride: Stride,
           dense: bool = False) -> str:
    """The plan for this call: measured once per key and cached, or ``"mixed"`` when off.
    ``dense``: let the ``"dense"`` plan compete (see the module docstring)."""
    if not _STATE["enabled"]:
        return DEFAULT_PLAN
    k = key(x, weights, bias, stride, dense)
    if k[-2] and not _STATE["training"]:  # records gradients: deterministic static plan
        return DEFAULT_PLAN
    plan = _CACHE.get(k)
    if plan is not None:
        return plan
    if _tracing(x):
        # export / compile of an inference model: the plan measured for inference if any
        return _CACHE.get(k[:-2] + (False, k[-1]), DEFAULT_PLAN)
    plans = candidates(weights, stride, dense)
    if len(plans) == 1:
        plan = plans[0]
    else:
        times = measure(x, weights, bias, stride, plans, grad=k[-2])
        plan = min(plans, key=times.__getitem__)
    _CACHE[k] = plan
    return plan
