"""ablate(): what it removes, what it reports, and that the supernet comes back untouched.
(Whether removing the top-|γ| candidates hurts more on trained supernets: tests/test_planted.py.)"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cakes_lite as cl
from cakes_lite.search import ablate, search_layers


def supernet(mode: str) -> nn.Module:
    model = nn.Sequential(
        nn.Conv3d(2, 4, 3, padding=1, bias=False), nn.BatchNorm3d(4), nn.ReLU(),
        nn.Conv3d(4, 4, 3, padding=1, bias=False), nn.BatchNorm3d(4), nn.ReLU(),
        nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 3))
    net = cl.supernet(model, "video-123d", mode)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _, layer in search_layers(net):
            layer.bn.weight.copy_(torch.rand(12, generator=g) + 0.1)
            layer.bn.bias.normal_(0, 0.1, generator=g)
            layer.bn.running_var.fill_(1.0)
    return net.eval()


def batches():
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(4, 2, 4, 6, 6, generator=g), torch.randint(0, 3, (4,), generator=g))
            for _ in range(2)]


@pytest.mark.parametrize("mode", ["performance", "cost"])
def test_rows_per_layer_and_network_and_the_supernet_is_restored(mode):
    net = supernet(mode)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    result = ablate(net, batches(), fraction=0.25, seed=3, repeats=2)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert {(r["layer"], r["which"]) for r in result.rows} == {
        (layer, which) for layer in ("0", "3", "all") for which in ("top", "bottom", "random")}
    for r in result.rows:
        assert r["loss_increase"] == pytest.approx(r["loss"] - result.base["loss"])
        assert r["accuracy_drop"] == pytest.approx(result.base["accuracy"] - r["accuracy"])
        assert len(r["draws"]) == (2 if r["which"] == "random" else 1)
    rows = {(r["layer"], r["which"]): r for r in result.rows}
    assert rows["0", "top"]["removed"] == 3 and rows["all", "top"]["removed"] == {"0": 3, "3": 3}
    # the top quarter by |γ| has the largest |γ|, the bottom quarter the smallest
    assert rows["0", "top"]["mean_gamma"] > rows["0", "random"]["mean_gamma"] > rows["0", "bottom"][
        "mean_gamma"]
    assert set(result.increase()) == {"top", "bottom", "random"}
    assert result.increase("0", "accuracy")["top"] == rows["0", "top"]["accuracy_drop"]


def test_removing_candidates_zeroes_their_gamma_only():
    # cost priority: a candidate whose γ is already 0 passes only its β, so removing the bottom
    # (exactly those) changes nothing; performance priority: the bottom candidates are no
    # channel's best, so the eval forward does not use them either
    for mode in ("cost", "performance"):
        net = supernet(mode)
        with torch.no_grad():
            for _, layer in search_layers(net):
                layer.bn.weight[8:] = 0.0  # sub-kernel kx1x1: the 4 smallest |γ| (β kept)
                layer.bn.weight[:8] = torch.linspace(1.0, 2.0, 8)  # no ties among the rest
        result = ablate(net, batches(), fraction=1 / 3, repeats=1)
        assert result.increase("all")["bottom"] == pytest.approx(0.0, abs=1e-6), mode


@pytest.mark.parametrize("kwargs,match", [
    ({"fraction": 0.0}, "fraction"), ({"fraction": 1.0}, "fraction"),
    ({"repeats": 0}, "repeats"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ablate(supernet("cost"), batches(), **kwargs)
    with pytest.raises(ValueError, match="no batches"):
        ablate(supernet("cost"), [])
    with pytest.raises(ValueError, match="SearchConv3d"):
        ablate(nn.Sequential(nn.Linear(2, 2)), batches())
