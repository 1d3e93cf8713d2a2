"""Models: every builder × both networks on odd sizes, searchable convs, layouts, configs."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from cakes_lite import CAKESConv3d, Layout
from cakes_lite.layout import is_searchable
from cakes_lite.models import (
    MODELS,
    ResNet3d,
    UNet3d,
    build_model,
    model_spec,
    resnet3d_tiny,
    unet3d_tiny,
)

BUILDERS = ["3d", "2d", "p3d", "r2plus1d", "csn", "cakes", "cakes:video-23d"]
SMALL_RESNET = {"widths": [8, 12, 16], "stem_width": 8}
SMALL_UNET = {"widths": [4, 8, 8]}


pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py


@pytest.mark.parametrize("builder", BUILDERS)
@pytest.mark.parametrize("net, shape, out_shape", [
    ("resnet3d_tiny", (2, 3, 5, 17, 13), (2, 10)),  # odd, anisotropic clip
    ("unet3d_tiny", (2, 1, 7, 11, 9), (2, 4, 7, 11, 9)),  # odd sizes: padded and cropped
])
def test_every_builder_shapes_and_finite_gradients(builder, net, shape, out_shape):
    small = SMALL_RESNET if net.startswith("resnet") else SMALL_UNET
    model = build_model(net, builder=builder, **small)
    x = torch.randn(shape, requires_grad=True)
    y = model(x)
    assert y.shape == out_shape
    y.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("factory, n_searchable", [(resnet3d_tiny, 6), (unet3d_tiny, 8)])
def test_3d_builder_convs_are_searchable_and_followed_by_bn(factory, n_searchable):
    model = factory()
    modules = dict(model.named_modules())
    names = [n for n, m in modules.items() if is_searchable(m)]
    assert len(names) == n_searchable  # stem, shortcuts, pooling/up-sampling, head: not searchable
    for name in names:
        conv = modules[name]
        assert conv.kernel_size == (3, 3, 3) and conv.bias is None and conv.groups == 1
        parent_name, _, child = name.rpartition(".")
        siblings = list(dict(modules[parent_name].named_children()).items())
        i = [k for k, _ in siblings].index(child)
        assert isinstance(siblings[i + 1][1], nn.BatchNorm3d), name
    assert set(Layout.uniform(model)) == set(names)


@pytest.mark.parametrize("factory, space, shape", [
    (resnet3d_tiny, "video-123d", (1, 3, 8, 32, 32)),
    (unet3d_tiny, "volume-all", (1, 1, 16, 16, 16)),
])
def test_layout_option_shrinks_and_config_round_trips_through_json(factory, space, shape):
    layout = Layout.uniform(factory(), space)
    model = factory(layout=layout)
    shrunk = {n for n, m in model.named_modules() if isinstance(m, CAKESConv3d)}
    assert shrunk == set(layout)
    spec = json.loads(json.dumps(model_spec(model)))  # must be plain JSON
    rebuilt = build_model(spec["name"], **spec["config"])
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == \
        {k: v.shape for k, v in model.state_dict().items()}
    rebuilt.load_state_dict(model.state_dict())
    model.eval(), rebuilt.eval()
    x = torch.randn(shape)
    torch.testing.assert_close(rebuilt(x), model(x))


def test_per_stage_builders_and_bad_list_length():
    model = resnet3d_tiny(builder=["2d", "3d", "p3d"])
    assert model.layer1[0].conv1.kernel_size == (1, 3, 3)
    assert model.layer2[0].conv1.kernel_size == (3, 3, 3)
    assert isinstance(model.layer3[0].conv1, nn.Sequential)  # P3D's factorised pair
    assert model_spec(model)["config"]["builder"] == ["2d", "3d", "p3d"]
    with pytest.raises(ValueError, match="builder: expected one builder per stage"):
        resnet3d_tiny(builder=["2d", "3d"])


@pytest.mark.parametrize("temporal_stride, t_out", [(True, 2), (False, 8)])
def test_temporal_or_spatial_only_strides(temporal_stride, t_out):
    model = resnet3d_tiny(temporal_stride=temporal_stride)
    feats = model.features(torch.randn(1, 3, 8, 32, 32))
    assert feats.shape == (1, 64, t_out, 4, 4)


def test_bottleneck_deeper_resnet_and_anisotropic_unet():
    model = build_model("resnet3d", widths=[8, 16], depths=[2, 1], block="bottleneck",
                        strides=[1, (1, 2, 2)], stem_kernel=3, stem_stride=1)
    assert model(torch.randn(2, 3, 4, 9, 9)).shape == (2, 10)
    assert model.out_channels == 64  # 16 × expansion 4
    assert is_searchable(model.stem[0])  # a cubic stem is the user's choice
    unet = build_model("unet3d", widths=[4, 8, 8], strides=[(1, 2, 2), (1, 2, 2)],
                       convs_per_level=[1, 1, 3])
    assert [len(level) for level in unet.encoder] == [1, 1, 3]
    assert unet.multiple == (1, 4, 4)
    assert unet(torch.randn(1, 1, 3, 10, 6)).shape == (1, 4, 3, 10, 6)


@pytest.mark.parametrize("name, kwargs, match", [
    ("resnet3d_huge", {}, "model: expected one of"),
    ("resnet3d_tiny", {"widths": [8, 0, 8]}, "widths: expected a list of positive ints"),
    ("resnet3d_tiny", {"depths": [1, 1]}, "depths"),
    ("resnet3d_tiny", {"strides": [1, 2]}, "strides: expected one stride per stage"),
    ("resnet3d_tiny", {"block": "wide"}, "block: expected one of"),
    ("resnet3d_tiny", {"builder": "4d"}, "builder: expected one of"),
    ("unet3d_tiny", {"widths": [8]}, "widths: expected at least 2 levels"),
    ("unet3d_tiny", {"strides": [2]}, "strides: expected len"),
    ("unet3d_tiny", {"convs_per_level": [1, 2]}, "convs_per_level: expected a list of 3"),
    ("unet3d_tiny", {"colour": 3}, "unexpected keyword argument 'colour'"),
])
def test_bad_configs_name_the_field(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_model(name, **kwargs)


def test_bad_input_shape_and_custom_builder_spec():
    with pytest.raises(ValueError, match=r"expected input \(N, 3, T, H, W\)"):
        resnet3d_tiny()(torch.randn(1, 1, 8, 32, 32))
    with pytest.raises(ValueError, match=r"expected input \(N, 1, D, H, W\)"):
        unet3d_tiny()(torch.randn(1, 2, 8, 8, 8))

    def my_conv(i, o, stride=1, kernel_size=3):
        return nn.Conv3d(i, o, kernel_size, stride, kernel_size // 2, bias=False)

    model = resnet3d_tiny(builder=my_conv)  # works, but cannot be described as JSON
    with pytest.raises(ValueError, match="custom callable"):
        model_spec(model)


def test_registry_and_classes():
    assert set(MODELS) >= {"resnet3d", "resnet3d_tiny", "unet3d", "unet3d_tiny"}
    assert isinstance(build_model("resnet3d_tiny"), ResNet3d)
    assert isinstance(build_model("unet3d_tiny"), UNet3d)
    assert build_model("resnet3d_tiny", num_classes=7, in_channels=1).fc.out_features == 7
