"""ImageNet inflation: torchvision-format 2D ResNet weights into the 3D networks, every builder.

The 2D reference is ``tests/torchvision_resnet.py`` (torchvision's exact key names), with random
BN statistics so that copying them matters. Clips are small (48² pixels) and tests that only
check errors or warnings run on the ``meta`` device.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from torch.nn.utils import skip_init

import cakes_lite as cl
from cakes_lite import zoo
from cakes_lite.models import inflate, resnet3d, resnet50_i3d, resnet_i3d
from torchvision_resnet import ResNet as ResNet2d  # torchvision's key names, test-only
from torchvision_resnet import randomised

pytestmark = pytest.mark.usefixtures("one_thread")  # small real clips: immune to busy cores


@pytest.fixture(scope="module")
def ref50():
    torch.manual_seed(1)
    return randomised(ResNet2d(50, num_classes=10))


def direct(model):
    for m in model.modules():
        if isinstance(m, cl.CAKESConv3d):
            m.impl = "direct"
    return model


def uninitialised(**kwargs):
    """resnet50_i3d with uninitialised CPU tensors (skips ~1 s of random init): whatever a test
    reads must have been written by inflate, or it fails on garbage."""
    with torch.device("meta"):
        model = resnet50_i3d(**kwargs)
    return model.to_empty(device="cpu")


def meta_2d(depth: int = 50, num_classes: int = 1000) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return ResNet2d(depth, num_classes).state_dict()


def meta_i3d(**kwargs):
    with torch.device("meta"):
        return resnet50_i3d(**kwargs)


@pytest.mark.parametrize("builder", ["2d", "p3d", "r2plus1d"])
def test_2d_like_builders_inflated_equal_the_2d_network_frame_by_frame(ref50, builder):
    # r2plus1d's extra channels keep their initialisation (their temporal weights are 0)
    build = resnet50_i3d if builder == "r2plus1d" else uninitialised
    model = inflate(build(num_classes=10, builder=builder), ref50.state_dict()).eval()
    clip = torch.randn(2, 3, 3, 48, 48)  # (N, C, T, H, W), frames differ
    with torch.no_grad():
        ours = model(clip)
        frames = clip.transpose(1, 2).reshape(-1, 3, 48, 48)  # (N·T, C, H, W)
        theirs = ref50(frames).view(2, 3, 10).mean(1)  # logits averaged over frames
    assert ours.shape == (2, 10)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("layout", [None, "CAKES123D_P", "CAKES12D_C"])
def test_inflated_kernels_summed_over_time_are_the_2d_kernels(ref50, layout):
    sd = ref50.state_dict()
    model = inflate(uninitialised(num_classes=10, layout=layout), sd)
    own = model.state_dict()
    torch.testing.assert_close(own["conv1.weight"][:, :, 0], sd["conv1.weight"])
    torch.testing.assert_close(own["layer2.0.downsample.0.weight"][:, :, 0, 0, 0],
                               sd["layer2.0.downsample.0.weight"][:, :, 0, 0])
    torch.testing.assert_close(own["layer4.1.bn2.running_var"], sd["layer4.1.bn2.running_var"])
    torch.testing.assert_close(own["fc.bias"], sd["fc.bias"])
    n_groups = 0
    for name in zoo.official_layouts()["CAKES123D_P"]:
        w2d, conv = sd[f"{name}.weight"], model.get_submodule(name)
        if layout is None:
            assert conv.weight.shape[2] == 3
            torch.testing.assert_close(conv.weight.sum(2), w2d)  # the I3D rule: W/3 three times
            continue
        start = 0
        for group, w in conv.weights.items():
            rows = w2d[start:start + w.shape[0]]
            start += w.shape[0]
            n_groups += 1
            # the same as inflating the dense kernel, then shrink(init="sum")
            dense = skip_init(torch.nn.Conv3d, conv.in_channels, conv.out_channels, 3, padding=1)
            dense.weight.data = w2d.unsqueeze(2).repeat(1, 1, 3, 1, 1) / 3
            from_dense = cl.CAKESConv3d.from_conv(dense, conv.split, init="sum")
            torch.testing.assert_close(from_dense.weights[group], w)
            if group in ("kxkxk", "1xkxk"):
                torch.testing.assert_close(w.sum(2), rows)  # 1×k×k: the 2D kernel itself
            else:  # kx1x1: the spatial sum, spread evenly over time
                assert group == "kx1x1" and w.shape[2:] == (3, 1, 1)
                torch.testing.assert_close(w.sum(2)[..., 0, 0], rows.sum((2, 3)))
                torch.testing.assert_close(w[:, :, 0], w[:, :, 2])
    assert layout is None or n_groups >= 16 * 2 - 1


def test_file_paths_prefixes_other_resnets_and_csn(tmp_path):
    ref = randomised(ResNet2d(18, num_classes=5))
    path = tmp_path / "resnet18.safetensors"
    save_file(ref.state_dict(), str(path))
    model = inflate(resnet_i3d(18, num_classes=5), path)  # basic blocks: conv1 and conv2 3D
    torch.testing.assert_close(model.layer3[1].conv1.weight.sum(2), ref.layer3[1].conv1.weight)
    pth = tmp_path / "resnet18.pth"
    torch.save({f"module.{k}": v for k, v in ref.state_dict().items()}, pth)  # DataParallel
    ours = resnet3d(block="basic", widths=(64, 128, 256, 512), depths=(2, 2, 2, 2),
                    stem_width=64, stem_kernel=(1, 7, 7), num_classes=5)
    inflate(ours, pth)
    torch.testing.assert_close(ours.stem[0].weight[:, :, 0], ref.conv1.weight)
    torch.testing.assert_close(ours.stem[1].running_mean, ref.bn1.running_mean)
    with torch.device("meta"):
        csn = resnet_i3d(18, num_classes=5, builder="csn")
    with pytest.warns(UserWarning, match=r"16 layer\(s\) not inflated \(_CSN: no 2D counterpart; "
                                         r"it and its BN keep their initialisation\): "
                                         r"layer1.0.conv1, layer1.0.conv2, layer1.1.conv1, "
                                         r"layer1.1.conv2 …"):
        inflate(csn, ref.state_dict())


def test_fc_of_another_class_count_is_skipped_with_a_warning():
    model = meta_i3d(num_classes=174)
    with pytest.warns(UserWarning, match=r"1 layer\(s\) not inflated \(the state dict has 1000 "
                                         r"classes of 2048 features, the model 174 of 2048: fc "
                                         r"keeps its initialisation\): fc"):
        assert inflate(model, meta_2d(50, 1000)) is model


@pytest.mark.parametrize("depth, pattern", [
    (18, r"a 2D ResNet-18 \(basic blocks \[2, 2, 2, 2\]\); expected one for ResNet-50 I3D "
         r"\(bottleneck blocks \[3, 4, 6, 3\]\)"),
    (101, r"a 2D ResNet-101 \(bottleneck blocks \[3, 4, 23, 3\]\); expected one for ResNet-50"),
])
def test_other_depths_are_refused(depth, pattern):
    with pytest.raises(ValueError, match=pattern):
        inflate(meta_i3d(), meta_2d(depth))


def drop(*keys):
    return lambda sd: {k: v for k, v in sd.items() if k not in keys}


def reshape(key, shape):
    return lambda sd: {**sd, key: torch.empty(shape, device="meta")}


@pytest.mark.parametrize("edit, pattern", [
    (drop("layer3.4.bn2.running_var", "layer2.1.conv1.weight"),
     r"missing key 'layer2.1.conv1.weight'"),  # the first one in model order
    (drop("fc.weight"), r"missing key 'fc.weight'"),
    (reshape("layer3.0.conv2.weight", (256, 256, 1, 1)),
     r"state_dict\['layer3.0.conv2.weight'\]: expected shape \(256, 256, 3, 3\), got "
     r"\(256, 256, 1, 1\)"),
    (reshape("bn1.weight", (65,)), r"\['bn1.weight'\]: expected shape \(64,\), got \(65,\)"),
    (lambda sd: {**sd, "layer4.2.extra.weight": sd["fc.bias"]},
     r"unexpected key 'layer4.2.extra.weight' \(1 in all\) for ResNet-50 I3D"),
    (lambda sd: {**sd, "epoch": 3}, r"expected a tensor for every key .* got int for 'epoch'"),
    (lambda sd: [1, 2], r"expected a mapping of names to tensors .* got list"),
])
def test_bad_state_dicts_name_the_first_bad_key(edit, pattern):
    with pytest.raises(ValueError, match=pattern):
        inflate(meta_i3d(num_classes=1000), edit(meta_2d()))


def test_a_failed_inflation_leaves_the_model_untouched(ref50):
    model = resnet_i3d(18, num_classes=10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sd = randomised(ResNet2d(18, num_classes=10)).state_dict()
    sd["layer4.1.bn2.bias"] = sd["layer4.1.bn2.bias"][:3]  # the last layer is mis-shaped
    with pytest.raises(ValueError, match=r"layer4.1.bn2.bias"):
        inflate(model, sd)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match=r"expected a cakes_lite ResNetI3d or ResNet3d, got "
                                         r"Linear"):
        inflate(torch.nn.Linear(2, 2), sd)
