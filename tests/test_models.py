"""Models: every builder × both networks on odd sizes, searchable convs, layouts, configs."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from cakes_lite import CAKESConv3d, Layout
from cakes_lite.deploy.inference import fold_batchnorm, for_inference
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


def _trained_bn(model: nn.Module) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, so folding them is really tested."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return model.eval()


@pytest.mark.parametrize("factory,builder,shape", [
    (resnet3d_tiny, "3d", (2, 3, 4, 16, 16)),
    (resnet3d_tiny, "cakes", (2, 3, 5, 16, 12)),
    (unet3d_tiny, "3d", (1, 1, 12, 8, 10)),
    (unet3d_tiny, "cakes:volume-all", (1, 1, 9, 8, 8)),
])
def test_for_inference_folds_every_bn_and_keeps_outputs(factory, builder, shape):
    model = _trained_bn(factory(builder=builder))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(shape)
    fast = for_inference(model)
    folded = [m for m in fast.modules() if isinstance(m, nn.BatchNorm3d)]
    assert not folded  # every BN of these networks follows a conv
    with torch.no_grad():
        want, got = model(x), fast(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    if got.dim() == 5:  # channels innermost (a crop of a channels_last_3d tensor where padded)
        assert got.stride(1) == 1
    # the caller's model is untouched (weights, BNs, mode)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert any(isinstance(m, nn.BatchNorm3d) for m in model.modules())


def test_fold_batchnorm_skips_a_conv_whose_output_is_also_used_elsewhere():
    class TwoUses(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = CAKESConv3d(2, {"kxkxk": 2, "1xkxk": 1}, bias=True)
            self.bn = nn.BatchNorm3d(3)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y  # y is read raw too: folding would change it

    model = _trained_bn(TwoUses())
    folded = fold_batchnorm(model)
    assert any(isinstance(m, nn.BatchNorm3d) for m in folded.modules())
    x = torch.randn(1, 2, 3, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x))
    with pytest.raises(ValueError, match="model: expected an nn.Module"):
        fold_batchnorm("resnet")


@pytest.mark.parametrize("kernel,bias,shape", [
    ((2, 2, 2), False, (1, 6, 3, 4, 5)),
    ((1, 2, 2), True, (2, 5, 4, 3, 2)),
    ((2, 3, 1), True, (3, 4, 2, 5, 3)),
])
def test_for_inference_runs_kernel_equals_stride_upsampling_as_one_matmul(kernel, bias, shape):
    from cakes_lite.deploy.inference import _UpConv3d

    up = nn.ConvTranspose3d(shape[1], 7, kernel, kernel, bias=bias)
    fast = for_inference(nn.Sequential(up))
    wrapped = [m for m in fast.modules() if isinstance(m, _UpConv3d)]
    assert len(wrapped) == 1
    x = torch.randn(shape)
    with torch.autograd.profiler.profile() as prof, torch.no_grad():
        got = fast(x)
    assert "aten::slow_conv_transpose3d" not in {e.name for e in prof.function_events}
    with torch.no_grad():
        torch.testing.assert_close(got, up(x), rtol=1e-5, atol=1e-5)
    assert got.is_contiguous(memory_format=torch.channels_last_3d)
    # output_size= (the module's other call form) falls back to the module itself
    with torch.no_grad():
        size = [s * k for s, k in zip(shape[2:], kernel)]
        torch.testing.assert_close(wrapped[0](x, size), up(x, size))
    # what it does not cover keeps PyTorch's module (overlapping or padded kernels)
    for other in (nn.ConvTranspose3d(4, 4, 3, 2), nn.ConvTranspose3d(4, 4, 2, 2, padding=1),
                  nn.ConvTranspose3d(4, 4, 2, 2, groups=2)):
        assert not _UpConv3d.applies(other)


@pytest.mark.parametrize("factory,builder,shape", [
    (resnet3d_tiny, "cakes", (2, 3, 4, 16, 16)),
    (unet3d_tiny, "cakes:volume-2d", (1, 1, 8, 8, 8)),
])
def test_for_inference_with_example_pins_plans_in_the_network(factory, builder, shape):
    from cakes_lite.deploy.inference import _Conv3d

    model = _trained_bn(factory(builder=builder))
    parent = _trained_bn(factory(builder="3d"))
    x = torch.randn(shape)
    fast = for_inference(model, example=x)
    layers = [m for m in fast.modules() if isinstance(m, (CAKESConv3d, _Conv3d))
              and hasattr(m, "split")]
    assert len(layers) == sum(isinstance(m, CAKESConv3d) for m in model.modules())
    for m in layers:  # pinned: a plan, or "dense" replaced by the plain conv it runs
        assert (m.plan is not None) if isinstance(m, CAKESConv3d) else m.last_plan == "dense"
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), rtol=1e-4, atol=1e-4)
    # profile still counts the wrapped convs of an inference copy (MACs of what runs)
    from cakes_lite import profile

    assert profile(for_inference(parent), x).macs == profile(parent, x).macs


def test_tune_plans_keeps_the_plan_that_makes_the_network_fastest(monkeypatch):
    from cakes_lite.deploy import network_tuning as plan_tuning

    model = for_inference(resnet3d_tiny(builder="cakes").eval())
    layers = [m for m in model.modules() if isinstance(m, CAKESConv3d)]
    cost = {"fold": 1.0, "mixed": 3.0, "conv3d": 2.0, "direct": 4.0, "dense": 5.0}

    def fake_timer(net, x):  # whole-network "time": the sum of the plans' made-up costs
        def run():
            net(x)
            return sum(cost[m.last_plan] for m in layers)
        return run

    monkeypatch.setattr(plan_tuning, "_timer", fake_timer)
    chosen = plan_tuning.tune_plans(model, torch.randn(1, 3, 4, 16, 16), repeats=2)
    assert list(chosen) == [n for n, m in model.named_modules() if isinstance(m, CAKESConv3d)]
    assert set(chosen.values()) == {"fold"} and all(m.plan == "fold" for m in layers)
    assert all(set(m._prepared) <= {"fold"} for m in layers)  # the losers' weights released
    cost.update(fold=9.0)  # now "conv3d" is the cheapest candidate every layer has
    assert set(plan_tuning.tune_plans(model, torch.randn(1, 3, 4, 16, 16)).values()) == {"conv3d"}
    with pytest.raises(ValueError, match="repeats: expected a positive int, got 0"):
        plan_tuning.tune_plans(model, torch.randn(1, 3, 4, 16, 16), repeats=0)
    with pytest.raises(ValueError, match="found none"):
        plan_tuning.tune_plans(nn.Sequential(nn.Conv3d(1, 1, 1)), torch.randn(1, 1, 2, 2, 2))
