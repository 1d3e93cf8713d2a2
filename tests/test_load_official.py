"""The authors' checkpoints: a state dict with the official key names and shapes (restated
structure: ``tests/official_cakes.py``) loads into ``resnet50_i3d`` and computes what the
official forward computes, block by block and as a whole; everything else is refused by name.

Cost: one ResNet-50 with random weights (and random BN statistics) per module, saved once as a
``.pth.tar`` (~135 MB in a tmp dir); refusals use meta tensors or edited copies of that dict.
"""

from __future__ import annotations

import pytest
import torch

from cakes_lite import zoo
from cakes_lite.models import load_official, resnet50_i3d
from official_cakes import SHAPES, P3DT, DataParallelLike, PlainT, TemporalModel, cakes_ops
from torchvision_resnet import ResNet as ResNet2d
from torchvision_resnet import randomised

pytestmark = pytest.mark.usefixtures("one_thread")  # small real clips: immune to busy cores

LAYOUT = zoo.official_layouts()["CAKES123D_P"]  # the released 8- and 16-frame checkpoints
SPLITS = [dict(s) for s in LAYOUT.values()]
#: block layer3.1 concatenates k×1×1, k×k×k, 1×k×k: a test of the channel mapping, not a
#: released order
SHUFFLED = [tuple(SHAPES)] * 8 + [("kx1x1", "kxkxk", "1xkxk")] + [tuple(SHAPES)] * 7


def official(ops, **kwargs) -> DataParallelLike:
    return DataParallelLike(TemporalModel(ops, **kwargs))


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """(their model in eval mode, path of the saved checkpoint, its state dict)."""
    torch.manual_seed(2)
    theirs = official(cakes_ops(SPLITS, SHUFFLED), num_classes=174, segments=3, pool=2)
    randomised(theirs, seed=3)
    path = tmp_path_factory.mktemp("official") / "8frame_CAKES123D_PerformancePriority.pth.tar"
    ckpt = {"epoch": 140, "arch": "resnet50", "state_dict": theirs.state_dict(),
            "best_prec1": torch.tensor(47.24)}
    torch.save(ckpt, path)
    return theirs, path, ckpt


def test_released_checkpoint_loads_with_its_layout_and_equals_the_official_forward(released):
    theirs, path, _ = released
    ours = load_official(path)
    assert not ours.training and ours.config.layout.meta["title"] == "CAKES^P 1,2,3D"
    convs = {n: {g: c for g, c in m.split.items() if c} for n, m in ours.named_modules()
             if hasattr(m, "split")}
    assert convs == {n: {g: c for g, c in s.items() if c} for n, s in LAYOUT.items()}
    for m in ours.modules():
        if hasattr(m, "impl"):
            m.impl = "direct"  # one conv per group, as the official op
    base = theirs.module.base_model
    with torch.no_grad():
        # single blocks: layer1.0 (projection, a 1-channel k×1×1 group), layer2.0 (stride 2),
        # layer3.1 (groups concatenated in another order than ours)
        for name, c_in, side in (("layer1.0", 64, 9), ("layer2.0", 256, 9), ("layer3.1", 1024, 5)):
            x = torch.randn(2, c_in, 3, side, side + 2)
            torch.testing.assert_close(ours.get_submodule(name)(x), base.get_submodule(name)(x),
                                       rtol=1e-4, atol=1e-4, msg=name)
        clip = torch.randn(2, 3, 3, 64, 64)  # (N, C, T, H, W): final maps 2×2
        stacked = clip.transpose(1, 2).reshape(2, 9, 64, 64)  # their loader: (N, T·3, H, W)
        torch.testing.assert_close(ours(clip), theirs.module(stacked), rtol=1e-4, atol=1e-4)


def test_layout_given_by_name_or_object_must_match(released):
    _, _, ckpt = released
    assert load_official(ckpt, layout="CAKES123D_P").config.layout.meta["title"] == \
        "CAKES^P 1,2,3D"
    assert load_official(ckpt, layout=LAYOUT).fc.out_features == 174
    with pytest.raises(ValueError, match=r"layout 'CAKES12D_P' has \{'1xkxk': 32, 'kx1x1': 32\} "
                                         r"at 'layer1.0.conv2', the checkpoint \{'kxkxk': 28, "
                                         r"'1xkxk': 35, 'kx1x1': 1\}"):
        load_official(ckpt, layout="CAKES12D_P")


def test_plain_conv3d_checkpoint_loads_as_the_3d_builder():
    with torch.device("meta"):
        theirs = official(PLAIN_3D * 16, num_classes=5, pool=1)
    sd = {k: torch.randn(v.shape) if v.is_floating_point() else torch.zeros((), dtype=v.dtype)
          for k, v in theirs.state_dict().items()}
    sd = {k: v.abs() + 0.5 if "running_var" in k else v for k, v in sd.items()}
    ours = load_official({"state_dict": sd})
    assert ours.config.builder == "3d" and ours.config.layout is None
    torch.testing.assert_close(ours.layer4[2].conv2.weight,
                               sd["module.base_model.layer4.2.convT.op.0.weight"])
    torch.testing.assert_close(ours.layer4[2].bn2.running_var,
                               sd["module.base_model.layer4.2.convT.op.1.running_var"])


def meta_state(ops=None, **kwargs) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return official(ops or cakes_ops(SPLITS), **kwargs).state_dict()


def meta_2d_resnet() -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return ResNet2d(50).state_dict()


def meta_ours() -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return resnet50_i3d().state_dict()


PLAIN_3D = [lambda p, s: PlainT(p, s, "conv3d")]  # their conv3d op code (I3D baseline)
SUPERNET = [{g: c for g in ("kxkxk", "1xkxk", "kx1x1")} for c in
            [64] * 3 + [128] * 4 + [256] * 6 + [512] * 3]  # cost priority: n·C_out candidates


@pytest.mark.parametrize("make, pattern", [
    (lambda: meta_state(PLAIN_3D * 33, blocks=(3, 4, 23, 3)),
     r"expected ResNet-50 I3D \(bottleneck blocks \[3, 4, 6, 3\]\), got blocks \[3, 4, 23, 3\]"),
    (meta_2d_resnet, r"expected the official TemporalModel's keys .* \(a 2D torchvision "
                     r"ResNet\? use cakes_lite.models.inflate\)"),
    (meta_ours, r"expected the official TemporalModel's keys such as "
                r"'module.base_model.conv1.weight', got e.g. \['conv1.weight'"),
    (lambda: meta_state(cakes_ops(SUPERNET)),
     r"block 'base_model.layer1.0': its sub-kernel groups have 192 output channels, expected 64"),
    (lambda: {**meta_state(), "module.base_model.layer1.0.convT.norm.weight": torch.empty(128)},
     r"block 'base_model.layer1.0': a search supernet"),
    (lambda: meta_state([P3DT] * 16), r"block 'base_model.layer1.0': the official P3D op"),
    (lambda: {"arch": "resnet101", "state_dict": meta_state()},
     r"expected arch 'resnet50', got 'resnet101'"),
    (lambda: {"epoch": 3, "state_dict": [1]}, r"expected a dict with a 'state_dict' of tensors"),
])
def test_other_architectures_are_refused(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        load_official(make())


def edited(ckpt, drop=(), add=None):
    sd = {k: v for k, v in ckpt["state_dict"].items() if k not in drop}
    return {**ckpt, "state_dict": {**sd, **(add or {})}}


@pytest.mark.parametrize("edit, pattern", [
    (dict(drop=["module.base_model.layer2.1.bn3.running_var"]),
     r"key 'base_model.layer2.1.bn3.running_var': missing \(needed for "
     r"'layer2.1.bn3.running_var'\)"),
    (dict(add={"module.new_fc.weight": torch.zeros(174, 1024)}),
     r"key 'new_fc.weight': expected shape \(174, 2048\) for 'fc.weight', got \(174, 1024\)"),
    (dict(add={"module.base_model.layer4.2.extra": torch.zeros(3)}),
     r"key 'base_model.layer4.2.extra': unexpected for ResNet-50 I3D \(1 unexpected keys"),
    (dict(add={"module.base_model.layer1.1.convT.convs.0.0.weight": torch.zeros(24, 64, 3, 5, 5)}),
     r"key 'base_model.layer1.1.convT.convs.0.0.weight': expected a 3D conv weight with a "
     r"kernel of \('kxkxk', '1xkxk', 'kx1x1'\) \(k = 3\), got shape \(24, 64, 3, 5, 5\)"),
])
def test_missing_misshaped_and_unexpected_keys_are_named(released, edit, pattern):
    _, _, ckpt = released
    with pytest.raises(ValueError, match=pattern):
        load_official(edited(ckpt, **edit))


class NotAWeight:
    pass


def test_files_that_need_unpickling_code_are_refused(tmp_path):
    path = tmp_path / "evil.pth.tar"
    torch.save({"state_dict": {}, "payload": NotAWeight()}, path)
    with pytest.raises(ValueError, match=r"official checkpoint 'evil.pth.tar': expected a "
                                         r"torch.save file readable with weights_only=True"):
        load_official(path)
    with pytest.raises(FileNotFoundError):
        load_official(tmp_path / "missing.pth.tar")
