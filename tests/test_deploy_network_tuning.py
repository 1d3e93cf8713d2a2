"""Plans chosen per network (cakes_lite/deploy/network_tuning.py): tune_plans times whole
forwards and pins, for every CAKES layer, the plan that makes the network fastest."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cakes_lite import CAKESConv3d
from cakes_lite.deploy import network_tuning
from cakes_lite.deploy.inference import for_inference
from cakes_lite.models import resnet3d_tiny

pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py


def fake_timer(cost_of):
    """Stands in for speed.interleaved_samples: runs each step once and reports ``cost_of()``,
    a made-up whole-network time read after the step, as its samples."""
    def samples(steps, repeats=20, warmup=2, clock="wall", device=None, progress=None):
        out = {}
        for name, step in steps.items():
            step()
            out[name] = [cost_of() + 1.0] * (repeats - 1) + [cost_of()]  # the minimum counts
        return out
    return samples


def test_tune_plans_keeps_the_plan_that_makes_the_network_fastest(monkeypatch):
    model = for_inference(resnet3d_tiny(builder="cakes").eval())
    layers = [m for m in model.modules() if isinstance(m, CAKESConv3d)]
    cost = {"fold": 1.0, "mixed": 3.0, "conv3d": 2.0, "direct": 4.0, "dense": 5.0}
    # whole-network "time": the sum of the made-up costs of the plans the layers ran
    monkeypatch.setattr(network_tuning, "interleaved_samples",
                        fake_timer(lambda: sum(cost[m.last_plan] for m in layers)))
    chosen = network_tuning.tune_plans(model, torch.randn(1, 3, 4, 16, 16), repeats=2)
    assert list(chosen) == [n for n, m in model.named_modules() if isinstance(m, CAKESConv3d)]
    assert set(chosen.values()) == {"fold"} and all(m.plan == "fold" for m in layers)
    assert all(set(m._prepared) <= {"fold"} for m in layers)  # the losers' weights released
    cost.update(fold=9.0)  # now "conv3d" is the cheapest candidate every layer has
    assert set(network_tuning.tune_plans(model, torch.randn(1, 3, 4, 16, 16)).values()) == {"conv3d"}
    with pytest.raises(ValueError, match="repeats: expected a positive int, got 0"):
        network_tuning.tune_plans(model, torch.randn(1, 3, 4, 16, 16), repeats=0)
    with pytest.raises(ValueError, match="found none"):
        network_tuning.tune_plans(nn.Sequential(nn.Conv3d(1, 1, 1)), torch.randn(1, 1, 2, 2, 2))


def test_tune_plans_reports_each_layer_under_its_own_name(monkeypatch):
    """Every layer has its own cheapest plan (a fake timer); each must be pinned on that layer
    and reported under that layer's name."""
    model = for_inference(resnet3d_tiny(builder="cakes").eval())
    layers = {n: m for n, m in model.named_modules() if isinstance(m, CAKESConv3d)}
    candidates = {n: network_tuning.autotune.candidates(
        [w.detach() for w in m.weights.values()], m.stride, m.allow_dense)
        for n, m in layers.items()}
    # layer i's winner: its candidate i (mod how many it has); neighbours differ
    want = {n: plans[i % len(plans)] for i, (n, plans) in enumerate(candidates.items())}
    assert len(layers) >= 3 and len(set(want.values())) >= 3
    cost = {n: {p: (1.0 if p == want[n] else 2.0 + k) for k, p in enumerate(plans)}
            for n, plans in candidates.items()}
    monkeypatch.setattr(network_tuning, "interleaved_samples", fake_timer(
        lambda: sum(cost[n][m.last_plan] for n, m in layers.items())))
    chosen = network_tuning.tune_plans(model, torch.randn(1, 3, 4, 16, 16), repeats=2)
    assert chosen == want
    assert {n: m.plan for n, m in layers.items()} == want
