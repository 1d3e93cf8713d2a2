"""Analytic MACs/params (cakes_lite.profile) cross-checked against thop and FlopCounterMode.

What the references count differently, and how we compare:

* thop (0.1.1) also counts BatchNorm (2 ops per element, even in eval mode), LeakyReLU, softmax,
  average pooling and upsampling; we count those as 0 MACs. So we compare thop per module, on the
  weight layers only, and check that our non-weight layers are 0.
* thop counts a ConvTranspose like a forward conv (output elements × C_in × |kernel|); the true
  MACs are input elements × C_out × |kernel|, which agree only when input and output have the
  same spatial size (stride 1, "same" padding). We compare transposed convs with thop at stride 1
  and with FlopCounterMode (which counts them right) at stride 2 as well.
* thop hooks CAKESConv3d only through ``custom_ops`` (it calls F.conv3d itself); the custom op
  below counts each group with thop's own conv formula, independently of our code.
* thop leaves ``total_ops`` buffers on modules without a rule and reports 0 params for a bare
  top-level module, so it always gets a ``copy.deepcopy``.
* FlopCounterMode counts FLOPs = 2 × MACs of conv / matmul ops only (no BN, no bias adds).
"""

from __future__ import annotations

import copy

import pytest
import thop
import torch
from thop.vision.calc_func import calculate_conv2d_flops
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import cakes_lite as cl

WEIGHT_TYPES = (nn.Conv3d, nn.Conv2d, nn.ConvTranspose3d, nn.Linear, cl.CAKESConv3d)


def thop_cakes(m: cl.CAKESConv3d, inputs: tuple, out: torch.Tensor) -> None:
    """thop custom op: each sub-kernel group is a conv with thop's own MAC formula."""
    for w in m.weights.values():
        m.total_ops += calculate_conv2d_flops(
            input_size=list(inputs[0].shape),
            output_size=[out.shape[0], w.shape[0], *out.shape[2:]],
            kernel_size=list(w.shape), groups=1)


def thop_per_module(model: nn.Module, x: torch.Tensor) -> tuple[float, dict[str, float]]:
    """thop's total and per-module ops (MACs) by qualified name, on a deepcopy."""
    total, _, tree = thop.profile(copy.deepcopy(model), (x,),
                                  custom_ops={cl.CAKESConv3d: thop_cakes},
                                  verbose=False, ret_layer_info=True)
    flat: dict[str, float] = {"": total}

    def walk(node: dict, prefix: str) -> None:
        for name, (ops, _, children) in node.items():
            flat[prefix + name] = ops
            walk(children, prefix + name + ".")

    walk(tree, "")
    return total, flat


def flop_counter(model: nn.Module, x: torch.Tensor) -> tuple[int, dict[str, int]]:
    """FlopCounterMode's total and per-module FLOPs by qualified name ("" = the model)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    root = type(model).__name__
    per = {}
    for key, ops in counter.get_flop_counts().items():
        if key == root:
            per[""] = sum(ops.values())
        elif key.startswith(root + "."):
            per[key[len(root) + 1 :]] = sum(ops.values())
    return counter.get_total_flops(), per


def qualified(model: nn.Module, row: cl.cost.LayerCost) -> str:
    """Row name as in named_modules(): profile() names a bare top-level module by its type."""
    return "" if row.name == type(model).__name__ and len(list(model.modules())) <= 2 else row.name


def check_against_references(model: nn.Module, shape: tuple[int, ...], thop_ok=True) -> cl.Profile:
    model.eval()
    # in eval mode a CAKES layer may run the dense plan (the same function at the parent's MACs)
    # when it times faster; the counters must see the layer's own sub-kernel arithmetic
    for m in model.modules():
        if isinstance(m, cl.CAKESConv3d):
            m.allow_dense = False
    prof = cl.profile(model, shape)
    x = torch.randn(shape)
    for r in prof.layers:
        r.name = qualified(model, r)
    weight_rows = [r for r in prof.layers if isinstance(model.get_submodule(r.name), WEIGHT_TYPES)]
    assert weight_rows, "nothing to compare"
    assert all(r.macs > 0 for r in weight_rows)
    assert sum(r.macs for r in weight_rows) == prof.macs  # everything else counts 0 MACs
    assert prof.params == sum(p.numel() for p in model.parameters())

    flops, flops_per = flop_counter(model, x)
    assert flops == 2 * prof.macs
    for r in weight_rows:
        assert flops_per.get(r.name, 0) == 2 * r.macs, r.name

    if thop_ok:
        _, thop_per = thop_per_module(model, x)
        for r in weight_rows:
            assert thop_per[r.name] == r.macs, r.name
    return prof


SINGLE_LAYERS = {
    "conv3d": lambda: nn.Conv3d(4, 6, 3, stride=(1, 2, 2), padding=1, bias=True),
    "conv3d-groups": lambda: nn.Conv3d(4, 6, (3, 1, 5), padding=(1, 0, 2), groups=2),
    "conv3d-k5-s2": lambda: nn.Conv3d(4, 6, 5, stride=2, padding=2),
    "linear": lambda: nn.Linear(7, 5),
    "conv-transpose3d": lambda: nn.ConvTranspose3d(4, 6, 3, stride=1, padding=1),
    **{f"cakes-{s}": (lambda s=s: cl.CAKESConv3d(4, cl.kernels.even_split(7, s), 3, 2, True))
       for s in cl.SPACES},
    "cakes-with-empty-group-and-1x1x1": lambda: cl.CAKESConv3d(
        4, {"kxkxk": 0, "1xkxk": 3, "1x1x1": 2}, 5, (1, 2, 2)),
    **{f"builder-{b}": (lambda b=b: cl.get_builder(b)(4, 6, stride=(1, 2, 2)))
       for b in list(cl.BUILDERS) + ["cakes:volume-all"]},
}


@pytest.mark.parametrize("name", list(SINGLE_LAYERS))
def test_macs_equal_thop_and_flop_counter(name):
    shape = (2, 4, 5, 7, 6) if name != "linear" else (2, 3, 7)
    check_against_references(SINGLE_LAYERS[name](), shape)


def test_conv_transpose_with_stride_matches_flop_counter():
    # thop counts per output element here (8× too many for stride 2); see the module docstring
    layer = nn.ConvTranspose3d(4, 6, 2, stride=2)
    prof = check_against_references(layer, (1, 4, 3, 4, 5), thop_ok=False)
    assert prof.macs == 1 * 4 * 3 * 4 * 5 * 6 * 8


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv3d(3, 8, 3, padding=1, bias=False), nn.BatchNorm3d(8),
                                  nn.ReLU(inplace=True))
        self.blocks = nn.ModuleList([
            cl.r2plus1d(8, 8, stride=(1, 2, 2)),
            cl.CAKESConv3d(8, {"kxkxk": 4, "1xkxk": 6, "kx1x1": 6}, stride=2, bias=True),
            cl.csn(16, 16),
        ])
        self.up = nn.ConvTranspose3d(16, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.fc(self.pool(self.up(x)).flatten(1))


def test_whole_network_macs_equal_references_and_hand_count():
    net = SmallNet()
    prof = check_against_references(net, (1, 3, 4, 8, 8))
    conv_weight = prof.layer("blocks.1")
    # 16 output channels at (2, 2, 2) voxels: Σ_g n_g · C_in · |kernel_g| per voxel
    assert conv_weight.macs == 8 * (4 * 8 * 27 + 6 * 8 * 9 + 6 * 8 * 3)
    assert prof.layer("stem.1").macs == 0 and prof.layer("pool").macs == 0


@pytest.mark.parametrize(
    "module, shape, macs",
    [
        (nn.Conv3d(4, 8, 3, stride=2, padding=1), (1, 4, 5, 6, 7), 8 * 3 * 3 * 4 * 4 * 27),
        (cl.CAKESConv3d(4, {"kxkxk": 2, "1xkxk": 3, "kx1x1": 3}), (1, 4, 4, 4, 4),
         64 * (2 * 4 * 27 + 3 * 4 * 9 + 3 * 4 * 3)),
        (nn.Linear(10, 3), (4, 10), 4 * 3 * 10),
    ],
)
def test_hand_counted_macs_and_bare_module_params(module, shape, macs):
    prof = cl.profile(module, shape)
    assert prof.macs == macs and prof.flops == 2 * macs
    # unlike thop, a bare top-level module reports its parameters
    assert prof.params == sum(p.numel() for p in module.parameters()) > 0
    assert prof.layers[0].name == type(module).__name__


def test_profile_leaves_modes_state_and_hooks_untouched():
    net = SmallNet().train()
    net.stem[1].eval()  # e.g. a frozen BN inside a training model
    with torch.no_grad():
        net.stem[1].running_mean.uniform_()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    modes = {n: m.training for n, m in net.named_modules()}
    cl.profile(net, (1, 3, 4, 8, 8))
    assert {n: m.training for n, m in net.named_modules()} == modes
    after = net.state_dict()
    assert after.keys() == before.keys()  # no thop-style total_ops buffers
    assert all(torch.equal(after[k], v) for k, v in before.items())  # BN stats not updated
    assert not any(m._forward_hooks for m in net.modules())


def test_module_can_declare_its_own_macs():
    class Declared(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = nn.Conv3d(2, 2, 3, padding=1)

        def forward(self, x):
            return self.inner(x)

        def cakes_macs(self, inputs, output):
            return 7

    net = nn.Sequential(Declared(), nn.Conv3d(2, 1, 1))
    prof = cl.profile(net, (1, 2, 2, 2, 2))
    assert [(r.name, r.macs) for r in prof.layers] == [("0", 7), ("1", 8 * 2)]
    with pytest.raises(KeyError, match="0.inner"):
        prof.layer("0.inner")


@pytest.mark.parametrize("shape", [(), (1, 0, 3), (1, 2.5), "1,2"])
def test_profile_rejects_bad_input_shape(shape):
    with pytest.raises(ValueError, match="input_shape"):
        cl.profile(nn.Conv3d(2, 2, 1), shape)


def test_profile_rows_name_the_plan_each_cakes_layer_ran():
    layer = cl.CAKESConv3d(2, {"kxkxk": 1, "1xkxk": 1}, plan="fold")
    row = cl.profile(nn.Sequential(layer, nn.ReLU()), (1, 2, 3, 4, 4)).layers[0]
    assert row.type == "CAKESConv3d" and row.plan == "fold"
