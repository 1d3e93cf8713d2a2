"""Training: schedule, metrics, loss goes down, resume equivalence, NaN stop, checkpoints."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

from cakes_lite import CAKESConv3d, Layout, shrink
from cakes_lite.models import resnet3d_tiny, unet3d_tiny
from cakes_lite.train import (
    NonFiniteLossError,
    default_param_groups,
    dice_counts,
    dice_from_counts,
    dice_per_class,
    evaluate,
    fit,
    load_checkpoint,
    mean_foreground,
    read_checkpoint_info,
    save_checkpoint,
    warmup_cosine,
)
from cakes_lite.train import checkpoint as ckpt_module

TINY = {"widths": [8, 8, 16], "stem_width": 8}


pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py


def video_data(n=24, classes=3, seed=0):
    """Clips whose class sets the mean brightness of one colour channel (easy to learn)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = 0.5 * torch.randn(n, 3, 4, 12, 12, generator=g)
    x[torch.arange(n), y] += 1.0
    return TensorDataset(x, y)


def loader(ds, batch_size=8, shuffle=True):
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle)


def small_resnet(dropout=0.0):
    torch.manual_seed(0)
    return resnet3d_tiny(num_classes=3, dropout=dropout, **TINY)


@pytest.mark.parametrize("step, total, warmup, m, expected", [
    (0, 10, 4, 0.0, 0.25),  # linear warm-up from lr/warmup
    (3, 10, 4, 0.0, 1.0),  # warm-up reaches the peak
    (4, 10, 4, 0.0, 1.0),  # cosine starts at the peak
    (7, 10, 4, 0.0, 0.5),  # half-way down the cosine
    (10, 10, 4, 0.1, 0.1),  # ends at the floor
    (0, 10, 0, 0.0, 1.0),  # no warm-up
])
def test_warmup_cosine(step, total, warmup, m, expected):
    assert warmup_cosine(step, total, warmup, m) == pytest.approx(expected)


def test_dice_and_top1_metrics():
    # 1 sample of 2×1×1 voxels… as (N, C, D, H, W) logits over 3 classes
    target = torch.tensor([[[[0, 1, 1, 1]]]])  # (1, 1, 1, 4)
    pred = torch.tensor([0, 1, 0, 0])
    logits = torch.nn.functional.one_hot(pred, 3).T.reshape(1, 3, 1, 1, 4).float()
    dice = dice_from_counts(dice_counts(logits, target, 3))
    assert dice[0] == pytest.approx(2 * 1 / (3 + 1))  # |P|=3, |G|=1, |P∩G|=1
    assert dice[1] == pytest.approx(2 * 1 / (1 + 3))
    assert math.isnan(dice[2])  # class 2 absent from both
    assert mean_foreground(dice) == pytest.approx(0.5)  # NaN ignored, background excluded


@pytest.mark.parametrize("as_numpy", [False, True])
def test_dice_per_class_matches_training_counts_and_marks_absent_classes_nan(as_numpy):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 3, 5, 5, generator=g)
    target = torch.randint(0, 3, (2, 3, 5, 5), generator=g)  # class 3 never in the truth
    pred = logits.argmax(dim=1)
    pred[pred == 3] = 0  # … nor in the prediction: absent from both
    logits = torch.nn.functional.one_hot(pred, 4).movedim(-1, 1).float()
    a, b = (pred.numpy(), target.numpy()) if as_numpy else (pred, target)
    dice = dice_per_class(a, b, 4)
    assert dice[:3] == dice_from_counts(dice_counts(logits, target, 4))[:3]  # the same numbers
    for c in range(3):
        p, t = pred == c, target == c
        assert dice[c] == pytest.approx(2 * int((p & t).sum()) / int(p.sum() + t.sum()))
    assert math.isnan(dice[3])  # absent from both: NaN, left out of the mean
    assert mean_foreground(dice) == pytest.approx((dice[1] + dice[2]) / 2)
    with pytest.raises(ValueError, match="target: expected 150 labels"):
        dice_per_class(pred, target[:1], 4)


def test_one_param_group_rule_for_search_and_training():
    from cakes_lite.search import param_groups

    assert param_groups is default_param_groups
    net = torch.nn.Sequential(torch.nn.Conv3d(2, 4, 3), torch.nn.BatchNorm3d(4),
                              torch.nn.Linear(4, 2))
    net[2].weight.requires_grad_(False)  # frozen: in neither group
    decay, no_decay = default_param_groups(net)
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 1e-4
    assert [p.shape for p in decay["params"]] == [(4, 2, 3, 3, 3)]
    assert [p.shape for p in no_decay["params"]] == [(4,), (4,), (4,), (2,)]


def test_fit_reduces_loss_and_reports_metrics():
    ds = video_data()
    result = fit(small_resnet(), loader(ds), loader(ds, shuffle=False), epochs=4, lr=5e-3,
                 progress=False)
    h = result.history
    assert [r["epoch"] for r in h] == [1, 2, 3, 4] and h[-1]["step"] == 12
    assert h[-1]["train_loss"] < 0.7 * h[0]["train_loss"]
    assert h[-1]["val_top1"] > 0.6 and h[-1]["val_n"] == len(ds)
    assert evaluate(result.model, loader(ds, shuffle=False))["top1"] == h[-1]["val_top1"]


def test_channels_last_fit_trains_the_same_function_in_channels_last_memory(monkeypatch):
    """``channels_last=True``: 5D weights and the batches the model sees are channels_last_3d,
    and the run equals the NCDHW run up to float rounding (same data order, same steps)."""
    ds = video_data()
    seen = []
    runs = {}
    for cl_on in (False, True):
        model = small_resnet()
        model.register_forward_pre_hook(lambda m, args: seen.append(
            (cl_on, args[0].is_contiguous(memory_format=torch.channels_last_3d))))
        runs[cl_on] = fit(model, loader(ds), epochs=2, lr=5e-3, progress=False,
                          channels_last=cl_on)
    def kernels(run):  # 5D weights of k > 1 (a 1×1×1 kernel is contiguous in both formats)
        return [p for p in run.model.parameters() if p.dim() == 5 and p.shape[2:].numel() > 1]
    assert kernels(runs[True]) and all(
        p.is_contiguous(memory_format=torch.channels_last_3d) and not p.is_contiguous()
        for p in kernels(runs[True]))
    assert all(p.is_contiguous() for p in kernels(runs[False]))
    assert {flag for on, flag in seen if on} == {True}
    assert {flag for on, flag in seen if not on} == {False}
    for a, b in zip(runs[False].model.state_dict().values(), runs[True].model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert [r["train_loss"] for r in runs[False].history] == pytest.approx(
        [r["train_loss"] for r in runs[True].history], rel=1e-4)


def test_segmentation_fit_and_per_class_dice():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 1, 8, 8, 8, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 0] > 1).long()  # 3 classes from intensity
    ds = TensorDataset(x, y)
    torch.manual_seed(0)
    model = unet3d_tiny(num_classes=3, widths=[4, 8])
    h = fit(model, loader(ds, 4), loader(ds, 4, False), task="segmentation", epochs=3, lr=1e-2,
            progress=False).history
    assert len(h[-1]["val_dice"]) == 3 and 0.0 <= h[-1]["val_mean_dice"] <= 1.0
    assert h[-1]["train_loss"] < h[0]["train_loss"]


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def own_generator_loader(ds):
    """Shuffled by the loader's own torch.Generator (a common set-up)."""
    return DataLoader(ds, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(5))


def batch_sampler_loader(ds):
    """Shuffled by a generator nested in a batch sampler (loader.sampler is sequential)."""
    sampler = RandomSampler(ds, generator=torch.Generator().manual_seed(5))
    return DataLoader(ds, batch_sampler=BatchSampler(sampler, 8, drop_last=False))


class NoisyData(TensorDataset):
    """Augments with the global torch RNG inside __getitem__, so replaying batches matters."""

    def __getitem__(self, i):
        x, y = super().__getitem__(i)
        return x + 0.1 * torch.randn_like(x), y


class Crash(RuntimeError):
    pass


def crash_at(step):
    """A step_hook that stops the run inside optimiser step ``step`` (a simulated kill)."""
    calls = {"n": 0}

    def hook(model):
        calls["n"] += 1
        if calls["n"] == step:
            raise Crash(step)
    return hook


# 20 samples, batch 8: 3 batches per epoch (the last one short), 3 epochs = 9 steps
@pytest.mark.parametrize("make_loader, optimizer, stop", [
    (loader, "adamw", "epoch"),  # stopped by the callback after epoch 2
    (loader, "sgd", "epoch"),
    (own_generator_loader, "adamw", "epoch"),
    (batch_sampler_loader, "adamw", "epoch"),
    (loader, "adamw", "mid"),  # killed in step 6 = epoch 2, batch 3; checkpoint at batch 2
    (own_generator_loader, "sgd", "mid"),
    (batch_sampler_loader, "adamw", "mid"),
], ids=["default-epoch", "sgd-epoch", "own-gen-epoch", "batch-sampler-epoch", "default-mid",
        "own-gen-mid", "batch-sampler-mid"])
def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path, make_loader, optimizer, stop):
    base = video_data(n=20)
    ds = NoisyData(*base.tensors)
    kw = {"epochs": 3, "lr": 5e-3, "optimizer": optimizer, "warmup_epochs": 1, "seed": 3,
          "progress": False}
    full = fit(small_resnet(dropout=0.3), make_loader(ds), **kw)

    if stop == "epoch":
        part = fit(small_resnet(dropout=0.3), make_loader(ds), checkpoint_dir=tmp_path,
                   callback=lambda rec: rec["epoch"] == 2, **kw)  # True stops the run
        assert len(part.history) == 2
        expect_epoch, expect_batch = 2, 0
    else:
        with pytest.raises(Crash):
            fit(small_resnet(dropout=0.3), make_loader(ds), checkpoint_dir=tmp_path,
                checkpoint_every=2, step_hook=crash_at(6), **kw)
        expect_epoch, expect_batch = 1, 2
    info = read_checkpoint_info(tmp_path)
    assert (info["epoch"], info["batch"]) == (expect_epoch, expect_batch)
    assert info["step"] == 3 * expect_epoch + expect_batch
    torch.manual_seed(123)  # the resumed process starts from some other RNG state
    resumed = fit(small_resnet(dropout=0.3), make_loader(ds), checkpoint_dir=tmp_path,
                  resume=True, **kw)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    assert [r["step"] for r in resumed.history] == [3, 6, 9]
    a, b = _weights(full.model), _weights(resumed.model)
    assert a.keys() == b.keys()
    for k in a:
        # bit-exact, BN statistics included: the resumed run replays the same code path with
        # the same RNG states on the same machine and thread count (one_thread fixture)
        assert torch.equal(a[k], b[k]), k
    for key in ("train_loss", "train_top1", "train_n"):  # mid-epoch: the epoch's sums resumed
        assert resumed.history[-2][key] == full.history[-2][key], key
        assert resumed.history[-1][key] == full.history[-1][key], key


def test_mid_epoch_checkpoint_files_and_bad_checkpoint_every(tmp_path):
    ds = video_data(n=20)
    with pytest.raises(Crash):
        fit(small_resnet(), own_generator_loader(ds), epochs=2, checkpoint_dir=tmp_path,
            checkpoint_every=1, step_hook=crash_at(5), progress=False)
    # steps 1-4 done: epoch 1 complete (3 batches), then batch 1 of epoch 2
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["checkpoint.json", "model-e0001b000001.safetensors",
                     "state-e0001b000001.safetensors"]
    ck = load_checkpoint(tmp_path)
    assert (ck.epoch, ck.batch, ck.info["step"]) == (1, 1, 4) and len(ck.history) == 1
    assert ck.extra["meter"][1] == 8  # the epoch's metric sums so far: 8 samples seen
    with pytest.raises(ValueError, match="generators: the checkpoint stores 1"):
        ck.restore_rng([])
    for bad in (0, 2.5):
        with pytest.raises(ValueError, match="checkpoint_every: expected a positive int"):
            fit(small_resnet(), loader(ds), checkpoint_dir=tmp_path, checkpoint_every=bad,
                progress=False)
    with pytest.raises(ValueError, match="checkpoint_every: .* together with checkpoint_dir"):
        fit(small_resnet(), loader(ds), checkpoint_every=2, progress=False)


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    ds = video_data(n=16)
    calls = {"n": 0}

    def loss_fn(logits, y):
        calls["n"] += 1
        loss = torch.nn.functional.cross_entropy(logits, y)
        return loss * float("nan") if calls["n"] == 4 else loss  # epoch 2, batch 2

    with pytest.raises(NonFiniteLossError, match=r"became nan at epoch 2, batch 2") as err:
        fit(small_resnet(), loader(ds), epochs=3, loss_fn=loss_fn, checkpoint_dir=tmp_path,
            progress=False)
    assert isinstance(err.value, FloatingPointError) and str(tmp_path) in str(err.value)
    ck = load_checkpoint(tmp_path)
    assert ck.epoch == 1
    floats = [v for v in ck.model.state_dict().values() if v.is_floating_point()]
    assert all(torch.isfinite(v).all() for v in floats)


def test_checkpoint_round_trip_with_layout_and_optimizer(tmp_path):
    model = resnet3d_tiny(num_classes=3, **TINY)
    layout = Layout.uniform(model, "video-123d")
    model = shrink(model, layout)  # shrunk after building: the checkpoint must remember
    ds = video_data(n=8)
    result = fit(model, loader(ds), epochs=1, checkpoint_dir=tmp_path, meta={"note": "x"},
                 progress=False)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["checkpoint.json", "model-e0001.safetensors", "state-e0001.safetensors"]
    info = json.loads((tmp_path / "checkpoint.json").read_text())
    assert Layout.from_dict(info["layout"]) == layout and info["meta"]["note"] == "x"

    ck = load_checkpoint(tmp_path)  # rebuilt from JSON, layout re-applied, weights loaded
    assert {n for n, m in ck.model.named_modules() if isinstance(m, CAKESConv3d)} == set(layout)
    x = torch.randn(2, 3, 4, 12, 12)
    for k, v in result.model.state_dict().items():  # stored and loaded bit-exactly
        assert torch.equal(ck.model.state_dict()[k], v), k
    result.model.eval(), ck.model.eval()
    # two module instances may pick different kernels/memory layouts: equal up to rounding
    torch.testing.assert_close(ck.model(x), result.model(x))

    opt = torch.optim.AdamW(default_param_groups(ck.model, 0.05))
    load_checkpoint(tmp_path, ck.model, optimizer=opt)
    state = opt.state_dict()["state"]
    assert len(state) == len(list(ck.model.parameters()))
    assert all(torch.isfinite(s["exp_avg_sq"]).all() for s in state.values())


def test_saving_a_checkpoint_leaves_the_rng_alone(tmp_path):
    """save_checkpoint builds a reference model (random init) to describe the model: that must
    not move the caller's RNG, or a run that checkpoints mid-epoch would train differently."""
    model = resnet3d_tiny(num_classes=3, **TINY)
    gen = torch.Generator().manual_seed(1)
    before = torch.get_rng_state()
    save_checkpoint(tmp_path, model, epoch=1, generators=[gen])
    assert torch.equal(torch.get_rng_state(), before)
    torch.rand(3), torch.rand(2, generator=gen)  # move both on, then restore
    load_checkpoint(tmp_path, restore_rng=True, generators=[gen])
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(gen.get_state(), torch.Generator().manual_seed(1).get_state())


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    model = resnet3d_tiny(num_classes=3, **TINY)
    save_checkpoint(tmp_path, model, epoch=1)
    before = (tmp_path / "checkpoint.json").read_text()

    def broken(tensors, path, *a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_module, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, model, epoch=2)
    assert (tmp_path / "checkpoint.json").read_text() == before  # old checkpoint intact
    assert read_checkpoint_info(tmp_path)["epoch"] == 1
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]
    load_checkpoint(tmp_path)


def test_step_hook_param_groups_and_optimizer_factory():
    ds = video_data(n=16)
    seen = []

    def hook(model):
        seen.append(all(p.grad is not None for p in model.parameters()))

    def factory(groups):
        assert [g["weight_decay"] for g in groups] == [0.1, 0.0]  # no decay on BN γ/β, biases
        return torch.optim.SGD(groups, lr=0.01, momentum=0.9)

    result = fit(small_resnet(), loader(ds), epochs=2, optimizer=factory, weight_decay=0.1,
                 step_hook=hook, progress=False)
    assert seen == [True] * 4 and result.history[-1]["lr"] < 0.01


@pytest.mark.parametrize("kwargs, match", [
    ({"task": "detection"}, "task: expected one of"),
    ({"epochs": 0}, "epochs: expected a positive int"),
    ({"lr": 0.0}, "lr: expected a positive float"),
    ({"optimizer": "lamb"}, "optimizer: expected 'adamw', 'sgd' or a callable"),
])
def test_fit_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit(small_resnet(), loader(video_data(n=8)), progress=False, **kwargs)


def test_resume_from_missing_path_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint.json"):
        fit(small_resnet(), loader(video_data(n=8)), resume=tmp_path / "nope", progress=False)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fit_float16_amp_grad_scaler_and_resume_on_cuda(tmp_path):
    """fp16 autocast with a GradScaler on CUDA; the scaler, CUDA RNG and generator states
    survive a mid-epoch checkpoint. cuDNN/atomics make CUDA runs non-bit-exact, so the resumed
    weights are compared with a tolerance."""
    ds = NoisyData(*video_data(n=20).tensors)
    kw = {"epochs": 2, "lr": 5e-3, "amp": "float16", "device": "cuda", "deterministic": True,
          "seed": 3, "progress": False}
    full = fit(small_resnet(dropout=0.3), own_generator_loader(ds), **kw)
    assert all(p.device.type == "cuda" for p in full.model.parameters())
    assert math.isfinite(full.history[-1]["train_loss"])
    with pytest.raises(Crash):
        fit(small_resnet(dropout=0.3), own_generator_loader(ds), checkpoint_dir=tmp_path,
            checkpoint_every=2, step_hook=crash_at(6), **kw)
    info = read_checkpoint_info(tmp_path)
    assert info["scaler"] and info["scaler"]["scale"] > 0  # a GradScaler was used and stored
    ck = load_checkpoint(tmp_path)
    assert any(k.startswith("rng/cuda/") for k in ck.state)
    resumed = fit(small_resnet(dropout=0.3), own_generator_loader(ds), checkpoint_dir=tmp_path,
                  resume=True, **kw)
    assert [r["step"] for r in resumed.history] == [3, 6]
    a, b = _weights(full.model), _weights(resumed.model)
    for k in a:
        if a[k].is_floating_point():
            torch.testing.assert_close(b[k], a[k], rtol=1e-2, atol=1e-3, msg=k)
