"""The interleaved timer and the latency helpers (cakes_lite/speed.py) return what they promise."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

import cakes_lite as cl
from cakes_lite.speed import compare_latency, interleaved_samples, latency, latency_samples


@pytest.mark.parametrize("backward", [False, True])
def test_compare_latency_returns_positive_medians(backward):
    x = torch.randn(1, 2, 3, 4, 4)
    layer = cl.CAKESConv3d(2, {"kxkxk": 1, "1xkxk": 1})
    cases = {"cakes": (layer, x), "conv": (nn.Conv3d(2, 2, 3, padding=1), x)}
    medians = compare_latency(cases, repeats=3, warmup=1, backward=backward)
    assert set(medians) == {"cakes", "conv"}
    assert all(t > 0 for t in medians.values())
    # timing must not leave gradients behind on the caller's layer or input
    assert all(p.grad is None for p in layer.parameters())
    assert x.grad is None


def test_latency_samples_counts_and_progress():
    calls = []
    samples = latency_samples({"id": (nn.Identity(), torch.zeros(1))}, repeats=4, warmup=2,
                              progress=lambda r, total: calls.append((r, total)))
    assert len(samples["id"]) == 4
    assert calls[-1] == (6, 6)
    with pytest.raises(ValueError, match="repeats"):
        latency_samples({"id": (nn.Identity(), torch.zeros(1))}, repeats=0)


def test_latency_of_model_on_shape():
    assert latency(nn.Conv3d(2, 3, 1), (1, 2, 2, 2, 2), repeats=2, warmup=0) > 0


def test_thread_clock():
    x = torch.randn(1, 2, 3, 4, 4)
    samples = latency_samples({"id": (nn.Identity(), x)}, repeats=2, warmup=0, clock="thread")
    assert len(samples["id"]) == 2 and all(t >= 0 for t in samples["id"])
    with pytest.raises(ValueError, match=r"clock: expected one of \[.wall., .thread., .process.\]"):
        latency_samples({"id": (nn.Identity(), x)}, repeats=1, clock="gpu")


def test_interleaved_samples_rotates_the_order_and_times_only_after_warmup():
    calls = []
    steps = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    samples = interleaved_samples(steps, repeats=2, warmup=1)
    assert calls == [*"abc", *"bca", *"cab"]  # round r starts r steps later
    assert {name: len(s) for name, s in samples.items()} == {"a": 2, "b": 2, "c": 2}
    with pytest.raises(ValueError, match="clock"):
        interleaved_samples(steps, clock=())


def test_interleaved_samples_reads_each_clock_around_its_own_step():
    steps = {"sleep": lambda: time.sleep(0.02), "noop": lambda: None}
    samples = interleaved_samples(steps, repeats=2, warmup=0, clock=("wall", "thread"))
    for wall, cpu in samples["sleep"]:
        assert wall >= 19 and cpu < wall / 2  # sleeping takes wall time, not CPU time
    assert max(w for w, _ in samples["noop"]) < min(w for w, _ in samples["sleep"])
