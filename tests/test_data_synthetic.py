"""Something-something-lite: determinism, splits, balance, time-reversal property, learnability."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from cakes_lite.data import CLASSES, REVERSED_PAIRS, SomethingLite, make_clips

PAIR_CLASSES = [c for pair in REVERSED_PAIRS for c in pair]  # labels 2k, 2k+1 form pair k


@pytest.mark.parametrize("frames, size", [(8, 32), (5, (24, 40)), (2, 8)])
def test_shapes_range_and_determinism(frames, size):
    ds = SomethingLite(6, "train", frames=frames, size=size, seed=3)
    h, w = (size, size) if isinstance(size, int) else size
    x, y = ds[4]
    assert x.shape == (3, frames, h, w) and x.dtype == torch.float32 and isinstance(y, int)
    assert 0.0 <= x.min() and x.max() <= 1.0
    # sample i is a pure function of (seed, split, i): a new instance and a batch call agree
    again = SomethingLite(6, "train", frames=frames, size=size, seed=3)
    assert torch.equal(again[4][0], x)
    batch, labels = ds.clips([4, 1])
    assert torch.equal(batch[0], x) and labels.tolist() == [y, ds[1][1]]
    # subsets by count: a shorter dataset is a prefix of a longer one
    assert torch.equal(SomethingLite(100, "train", frames=frames, size=size, seed=3)[4][0], x)


def test_splits_and_seeds_differ():
    clips = {(s, seed): SomethingLite(4, s, seed=seed).tensors()[0]
             for s in ("train", "val", "test") for seed in (0, 1)}
    keys = list(clips)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            # same labels (i % K) but never the same clip
            assert (clips[a] - clips[b]).abs().flatten(1).amax(1).min() > 0.1, (a, b)


def test_labels_balanced_for_any_count():
    for n in (13, 50, 131):
        ds = SomethingLite(n)
        counts = torch.bincount(torch.tensor([ds.label(i) for i in range(n)]), minlength=13)
        assert counts.max() - counts.min() <= 1
    x, y = SomethingLite(26).tensors()
    assert x.shape == (26, 3, 8, 32, 32) and torch.equal(torch.bincount(y), torch.full((13,), 2))


def test_classes_subset_and_reversed_pairs():
    ds = SomethingLite(8, classes=["grow", "static_disk", "shrink", "move_left"])
    assert ds.classes == ["grow", "static_disk", "shrink", "move_left"]
    assert ds.reversed_pairs == [(0, 2)]  # move_right absent: no pair for move_left
    full = SomethingLite(1)
    assert len(full.classes) == len(CLASSES) == 13 and len(full.reversed_pairs) == 5
    for a, b in full.reversed_pairs:
        assert (full.classes[a], full.classes[b]) in REVERSED_PAIRS


@pytest.mark.parametrize("pair", REVERSED_PAIRS)
def test_reversed_member_is_the_same_clip_played_backwards(pair):
    """The exact property behind "order-blind models are at chance within a pair"."""
    keys = [(7, k) for k in range(4)]
    a = make_clips([pair[0]] * 4, keys)
    b = make_clips([pair[1]] * 4, keys)
    assert torch.equal(a.flip(2), b)
    assert not torch.equal(a, b)  # the motion is really not time-symmetric
    # frame sets are identical, so any time-average is identical
    assert torch.allclose(a.mean(2), b.mean(2))


def test_classes_show_their_motion():
    """Move classes shift colour mass; grow increases the target area (distractor off)."""
    keys = [(11, k) for k in range(16)]
    def target(names):  # (N, T, H, W) mask of saturated (target-coloured) pixels
        x = make_clips(names, keys, noise=0.0, distractor=False)
        sat = x.amax(1) - x.amin(1)
        return (sat > 0.55).float()
    for name, axis, sign in [("move_right", 3, 1), ("move_down", 2, 1), ("move_left", 3, -1)]:
        m = target([name] * 16)
        coord = torch.arange(m.shape[axis], dtype=torch.float32)
        other = 2 if axis == 3 else 3
        centre = (m.sum(other) * coord).sum(-1) / m.sum((2, 3)).clamp(min=1)  # (N, T)
        assert (sign * (centre[:, -1] - centre[:, 0]) > 4).float().mean() > 0.8, name
    area = target(["grow"] * 16).sum((2, 3))
    assert (area[:, -1] > 2 * area[:, 0]).float().mean() > 0.8


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        SomethingLite(4, split="dev")
    with pytest.raises(ValueError, match="classes"):
        SomethingLite(4, classes=["fly"])
    with pytest.raises(ValueError, match="frames"):
        SomethingLite(4, frames=1)
    with pytest.raises(ValueError, match="size"):
        SomethingLite(4, size=4)
    with pytest.raises(IndexError):
        SomethingLite(4)[4]


def test_generation_speed():
    start = time.perf_counter()
    x, _ = SomethingLite(250, seed=5).tensors()
    elapsed = time.perf_counter() - start
    assert x.shape[0] == 250
    assert elapsed < 5.0, f"250 clips took {elapsed:.1f} s (target ~1,000 clips in a few s)"


def _tiny_3d(temporal: int, width: int = 8) -> nn.Module:
    k = (temporal, 3, 3)
    pad = (temporal // 2, 1, 1)
    return nn.Sequential(
        nn.Conv3d(3, width, k, padding=pad), nn.BatchNorm3d(width), nn.ReLU(),
        nn.MaxPool3d((1, 2, 2)),
        nn.Conv3d(width, 2 * width, k, padding=pad), nn.BatchNorm3d(2 * width), nn.ReLU(),
        nn.MaxPool3d((1, 2, 2)),
        nn.Conv3d(2 * width, 2 * width, k, padding=pad), nn.BatchNorm3d(2 * width), nn.ReLU(),
        nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(2 * width, len(PAIR_CLASSES)),
    )


def _within_pair_accuracy(model, x, y, transform) -> float:
    """Accuracy of choosing between the two members of each sample's own pair."""
    model.eval()
    with torch.no_grad():
        logits = model(transform(x))
    first = (y // 2) * 2
    rows = torch.arange(len(y))
    pick = torch.stack([logits[rows, first], logits[rows, first + 1]], 1).argmax(1)
    return (pick == y % 2).float().mean().item()


def _train(model, x, y, transform, epochs: int, lr: float = 1e-2):
    opt = torch.optim.AdamW(model.parameters(), lr, weight_decay=1e-4)
    steps = epochs * ((len(x) + 31) // 32)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x)).split(32):
            loss = nn.functional.cross_entropy(model(transform(x[idx])), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()


def test_order_blind_baseline_at_chance_while_3d_learns():
    """A frame-order-blind model (same net on the time-averaged clip) stays near 50% within the
    reversed pairs; the same-sized full 3D net learns them. 16×16 frames keep this CPU-cheap;
    one thread, because on a busy 2-core machine two threads made these tiny convs ~7× slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        blind_acc, acc_3d = _order_blind_vs_3d()
    finally:
        torch.set_num_threads(threads)
    print(f"within-pair accuracy: order-blind {blind_acc:.3f}, 3D {acc_3d:.3f}")
    assert abs(blind_acc - 0.5) < 0.1  # 400 samples: chance ± 4σ
    assert acc_3d > 0.75


def _order_blind_vs_3d() -> tuple[float, float]:
    torch.manual_seed(0)
    x, y = SomethingLite(800, "train", size=16, classes=PAIR_CLASSES).tensors()
    xv, yv = SomethingLite(400, "val", size=16, classes=PAIR_CLASSES).tensors()
    blind = lambda c: c.mean(2, keepdim=True)  # noqa: E731 - (N, 3, 1, H, W)
    same = lambda c: c  # noqa: E731

    blind_model = _tiny_3d(temporal=1)
    _train(blind_model, x, y, blind, epochs=8)
    blind_acc = _within_pair_accuracy(blind_model, xv, yv, blind)

    model_3d = _tiny_3d(temporal=3)
    _train(model_3d, x, y, same, epochs=8)
    return blind_acc, _within_pair_accuracy(model_3d, xv, yv, same)
