"""Baseline convolution builders: one interface, same output shape as the 3D conv they replace."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cakes_lite as cl
from cakes_lite.baselines import r2plus1d_mid_channels

BUILDER_NAMES = list(cl.BUILDERS) + [f"cakes:{s}" for s in cl.SPACES]


def n_params(module: nn.Module, only=nn.Conv3d) -> int:
    """Parameters of the ``only`` sub-modules (all parameters for ``only=None``)."""
    if only is None:
        return sum(p.numel() for p in module.parameters())
    return sum(p.numel() for m in module.modules() if isinstance(m, only) for p in m.parameters())


@pytest.mark.parametrize("name", BUILDER_NAMES)
@pytest.mark.parametrize(
    "stride, size, k",
    [(1, (5, 6, 7), 3), (2, (5, 6, 7), 3), ((1, 2, 2), (4, 9, 5), 3), (2, (3, 7, 9), 5)],
)
def test_builder_output_shape_matches_the_full_3d_conv(name, stride, size, k):
    layer = cl.get_builder(name)(4, 6, stride=stride, kernel_size=k)
    reference = nn.Conv3d(4, 6, k, stride, padding=k // 2)
    x = torch.randn(2, 4, *size)
    assert layer(x).shape == reference(x).shape


@pytest.mark.parametrize("name", BUILDER_NAMES)
def test_builders_reject_even_kernel_sizes(name):
    with pytest.raises(ValueError, match="kernel_size"):
        cl.get_builder(name)(4, 6, kernel_size=2)


@pytest.mark.parametrize("cin, cout", [(64, 64), (128, 128), (64, 128), (3, 64), (256, 512)])
def test_r2plus1d_params_match_the_3d_conv(cin, cout):
    full = n_params(cl.conv3d(cin, cout))
    factorised = n_params(cl.r2plus1d(cin, cout))
    # Tran et al. 2018 eq. (1) rounds M down; the pair stays within a few % of the 3D conv
    assert abs(factorised - full) / full < 0.03
    # including its BatchNorm between the two convs
    assert abs(n_params(cl.r2plus1d(cin, cout), None) - full) / full < 0.03


def test_r2plus1d_mid_channels_as_in_the_paper():
    # ResNet-18 R(2+1)D: 64 -> 144 mid channels, 128 -> 288, 256 -> 576, 512 -> 1152
    assert [r2plus1d_mid_channels(c, c) for c in (64, 128, 256, 512)] == [144, 288, 576, 1152]


@pytest.mark.parametrize("builder, mid", [(cl.p3d, 6), (cl.r2plus1d, r2plus1d_mid_channels(4, 6))])
def test_factorised_builders_are_spatial_then_temporal(builder, mid):
    layer = builder(4, 6, stride=(2, 2, 2))
    convs = [m for m in layer.modules() if isinstance(m, nn.Conv3d)]
    assert [c.kernel_size for c in convs] == [(1, 3, 3), (3, 1, 1)]
    assert [c.stride for c in convs] == [(1, 2, 2), (2, 1, 1)]
    assert convs[0].out_channels == mid == convs[1].in_channels
    assert any(isinstance(m, nn.BatchNorm3d) for m in layer.modules())


def test_csn_is_ip_csn_pointwise_then_depthwise():
    """ip-CSN (interaction-preserved): the 1×1×1 keeps channel mixing; ir-CSN would drop it."""
    layer = cl.csn(4, 6, stride=2)
    pw, dw = [m for m in layer.modules() if isinstance(m, nn.Conv3d)]
    assert pw.kernel_size == (1, 1, 1) and (pw.in_channels, pw.out_channels) == (4, 6)
    assert dw.kernel_size == (3, 3, 3) and dw.groups == 6 and dw.stride == (2, 2, 2)


def test_conv2d_is_framewise():
    layer = cl.conv2d(4, 6, stride=(2, 1, 1))
    assert layer.kernel_size == (1, 3, 3) and layer.padding == (0, 1, 1) and layer.bias is None


@pytest.mark.parametrize(
    "shares, out, expected",
    [
        ({"kxkxk": 0.5, "1xkxk": 0.5}, 64, {"kxkxk": 32, "1xkxk": 32}),
        ({"kxkxk": 1, "1xkxk": 2}, 9, {"kxkxk": 3, "1xkxk": 6}),
        # naive rounding would give 0/2/2/2 = 6 > 5 and a negative first group
        ({"kxkxk": 1, "1xkxk": 8, "kx1x1": 8, "1x1xk": 8}, 5,
         {"kxkxk": 0, "1xkxk": 2, "kx1x1": 2, "1x1xk": 1}),
    ],
)
def test_cakes_builder_with_shares_always_fills_the_layer(shares, out, expected):
    layer = cl.cakes(split=shares)(3, out)
    assert isinstance(layer, cl.CAKESConv3d)
    assert layer.split == expected and layer.out_channels == out


def test_get_builder_errors_and_spaces():
    assert cl.get_builder("cakes:video-12d")(3, 4).split == {"1xkxk": 2, "kx1x1": 2}
    with pytest.raises(ValueError, match="builder: expected one of .* got 'i3d'"):
        cl.get_builder("i3d")
    with pytest.raises(ValueError, match="unknown space"):
        cl.get_builder("cakes:video-9d")
