"""Planted tasks: the data is built as documented, the score is right, the search recovers the
planted layout in both modes, and removing the candidates of highest |γ| hurts the supernet far
more than removing those of lowest |γ|.

The searches (``planted_search``: planted_model, one searchable 3×3×3 layer of 4 channels,
video-123d, run_search's defaults — 10 epochs at lr 0.1, γ left out of the first 2) run once
per (mode, task, seed 0–2) for the whole module. Recovery requires, averaged over the seeds,
(1) ≥ 80 % of the channels on a sub-kernel that sees the planted axis (planted_recovery; the
even split scores 2/3 here) and (2) more channels on the axis's own cheap sub-kernel than on
the other axis's (k×1×1 vs 1×k×k), so that "always k×k×k" cannot pass.

Ablation (``cakes_lite.search.ablate``, a quarter of the 12 candidates removed, scored on the
searched clips): measured with this recipe, the loss rose by 0.05–2.3 nats when the top-|γ|
candidates were removed and by 0.00 (performance priority: they are no channel's best) to
0.09 (cost priority) when the bottom ones were; the smallest mean gap over 3 seeds was 0.084
(performance, spatial). The test asks for half of that, 0.04 nats, in every (mode, task), the
top above the bottom in every seed and above random removals on average.
"""

from __future__ import annotations

import pytest
import torch

import cakes_lite as cl
from cakes_lite.data.planted import (PLANTED_KINDS, planted_clips, planted_model,
                                     planted_recovery, planted_search, right_subkernels)
from cakes_lite.search import ablate

OWN = {"temporal": ("kx1x1", "1xkxk"), "spatial": ("1xkxk", "kx1x1")}  # (own, other axis's)
SEEDS = (0, 1, 2)
MODES = ("performance", "cost")
#: smallest mean (top − bottom) loss increase to accept: half the smallest one measured
ABLATION_MARGIN = 0.04


@pytest.fixture(scope="module")
def searches() -> dict[tuple[str, str, int], cl.SearchResult]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # validated on 1 thread (CPU results depend on the thread count)
    try:
        return {(mode, kind, seed): planted_search(kind, mode, seed)
                for mode in MODES for kind in PLANTED_KINDS for seed in SEEDS}
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("mode", MODES)
def test_search_recovers_the_planted_layout(mode, searches):
    for kind in PLANTED_KINDS:
        results = [searches[mode, kind, seed] for seed in SEEDS]
        layouts = [dict(r.layout) for r in results]
        # the supernet learnt the task (chance: 0.25)
        assert all(r.history["accuracy"][-1] > 0.5 for r in results), (kind, layouts)
        share = sum(planted_recovery(r.layout, kind) for r in results) / 3
        assert share >= 0.8, (kind, share, layouts)
        own, other = OWN[kind]
        n_own = sum(r.layout["0"].get(own, 0) for r in results)
        n_other = sum(r.layout["0"].get(other, 0) for r in results)
        assert n_own > n_other, (kind, layouts)


@pytest.mark.parametrize("mode", MODES)
def test_removing_top_gamma_candidates_hurts_more_than_bottom(mode, searches, one_thread):
    for kind in PLANTED_KINDS:
        rises = []
        for seed in SEEDS:
            x, y = planted_clips(kind, n=256, seed=seed)  # the clips the search saw
            batches = [(x[i : i + 64], y[i : i + 64]) for i in range(0, len(x), 64)]
            result = ablate(searches[mode, kind, seed].supernet, batches, fraction=0.25,
                            seed=seed)
            rises.append(result.increase())
        gaps = [r["top"] - r["bottom"] for r in rises]
        assert all(g > 0 for g in gaps), (kind, rises)
        assert sum(gaps) / len(gaps) >= ABLATION_MARGIN, (kind, rises)
        assert sum(r["top"] for r in rises) > sum(r["random"] for r in rises), (kind, rises)


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
