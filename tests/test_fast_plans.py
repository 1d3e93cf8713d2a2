"""The forward plans of one CAKES layer (cakes_lite/fast/plans.py) equal the dense reference,
forward and gradients, on CPU (and on CUDA where there is one)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cakes_lite as cl
from cakes_lite.fast import plans
from test_ops import dense_reference

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


@pytest.mark.parametrize("split,stride,size,k,bias,path", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_fast_path_equals_dense_reference(split, stride, size, k, bias, path):
    layer = cl.CAKESConv3d(C_IN, split, k, stride, bias).double()
    layer.plan = "mixed"  # the static plan these cases were written for
    kinds = plans.prepare(list(layer.weights.values()), layer.bias, layer.stride, "mixed").kinds
    # the case really exercises the path it is named for
    names = {"conv3d": "direct", "taps": "taps", "columns": "columns"}
    assert {names[k] for k in kinds if k in names} == path
    x = torch.randn(2, C_IN, *size, dtype=torch.double, requires_grad=True)
    y = layer(x)
    ref = dense_reference(layer, x)
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
    torch.testing.assert_close(y, dense_reference(layer, x), rtol=1e-4, atol=1e-4)


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
        plans.forward(torch.randn(1, 2, 3, 3, 3), [layer.weights["kxkxk"]], None, (1, 1, 1),
                         "magic")



@pytest.mark.parametrize("plan", plans.PLANS)
def test_float32_single_sample_uses_onednn_with_equal_values_and_gradients(plan):
    """N = 1 float32 on CPU goes to aten.mkldnn_convolution directly (plans.conv)."""
    layer = cl.CAKESConv3d(6, {"kxkxk": 4, "1xkxk": 3, "kx1x1": 3}, bias=True, plan=plan)
    x = torch.randn(1, 6, 4, 6, 5, requires_grad=True)
    with torch.autograd.profiler.profile() as prof:
        y = layer(x)
    names = {e.name for e in prof.function_events}
    if torch.backends.mkldnn.is_available():
        assert "aten::mkldnn_convolution" in names and "aten::slow_conv3d" not in names
    if plan != "direct":
        assert y.is_contiguous(memory_format=torch.channels_last_3d)
    ref = dense_reference(layer, x)
    torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-4)
    g = torch.randn_like(ref)
    params = [x, *layer.parameters()]
    for a, b in zip(torch.autograd.grad(y, params, g), torch.autograd.grad(ref, params, g)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("plan", plans.PLANS)
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
    torch.testing.assert_close(y, dense_reference(layer, x), rtol=1e-5, atol=1e-5)
    assert y.stride(1) == 1  # channels innermost, whichever plan
    weights = calls.cl_calls if plan == "direct" else calls.calls
    for _, w, _, _ in weights:
        assert w.stride(1) == 1, (plan, tuple(w.shape), w.stride())


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA device (none on this machine)")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.float16, 2e-2),
                                       (torch.bfloat16, 5e-2)], ids=["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("plan", plans.PLANS)
def test_cuda_fast_plans_equal_direct_path(dtype, tol, plan):
    torch.backends.cudnn.allow_tf32 = False
    layer = cl.CAKESConv3d(8, {"kxkxk": 5, "1xkxk": 6, "kx1x1": 5}, bias=True, plan=plan)
    layer = layer.to("cuda", dtype)
    x = torch.randn(2, 8, 4, 9, 7, device="cuda", dtype=dtype, requires_grad=True)
    y = layer(x)
    ref = F.conv3d(x.float(), layer.dense_weight().float(), layer.bias.float(), 1, 1)
    torch.testing.assert_close(y.float(), ref, rtol=tol, atol=tol)
    y.float().square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    direct = layer.dense_weight()  # the direct path on the same device and dtype
    torch.testing.assert_close(y, F.conv3d(x, direct, layer.bias, 1, 1), rtol=tol, atol=tol)
