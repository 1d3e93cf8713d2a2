"""derive_layout: the paper's per-layer top-C_out, budgets, round_to, errors; sparsity helpers."""

from __future__ import annotations

import re
import threading

import pytest
import torch
from torch import nn

import cakes_lite as cl
from cakes_lite.search import importance, param_groups, rank_candidates, search_layers

SPACE = "video-123d"
SHAPE = (1, 3, 8, 12, 12)
SEARCHED = ["0", "3", "6"]


def three_layer_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(3, 16, 3, padding=1, bias=False), nn.BatchNorm3d(16), nn.ReLU(),
        nn.Conv3d(16, 32, 3, stride=(1, 2, 2), padding=1, bias=False), nn.BatchNorm3d(32),
        nn.ReLU(), nn.Conv3d(32, 32, 3, stride=2, padding=1, bias=False), nn.ReLU(),
        nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(32, 4),
    )


def trained_like(mode="performance", seed=0):
    """A supernet whose γ look trained (random magnitudes), output sizes recorded."""
    model = three_layer_net()
    net = cl.supernet(model, SPACE, mode)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in search_layers(net):
            layer.bn.weight.copy_(torch.rand(layer.bn.weight.shape, generator=g) + 0.01)
    net.eval()(torch.zeros(SHAPE))
    return model, net


def searched_cost(model, metric="macs"):
    p = cl.profile(model, SHAPE)
    return sum(getattr(p.layer(n), metric) for n in SEARCHED)


@pytest.mark.parametrize("mode", ["performance", "cost"])
def test_untrained_supernet_derives_the_even_split(mode):
    model = three_layer_net()
    layout = cl.derive_layout(cl.supernet(model, SPACE, mode))
    assert layout == cl.Layout.uniform(model, SPACE)
    assert layout.meta["mode"] == mode and layout.meta["space"] == SPACE
    assert {"seed", "budget", "kernel_size", "method", "round_to"} <= set(layout.meta)


def test_paper_derivation_counts_top_cout_per_layer():
    model, net = trained_like()
    layout = cl.derive_layout(net)
    for name, layer in search_layers(net):
        top = rank_candidates(layer.importance())[: layer.out_channels]
        want = torch.bincount(top // layer.out_channels, minlength=3).tolist()
        assert list(layout[name].values()) == want
        assert sum(layout[name].values()) == layer.out_channels
    assert cl.shrink(model, layout)(torch.randn(SHAPE)).shape == (1, 4)


def test_rank_tie_break_is_round_robin_and_deterministic():
    scores = torch.ones(3, 4)
    scores[2, 1] = 2.0
    assert rank_candidates(scores).tolist()[:5] == [9, 0, 4, 8, 1]


@pytest.mark.parametrize("budget,round_to,metric", [
    (0.25, 1, "macs"), (0.4, 4, "macs"), (0.6, 8, "macs"), (0.85, 1, "macs"), (0.5, 8, "macs"),
    (0.25, 8, "params"), (0.4, 1, "params"), (0.7, 4, "params"),
])
def test_budget_met_within_2_percent(metric, round_to, budget):
    model, net = trained_like(seed=round_to)
    layout = cl.derive_layout(net, budget=budget, round_to=round_to, metric=metric)
    full = searched_cost(model, metric)
    got = searched_cost(cl.shrink(model, layout), metric)  # independent check via profile()
    assert abs(got / (budget * full) - 1) <= 0.02
    assert layout.meta["cost_fraction"] == pytest.approx(got / full)
    for name in SEARCHED:
        split = layout[name]
        assert sum(split.values()) == dict(net.named_modules())[name].out_channels
        assert all(c % round_to == 0 for c in split.values())


def test_absolute_budget_and_input_shape():
    model = three_layer_net()
    net = cl.supernet(model, SPACE)  # no forward yet: sizes come from input_shape
    target = 0.5 * searched_cost(model)
    layout = cl.derive_layout(net, budget=target, input_shape=SHAPE)
    assert abs(searched_cost(cl.shrink(model, layout)) / target - 1) <= 0.02
    with pytest.raises(ValueError, match="output size unknown"):
        cl.derive_layout(cl.supernet(model, SPACE), budget=0.5)


def test_budget_ranks_importance_across_layers():
    """Under a budget, the layer whose full kernels are important keeps them; the other pays."""
    model, net = trained_like()
    with torch.no_grad():
        for name, layer in search_layers(net):
            gamma = torch.full((3, layer.out_channels), 0.5)
            gamma[0] = 2.0 if name == "3" else 0.1  # kxkxk matters only in layer "3"
            layer.bn.weight.copy_(gamma.flatten())
    layout = cl.derive_layout(net, budget=0.45)
    assert layout["3"]["kxkxk"] > 16 and layout["6"]["kxkxk"] == 0 and layout["0"]["kxkxk"] == 0


def test_impossible_budgets_say_what_is_reachable():
    model, net = trained_like()
    cheapest = 3 / 27  # all kx1x1
    with pytest.raises(ValueError, match="smallest reachable") as e:
        cl.derive_layout(net, budget=0.1)
    assert f"{cheapest:.4f}" in str(e.value)
    assert cl.derive_layout(net, budget=cheapest).meta["cost_fraction"] == pytest.approx(cheapest)
    model2 = three_layer_net()
    net2 = cl.supernet(model2, "video-12d")
    net2(torch.zeros(SHAPE))
    with pytest.raises(ValueError, match="largest reachable"):
        cl.derive_layout(net2, budget=0.9)  # no kxkxk in this space: at most 9/27


@pytest.mark.parametrize("kwargs,match", [
    ({"round_to": 3}, "not a multiple of round_to=3"),
    ({"round_to": 0}, "round_to"),
    ({"metric": "flops"}, "metric"),
    ({"budget": -1}, "budget"),
])
def test_bad_arguments(kwargs, match):
    _, net = trained_like()
    with pytest.raises(ValueError, match=re.escape(match)):
        cl.derive_layout(net, **kwargs)
    with pytest.raises(ValueError, match="SearchConv3d"):
        cl.derive_layout(three_layer_net())


def test_sparsity_step_shrinks_expensive_gammas_faster():
    layer = cl.SearchConv3d(2, 4, SPACE, mode="cost")
    with torch.no_grad():
        layer.bn.weight.fill_(1.0)
    layer.bn.weight.grad = torch.zeros(12)
    assert cl.sparsity_step(layer, 0.1) == 1
    opt = torch.optim.SGD([layer.bn.weight], lr=1.0)
    opt.step()
    drop = (1 - layer.importance()).mean(dim=1)  # per sub-kernel: kxkxk, 1xkxk, kx1x1
    torch.testing.assert_close(drop, 0.1 * torch.tensor([27.0, 9.0, 3.0]) / 39)
    assert drop[0] > drop[1] > drop[2] > 0
    with pytest.raises(ValueError, match="non-negative"):
        cl.sparsity_step(layer, -1.0)


def test_param_groups_exclude_gamma_beta_from_decay():
    _, net = trained_like("cost")
    decay, no_decay = param_groups(net, 5e-4)
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0.0
    ids = {id(p) for p in no_decay["params"]}
    for _, layer in search_layers(net):
        assert id(layer.bn.weight) in ids and id(layer.bn.bias) in ids
        assert all(id(w) not in ids for w in layer.weights.values())


def test_importance_lists():
    _, net = trained_like()
    imp = importance(net)
    assert list(imp) == SEARCHED
    assert list(imp["3"]) == list(cl.SPACES[SPACE]) and len(imp["3"]["kx1x1"]) == 32
    layer = dict(net.named_modules())["3"]
    assert imp["3"]["1xkxk"] == layer.importance()[1].tolist()


def derive_within(seconds: float, *args, **kwargs):
    """derive_layout in a daemon thread: fail (instead of hanging the suite) if it loops."""
    out = {}

    def work():
        try:
            out["layout"] = cl.derive_layout(*args, **kwargs)
        except Exception as e:  # re-raised below in the test's thread
            out["error"] = e

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"derive_layout{kwargs} did not finish within {seconds} s"
    if "error" in out:
        raise out["error"]
    return out["layout"]


@pytest.mark.parametrize("metric", ["macs", "params"])
@pytest.mark.parametrize("budget", [0.3333333333, 1 / 3, 1 / 3 * (1 + 5e-10), 1 / 3 - 1e-12])
def test_budget_at_the_edge_of_a_flat_range_terminates(metric, budget):
    # volume-2d: every sub-kernel has volume k², so every layout costs exactly 1/3 of k×k×k
    _, net = trained_like()
    net2 = cl.supernet(three_layer_net(), "volume-2d")
    net2.eval()(torch.zeros(SHAPE))
    layout = derive_within(30, net2, budget=budget, metric=metric)
    assert layout.meta["cost_fraction"] == pytest.approx(1 / 3)
    assert [sum(s.values()) for s in layout.values()] == [16, 32, 32]


@pytest.mark.parametrize("edge", ["low", "high"])
def test_budgets_at_the_edges_of_the_reachable_range_are_clamped_or_refused(edge):
    if edge == "low":  # all kx1x1: 3/27 of the full cost
        _, net = trained_like()
        end, sign, match = 3 / 27, -1, "smallest reachable"
    else:  # video-12d has no kxkxk: at most all 1xkxk, 9/27 of the full cost
        net = cl.supernet(three_layer_net(), "video-12d")
        net.eval()(torch.zeros(SHAPE))
        end, sign, match = 9 / 27, 1, "largest reachable"
    for rel in (0.0, 1e-12, 9e-10):  # inside the 1e-9 edge: clamped to the end of the range
        got = derive_within(30, net, budget=end * (1 + sign * rel)).meta["cost_fraction"]
        assert got == pytest.approx(end)
    with pytest.raises(ValueError, match=match):  # beyond it: refused, naming the reachable value
        derive_within(30, net, budget=end * (1 + sign * 1e-6))


class NoFloat64(torch.Tensor):
    """Stands in for an MPS tensor: converting it to float64 fails until it is moved to the CPU."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.double or (func is torch.Tensor.to and (
                torch.float64 in args[1:] or kwargs.get("dtype") is torch.float64)):
            raise TypeError("float64 is not supported on this device")
        if func is torch.Tensor.cpu:
            with torch._C.DisableTorchFunctionSubclass():
                return args[0].clone()  # a plain CPU tensor
        return super().__torch_function__(func, types, args, kwargs)


def test_derivation_and_importance_move_to_the_cpu_before_float64(monkeypatch):
    _, net = trained_like()
    original = cl.SearchConv3d.importance
    monkeypatch.setattr(cl.SearchConv3d, "importance",
                        lambda self: original(self).as_subclass(NoFloat64))
    with pytest.raises(TypeError, match="float64"):  # the stand-in really refuses
        dict(net.named_modules())["0"].importance().to(torch.float64)
    for budget in (None, 0.5):
        cl.derive_layout(net, budget=budget)
    assert list(importance(net)) == SEARCHED


@pytest.mark.parametrize("weighted", [True, False])
def test_sparsity_step_under_a_grad_scaler_equals_the_fp32_step(weighted):
    """With scaler= (gradients still scaled) or after scaler.unscale_ (no scaler=), the update
    equals the plain fp32 one; the unscaled L1 added to scaled gradients would not."""
    x = torch.randn(2, 2, 3, 5, 5)

    def step(how: str) -> torch.Tensor:
        torch.manual_seed(1)
        layer = cl.SearchConv3d(2, 4, SPACE, mode="cost")
        opt = torch.optim.SGD(layer.parameters(), lr=0.5)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12, enabled=how != "fp32")
        scaler.scale(layer(x).square().mean()).backward()
        if how == "unscale_first":
            scaler.unscale_(opt)
            cl.sparsity_step(layer, 0.3, weighted)
        elif how == "scaler":
            cl.sparsity_step(layer, 0.3, weighted, scaler=scaler)
        else:  # fp32, or the bug: L1 added to scaled gradients without telling
            cl.sparsity_step(layer, 0.3, weighted)
        scaler.step(opt)
        scaler.update()
        return layer.bn.weight.detach().clone()

    ref = step("fp32")
    torch.testing.assert_close(step("scaler"), ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(step("unscale_first"), ref, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(step("naive"), ref, rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="scaler"):
        cl.sparsity_step(cl.SearchConv3d(2, 4, SPACE), 0.1, scaler=2.0)
