"""Plans chosen per network (cakes_lite/deploy/network_tuning.py): tune_plans times whole
forwards and pins, for every CAKES layer, the plan that makes the network fastest."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cakes_lite import CAKESConv3d
from cakes_lite.deploy import network_tuning
from cakes_lite.fast import autotune
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
    candidates = {n: autotune.candidates(
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


class Costs:
    """A made-up machine for the in-place method: a virtual clock that each CAKES layer
    advances by ``cost[name][plan]`` when it runs (its segment), and a whole-network time
    (the guard's) of the segments plus ``penalty[name][plan]``, an effect outside the
    segment that only whole forwards see."""

    def __init__(self, model, cost, penalty=None):
        self.now, self.cost, self.penalty = [0.0], cost, penalty or {}
        self.layers = {n: m for n, m in model.named_modules() if isinstance(m, CAKESConv3d)}
        for name, layer in self.layers.items():
            layer.register_forward_hook(
                lambda mod, args, out, name=name: self._tick(self.cost[name][mod.plan]))

    def _tick(self, seconds):
        self.now[0] += seconds

    def clock(self):  # seconds, as the real clocks (the costs are in ms)
        return self.now[0] / 1e3

    def network(self):
        return sum(self.cost[n][m.last_plan] + self.penalty.get(n, {}).get(m.last_plan, 0.0)
                   for n, m in self.layers.items())


def _costs(model, want, slower=None):
    """Per layer: 1 ms for its wanted plan, 2 ms for the fallback, 3 ms for the others."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, CAKESConv3d):
            plans = autotune.candidates(
                [w.detach() for w in m.weights.values()], m.stride, m.dense_allowed())
            out[name] = {p: 1.0 if p == want(name, plans) else 2.0 if p == "dense" else 3.0
                         for p in plans}
    return out


def _in_place_machine(monkeypatch, model, cost, penalty=None):
    machine = Costs(model, cost, penalty)
    monkeypatch.setattr(network_tuning, "CLOCKS", {"wall": machine.clock,
                                                   "thread": machine.clock})
    def samples(steps, repeats=20, warmup=2, clock="wall", device=None, progress=None):
        out = {name: [] for name in steps}  # every round run, as the real timer does
        for r in range(warmup + repeats):
            for name, step in steps.items():
                step()
                if r >= warmup:
                    out[name].append(machine.network())
        return out

    monkeypatch.setattr(network_tuning, "interleaved_samples", samples)
    return machine


def test_in_place_shares_identical_layers_and_keeps_segment_winners(monkeypatch):
    """resnet3d_tiny's layer1.0.conv1 and conv2 run identical calls: one class, tuned once
    (samples pooled), one plan; every other layer gets the plan its segment measured fastest."""
    model = for_inference(resnet3d_tiny(builder="cakes").eval())
    x = torch.randn(1, 3, 4, 16, 16)
    cost = _costs(model, lambda name, plans: "fold" if "fold" in plans else plans[0])
    _in_place_machine(monkeypatch, model, cost)
    report = []
    chosen = network_tuning.tune_plans(model, x, repeats=2, method="in_place", report=report)
    shared = [cls for cls in report if len(cls.names) > 1]
    assert [cls.names for cls in shared] == [["model.layer1.0.conv1", "model.layer1.0.conv2"]]
    rounds = 2 * 2  # in place: twice the repeats
    assert all(len(t) >= 2 * rounds for t in shared[0].times.values())  # two layers' samples
    assert len(report) == len(chosen) - 1
    assert chosen == {n: "fold" for n in cost}


VICTIM = "model.layer2.0.conv2"


def _tune_with_a_victim(monkeypatch, edit=None, **kwargs):
    """``tune_plans(method="in_place")`` of a CAKES resnet3d_tiny on the made-up machine: every
    layer's segment winner is ``fold``, but VICTIM's ``fold`` costs the whole network 50 ms
    that its segment does not show. ``edit(cost)`` changes the segment costs first."""
    model = for_inference(resnet3d_tiny(builder="cakes").eval())
    cost = _costs(model, lambda name, plans: "fold" if "fold" in plans else plans[0])
    if edit is not None:
        edit(cost)
    _in_place_machine(monkeypatch, model, cost, {VICTIM: {"fold": 50.0}})
    return network_tuning.tune_plans(model, torch.randn(1, 3, 4, 16, 16), repeats=2,
                                     method="in_place", **kwargs)


def _victim_alone_dense(chosen):
    return {n: "dense" if n == VICTIM else "fold" for n in chosen}


def test_in_place_rejects_a_segment_winner_that_slows_the_network(monkeypatch):
    """The in-place winner of one layer costs the whole network more than it saves in its
    segment (an effect after the next CAKES layer starts): the guard notices and that layer
    falls back to dense, the others keep their winners."""
    # margin 0: a layer's 1 ms gain is under 2 % of this made-up network's whole forward
    chosen = _tune_with_a_victim(monkeypatch, margin=0.0)
    assert chosen == _victim_alone_dense(chosen)


def test_a_failed_guard_on_a_large_input_keeps_the_largest_gains(monkeypatch):
    """As above, but timing each layer again in whole forwards does not fit the budget (a
    large input): the guard's fallback ranks the layers by their in-place gain and keeps the
    best k. The victim gains least in its segment, so dropping it alone is what wins."""
    def edit(cost):
        cost[VICTIM]["fold"] = 1.5  # gains 0.5 ms in place; every other layer gains 1 ms
    calls = []
    monkeypatch.setattr(network_tuning, "_network", lambda *a, **k: calls.append(a))
    chosen = _tune_with_a_victim(monkeypatch, edit, margin=0.0, budget_s=0.0)
    assert not calls  # per-layer whole forwards did not fit
    assert chosen == _victim_alone_dense(chosen)


def test_a_layer_decided_again_must_win_by_the_margin_of_its_own_segment(monkeypatch):
    """After a failed guard a layer's plan is decided again in whole forwards; one layer's gain
    is a small part of the whole forward, so the margin applies to its segment: a layer 30 %
    faster in its segment keeps its plan with the default 2 % margin (not 2 % of the network)."""
    def edit(cost):
        for plans in cost.values():
            plans["fold"] = 0.7 * plans["dense"]
    # decided again, a layer's 0.6 ms gain is ~1 % of the forward (the victim's 50 ms in it)
    chosen = _tune_with_a_victim(monkeypatch, edit, budget_s=1e3)
    assert chosen == _victim_alone_dense(chosen)


def test_a_plan_must_beat_the_fallback_by_the_margin(monkeypatch):
    model = for_inference(resnet3d_tiny(builder="cakes").eval())
    cost = _costs(model, lambda name, plans: "fold")
    for plans in cost.values():
        plans["fold"] = 0.99 * plans["dense"]  # 1 % faster than dense, everywhere
    _in_place_machine(monkeypatch, model, cost)
    x = torch.randn(1, 3, 4, 16, 16)
    for method in ("in_place", "network"):
        assert set(network_tuning.tune_plans(model, x, 2, method).values()) == {"dense"}
        assert set(network_tuning.tune_plans(model, x, 2, method, margin=0.0).values()) == {
            "fold"}


@pytest.mark.parametrize("seconds,method", [(1e-4, "network"), (10.0, "in_place")])
def test_auto_times_whole_forwards_only_within_the_budget(monkeypatch, seconds, method):
    model = for_inference(resnet3d_tiny(builder="cakes").eval())
    _in_place_machine(monkeypatch, model, _costs(model, lambda name, plans: "fold"))
    monkeypatch.setattr(network_tuning, "_forward_seconds", lambda model, x: seconds)
    report = []
    network_tuning.tune_plans(model, torch.randn(1, 3, 4, 16, 16), 2, report=report)
    # "network" tunes every layer on its own; "in_place" shares the identical pair
    assert len(report) == (6 if method == "network" else 5)


@pytest.mark.parametrize("kwargs,message", [
    ({"method": "fastest"}, "method: expected one of"),
    ({"margin": 1.0}, r"margin: expected a fraction in \[0, 1\), got 1.0"),
    ({"budget_s": -1}, "budget_s: expected seconds >= 0, got -1"),
])
def test_tune_plans_refuses_bad_arguments(kwargs, message):
    model = for_inference(resnet3d_tiny(builder="cakes").eval())
    with pytest.raises(ValueError, match=message):
        network_tuning.tune_plans(model, torch.randn(1, 3, 4, 16, 16), **kwargs)
