"""Timing: one interleaved timer (:func:`interleaved_samples`) and latency medians on top of it.

CPU timings on shared machines are noisy and bimodal (page faults, other processes), so compare
variants by running them *interleaved* — one call of each per round, in a rotating order — after a
warm-up, and report the median per variant (and ratios of medians), never single times. On CPU set
``GLIBC_TUNABLES=glibc.malloc.mmap_threshold=67108864:glibc.malloc.trim_threshold=268435456``
before starting Python (``benchmarks/layer_speed.py`` does it by re-executing itself). CUDA runs
are synchronised before and after every timed call. Everything in cakes_lite that times calls
uses :func:`interleaved_samples`: :func:`latency` / :func:`compare_latency` and the benchmarks
report medians; the plan choosers (per layer and per network) keep each candidate's minimum,
since interference from other processes only ever adds time.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

#: the allocator setting that makes CPU conv timings unimodal (set before Python starts).
GLIBC_TUNABLES = "glibc.malloc.mmap_threshold=67108864:glibc.malloc.trim_threshold=268435456"

Case = tuple[nn.Module | Callable[[torch.Tensor], torch.Tensor], torch.Tensor]


#: the clocks a timing can read: wall-clock time; CPU time of the calling thread (time spent
#: descheduled by other processes on a shared machine does not count; meaningful with one
#: intra-op thread on CPU); CPU time of the whole process (all threads).
CLOCKS: dict[str, Callable[[], float]] = {
    "wall": time.perf_counter, "thread": time.thread_time, "process": time.process_time}

Devices = str | torch.device | Mapping[str, str | torch.device] | None


def interleaved_samples(
    steps: Mapping[str, Callable[[], object]],
    repeats: int = 20,
    warmup: int = 2,
    clock: str | tuple[str, ...] = "wall",
    device: Devices = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, list]:
    """The one timing loop: every step run once per round, rounds interleaved, raw samples back.

    Round r runs the steps in their given order rotated by r (so no step always follows the
    same neighbour); the first ``warmup`` rounds are not timed. Callers reduce the samples:
    :func:`compare_latency` and the benchmarks take the median, the plan choosers
    (:mod:`cakes_lite.fast.autotune`, :mod:`cakes_lite.deploy.network_tuning`) the minimum.

    Args:
        steps: name -> a no-argument callable (one forward, one training step, …).
        repeats: timed rounds.
        warmup: untimed rounds first (allocator, oneDNN primitive caches, cuDNN autotune).
        clock: a key of :data:`CLOCKS`, or a tuple of keys to read several clocks around the
            same calls.
        device: where the steps run (one for all, or name -> device): a CUDA device is
            synchronised before and after every timed call.
        progress: optional callback ``progress(round, total_rounds)``.

    Returns:
        name -> ``repeats`` times in milliseconds, in round order (with a tuple of clocks, each
        sample is a tuple of readings in that order).
    """
    names = (clock,) if isinstance(clock, str) else tuple(clock)
    if not names or any(not isinstance(c, str) or c not in CLOCKS for c in names):
        raise ValueError(f"clock: expected one of {list(CLOCKS)} or a tuple of them, got "
                         f"{clock!r}")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats/warmup: expected repeats >= 1 and warmup >= 0, got "
                         f"{repeats}/{warmup}")
    clocks = [CLOCKS[c] for c in names]
    order = list(steps)
    devices = {name: torch.device((device.get(name, "cpu") if isinstance(device, Mapping)
                                   else device) or "cpu") for name in order}
    times: dict[str, list] = {name: [] for name in order}
    total = warmup + repeats
    for r in range(total):
        shift = r % len(order)
        for name in order[shift:] + order[:shift]:
            _sync(devices[name])
            t0 = [c() for c in clocks]
            steps[name]()
            _sync(devices[name])
            if r >= warmup:
                ms = tuple((c() - s) * 1e3 for c, s in zip(clocks, t0))
                times[name].append(ms[0] if isinstance(clock, str) else ms)
        if progress is not None:
            progress(r + 1, total)
    return times


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step_fn(fn, x: torch.Tensor, backward: bool) -> Callable[[], None]:
    """A no-argument callable running one forward (and backward) pass of ``fn`` on ``x``."""
    params = [p for p in fn.parameters() if p.requires_grad] if isinstance(fn, nn.Module) else []
    if not backward:

        def forward_only() -> None:
            with torch.no_grad():
                fn(x)

        return forward_only
    # backward: gradients w.r.t. the input too, as for a layer inside a network
    xg = x.detach().requires_grad_(True)
    grad_out: list[torch.Tensor] = []

    def forward_backward() -> None:
        xg.grad = None
        for p in params:
            p.grad = None
        y = fn(xg)
        if not grad_out:
            grad_out.append(torch.ones_like(y))
        y.backward(grad_out[0])

    return forward_backward


def latency_samples(
    cases: Mapping[str, Case],
    repeats: int = 20,
    warmup: int = 2,
    backward: bool = False,
    progress: Callable[[int, int], None] | None = None,
    clock: str = "wall",
) -> dict[str, list[float]]:
    """Time every case ``repeats`` times, interleaved, after ``warmup`` untimed rounds
    (:func:`interleaved_samples` on one forward, or forward + backward, of each case).

    Args:
        cases: name -> (module or callable, input tensor (N, C, …) on the module's device).
        repeats: timed rounds; each round runs every case once, in an order rotated per round.
        warmup: untimed rounds first.
        backward: time forward + backward (output gradient of ones, w.r.t. the input and the
            parameters) instead of a no-grad forward; the parameters' ``.grad`` are restored.
        progress: optional callback ``progress(round, total_rounds)``.
        clock: a key of :data:`CLOCKS`: ``"wall"``, ``"thread"`` (only with
            ``torch.set_num_threads(1)`` on CPU) or ``"process"``.

    Returns:
        name -> list of ``repeats`` times in milliseconds.
    """
    if not isinstance(clock, str):
        raise ValueError(f"clock: expected one of {list(CLOCKS)}, got {clock!r}")
    # backward timing overwrites .grad: keep the caller's gradients and put them back after
    params = {id(p): p for fn, _ in cases.values() if isinstance(fn, nn.Module)
              for p in fn.parameters()}
    saved = {key: p.grad for key, p in params.items()}
    steps = {name: _step_fn(fn, x, backward) for name, (fn, x) in cases.items()}
    try:
        return interleaved_samples(steps, repeats, warmup, clock,
                                   {name: x.device for name, (_, x) in cases.items()}, progress)
    finally:
        for key, p in params.items():
            p.grad = saved[key]


def compare_latency(
    cases: Mapping[str, Case],
    repeats: int = 20,
    warmup: int = 2,
    backward: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, float]:
    """Median latency (ms) of each case, measured interleaved (see :func:`latency_samples`).

    Example::

        x = torch.randn(2, 64, 8, 28, 28)
        compare_latency({"3d": (nn.Conv3d(64, 64, 3, padding=1), x),
                         "cakes": (CAKESConv3d(64, {"kxkxk": 32, "1xkxk": 32}), x)})
        # -> {"3d": 61.2, "cakes": 37.0}
    """
    samples = latency_samples(cases, repeats, warmup, backward, progress)
    return {name: statistics.median(ts) for name, ts in samples.items()}


def latency(
    model: nn.Module,
    input_shape: Sequence[int],
    repeats: int = 20,
    warmup: int = 2,
    backward: bool = False,
    device: str | torch.device | None = None,
) -> float:
    """Median latency (ms) of ``model`` on a random input of ``input_shape`` (N, C, D, H, W).

    Runs on ``device`` (default: the model's parameters' device, else CPU); seeded input.
    """
    if device is None:
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(tuple(input_shape), generator=gen).to(device)
    return compare_latency({"model": (model, x)}, repeats, warmup, backward)["model"]
