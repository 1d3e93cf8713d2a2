"""The paper's ResNet-50 I3D: topology, pinned params/MACs (cross-checked against thop and
FlopCounterMode), agreement with ``zoo.resnet50_macs``, every builder, layouts, bad input.

Cost: the 46 M-parameter networks are built and profiled on the ``meta`` device (shapes only, no
memory, no arithmetic). thop, FlopCounterMode and ``cl.profile`` all count from shapes, so a
meta forward at the paper's full 1×3×8×224² input gives exactly the numbers of a real one;
``test_meta_profile_equals_a_real_forward`` checks that on a small real clip.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import cakes_lite as cl
from cakes_lite import zoo
from cakes_lite.models import ResNetI3d, build_model, model_spec, resnet50_i3d, resnet_i3d
from test_cost import flop_counter, thop_per_module  # the shared cross-check helpers
from torchvision_resnet import ResNet as ResNet2d  # torchvision's key names, test-only

CLIP = (1, 3, 8, 224, 224)  # the paper's input
#: (params, MACs) at CLIP with 174 classes, measured by cl.profile (= thop = FlopCounterMode / 2)
PINNED = {
    "3d": (46_499_054, 62_292_455_424),
    "2d": (23_864_558, 32_697_446_400),
    "CAKES12D_P": (20_884_718, 28_827_070_464),
    "CAKES12D_C": (20_498_030, 29_093_203_968),
    "CAKES23D_P": (37_477_742, 50_450_116_608),
    "CAKES23D_C": (35_695_598, 41_190_838_272),
    "CAKES123D_P": (33_508_334, 43_613_736_960),
    "CAKES123D_C": (35_029_358, 38_496_989_184),
}
WEIGHT_TYPES = (nn.Conv3d, nn.Conv2d, nn.Linear, cl.CAKESConv3d)

pytestmark = pytest.mark.usefixtures("one_thread")  # small real clips: immune to busy cores


def on_meta(**kwargs) -> ResNetI3d:
    with torch.device("meta"):
        return direct(resnet50_i3d(**kwargs)).eval()


def direct(model: nn.Module) -> nn.Module:
    """CAKES layers run one conv per group (no plan measurement: nothing to time on meta)."""
    for m in model.modules():
        if isinstance(m, cl.CAKESConv3d):
            m.impl = "direct"
    return model


def variant(name: str) -> dict:
    return {"builder": name} if name in ("3d", "2d") else {"layout": name}


@pytest.mark.parametrize("name", list(PINNED))
def test_pinned_params_and_macs_agree_with_thop_flop_counter_and_zoo(name):
    model = on_meta(**variant(name))
    x = torch.zeros(CLIP, device="meta")
    prof = cl.profile(model, x)
    assert (prof.params, prof.macs) == PINNED[name]
    rows = [r for r in prof.layers if isinstance(model.get_submodule(r.name), WEIGHT_TYPES)]
    assert len(rows) == 54 and sum(r.macs for r in rows) == prof.macs  # 53 convs + fc
    flops, flops_per = flop_counter(model, x)
    assert flops == 2 * prof.macs
    _, thop_per = thop_per_module(model, x)
    for r in rows:
        assert flops_per[r.name] == 2 * r.macs and thop_per[r.name] == r.macs, r.name
    if name != "2d":  # the analytic cost the app's layout explorer shows
        layout = zoo.official_layouts().get(name, {})
        c = zoo.resnet50_macs(layout)
        assert (c["network"]["params"], c["network"]["macs"]) == PINNED[name]
        assert (c["network"]["params_3d"], c["network"]["macs_3d"]) == PINNED["3d"]
        for row in c["layers"]:
            assert row["macs"] == prof.layer(row["name"]).macs, row["name"]


def test_2d_builder_is_eight_frames_of_a_2d_resnet50():
    with torch.device("meta"):
        ref = ResNet2d(50, num_classes=174).eval()
    per_frame = cl.profile(ref, torch.zeros(8, 3, 224, 224, device="meta"))  # 8 frames
    fc = 2048 * 174
    params, macs = PINNED["2d"]
    assert per_frame.params == params
    assert per_frame.macs - 8 * fc == macs - fc  # the I3D classifies the clip once


@pytest.mark.parametrize("depth, params", [(18, 11_689_512), (34, 21_797_672),
                                           (50, 25_557_032), (101, 44_549_160),
                                           (152, 60_192_808)])
def test_family_with_2d_builder_has_torchvision_imagenet_params(depth, params):
    with torch.device("meta"):
        model = resnet_i3d(depth, num_classes=1000, builder="2d")
    assert sum(p.numel() for p in model.parameters()) == params


def test_official_topology_and_names():
    model = on_meta()
    assert (model.conv1.kernel_size, model.conv1.stride, model.conv1.padding) == \
        ((1, 7, 7), (1, 2, 2), (0, 3, 3))
    pool = model.maxpool
    assert (pool.kernel_size, pool.stride, pool.padding) == ((1, 3, 3), (1, 2, 2), (0, 1, 1))
    names = list(model.searched_layers())
    assert names == list(zoo.official_layouts()["CAKES123D_P"])  # the 16 conv2, in order
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv3d) and name not in names and name != "conv1":
            assert m.kernel_size == (1, 1, 1), name  # conv1 / conv3 / downsample.0
        if isinstance(m, nn.Conv3d):
            assert m.stride[0] == 1, name  # never a temporal stride
    assert model.layer2[0].conv2.stride == (1, 2, 2)
    assert model.layer2[0].downsample[0].stride == (1, 2, 2)
    assert isinstance(model.layer2[0].downsample[1], nn.BatchNorm3d)
    assert model.dropout.p == 0.3 and model.fc.in_features == 2048
    assert model.features(torch.zeros(CLIP, device="meta")).shape == (1, 2048, 8, 7, 7)


@pytest.mark.parametrize("builder", ["3d", "2d", "p3d", "r2plus1d", "csn", "cakes",
                                     "cakes:video-12d", "cakes:video-23d", "cakes:video-123d"])
def test_every_builder_builds_the_16_conv2(builder):
    with torch.device("meta"):
        model = direct(resnet50_i3d(builder=builder)).eval()
    for name in zoo.official_layouts()["CAKES12D_P"]:
        conv2 = model.get_submodule(name)
        assert conv2.out_channels == model.get_submodule(name.replace("conv2", "bn2")).num_features
    assert model(torch.zeros(2, 3, 5, 67, 45, device="meta")).shape == (2, 174)


def test_real_forward_backward_of_a_cakes_layout():
    model = direct(resnet50_i3d(num_classes=7, layout="CAKES123D_C", dropout=0.0))
    x = torch.randn(1, 3, 2, 32, 32)
    y = model(x)
    assert y.shape == (1, 7) and torch.isfinite(y).all()
    y.square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.get_submodule("layer4.2.conv2").weights["kxkxk"].grad.abs().sum() > 0


def test_meta_profile_equals_a_real_forward():
    shape = (1, 3, 3, 40, 40)  # stage sides 10, 5, 3, 2: not multiples of 32
    real = cl.profile(direct(resnet50_i3d(layout="CAKES23D_P")), shape)
    meta = cl.profile(on_meta(layout="CAKES23D_P"), torch.zeros(shape, device="meta"))
    assert [(r.name, r.macs, r.params, r.output_shape) for r in real.layers] == \
        [(r.name, r.macs, r.params, r.output_shape) for r in meta.layers]
    c = zoo.resnet50_macs(zoo.official_layouts()["CAKES23D_P"], frames=3, size=40)
    assert (c["network"]["macs"], c["network"]["params"]) == (real.macs, real.params)


def test_layout_by_name_object_or_dict_and_spec_round_trip():
    official = zoo.official_layouts()["CAKES23D_C"]
    for layout in ("CAKES23D_C", official, dict(official)):
        model = on_meta(layout=layout)
        splits = {n: m.split for n, m in model.named_modules() if isinstance(m, cl.CAKESConv3d)}
        assert splits == {n: dict(s) for n, s in official.items()}
    spec = json.loads(json.dumps(model_spec(model)))
    assert spec["name"] == "resnet_i3d" and spec["config"]["depth"] == 50
    with torch.device("meta"):
        again = build_model(spec["name"], **spec["config"])
    assert {k: v.shape for k, v in again.state_dict().items()} == \
        {k: v.shape for k, v in model.state_dict().items()}


@pytest.mark.parametrize("kwargs, pattern", [
    ({"layout": {"layer5.0.conv2": {"kxkxk": 8}}},
     r"'layer5.0.conv2' is not one of the 16 k×k×k convs of ResNet-50 I3D; expected names "
     r"'layer1.0.conv2', 'layer1.1.conv2' … 'layer4.2.conv2'"),
    ({"layout": {"layer1.0.conv1": {"kxkxk": 64}}}, r"'layer1.0.conv1' is not one of the 16"),
    ({"layout": {"layer3.2.conv2": {"kxkxk": 200, "1xkxk": 50}}},
     r"'layer3.2.conv2' has 256 output channels .* expected a split summing to 256, got 250"),
    ({"layout": "CAKES99D_P"}, r"official layout name \[.*'CAKES123D_P'.*\], got 'CAKES99D_P'"),
    ({"layout": "CAKES12D_P", "builder": "2d"}, r"has no k×k×k convs to shrink"),
    ({"dropout": 1.5}, r"dropout: expected a probability in \[0, 1\), got 1.5"),
])
def test_bad_configuration_names_expected_and_given(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern), torch.device("meta"):
        resnet50_i3d(**kwargs)


def test_clip_with_wrong_channel_count():
    model = on_meta()
    with pytest.raises(ValueError, match=r"expected a clip \(N, 3, T, H, W\), got shape "
                                         r"\(1, 1, 8, 64, 64\)"):
        model(torch.zeros(1, 1, 8, 64, 64, device="meta"))
    with pytest.raises(ValueError, match=r"depth: expected one of \[18, 34, 50, 101, 152\]"):
        resnet_i3d(depth=42)


def test_narrow_width_scales_every_stage_and_round_trips():
    """width=8: the smoke-run copy of the recipes (stages 8, 16, 32, 64; outputs ×4); the
    default width is ImageNet's 64 (the pinned numbers above)."""
    model = resnet_i3d(50, num_classes=5, width=8, layout=None)
    assert model.conv1.out_channels == 8 and model.layer1[0].conv2.out_channels == 8
    assert [getattr(model, f"layer{s}")[0].conv2.out_channels for s in (1, 2, 3, 4)] == \
        [8, 16, 32, 64]
    assert model.fc.in_features == 256 and resnet50_i3d().config.width == 64
    assert model(torch.randn(2, 3, 4, 64, 64)).shape == (2, 5)
    spec = json.loads(json.dumps(model_spec(model)))
    again = build_model(spec["name"], **spec["config"])
    assert {k: v.shape for k, v in again.state_dict().items()} == \
        {k: v.shape for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"width: expected a list of positive ints, got \[0\]"):
        resnet_i3d(50, width=0)
