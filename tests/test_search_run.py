"""run_search: determinism, history, caller's model untouched, layout usable by shrink()."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cakes_lite as cl
from cakes_lite.train.sync_bn import SyncBatchNorm3d

SHAPE = (2, 4, 6, 6)  # one clip: (C, T, H, W)


def net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(2, 8, 3, padding=1, bias=False), nn.BatchNorm3d(8), nn.ReLU(),
        nn.Conv3d(8, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm3d(8), nn.ReLU(),
        nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(8, 3),
    )


def data(n=24, batch=8):
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(n, *SHAPE, generator=g), torch.randint(0, 3, (n,), generator=g)
    return [(x[i : i + batch], y[i : i + batch]) for i in range(0, n, batch)]


@pytest.mark.parametrize("mode,extra", [("performance", {}), ("cost", {}),
                                        ("cost", {"target": 0.4})])
def test_same_seed_same_result_and_model_untouched(mode, extra):
    model = net()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    calls = []
    kwargs = dict(space="video-123d", mode=mode, epochs=2, lr=0.1, seed=3, progress=False,
                  **extra)
    a = cl.run_search(model, data(), callback=calls.append, **kwargs)
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's RNG stream is not consumed
    b = cl.run_search(model, data(), **kwargs)
    assert a.layout == b.layout and a.history["loss"] == b.history["loss"]
    assert a.history["importance"] == b.history["importance"]
    # the caller's model is not modified
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert isinstance(model[0], nn.Conv3d) and isinstance(model[1], nn.BatchNorm3d)
    # history: one entry per epoch, importance as plain lists per sub-kernel
    assert len(a.history["loss"]) == len(a.history["layout"]) == 2 == len(calls)
    imp = a.history["importance"][-1]
    assert set(imp) == {"0", "3"} and len(imp["3"]["kxkxk"]) == 8
    assert isinstance(imp["3"]["kxkxk"][0], float)
    assert [c["epoch"] for c in calls] == [1, 2]
    # the layout is keyed by the given model's conv names and applies directly
    assert set(a.layout) == {"0", "3"}
    assert a.layout.meta["seed"] == 3 and a.layout.meta["mode"] == mode
    assert cl.shrink(model, a.layout)(torch.randn(1, *SHAPE)).shape == (1, 3)
    assert not a.supernet.training


@pytest.mark.parametrize("mode", ["performance", "cost"])
def test_channels_last_search_is_the_same_run_and_returns_an_ncdhw_supernet(mode):
    """``channels_last=True``: every searched conv sees channels_last_3d batches, the run equals
    the NCDHW run up to float rounding (one epoch: rounding is not yet amplified by SGD at lr
    0.1), and the returned supernet's weights are NCDHW again."""
    seen = []
    runs = {}
    model = net()
    for on in (False, True):
        seen.clear()
        hook = nn.modules.module.register_module_forward_pre_hook(  # training steps' inputs
            lambda m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last_3d)
                                        and not args[0].is_contiguous())
            if isinstance(m, cl.SearchConv3d) and m.training else None)
        try:
            runs[on] = cl.run_search(model, data(), space="video-123d", mode=mode, epochs=1,
                                     warmup_epochs=0, lr=0.1, seed=1, progress=False,
                                     channels_last=on)
        finally:
            hook.remove()
        assert seen and set(seen) == {on}
    a, b = runs[False], runs[True]
    assert a.history["loss"] == pytest.approx(b.history["loss"], rel=1e-4)
    for x, y in zip(a.supernet.state_dict().values(), b.supernet.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-4)
    assert all(p.is_contiguous() for p in b.supernet.parameters())
    assert (a.settings["channels_last"], b.settings["channels_last"]) == (False, True)


def test_training_moves_gamma_and_budget_passes_through():
    res = cl.run_search(net(), data(), space="video-123d", mode="cost", epochs=1, lr=0.1,
                        sparsity=0.05, budget=0.4, seed=0, progress=False)
    assert abs(res.layout.meta["cost_fraction"] / 0.4 - 1) <= 0.02
    imp = res.history["importance"][0]["0"]
    assert len({round(v, 6) for op in imp.values() for v in op}) > 3  # γ were trained


@pytest.mark.parametrize("kwargs,match", [
    ({"mode": "fast"}, "mode"), ({"epochs": 0}, "epochs"), ({"lr": -1.0}, "lr"),
    ({"sparsity": -1.0}, "sparsity"), ({"gamma_lr": 0.0}, "gamma_lr"),
    ({"warmup_epochs": 1}, "warmup_epochs"), ({"warmup_epochs": -1}, "warmup_epochs"),
    ({"sampling_power": -1.0}, "sampling_power"),
])
def test_bad_arguments(kwargs, match):
    args = dict(space="video-123d", mode="performance", epochs=1, progress=False)
    with pytest.raises(ValueError, match=match):
        cl.run_search(net(), data(), **{**args, **kwargs})
    with pytest.raises(ValueError, match="no batches"):
        cl.run_search(net(), [], **args)


@pytest.mark.parametrize("mode", ["performance", "cost"])
def test_history_shows_accuracy_and_gamma_shift_and_warmup_freezes_gamma(mode):
    res = cl.run_search(net(), data(), space="video-123d", mode=mode, epochs=3, warmup_epochs=1,
                        lr=0.1, seed=0, progress=False)
    h = res.history
    assert len(h["accuracy"]) == len(h["gamma_shift"]) == 3
    assert all(0.0 <= a <= 1.0 for a in h["accuracy"])
    assert all(set(shift) == {"0", "3"} for shift in h["gamma_shift"])
    # warm-up epoch: only the weights train, γ (and the L1 on γ) wait
    assert h["gamma_shift"][0] == {"0": 0.0, "3": 0.0}
    assert all(v > 0 for v in h["gamma_shift"][-1].values())
    assert res.layout.meta["warmup_epochs"] == 1 and res.layout.meta["gamma_lr"] > 0


def test_accuracy_counts_argmax_hits():
    # a constant model-independent check: segmentation-shaped logits vs targets
    from cakes_lite.search.monitor import correct as _correct

    logits = torch.tensor([[[2.0, 0.0]], [[0.0, 1.0]]]).permute(0, 2, 1)  # (N=2, K=2, 1)
    assert _correct(logits, torch.tensor([[0], [0]])) == (1, 2)
    assert _correct(torch.randn(3, 4), torch.randn(3, 4)) == (0, 0)  # soft targets: n/a


class Detached(nn.Module):
    """Two searchable convs; the second never reaches the loss (a dead branch)."""

    def __init__(self, dead_first: bool = False):
        super().__init__()
        self.a = nn.Sequential(nn.Conv3d(2, 4, 3, padding=1, bias=False), nn.BatchNorm3d(4))
        self.b = nn.Sequential(nn.Conv3d(2, 4, 3, padding=1, bias=False), nn.BatchNorm3d(4))
        self.head = nn.Linear(4, 3)
        self.dead_first = dead_first

    def forward(self, x):
        y = self.b(x) if self.dead_first else self.a(x)
        return self.head(y.mean(dim=(2, 3, 4)))


def test_layers_without_gradient_warn_and_a_disconnected_search_raises():
    with pytest.warns(UserWarning, match=r"\['b\.0'\].*no gradient"):
        cl.run_search(Detached(), data(), epochs=1, progress=False)

    class NoSearchedLayer(Detached):
        def forward(self, x):
            return self.head(x.mean(dim=(2, 3, 4)).repeat(1, 2))

    with pytest.raises(ValueError, match="no searched layer received a gradient"):
        cl.run_search(NoSearchedLayer(), data(), epochs=1, progress=False)


def test_frozen_importance_raises(monkeypatch):
    import cakes_lite.search.run as run

    real = run.supernet

    def frozen(*args, **kwargs):  # a supernet whose γ cannot train
        sn = real(*args, **kwargs)
        for _, layer in run.search_layers(sn):
            layer.bn.weight.requires_grad_(False)
        return sn

    monkeypatch.setattr(run, "supernet", frozen)
    with pytest.raises(ValueError, match="not trainable"):
        cl.run_search(net(), data(), epochs=1, progress=False)


def test_frozen_model_warns_but_searches():
    model = net().requires_grad_(False)
    with pytest.warns(UserWarning, match="frozen"):
        res = cl.run_search(model, data(), epochs=2, warmup_epochs=0, progress=False)
    assert max(res.history["gamma_shift"][-1].values()) > 0


def test_default_device_is_the_models():
    res = cl.run_search(net().double(), [(x.double(), y) for x, y in data()], epochs=1,
                        progress=False)
    assert next(res.supernet.parameters()).device.type == "cpu"


def test_importance_proportional_sampling_is_seeded_and_follows_gamma():
    kwargs = dict(space="video-123d", epochs=3, sampling_power=4.0, seed=1, progress=False)
    model = net()
    a, b = cl.run_search(model, data(), **kwargs), cl.run_search(model, data(), **kwargs)
    assert a.layout == b.layout and a.history["loss"] == b.history["loss"]
    assert all(layer.sampling_power == 0.0 for _, layer in cl.search.search_layers(a.supernet))
    layer = cl.SearchConv3d(2, 6, "video-123d")
    with torch.no_grad():
        layer.bn.weight.copy_(torch.tensor([1.0] * 6 + [1e-3] * 12))  # kxkxk dominates
    layer.sampling_power = 4.0
    assert layer.counts(layer.sample()) == {"kxkxk": 6, "1xkxk": 0, "kx1x1": 0}


@pytest.mark.parametrize("mode", ["performance", "cost"])
def test_recipe_options_schedule_and_sync_bn(mode):
    """lr_schedule gets (step, steps per epoch) and scales every group; sync_bn swaps every BN
    (the supernet layers' too) and, in one process, computes what the plain BN computes."""
    seen = []

    def seeded_net() -> nn.Sequential:
        torch.manual_seed(0)
        return net()

    def schedule(step, per_epoch):
        seen.append((step, per_epoch))
        return 0.5

    kwargs = dict(mode=mode, epochs=2, lr=0.1, seed=3, progress=False, warmup_epochs=0)
    plain = cl.run_search(seeded_net(), data(), **kwargs)
    synced = cl.run_search(seeded_net(), data(), sync_bn=True, **kwargs)
    bns = [m for m in synced.supernet.modules() if isinstance(m, nn.BatchNorm3d)]
    assert len(bns) == 2 and all(isinstance(m, SyncBatchNorm3d) for m in bns)
    assert synced.settings["sync_bn"] and synced.settings["world_size"] == 1
    for a, b in zip(plain.supernet.state_dict().values(), synced.supernet.state_dict().values()):
        assert torch.allclose(a.double(), b.double(), atol=1e-5)  # two-pass vs fused BN
    # lr 0.2 at a constant factor 0.5 is lr 0.1 at a constant 1, for weights and γ alike
    halved = cl.run_search(seeded_net(), data(), lr_schedule=schedule, **{**kwargs, "lr": 0.2})
    constant = cl.run_search(seeded_net(), data(), lr_schedule=lambda step, n: 1.0, **kwargs)
    assert seen == [(i, 3) for i in range(6)]
    assert halved.history["loss"] == constant.history["loss"] != plain.history["loss"]
    assert halved.history["importance"] == constant.history["importance"]
    with pytest.raises(ValueError, match="lr_schedule: needs a train_loader with a length"):
        cl.run_search(seeded_net(), iter(data()), lr_schedule=schedule, **kwargs)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("mode, amp", [("performance", "float16"), ("cost", "bfloat16")])
def test_mixed_precision_search_on_cuda(mode, amp):
    """amp= on CUDA (float16 with a gradient scaler, bfloat16 without) ends near the float32
    search: the same layout size and finite losses."""
    torch.manual_seed(0)
    model = net().cuda()
    batches = [(x.cuda(), y.cuda()) for x, y in data()]
    kwargs = dict(mode=mode, epochs=2, lr=0.1, seed=3, progress=False, sync_bn=True)
    full = cl.run_search(model, batches, **kwargs)
    mixed = cl.run_search(model, batches, amp=amp, **kwargs)
    assert all(torch.isfinite(torch.tensor(mixed.history["loss"])))
    assert mixed.layout.keys() == full.layout.keys()
    assert abs(mixed.history["loss"][-1] - full.history["loss"][-1]) < 0.1
