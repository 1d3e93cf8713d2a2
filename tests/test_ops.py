"""CAKESConv3d against the dense reference (F.conv3d with dense_weight()) and nn.Conv3d."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import cakes_lite as cl
from cakes_lite.fast import plans
from cakes_lite.kernels import kernel_shape

STRIDES = [1, 2, (1, 2, 2), (1, 2, 3), (2, 3, 1)]
SPACE_NAMES = sorted(cl.SPACES) + ["1x1x1"]
IMPLS = ["fast", "direct", "direct_cl"]  # CAKESConv3d.impl: all must agree


def centre_slices(name: str, k: int) -> tuple[slice, ...]:
    """Where sub-kernel ``name`` sits inside a (k, k, k) kernel."""
    return tuple(slice(k // 2 - s // 2, k // 2 + s // 2 + 1) for s in kernel_shape(name, k))


@st.composite
def layer_cases(draw):
    space = cl.SPACES.get(s := draw(st.sampled_from(SPACE_NAMES)), (s,))
    counts = {name: draw(st.integers(0, 3)) for name in space}
    if sum(counts.values()) == 0:
        counts[space[-1]] = 1
    return {
        "split": counts,
        "in_channels": draw(st.integers(1, 3)),
        "kernel_size": draw(st.sampled_from([3, 3, 5])),
        "stride": draw(st.sampled_from(STRIDES)),
        "bias": draw(st.booleans()),
        "batch": draw(st.integers(1, 2)),
        # odd, even and anisotropic sizes, including sizes smaller than the kernel
        "size": tuple(draw(st.integers(1, 7)) for _ in range(3)),
    }


def dense_reference(layer: cl.CAKESConv3d, x: torch.Tensor) -> torch.Tensor:
    """What ``layer(x)`` must equal: F.conv3d with the layer's dense_weight()."""
    return F.conv3d(x, layer.dense_weight(), layer.bias, layer.stride, layer.kernel_size // 2)


def check_against_dense(layer: cl.CAKESConv3d, x: torch.Tensor) -> None:
    """Forward and all gradients of ``layer`` equal F.conv3d with its dense_weight()."""
    k, stride = layer.kernel_size, layer.stride
    x = x.detach().clone().requires_grad_(True)
    y = layer(x)

    dense = layer.dense_weight().detach().clone().requires_grad_(True)
    bias = None if layer.bias is None else layer.bias.detach().clone().requires_grad_(True)
    x_ref = x.detach().clone().requires_grad_(True)
    y_ref = F.conv3d(x_ref, dense, bias, stride, k // 2)

    assert y.shape == y_ref.shape
    assert y.shape[1] == layer.out_channels
    torch.testing.assert_close(y, y_ref)

    grad_out = torch.randn_like(y_ref)
    layer.zero_grad()
    y.backward(grad_out)
    y_ref.backward(grad_out)
    torch.testing.assert_close(x.grad, x_ref.grad)
    if bias is not None:
        torch.testing.assert_close(layer.bias.grad, bias.grad)
    # dL/dW_g is the centre slice of dL/dW_dense for the group's output channels
    start = 0
    for name, count in layer.split.items():
        if count == 0:
            assert name not in layer.weights
            continue
        w = layer.weights[name]
        rows = dense.grad[start : start + count]  # (n, C_in, k, k, k)
        expected = rows[(slice(None), slice(None)) + centre_slices(name, k)]
        torch.testing.assert_close(w.grad, expected)
        start += count
    assert start == layer.out_channels


#: (impl, plan) -> the mechanisms of the fast path its examples must reach (with 1-3 input
#: channels the automatic plan alone would rarely fold taps or shift-add; so every plan is forced)
FORCED = {
    ("fast", "fold"): {"taps", "shift", "columns", "columns-unequal-strides"},
    ("fast", "mixed"): {"taps", "shift", "columns"},
    ("fast", "conv3d"): {"conv3d"},
    ("fast", "direct"): {"conv3d"},
    ("fast", "dense"): {"dense"},
    ("fast", None): set(),
    ("direct", None): set(),
    ("direct_cl", None): set(),
}


def _reached(layer: cl.CAKESConv3d) -> set[str]:
    """The fast-path mechanisms the layer's last forward ran (its plan's calls)."""
    if layer.impl != "fast":
        return set()
    weights = list(layer.weights.values())
    kinds = set(plans.prepare(weights, layer.bias, layer.stride, layer.last_plan).kinds)
    if layer.last_plan == "dense":
        kinds.add("dense")
    if "columns" in kinds and layer.stride[1] != layer.stride[2]:
        kinds.add("columns-unequal-strides")
    return kinds


@pytest.mark.parametrize("impl,plan", list(FORCED), ids=[f"{i}-{p}" for i, p in FORCED])
def test_forward_and_gradients_equal_dense_reference(impl, plan):
    reached: set[str] = set()

    @settings(max_examples=25, deadline=None, derandomize=True)
    @given(case=layer_cases())
    def check(case):
        layer = cl.CAKESConv3d(case["in_channels"], case["split"], case["kernel_size"],
                               case["stride"], bias=case["bias"], impl=impl, plan=plan).double()
        x = torch.randn(case["batch"], case["in_channels"], *case["size"], dtype=torch.float64)
        check_against_dense(layer, x)
        expected = plan if impl == "fast" else "direct"
        if expected is not None:
            assert layer.last_plan == expected
        reached.update(_reached(layer))

    check()
    assert reached >= FORCED[impl, plan], f"not reached: {FORCED[impl, plan] - reached}"


WIDE_SPLITS = [
    {"kxkxk": 22, "1xkxk": 21, "kx1x1": 21},  # the benchmark's even 3-way split of 64
    {"kxkxk": 16, "1xkxk": 16, "kx1x1": 32},
    {"kxkxk": 40, "1xkxk": 8},                 # 3D-heavy: part of kxkxk may run as conv3d
    {"kxkxk": 5, "1xkxk": 45, "kx1x1": 2},     # 2D-heavy
    {"kxkxk": 33, "kx1xk": 17, "kxkx1": 18, "1x1xk": 3, "1x1x1": 5},
    cl.kernels.even_split(50, "volume-all"),
]


@pytest.mark.parametrize("split", WIDE_SPLITS,
                         ids=lambda s: "-".join(f"{n}{c}" for n, c in s.items()))
@pytest.mark.parametrize("stride", STRIDES)
def test_wide_groups_equal_dense_reference(split, stride):
    # wide groups (> 16 channels) take other branches of the fast forward than tiny ones
    layer = cl.CAKESConv3d(5, split, 3, stride, bias=True).double()
    check_against_dense(layer, torch.randn(2, 5, 5, 7, 6, dtype=torch.float64))


def test_dense_weight_is_zero_outside_each_sub_kernel_and_in_canonical_order():
    # dict order deliberately not canonical: the layer orders channels kxkxk first
    layer = cl.CAKESConv3d(2, {"kx1x1": 1, "1xkxk": 2, "kxkxk": 3})
    assert list(layer.split) == ["kxkxk", "1xkxk", "kx1x1"]
    dense = layer.dense_weight()
    assert dense.shape == (6, 2, 3, 3, 3)
    nonzero = (dense != 0).sum(dim=1) > 0  # (6, 3, 3, 3)
    assert nonzero[:3].all()
    assert nonzero[3:5].sum(dim=(1, 2, 3)).tolist() == [9, 9]
    assert nonzero[3:5, 1].all()  # the 1xkxk kernels sit on the centre frame
    assert nonzero[5].sum() == 3 and nonzero[5, :, 1, 1].all()
    torch.testing.assert_close(dense[5, :, :, 1, 1], layer.weights["kx1x1"][0, :, :, 0, 0])


def test_dense_weight_passes_gradients_to_the_sub_kernels():
    layer = cl.CAKESConv3d(2, {"kxkxk": 1, "1x1xk": 2})
    layer.dense_weight().sum().backward()
    assert all(torch.equal(w.grad, torch.ones_like(w)) for w in layer.weights.values())


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("stride", STRIDES)
@pytest.mark.parametrize("bias", [False, True])
def test_single_full_group_equals_nn_conv3d(k, stride, bias):
    conv = nn.Conv3d(3, 5, k, stride, padding=k // 2, bias=bias)
    layer = cl.CAKESConv3d(3, {"kxkxk": 5}, k, stride, bias=bias)
    with torch.no_grad():
        layer.weights["kxkxk"].copy_(conv.weight)
        if bias:
            layer.bias.copy_(conv.bias)
    x = torch.randn(2, 3, 5, 6, 7)
    torch.testing.assert_close(layer(x), conv(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("memory", ["channels_last_3d", "non_contiguous"])
def test_forward_accepts_any_memory_layout(memory):
    layer = cl.CAKESConv3d(4, {"kxkxk": 3, "1xkxk": 2, "kx1x1": 3}, stride=(1, 2, 2))
    x = torch.randn(2, 4, 5, 9, 6)
    if memory == "channels_last_3d":
        x2 = x.to(memory_format=torch.channels_last_3d)
    else:
        x2 = x.transpose(3, 4).contiguous().transpose(3, 4)
        assert not x2.is_contiguous()
    torch.testing.assert_close(layer(x2), layer(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list(cl.SUBKERNELS))
def test_from_conv_sum_is_exact_for_inputs_constant_along_the_shrunk_axes(name):
    k = 3
    conv = nn.Conv3d(2, 4, k, padding=1, bias=True).double()
    layer = cl.CAKESConv3d.from_conv(conv, {name: 4}, init="sum")
    shrunk = [axis for axis, full in enumerate(cl.SUBKERNELS[name]) if not full]
    size = [5, 6, 7]
    base = torch.randn(1, 2, *[1 if a in shrunk else s for a, s in enumerate(size)],
                       dtype=torch.float64)
    x = base.expand(1, 2, *size)  # constant along the shrunk axes
    # away from the zero padding of the shrunk axes, summing the kernel over them is exact
    interior = (slice(None), slice(None)) + tuple(
        slice(k // 2, s - k // 2) if a in shrunk else slice(None) for a, s in enumerate(size)
    )
    torch.testing.assert_close(layer(x)[interior], conv(x)[interior])
    torch.testing.assert_close(layer.bias, conv.bias)


def test_from_conv_centre_keeps_each_channels_centre_slice_in_channel_order():
    conv = nn.Conv3d(3, 9, 3, stride=(1, 2, 2), padding=1, bias=False)
    split = {name: 1 for name in cl.SPACES["volume-all"]} | {"1x1x1": 2}
    layer = cl.CAKESConv3d.from_conv(conv, split, init="centre")
    assert layer.stride == (1, 2, 2) and layer.bias is None
    mask = cl.CAKESConv3d(3, split)
    with torch.no_grad():
        for w in mask.weights.values():
            w.fill_(1.0)
    torch.testing.assert_close(layer.dense_weight(), conv.weight * mask.dense_weight())


def test_from_conv_random_keeps_shapes_and_rejects_unknown_init():
    conv = nn.Conv3d(3, 4, 3, padding=1)
    layer = cl.CAKESConv3d.from_conv(conv, {"1xkxk": 4}, init="random")
    assert layer.weights["1xkxk"].shape == (4, 3, 1, 3, 3) and layer.bias is not None
    with pytest.raises(ValueError, match="init"):
        cl.CAKESConv3d.from_conv(conv, {"1xkxk": 4}, init="mean")


def test_zero_channel_groups_are_simply_absent():
    layer = cl.CAKESConv3d(3, {"kxkxk": 0, "1xkxk": 4, "kx1x1": 0}, bias=True)
    assert list(layer.weights) == ["1xkxk"] and layer.out_channels == 4
    assert sum(p.numel() for p in layer.parameters()) == 4 * 3 * 9 + 4
    assert layer(torch.randn(1, 3, 3, 4, 5)).shape == (1, 4, 3, 4, 5)


def test_state_dict_round_trip_gives_the_same_layer():
    a = cl.CAKESConv3d(3, {"kxkxk": 2, "1xkxk": 2}, bias=True)
    b = cl.CAKESConv3d(3, {"kxkxk": 2, "1xkxk": 2}, bias=True)
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 4, 4, 4)
    torch.testing.assert_close(a(x), b(x))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"split": {"kxkxk": 0, "1xkxk": 0}}, "at least one output channel"),
        ({"split": {}}, "at least one output channel"),
        ({"kernel_size": 2}, "kernel_size: expected an odd positive int, got 2"),
        ({"kernel_size": 4}, "kernel_size: expected an odd positive int, got 4"),
        ({"kernel_size": 0}, "kernel_size"),
        ({"kernel_size": True}, "kernel_size"),
        ({"stride": 0}, r"stride: expected a positive int or a \(d, h, w\) tuple, got 0"),
        ({"stride": (1, 2)}, "stride"),
        ({"stride": (1, 0, 1)}, "stride"),
        ({"stride": 1.5}, "stride"),
        ({"stride": True}, "stride"),
        ({"in_channels": 0}, "in_channels"),
        ({"split": {"3x3x3": 4}}, "unknown sub-kernel '3x3x3'"),
        ({"split": {"kxkxk": -1, "1xkxk": 3}}, "'kxkxk' must be a non-negative int, got -1"),
        ({"split": {"kxkxk": 2.0}}, "non-negative int, got 2.0"),
        ({"split": {"kxkxk": True}}, "non-negative int, got True"),
        ({"split": [("kxkxk", 2)]}, "expected a dict"),
    ],
)
def test_constructor_errors_name_the_argument(kwargs, match):
    args = {"in_channels": 3, "split": {"kxkxk": 2}, "kernel_size": 3, "stride": 1} | kwargs
    with pytest.raises(ValueError, match=match):
        cl.CAKESConv3d(**args)


def test_forward_rejects_wrong_input_channels():
    layer = cl.CAKESConv3d(3, {"kxkxk": 2})
    with pytest.raises(ValueError, match=r"expected input \(N, 3, D, H, W\)"):
        layer(torch.randn(1, 4, 3, 3, 3))


def test_from_conv_rejects_a_split_that_does_not_fill_the_conv():
    conv = nn.Conv3d(3, 8, 3, padding=1)
    with pytest.raises(ValueError, match=r"must sum to conv.out_channels=8, got 4"):
        cl.CAKESConv3d.from_conv(conv, {"kxkxk": 4})


@pytest.mark.parametrize("plan", plans.PLANS)
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
        torch.testing.assert_close(layer(x), dense_reference(layer, x), rtol=1e-5, atol=1e-5)
        layer.double()  # new storage and dtype
        xd = x.double()
        torch.testing.assert_close(layer(xd), dense_reference(layer, xd), rtol=1e-10, atol=1e-10)
    # with gradients recorded, the plan is rebuilt from the parameters (autograd sees it)
    y = layer(xd)
    y.sum().backward()
    assert all(p.grad is not None for p in layer.parameters())
