"""Per-layer plan choice (cakes_lite/fast/autotune.py): measured once per key and cached, off for
calls that record gradients unless asked, nothing timed under a dispatch mode (fixture
``fresh_autotune`` in conftest.py)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import cakes_lite as cl
from cakes_lite.fast import autotune
from test_ops import dense_reference


def test_autotune_measures_once_caches_and_can_be_switched_off(fresh_autotune, monkeypatch):
    layer = cl.CAKESConv3d(6, {"kxkxk": 3, "1xkxk": 3, "kx1x1": 2}, bias=True).eval()
    x = torch.randn(1, 6, 4, 5, 5)
    timed = []
    real = autotune.measure
    monkeypatch.setattr(autotune, "measure", lambda *a, **k: timed.append(a[4]) or real(*a, **k))
    with torch.no_grad():
        y1 = layer(x)
        y2 = layer(x)
    # every distinct candidate timed once ("dense" too: the layer is in eval mode); "mixed"
    # may equal "fold"
    assert len(timed) == 1 and {"fold", "conv3d", "direct", "dense"} <= set(timed[0]) <= {
        "fold", "mixed", "conv3d", "direct", "dense"}
    assert layer.last_plan in timed[0]
    assert list(autotune.cached_plans().values()) == [layer.last_plan]
    torch.testing.assert_close(y1, dense_reference(layer, x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y1, y2, rtol=0, atol=0)
    x.requires_grad_(True)
    layer(x)  # records gradients: by default the static plan, nothing timed (reproducible)
    assert len(timed) == 1 and layer.last_plan == "mixed"
    autotune.set_autotune(True, training=True)
    layer(x)  # grad mode is part of the key: timed (fwd + bwd) when training plans are measured
    assert len(timed) == 2 and all(p.grad is None for p in layer.parameters())
    assert layer.last_plan in timed[1]
    autotune.set_autotune(False)
    with torch.no_grad():
        layer(x)
    assert layer.last_plan == "mixed" and len(timed) == 2
    with pytest.raises(ValueError, match="set_autotune"):
        autotune.set_autotune("yes")


@pytest.mark.parametrize("train,allow,dense", [
    (False, None, True),   # eval mode: the parent conv competes (same function, one call)
    (True, None, False),   # train mode (a fresh layer, a training step): only its own MACs
    (False, False, False),  # asked not to (what the layer benchmark measures)
    (True, True, True),    # asked to, even in train mode (under no_grad)
])
def test_dense_competes_in_eval_mode_unless_switched_off(fresh_autotune, monkeypatch, train,
                                                         allow, dense):
    layer = cl.CAKESConv3d(6, {"kxkxk": 3, "1xkxk": 3, "kx1x1": 2}).train(train)
    layer.allow_dense = allow
    timed = []
    monkeypatch.setattr(autotune, "measure", lambda *a, **k: timed.append(a[4]) or {
        p: float(i) for i, p in enumerate(a[4])})
    with torch.no_grad():
        y = layer(torch.randn(1, 6, 4, 5, 5))
    assert len(timed) == 1 and ("dense" in timed[0]) == dense
    assert layer.dense_allowed() == dense and y.shape == (1, 8, 4, 5, 5)


def test_autotune_times_nothing_under_flop_counter(fresh_autotune):
    layer = cl.CAKESConv3d(4, {"kxkxk": 2, "1xkxk": 2})
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        layer(torch.randn(1, 4, 3, 4, 4))
    assert layer.last_plan == "mixed" and not autotune.cached_plans()
    assert counter.get_total_flops() == 2 * 3 * 4 * 4 * layer.macs_per_output_voxel()


def test_autotune_keeps_the_plan_with_the_fastest_round(fresh_autotune, one_thread, monkeypatch):
    """A fake timer decides: the chosen plan is the one with the fastest single round (the
    minimum: interference only adds time), not the slowest, not the best median."""
    layer = cl.CAKESConv3d(6, {"kxkxk": 3, "1xkxk": 3, "kx1x1": 2}).eval()
    plans = autotune.candidates(list(layer.weights.values()), layer.stride,
                                layer.dense_allowed())
    assert len(plans) >= 3
    rounds = {p: [10.0 + i] * 3 for i, p in enumerate(plans)}  # ms per round, made up
    rounds[plans[-1]] = [50.0, 1.0, 50.0]  # the fastest round, the worst median
    calls = []

    def fake_timer(steps, repeats=20, warmup=2, clock="wall", device=None, progress=None):
        calls.append((sorted(steps), clock))
        return {p: rounds[p] for p in steps}

    monkeypatch.setattr(autotune, "interleaved_samples", fake_timer)
    x = torch.randn(1, 6, 4, 5, 5)
    with torch.no_grad():
        layer(x)
    assert calls == [(sorted(plans), "thread")]  # one CPU thread: the thread's CPU time
    assert layer.last_plan == plans[-1]
    rounds[plans[-1]] = [60.0] * 3  # now the first candidate is the fastest
    autotune.clear_cache()
    with torch.no_grad():
        layer(x)
    assert layer.last_plan == plans[0]
