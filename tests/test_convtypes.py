"""Which convs CAKES may replace (cakes_lite/convtypes.py): nn.Conv3d and subclasses that keep
its forward, others only once registered with their geometry; refusals say why, in every entry
point (Layout.uniform, supernet, shrink, from_conv, profile)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cakes_lite as cl
from cakes_lite.convtypes import ConvGeometry, conv_geometry, subkernel_weight
from test_search_supernet import randomised as with_bn_stats  # random BN stats, eval mode


class WSConv3d(nn.Conv3d):
    """Weight-standardised conv: overrides forward, so it is not a plain convolution."""

    def forward(self, x):
        w = self.weight - self.weight.mean(dim=(1, 2, 3, 4), keepdim=True)
        return self._conv_forward(x, w, self.bias)


class MyConv(nn.Module):
    """A third-party conv with its own forward and attribute names (not an nn.Conv3d)."""

    def __init__(self, cin, cout, k=3):
        super().__init__()
        self.kernel = nn.Parameter(torch.randn(cout, cin, k, k, k) * 0.1)
        self.k = k

    def forward(self, x):
        return F.conv3d(x, self.kernel, None, 1, self.k // 2)


def my_geometry(m: MyConv) -> ConvGeometry:
    cout, cin = m.kernel.shape[:2]
    return ConvGeometry(cin, cout, (m.k,) * 3, (1, 1, 1), (m.k // 2,) * 3, (1, 1, 1), 1, "zeros",
                        m.kernel, None)


@pytest.fixture
def registry():
    yield cl.register_conv_type
    cl.unregister_conv_type(WSConv3d)
    cl.unregister_conv_type(MyConv)


def test_subclass_overriding_forward_is_refused_with_the_reason_until_registered(registry):
    model = nn.Sequential(nn.Conv3d(2, 4, 3, padding=1), WSConv3d(4, 4, 3, padding=1))
    with pytest.warns(UserWarning, match=r"'1': WSConv3d subclasses nn\.Conv3d but overrides "
                                         r"forward .*register_conv_type\(WSConv3d\)"):
        layout = cl.Layout.uniform(model)
    assert list(layout) == ["0"] and "overrides forward" in layout.skipped["1"]
    with pytest.warns(UserWarning, match="WSConv3d"):
        net = cl.supernet(model, "video-123d")
    assert "overrides forward" in net.cakes_search["skipped"]["1"]
    with pytest.raises(ValueError, match=r"layer '1': WSConv3d subclasses nn\.Conv3d"):
        cl.shrink(model, {"1": {"kxkxk": 4}})
    with pytest.raises(ValueError, match=r"WSConv3d subclasses nn\.Conv3d"):
        cl.CAKESConv3d.from_conv(model[1], {"kxkxk": 4})
    registry(WSConv3d)  # the user's promise: treat it as a plain conv of its weight
    assert list(cl.Layout.uniform(model)) == ["0", "1"]


def test_registered_third_party_type_works_in_every_entry_point(registry):
    model = nn.Sequential(MyConv(2, 6), nn.BatchNorm3d(6), nn.ReLU())
    x = torch.randn(2, 2, 3, 5, 4)
    assert cl.Layout.uniform(model) == {}  # not a Conv3d and not registered: not a conv
    with pytest.raises(ValueError, match=r"layer '0': expected an nn\.Conv3d, got MyConv"):
        cl.shrink(model, {"0": {"kxkxk": 6}})
    assert registry(MyConv, my_geometry) is MyConv
    assert list(cl.Layout.uniform(model)) == ["0"]
    assert cl.profile(model, x).layer("0").macs == 2 * 3 * 5 * 4 * 6 * 2 * 27
    model.eval()
    torch.testing.assert_close(cl.shrink(model, {"0": {"kxkxk": 6}})(x), model(x),
                               rtol=1e-4, atol=1e-4)
    net = cl.supernet(with_bn_stats(model), ["kxkxk"])
    assert net.cakes_search["layers"] == {"0": "1"}
    torch.testing.assert_close(net.eval()(x), model(x), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="cls"):
        registry(42)


def test_a_subclass_overriding_conv_forward_is_refused_too():
    class Masked(nn.Conv3d):
        def _conv_forward(self, x, weight, bias):
            return super()._conv_forward(x, weight * 0.5, bias)

    with pytest.raises(ValueError, match=r"overrides forward \(Masked\._conv_forward\)"):
        cl.CAKESConv3d.from_conv(Masked(2, 4, 3, padding=1), {"kxkxk": 4}, name="m")


# (sub-kernel, the axes of (n, C_in, D, H, W) it shrinks)
SHRUNK = [("kxkxk", ()), ("1xkxk", (2,)), ("kx1x1", (3, 4)), ("1x1xk", (2, 3)), ("1x1x1", (2, 3, 4))]


@pytest.mark.parametrize("name,axes", SHRUNK, ids=[s[0] for s in SHRUNK])
def test_subkernel_weight_sums_or_slices_exactly_the_shrunk_axes(name, axes):
    dense = torch.randn(3, 2, 5, 5, 5, dtype=torch.float64)
    total, centre = dense, dense
    for dim in axes:
        total = total.sum(dim, keepdim=True)
        centre = centre.narrow(dim, 2, 1)
    assert torch.equal(subkernel_weight(dense, name, "sum"), total)
    assert torch.equal(subkernel_weight(dense, name, "centre"), centre)
    assert subkernel_weight(dense, name).shape == (3, 2, *cl.kernel_shape(name, 5))


def test_conv_geometry_reads_a_conv3d_and_refuses_other_modules():
    g = conv_geometry(nn.Conv3d(4, 6, 3, stride=(1, 2, 2), padding=1, bias=False))
    assert (g.in_channels, g.out_channels, g.kernel_size, g.stride) == (4, 6, (3, 3, 3), (1, 2, 2))
    assert g.bias is None and g.weight.shape == (6, 4, 3, 3, 3)
    with pytest.raises(ValueError, match="Conv2d"):
        conv_geometry(nn.Conv2d(4, 6, 3))
