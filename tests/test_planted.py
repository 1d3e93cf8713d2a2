"""Planted tasks: the data is built as documented, the score is right, and the search recovers
the planted layout in both modes.

The recovery test searches cakes_lite.data.planted_model (one searchable 3×3×3 layer of 4
channels) over video-123d on each planted task with run_search's defaults (10 epochs, lr 0.1:
γ frozen for the first 2), 3 seeds per (mode, task). It requires, averaged over the seeds,
(1) ≥ 80 % of the channels on a sub-kernel that sees the planted axis (planted_recovery; the
even split scores 2/3 here) and (2) more channels on the axis's own cheap sub-kernel than on
the other axis's (k×1×1 vs 1×k×k), so that "always k×k×k" cannot pass.
"""

from __future__ import annotations

import pytest
import torch

import cakes_lite as cl
from cakes_lite.data.planted import (PLANTED_KINDS, planted_clips, planted_model,
                                     planted_recovery, right_subkernels)

OWN = {"temporal": ("kx1x1", "1xkxk"), "spatial": ("1xkxk", "kx1x1")}  # (own, other axis's)


def search(kind: str, mode: str, seed: int) -> cl.SearchResult:
    x, y = planted_clips(kind, n=256, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32,
                                         shuffle=True, generator=gen)
    torch.manual_seed(seed)
    return cl.run_search(planted_model(), loader, space="video-123d", mode=mode, epochs=10,
                         lr=0.1, seed=seed, progress=False)


@pytest.mark.parametrize("mode", ["performance", "cost"])
def test_search_recovers_the_planted_layout(mode, one_thread):
    for kind in PLANTED_KINDS:
        results = [search(kind, mode, seed) for seed in (0, 1, 2)]
        layouts = [dict(r.layout) for r in results]
        # the supernet learnt the task (chance: 0.25)
        assert all(r.history["accuracy"][-1] > 0.5 for r in results), (kind, layouts)
        share = sum(planted_recovery(r.layout, kind) for r in results) / 3
        assert share >= 0.8, (kind, share, layouts)
        own, other = OWN[kind]
        n_own = sum(r.layout["0"].get(own, 0) for r in results)
        n_other = sum(r.layout["0"].get(other, 0) for r in results)
        assert n_own > n_other, (kind, layouts)


def test_clips_are_built_as_documented():
    x, y = planted_clips("temporal", n=8, frames=8, size=8, noise=0.0, seed=3)
    assert x.shape == (8, 1, 8, 8, 8) and x.dtype == torch.float32
    assert y.tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    # every class visits the same brightness levels (same frame set), in a different order
    levels = x[:, 0, :, 0, 0] / x[:, 0, :, 0, 0].mean(dim=1, keepdim=True)  # (n, T)
    assert torch.allclose(levels.sort(dim=1).values, levels[:1].sort(dim=1).values, atol=1e-5)
    assert not torch.allclose(levels[0], levels[1]) and torch.allclose(levels[0],
                                                                        levels[1].flip(0))
    s, ys = planted_clips("spatial", n=8, size=9, noise=0.0, seed=3)
    assert torch.equal(s, s[:, :, :1].expand_as(s))  # static clips
    assert ys.tolist() == y.tolist()
    again = planted_clips("spatial", n=8, size=9, noise=0.0, seed=3)[0]
    assert torch.equal(s, again) and not torch.equal(s, planted_clips("spatial", n=8, size=9,
                                                                      noise=0.0, seed=4)[0])


@pytest.mark.parametrize("kind,space,right", [
    ("temporal", "video-12d", ("kx1x1",)), ("spatial", "video-12d", ("1xkxk",)),
    ("temporal", "video-123d", ("kxkxk", "kx1x1")), ("spatial", "video-123d", ("kxkxk", "1xkxk")),
])
def test_right_subkernels(kind, space, right):
    assert right_subkernels(kind, space) == right


def test_recovery_score():
    layout = {"0": {"kxkxk": 1, "1xkxk": 2, "kx1x1": 1}, "1": {"kx1x1": 4}}
    assert planted_recovery(layout, "temporal") == pytest.approx(2 / 4)
    assert planted_recovery(layout, "spatial") == pytest.approx(3 / 4)
    assert planted_recovery(layout, "temporal", layers=("0", "1")) == pytest.approx(6 / 8)
    model = planted_model()
    assert planted_recovery(cl.Layout.uniform(model, "video-12d"), "temporal") == 0.5
    assert model(torch.zeros(2, 1, 4, 8, 8)).shape == (2, 4)


@pytest.mark.parametrize("call,match", [
    (lambda: planted_clips("motion"), "kind"),
    (lambda: planted_clips("temporal", n=3), "n"),
    (lambda: planted_clips("temporal", frames=2), "frames"),
    (lambda: planted_clips("spatial", size=5), "size"),
    (lambda: planted_clips("spatial", noise=-0.1), "noise"),
    (lambda: planted_clips("spatial", noise=float("nan")), "noise"),
    (lambda: planted_clips("spatial", seed=-1), "seed"),
    (lambda: planted_model(width=0), "width"),
    (lambda: planted_model(num_classes=1), "num_classes"),
    (lambda: right_subkernels("temporal", ["1xkxk"]), "space"),
    (lambda: right_subkernels("spatial", "video-23d"), "space"),
    (lambda: planted_recovery({"0": {"kx1x1": 4}}, "temporal", layers=("3",)), "layers"),
    (lambda: planted_recovery({"0": {"kx1x1": 4}}, "temporal", layers=()), "layers"),
    (lambda: planted_recovery({"0": {"k": 4}}, "temporal"), "sub-kernel"),
    (lambda: planted_recovery([1, 2], "temporal"), "layout"),
])
def test_bad_arguments_name_themselves(call, match):
    with pytest.raises(ValueError, match=match):
        call()
