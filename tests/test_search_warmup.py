"""run_search's weight warm-up really freezes γ, no L1 runs in it, and the search says what ran.

During the warm-up γ must be left out of the optimiser step: an lr of 0 is not enough, SGD's
momentum buffer would still collect the warm-up's gradients and apply them once γ trains. The
L1 step on γ is recorded by a stand-in for ``sparsity_step`` and must not run before the
warm-up ends.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cakes_lite as cl
import cakes_lite.search.steps as steps
from cakes_lite.search import search_layers
from cakes_lite.search.run import default_warmup

SHAPE = (2, 4, 6, 6)  # one clip: (C, T, H, W)


def net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(2, 8, 3, padding=1, bias=False), nn.BatchNorm3d(8), nn.ReLU(),
        nn.Conv3d(8, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm3d(8), nn.ReLU(),
        nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(8, 3),
    )


def data(n=24, batch=8, learnable=False):
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(n, *SHAPE, generator=g), torch.randint(0, 3, (n,), generator=g)
    if learnable:  # the label is the sign pattern of the clip's mean: easy to learn
        x[:, 0] += 2.0 * (y.view(-1, 1, 1, 1) - 1).float()
    return [(x[i : i + batch], y[i : i + batch]) for i in range(0, n, batch)]


class RecordingSGD(torch.optim.SGD):
    made: list[torch.optim.SGD] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        RecordingSGD.made.append(self)


@pytest.mark.parametrize("mode", ["performance", "cost"])
def test_warmup_leaves_gamma_and_its_momentum_untouched_and_runs_no_l1(mode, monkeypatch,
                                                                      one_thread):
    RecordingSGD.made.clear()
    monkeypatch.setattr(torch.optim, "SGD", RecordingSGD)
    l1_calls = []  # (global step, s) of every L1 step the search ran
    real = steps.sparsity_step

    def recorded(model, s, *args, **kwargs):
        l1_calls.append((hook_ctx[0].step, s))
        return real(model, s, *args, **kwargs)

    monkeypatch.setattr(steps, "sparsity_step", recorded)
    hook_ctx = []
    real_init = steps.SearchStepHook.__init__

    def init(self, ctx, *args, **kwargs):
        hook_ctx.append(ctx)
        real_init(self, ctx, *args, **kwargs)

    monkeypatch.setattr(steps.SearchStepHook, "__init__", init)
    snapshots = []

    def callback(info):
        sn = info["supernet"]
        opt = RecordingSGD.made[-1]
        gammas = [layer.bn.weight for _, layer in search_layers(sn)]
        snapshots.append(([g.detach().clone() for g in gammas],
                          [opt.state.get(g, {}).get("momentum_buffer") for g in gammas]))

    kwargs = dict(space="video-123d", mode=mode, epochs=3, warmup_epochs=2, lr=0.1, seed=0,
                  sparsity=1e-2, progress=False, callback=callback)
    start = [layer.bn.weight.detach().clone()
             for _, layer in search_layers(cl.supernet(net(), "video-123d", mode))]
    with pytest.warns(UserWarning):  # random labels: the verdict warns (tested below)
        res = cl.run_search(net(), data(), **kwargs)
    steps_per_epoch = 3
    # γ exactly at its start value and no momentum buffer through both warm-up epochs
    for gammas, buffers in snapshots[:2]:
        assert all(torch.equal(g, s) for g, s in zip(gammas, start))
        assert all(b is None for b in buffers)
    # then γ trains (it moves and has a momentum buffer)
    gammas, buffers = snapshots[2]
    assert all(not torch.equal(g, s) for g, s in zip(gammas, start))
    assert all(b is not None and bool(b.abs().sum() > 0) for b in buffers)
    # the L1 step ran on every step after the warm-up and never before
    assert [step for step, _ in l1_calls] == list(range(2 * steps_per_epoch, 3 * steps_per_epoch))
    assert all(s == 1e-2 for _, s in l1_calls)
    # ... and the result says so
    h = res.history
    assert h["gamma_trained"] == [False, False, True]
    assert h["l1_steps"] == [0, 0, steps_per_epoch] and h["sparsity"] == [0.0, 0.0, 1e-2]
    assert res.settings["gamma_frozen_steps"] == 2 * steps_per_epoch
    assert res.settings["l1_steps"] == steps_per_epoch == res.layout.meta["l1_steps"]
    assert res.settings["warmup_epochs"] == 2 and not res.settings["warmup_default"]
    assert res.settings["sampling"] == "uniform" and h["sampling_power"] == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("epochs,warm", [(1, 0), (2, 1), (3, 1), (7, 1), (8, 2), (12, 3)])
def test_default_warmup_is_at_least_one_epoch_from_two_on(epochs, warm):
    assert default_warmup(epochs) == warm


def test_short_searches_get_a_warmup_and_a_one_epoch_search_says_it_has_none(one_thread):
    res = cl.run_search(net(), data(learnable=True), epochs=2, lr=0.1, progress=False)
    assert res.settings["warmup_epochs"] == 1 and res.settings["warmup_default"]
    assert res.history["gamma_trained"] == [False, True]
    with pytest.warns(UserWarning, match="1-epoch search has no weight warm-up"):
        res = cl.run_search(net(), data(learnable=True), epochs=1, progress=False)
    assert res.settings["warmup_epochs"] == 0 and res.history["gamma_trained"] == [True]


def test_a_search_that_learnt_nothing_says_so_in_one_line(one_thread):
    # random labels, 2 epochs: the supernet stays at chance and |γ| hardly moves
    with pytest.warns(UserWarning, match="near chance") as caught:
        res = cl.run_search(net(), data(), epochs=2, lr=0.01, progress=False)
    assert res.warning is not None and "\n" not in res.warning
    assert "near chance" in res.warning and "barely moved" in res.warning
    assert any(str(w.message) == res.warning for w in caught)
    assert max(res.settings["gamma_moved"].values()) < 0.005


def test_a_search_that_learnt_has_no_warning(one_thread):
    res = cl.run_search(net(), data(learnable=True), epochs=4, lr=0.3, mode="cost",
                        progress=False)
    assert res.history["accuracy"][-1] > 0.8
    assert res.warning is None, res.warning
