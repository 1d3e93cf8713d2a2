"""Latency measurement: warmed-up, interleaved runs, medians.

CPU timings on shared machines are noisy and bimodal (page faults, other processes), so compare
variants by running them *interleaved* — one call of each per round, in a rotating order — after a
warm-up, and report the median per variant (and ratios of medians), never single times. On CPU set
``GLIBC_TUNABLES=glibc.malloc.mmap_threshold=67108864:glibc.malloc.trim_threshold=268435456``
before starting Python (``benchmarks/layer_speed.py`` does it by re-executing itself). CUDA runs
are synchronised before and after every timed call.
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
    """Time every case ``repeats`` times, interleaved, after ``warmup`` untimed rounds.

    Args:
        cases: name -> (module or callable, input tensor (N, C, …) on the module's device).
        repeats: timed rounds; each round runs every case once, in an order rotated per round.
        warmup: untimed rounds first (allocator, oneDNN primitive caches, cuDNN autotune).
        backward: time forward + backward (output gradient of ones, w.r.t. the input and the
            parameters) instead of a no-grad forward; the parameters' ``.grad`` are restored.
        progress: optional callback ``progress(round, total_rounds)``.
        clock: ``"wall"`` (``time.perf_counter``) or ``"thread"`` (``time.thread_time``: CPU
            time of the calling thread, so time spent descheduled by other processes on a shared
            machine is not counted; meaningful only with ``torch.set_num_threads(1)`` on CPU).

    Returns:
        name -> list of ``repeats`` times in milliseconds.
    """
    if clock not in ("wall", "thread"):
        raise ValueError(f"clock: expected 'wall' or 'thread', got {clock!r}")
    timer = time.perf_counter if clock == "wall" else time.thread_time
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats/warmup: expected repeats >= 1 and warmup >= 0, got "
                         f"{repeats}/{warmup}")
    names = list(cases)
    # backward timing overwrites .grad: keep the caller's gradients and put them back after
    params = {id(p): p for fn, _ in cases.values() if isinstance(fn, nn.Module)
              for p in fn.parameters()}
    saved = {key: p.grad for key, p in params.items()}
    steps = {name: _step_fn(fn, x, backward) for name, (fn, x) in cases.items()}
    devices = {name: x.device for name, (_, x) in cases.items()}
    times: dict[str, list[float]] = {name: [] for name in names}
    total = warmup + repeats
    for r in range(total):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            _sync(devices[name])
            t0 = timer()
            steps[name]()
            _sync(devices[name])
            if r >= warmup:
                times[name].append((timer() - t0) * 1e3)
        if progress is not None:
            progress(r + 1, total)
    for key, p in params.items():
        p.grad = saved[key]
    return times


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
