"""The fast CAKESConv3d paths (cakes_lite/fast/plans.py) equal the dense reference, forward and
gradients; the latency helpers (cakes_lite/speed.py) return what they promise."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cakes_lite as cl
from cakes_lite.fast import autotune
from cakes_lite.fast import plans as fastconv
from cakes_lite.speed import compare_latency, latency, latency_samples

C_IN = 64  # the plan depends on C_in (the cost model's per-call terms)
# (id, split, stride, input size (D, H, W), kernel size, bias, the parts of the plan it must use:
#  "direct" conv3d, folded "taps" conv2d, (k_d, 1) "columns" conv2d)
CASES = [
    ("kxkxk-16-conv3d", {"kxkxk": 16}, 1, (3, 4, 5), 3, False, {"direct"}),
    ("kxkxk-5-folded", {"kxkxk": 5}, 1, (3, 4, 5), 3, True, {"taps"}),
    ("even-split-partly-conv3d", {"kxkxk": 22, "1xkxk": 21, "kx1x1": 21}, 1, (3, 4, 5), 3, True,
     {"direct", "taps", "columns"}),
    ("small-all-folded", {"kxkxk": 3, "1xkxk": 2, "kx1x1": 2}, 1, (5, 6, 4), 3, True,
     {"taps", "columns"}),
    ("volume-all-small-groups", {n: 2 for n in cl.SPACES["volume-all"]}, 1, (5, 4, 6), 3,
     False, {"taps", "columns"}),
    ("volume-all-families", {n: 12 for n in cl.SPACES["volume-all"]}, 1, (3, 4, 3), 3, True,
     {"direct", "taps", "columns"}),
    ("volume-2d-spatial-stride", {"1xkxk": 2, "kx1xk": 3, "kxkx1": 1}, (1, 2, 2), (4, 7, 5), 3,
     True, {"taps"}),
    ("temporal-stride-conv3d", {"kxkxk": 16, "1xkxk": 16, "kx1x1": 16, "1x1x1": 16}, (2, 1, 2),
     (5, 5, 4), 3, True, {"direct", "columns"}),
    ("columns-strided", {"kx1x1": 3, "1x1x1": 2}, (2, 2, 3), (5, 7, 7), 3, True,
     {"columns"}),
    ("depth-smaller-than-kernel", {"kxkxk": 2, "1xkxk": 3, "kx1xk": 2}, 1, (2, 5, 5), 5, True,
     {"taps"}),
    ("k5-anisotropic", {"kxkxk": 3, "1xkxk": 2, "kx1x1": 2, "1xkx1": 1}, (1, 1, 2), (6, 3, 9), 5,
     False, {"taps", "columns"}),
]


def _reference(layer: cl.CAKESConv3d, x: torch.Tensor) -> torch.Tensor:
    k = layer.kernel_size
    return F.conv3d(x, layer.dense_weight(), layer.bias, layer.stride, k // 2)


@pytest.mark.parametrize("split,stride,size,k,bias,path", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_fast_path_equals_dense_reference(split, stride, size, k, bias, path):
    layer = cl.CAKESConv3d(C_IN, split, k, stride, bias).double()
    layer.plan = "mixed"  # the static plan these cases were written for
    kinds = fastconv.prepare(list(layer.weights.values()), layer.bias, layer.stride, "mixed").kinds
    # the case really exercises the path it is named for
    names = {"conv3d": "direct", "taps": "taps", "columns": "columns"}
    assert {names[k] for k in kinds if k in names} == path
    x = torch.randn(2, C_IN, *size, dtype=torch.double, requires_grad=True)
    y = layer(x)
    ref = _reference(layer, x)
    assert y.shape == ref.shape
    torch.testing.assert_close(y, ref, rtol=1e-10, atol=1e-10)
    g = torch.randn_like(ref)
    params = [x, *layer.parameters()]
    got = torch.autograd.grad(y, params, g)
    want = torch.autograd.grad(ref, params, g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_fast_path_float32_channels_last_input_and_output():
    """A network in channels_last_3d stays in it, and float32 results match within rounding."""
    layer = cl.CAKESConv3d(8, {"kxkxk": 5, "1xkxk": 6, "kx1x1": 5})
    x = torch.randn(1, 8, 4, 6, 6).contiguous(memory_format=torch.channels_last_3d)
    y = layer(x)
    assert y.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(y, _reference(layer, x), rtol=1e-4, atol=1e-4)


def test_single_full_group_equals_nn_conv3d():
    conv = nn.Conv3d(3, 16, 3, 1, 1, bias=True)
    layer = cl.CAKESConv3d.from_conv(conv, {"kxkxk": 16})
    x = torch.randn(1, 3, 5, 6, 7)
    torch.testing.assert_close(layer(x), conv(x), rtol=1e-5, atol=1e-5)


def test_unknown_impl_or_plan_is_rejected_when_set():
    layer = cl.CAKESConv3d(2, {"kxkxk": 1})
    with pytest.raises(ValueError, match="impl: expected 'fast', 'direct' or 'direct_cl'"):
        layer.impl = "magic"
    with pytest.raises(ValueError, match="impl"):
        cl.CAKESConv3d(2, {"kxkxk": 1}, impl="magic")
    with pytest.raises(ValueError, match="plan: expected None or one of"):
        layer.plan = "fastest"
    with pytest.raises(ValueError, match="plan"):
        cl.CAKESConv3d(2, {"kxkxk": 1}, plan=3)
    assert layer.impl == "fast" and layer.plan is None  # a rejected value changes nothing
    with pytest.raises(ValueError, match="impl"):
        fastconv.forward(torch.randn(1, 2, 3, 3, 3), [layer.weights["kxkxk"]], None, (1, 1, 1),
                         "magic")


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


@pytest.fixture
def fresh_autotune():
    """Autotuning on with an empty cache; the previous switch restored afterwards."""
    was = autotune.autotune_enabled()
    autotune.set_autotune(True)
    yield
    autotune.set_autotune(was)


def test_autotune_measures_once_caches_and_can_be_switched_off(fresh_autotune, monkeypatch):
    layer = cl.CAKESConv3d(6, {"kxkxk": 3, "1xkxk": 3, "kx1x1": 2}, bias=True).eval()
    x = torch.randn(1, 6, 4, 5, 5)
    timed = []
    real = autotune.measure
    monkeypatch.setattr(autotune, "measure", lambda *a, **k: timed.append(a[4]) or real(*a, **k))
    with torch.no_grad():
        y1 = layer(x)
        y2 = layer(x)
    # every distinct candidate timed once ("dense" only when allowed); "mixed" may equal "fold"
    assert len(timed) == 1 and {"fold", "conv3d", "direct"} <= set(timed[0]) <= {
        "fold", "mixed", "conv3d", "direct"}
    assert layer.last_plan in timed[0]
    assert list(autotune.cached_plans().values()) == [layer.last_plan]
    torch.testing.assert_close(y1, _reference(layer, x), rtol=1e-5, atol=1e-5)
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


def test_autotune_times_nothing_under_flop_counter(fresh_autotune):
    from torch.utils.flop_counter import FlopCounterMode

    layer = cl.CAKESConv3d(4, {"kxkxk": 2, "1xkxk": 2})
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        layer(torch.randn(1, 4, 3, 4, 4))
    assert layer.last_plan == "mixed" and not autotune.cached_plans()
    assert counter.get_total_flops() == 2 * 3 * 4 * 4 * layer.macs_per_output_voxel()


@pytest.mark.parametrize("plan", fastconv.PLANS)
def test_inference_cache_follows_weight_changes(plan):
    layer = cl.CAKESConv3d(4, {"kxkxk": 3, "1xkxk": 2, "kx1x1": 2}, bias=True, plan=plan)
    x = torch.randn(2, 4, 3, 4, 5)
    with torch.no_grad():
        layer(x)
        cached = layer._prepared[plan][1]
        assert layer._prepared[plan][1] is cached and layer(x) is not None
        assert layer._prepared[plan][1] is cached  # reused while nothing changed
        for p in layer.parameters():  # e.g. an optimizer step or load_state_dict
            p.mul_(-0.5)
        torch.testing.assert_close(layer(x), _reference(layer, x), rtol=1e-5, atol=1e-5)
        layer.double()  # new storage and dtype
        xd = x.double()
        torch.testing.assert_close(layer(xd), _reference(layer, xd), rtol=1e-10, atol=1e-10)
    # with gradients recorded, the plan is rebuilt from the parameters (autograd sees it)
    y = layer(xd)
    y.sum().backward()
    assert all(p.grad is not None for p in layer.parameters())


@pytest.mark.parametrize("plan", fastconv.PLANS)
def test_float32_single_sample_uses_onednn_with_equal_values_and_gradients(plan):
    """N = 1 float32 on CPU goes to aten.mkldnn_convolution directly (fastconv.conv)."""
    layer = cl.CAKESConv3d(6, {"kxkxk": 4, "1xkxk": 3, "kx1x1": 3}, bias=True, plan=plan)
    x = torch.randn(1, 6, 4, 6, 5, requires_grad=True)
    with torch.autograd.profiler.profile() as prof:
        y = layer(x)
    names = {e.name for e in prof.function_events}
    if torch.backends.mkldnn.is_available():
        assert "aten::mkldnn_convolution" in names and "aten::slow_conv3d" not in names
    if plan != "direct":
        assert y.is_contiguous(memory_format=torch.channels_last_3d)
    ref = _reference(layer, x)
    torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-4)
    g = torch.randn_like(ref)
    params = [x, *layer.parameters()]
    for a, b in zip(torch.autograd.grad(y, params, g), torch.autograd.grad(ref, params, g)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_thread_clock_and_plan_in_profile_rows():
    x = torch.randn(1, 2, 3, 4, 4)
    samples = latency_samples({"id": (nn.Identity(), x)}, repeats=2, warmup=0, clock="thread")
    assert len(samples["id"]) == 2 and all(t >= 0 for t in samples["id"])
    with pytest.raises(ValueError, match="clock: expected 'wall' or 'thread'"):
        latency_samples({"id": (nn.Identity(), x)}, repeats=1, clock="gpu")
    layer = cl.CAKESConv3d(2, {"kxkxk": 1, "1xkxk": 1}, plan="fold")
    row = cl.profile(nn.Sequential(layer, nn.ReLU()), (1, 2, 3, 4, 4)).layers[0]
    assert row.type == "CAKESConv3d" and row.plan == "fold"


@pytest.mark.parametrize("plan", fastconv.PLANS)
def test_one_input_channel_keeps_channels_last_3d_strides(plan):
    """A (N, 1, D, H, W) tensor is 'contiguous' in both memory formats; oneDNN reads the literal
    strides, so weights and outputs must carry channels_last_3d strides, not NCDHW ones (they
    did not: the first layer of a one-channel volume net ran 2.5x slower than its parent's and
    its NCDHW output cost every later layer a conversion)."""
    layer = cl.CAKESConv3d(1, {"1xkxk": 2, "kx1xk": 3, "kxkx1": 3}, bias=True, plan=plan).eval()
    x = torch.randn(1, 1, 5, 6, 7).to(memory_format=torch.channels_last_3d)
    with torch.no_grad():
        y = layer(x)
        calls = layer._prepared[plan][1]
    torch.testing.assert_close(y, _reference(layer, x), rtol=1e-5, atol=1e-5)
    assert y.stride(1) == 1  # channels innermost, whichever plan
    weights = calls.cl_calls if plan == "direct" else calls.calls
    for _, w, _, _ in weights:
        assert w.stride(1) == 1, (plan, tuple(w.shape), w.stride())
