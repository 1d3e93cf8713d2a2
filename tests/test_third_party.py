"""cakes_lite on networks it did not write: MONAI's BasicUNet and SegResNet, a video ResNet built
like torchvision's (nn.Conv3d subclasses). The registry of conv types: tests/test_convtypes.py.

torchvision's PyPI wheels do not import with the CPU build of torch pinned here (its compiled ops
fail to register), so the video ResNet is a faithful local copy of torchvision's
``models/video/resnet.py`` classes, with small widths.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import cakes_lite as cl
from cakes_lite.convtypes import is_searchable
from cakes_lite.search import search_layers
from cakes_lite.search.bn_pairing import pair_by_fx, pair_by_hooks
from test_search_supernet import randomised as with_bn_stats  # random BN stats, eval mode


# -- torchvision's video ResNet, as in torchvision/models/video/resnet.py ----------------------
class Conv3DSimple(nn.Conv3d):
    def __init__(self, in_planes, out_planes, midplanes=None, stride=1, padding=1):
        super().__init__(in_channels=in_planes, out_channels=out_planes, kernel_size=(3, 3, 3),
                         stride=stride, padding=padding, bias=False)

    @staticmethod
    def get_downsample_stride(stride):
        return stride, stride, stride


class Conv3DNoTemporal(nn.Conv3d):
    def __init__(self, in_planes, out_planes, midplanes=None, stride=1, padding=1):
        super().__init__(in_channels=in_planes, out_channels=out_planes, kernel_size=(1, 3, 3),
                         stride=(1, stride, stride), padding=(0, padding, padding), bias=False)

    @staticmethod
    def get_downsample_stride(stride):
        return 1, stride, stride


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, conv_builder, stride=1, downsample=None):
        midplanes = (inplanes * planes * 3 * 3 * 3) // (inplanes * 3 * 3 + 3 * planes)
        super().__init__()
        self.conv1 = nn.Sequential(conv_builder(inplanes, planes, midplanes, stride),
                                   nn.BatchNorm3d(planes), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(conv_builder(planes, planes, midplanes), nn.BatchNorm3d(planes))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        residual = x
        out = self.conv1(x)
        out = self.conv2(out)
        if self.downsample is not None:
            residual = self.downsample(x)
        out += residual
        out = self.relu(out)
        return out


class VideoResNet(nn.Module):
    """torchvision's VideoResNet with two stages of ``widths`` channels (r3d_18 / mc3_18 style)."""

    def __init__(self, conv_makers, widths=(8, 16), num_classes=5):
        super().__init__()
        self.inplanes = widths[0]
        self.stem = nn.Sequential(  # BasicStem
            nn.Conv3d(3, widths[0], kernel_size=(3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3),
                      bias=False), nn.BatchNorm3d(widths[0]), nn.ReLU(inplace=True))
        self.layer1 = self._make_layer(conv_makers[0], widths[0], 1, stride=1)
        self.layer2 = self._make_layer(conv_makers[1], widths[1], 1, stride=2)
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.fc = nn.Linear(widths[1], num_classes)

    def forward(self, x):
        x = self.stem(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.avgpool(x)
        x = x.flatten(1)
        return self.fc(x)

    def _make_layer(self, conv_builder, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            ds_stride = conv_builder.get_downsample_stride(stride)
            downsample = nn.Sequential(
                nn.Conv3d(self.inplanes, planes, kernel_size=1, stride=ds_stride, bias=False),
                nn.BatchNorm3d(planes))
        layers = [BasicBlock(self.inplanes, planes, conv_builder, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(self.inplanes, planes, conv_builder) for _ in range(1, blocks)]
        return nn.Sequential(*layers)


VIDEO = {  # name -> (conv makers, the searchable convs)
    "r3d": ([Conv3DSimple, Conv3DSimple],
            ["layer1.0.conv1.0", "layer1.0.conv2.0", "layer2.0.conv1.0", "layer2.0.conv2.0"]),
    "mc3": ([Conv3DSimple, Conv3DNoTemporal], ["layer1.0.conv1.0", "layer1.0.conv2.0"]),
}
CLIP = (2, 3, 4, 16, 16)


def full_kernels(model: nn.Module) -> dict:
    """A layout that keeps every searchable conv k×k×k (with "sum" init: the model itself)."""
    return {n: {"kxkxk": m.out_channels} for n, m in model.named_modules() if is_searchable(m)}


@pytest.mark.parametrize("arch", list(VIDEO))
def test_video_resnet_conv3d_subclasses_are_searchable_everywhere(arch, one_thread):
    makers, searchable = VIDEO[arch]
    model = with_bn_stats(VideoResNet(makers))
    x = torch.randn(*CLIP)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # accepted subclasses: nothing to warn about
        layout = cl.Layout.uniform(model)
        net = cl.supernet(model, ["kxkxk"])
    assert list(layout) == searchable
    assert layout.skipped["stem.0"].startswith("expected a cubic odd kernel")
    assert all("register_conv_type" not in why for why in layout.skipped.values())
    # profile counts a subclass as the Conv3d it is
    conv = dict(model.named_modules())[searchable[0]]
    row = cl.profile(model, CLIP).layer(searchable[0])
    assert row.macs == row.output_shape[2] * row.output_shape[3] * row.output_shape[4] * \
        CLIP[0] * conv.out_channels * conv.in_channels * 27
    # shrink: full kernels with sum init are the model; the uniform layout runs
    torch.testing.assert_close(cl.shrink(model, full_kernels(model))(x), model(x),
                               rtol=1e-4, atol=1e-4)
    assert cl.shrink(model, layout)(x).shape == (2, 5)
    # supernet: every searchable conv, its BN absorbed by data flow (fx), nothing applied twice
    assert [n for n, _ in search_layers(net)] == searchable
    assert net.cakes_search["bn_pairing"] == "fx"
    assert all(bn == n[:-1] + "1" for n, bn in net.cakes_search["layers"].items())
    torch.testing.assert_close(net.eval()(x), model(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("arch", list(VIDEO))
def test_video_resnet_short_search_and_derive(arch, one_thread):
    model = VideoResNet(VIDEO[arch][0])
    batches = [(torch.randn(*CLIP), torch.randint(0, 5, (2,))) for _ in range(2)]
    result = cl.run_search(model, batches, epochs=1, mode="cost", progress=False)
    assert set(result.layout) == set(VIDEO[arch][1])
    budgeted = cl.derive_layout(result.supernet, budget=0.5)
    assert budgeted.meta["cost_fraction"] == pytest.approx(0.5, abs=0.02)
    assert cl.shrink(model, budgeted)(batches[0][0]).shape == (2, 5)


# -- MONAI ----------------------------------------------------------------------------------------
def monai_net(name: str, norm):
    nets = pytest.importorskip("monai.networks.nets", reason="MONAI not installed "
                               "(pip install -r requirements.txt)")
    if name == "BasicUNet":
        return nets.BasicUNet(spatial_dims=3, in_channels=1, out_channels=2,
                              features=(4, 4, 8, 8, 8, 4), norm=norm), (2, 1, 16, 16, 32)
    return nets.SegResNet(spatial_dims=3, init_filters=8, in_channels=1, out_channels=2,
                          blocks_down=(1, 1), blocks_up=(1,), norm=norm), (2, 1, 8, 8, 8)


MONAI = [("BasicUNet", "batch", 18, 18), ("BasicUNet", ("instance", {"affine": True}), 18, 0),
         ("SegResNet", "batch", 8, 3), ("SegResNet", ("group", {"num_groups": 4}), 8, 0)]


@pytest.mark.parametrize("name, norm, n_convs, n_bns", MONAI)
def test_monai_shrink_supernet_search_and_derive(name, norm, n_convs, n_bns, one_thread):
    model, shape = monai_net(name, norm)
    model = with_bn_stats(model)
    x = torch.randn(*shape)
    layout = cl.Layout.uniform(model)
    assert len(layout) == n_convs
    # shrink: full kernels = the model; the even split runs and keeps the output shape
    torch.testing.assert_close(cl.shrink(model, full_kernels(model))(x), model(x),
                               rtol=1e-4, atol=1e-4)
    assert cl.shrink(model, layout)(x).shape == model(x).shape
    # supernet: BNs absorbed (the conv's bias folded into the running mean) only where a BN
    # consumes the conv's output alone (SegResNet's pre-activation blocks: conv1 -> norm2 only;
    # the other convs feed a residual add and norm1)
    net = cl.supernet(model, ["kxkxk"])
    assert sum(bn is not None for bn in net.cakes_search["layers"].values()) == n_bns
    torch.testing.assert_close(net.eval()(x), model(x), rtol=1e-4, atol=1e-4)
    # a short search (2 steps, cost mode) and derivation, then shrink the original model
    target = torch.randint(0, 2, (shape[0], *shape[2:]))
    result = cl.run_search(model, [(x, target)] * 2, epochs=1, mode="cost", progress=False)
    assert set(result.layout) == set(layout)
    budgeted = cl.derive_layout(result.supernet, budget=0.5)
    assert budgeted.meta["cost_fraction"] == pytest.approx(0.5, abs=0.02)
    assert cl.shrink(model, budgeted)(x).shape == model(x).shape


@pytest.mark.parametrize("which", ["r3d", "BasicUNet", "SegResNet"])
def test_dry_run_pairing_agrees_with_fx_on_real_networks(which, one_thread):
    """The hooks pairing (for models fx cannot trace) finds exactly fx's pairs, also where a
    conv's output feeds a BN *and* a residual add (SegResNet's pre-activation blocks)."""
    if which == "r3d":
        model, shape = VideoResNet(VIDEO["r3d"][0]), CLIP
    else:
        model, shape = monai_net(which, "batch")
    convs = {n: m.out_channels for n, m in model.named_modules() if is_searchable(m)}
    by_fx = pair_by_fx(model, convs)
    assert by_fx and by_fx == pair_by_hooks(model, convs, torch.randn(*shape))
