"""Something-Something V1 pipeline: TSN sampling against the official arithmetic, multi-scale
crop, label-swapping flips, evaluation views, subsets and the error messages, on JPEG frame
folders in the official layout written by the tests."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from cakes_lite.data import SomethingV1
from cakes_lite.data import clip_transforms as ct
from cakes_lite.data import SomethingLite
from cakes_lite.data.fixtures import make_something_fixture, make_something_lite_fixture
from cakes_lite.data.subset import balanced_indices, choose_classes
from cakes_lite.data.tsn import tsn_clip_indices, tsn_train_indices

MEAN, STD = torch.tensor(ct.IMAGENET_MEAN), torch.tensor(ct.IMAGENET_STD)


@pytest.fixture(scope="module")
def ssv1(tmp_path_factory):
    root = tmp_path_factory.mktemp("ssv1")
    return make_something_fixture(root, class_ids=(0, 1, 86, 87), videos_per_class=2,
                                  frames=(9, 14), width=88, height=50, seed=0)


def red_levels(clip: torch.Tensor) -> torch.Tensor:
    """Mean red value (0…255) of each frame of a normalised (3, T, H, W) clip."""
    return (clip[0] * STD[0] + MEAN[0]).mean((1, 2)) * 255


def green_slope(clip: torch.Tensor) -> float:
    """Right minus left mean green: > 0 as written, < 0 when mirrored."""
    g = clip[1]
    w = g.shape[-1]
    return float(g[..., -w // 4:].mean() - g[..., : w // 4].mean())


# ---- TSN sampling: the official arithmetic ------------------------------------------------

def official_val(num_frames: int, t: int) -> list[int]:  # restated from the authors' dataset.py
    tick = num_frames / float(t)
    return [int(tick / 2.0 + tick * x) + 1 for x in range(t)]


@pytest.mark.parametrize("num_frames, t", [(9, 8), (37, 8), (12, 3), (40, 16), (100, 7),
                                           (4, 3), (17, 16), (63, 8)])
def test_tsn_indices_follow_the_official_arithmetic(num_frames, t):
    assert tsn_clip_indices(num_frames, t).tolist() == official_val(num_frames, t)
    avg = num_frames // t
    seen = set()
    for seed in range(60):
        idx = tsn_train_indices(num_frames, t, np.random.default_rng(seed))
        off = idx - 1 - np.arange(t) * avg  # the official: avg·t + randint(avg), then + 1
        assert idx.min() >= 1 and ((off >= 0) & (off < avg)).all()
        seen.update(off.tolist())
    assert seen == set(range(avg))  # every position inside a segment is drawn
    same = [tsn_train_indices(num_frames, t, np.random.default_rng(3)) for _ in range(2)]
    assert np.array_equal(*same)


def test_tsn_short_videos_and_multi_clip():
    # shorter than (or as long as) T: frames repeat evenly instead of the official frame 1
    assert tsn_clip_indices(3, 8).tolist() == [1, 1, 1, 2, 2, 3, 3, 3]
    assert tsn_clip_indices(8, 8).tolist() == list(range(1, 9))
    assert tsn_train_indices(3, 8, np.random.default_rng(0)).tolist() == [1, 1, 1, 2, 2, 3, 3, 3]
    a, b = tsn_clip_indices(40, 4, 0, 2), tsn_clip_indices(40, 4, 1, 2)
    assert a.tolist() == [3, 13, 23, 33] and b.tolist() == [8, 18, 28, 38]  # interleaved
    with pytest.raises(ValueError, match="clip"):
        tsn_clip_indices(40, 4, 2, 2)
    with pytest.raises(ValueError, match="num_frames"):
        tsn_train_indices(0, 4, np.random.default_rng(0))


# ---- crops --------------------------------------------------------------------------------

def test_fixed_offsets_and_multi_scale_boxes():
    assert ct.fixed_crop_offsets(176, 100, 66, 66, more=False) == [
        (0, 0), (108, 0), (0, 32), (108, 32), (54, 16)]
    assert len(ct.fixed_crop_offsets(176, 100, 66, 66)) == 13
    sides = {100: 0, 87: 1, 75: 2, 66: 3}  # int(100 · s) for s in (1, .875, .75, .66)
    boxes = {ct.multi_scale_crop_box(176, 100, 224, np.random.default_rng(s)) for s in range(800)}
    pairs = {(w, h) for _, _, w, h in boxes}
    assert pairs == {(w, h) for w in sides for h in sides if abs(sides[w] - sides[h]) <= 1}
    for left, top, w, h in boxes:
        assert (left, top) in ct.fixed_crop_offsets(176, 100, w, h)
    offsets = {(l, t) for l, t, w, h in boxes if (w, h) == (87, 87)}
    assert offsets == set(ct.fixed_crop_offsets(176, 100, 87, 87))  # all 13 positions used
    # a side within 3 px of the output size snaps to it; max_distort=0 keeps squares
    snapped = {ct.multi_scale_crop_box(300, 226, 224, np.random.default_rng(s), (1.0,), 0)[2:]
               for s in range(5)}
    assert snapped == {(224, 224)}


def test_to_tensor_normalises_with_the_imagenet_statistics():
    arr = np.random.default_rng(0).integers(0, 256, (3, 5, 7, 3), dtype=np.uint8)
    clip = ct.to_tensor([Image.fromarray(a) for a in arr])
    ref = (torch.from_numpy(arr).float() / 255 - MEAN) / STD  # (T, H, W, 3)
    assert clip.shape == (3, 3, 5, 7) and torch.allclose(clip, ref.permute(3, 0, 1, 2), atol=1e-5)


@pytest.mark.parametrize("w, h, crops, expect", [
    (227, 256, 1, [(2, 16)]),
    (455, 256, 3, [(0, 16), (114, 16), (228, 16)]),
    (256, 455, 3, [(16, 0), (16, 114), (16, 228)]),
    (455, 256, 5, [(0, 0), (228, 0), (0, 32), (228, 32), (114, 16)]),
])
def test_eval_crop_offsets(w, h, crops, expect):
    assert ct.eval_crop_offsets(w, h, 224, crops) == expect


# ---- the dataset --------------------------------------------------------------------------

def test_evaluation_clip_reads_the_centre_frames(ssv1):
    ds = SomethingV1(ssv1, "val", frames=4, size=32)
    assert len(ds) == 4 and len(ds.classes) == 174 and not ds.train
    for i in range(len(ds)):
        x, y = ds[i]
        _, count, label, _ = ds.samples[i]
        assert x.shape == (3, 4, 32, 32) and x.dtype == torch.float32 and y == label
        assert ds.frame_numbers(i).tolist() == official_val(count, 4)
        assert torch.allclose(red_levels(x), 8.0 * torch.tensor(official_val(count, 4)),
                              atol=3)
        assert green_slope(x) > 0  # evaluation never mirrors


def test_training_clips_are_seeded_and_flips_swap_pair_labels(ssv1):
    ds = SomethingV1(ssv1, "train", frames=4, size=32, seed=5)
    pair = [i for i, s in enumerate(ds.samples) if s[2] in (86, 87)]
    flipped = kept = 0
    for epoch in range(6):
        ds.set_epoch(epoch)
        for i in pair + [0]:
            x, y = ds[i]
            x2, y2 = ds[i]
            assert torch.equal(x, x2) and y == y2  # a pure function of (seed, epoch, i)
            numbers = ds.frame_numbers(i)
            assert torch.allclose(red_levels(x), 8.0 * torch.tensor(numbers).float(), atol=3)
            label = ds.samples[i][2]
            if green_slope(x) < 0:
                flipped += 1
                assert y == {86: 87, 87: 86}.get(label, label)
            else:
                kept += 1
                assert y == label
    assert flipped > 0 and kept > 0
    ds.set_epoch(0)
    other = SomethingV1(ssv1, "train", frames=4, size=32, seed=6)
    assert any(not torch.equal(ds[i][0], other[i][0]) for i in range(len(ds)))
    none = SomethingV1(ssv1, "train", frames=4, size=32, seed=5, flip_pairs=())
    assert none.flip_pairs == {}


def test_workers_give_the_same_batches(ssv1):
    ds = SomethingV1(ssv1, "train", frames=2, size=16, seed=1)
    batches = [next(iter(DataLoader(ds, batch_size=8, num_workers=w))) for w in (0, 2)]
    assert torch.equal(batches[0][0], batches[1][0])
    assert torch.equal(batches[0][1], batches[1][1])


def test_multi_view_evaluation_items(ssv1):
    ds = SomethingV1(ssv1, "val", frames=4, size=32, clips=2, crops=3)
    x, y = ds[0]
    assert ds.views == 6 and x.shape == (6, 3, 4, 32, 32)
    count = ds.samples[0][1]
    for c in range(2):  # views are clip-major: 3 crops of clip 0, then of clip 1
        expect = 8.0 * torch.tensor(tsn_clip_indices(count, 4, c, 2)).float()
        assert torch.allclose(red_levels(x[3 * c]), expect, atol=3)
    green = [float(v[1].mean()) for v in x[:3]]  # left, centre, right crop of the ramp
    assert green[0] < green[1] < green[2]


def test_class_balanced_subset(ssv1):
    train = SomethingV1(ssv1, "train", frames=2, size=16, subset=(2, 1), seed=1)
    val = SomethingV1(ssv1, "val", frames=2, size=16, subset=(2, 5), seed=1)
    assert train.class_ids == val.class_ids and len(train.classes) == 2
    assert sorted(s[2] for s in train.samples) == [0, 1]  # 1 clip per class, renumbered
    if train.class_ids == [86, 87]:
        assert train.flip_pairs == {0: 1, 1: 0}
    again = SomethingV1(ssv1, "train", frames=2, size=16, subset=(2, 1), seed=1)
    assert again.samples == train.samples
    # pairs stay together; balanced counts; seeded
    picked = {tuple(choose_classes(range(174), 5, s, {86: 87, 87: 86})) for s in range(40)}
    assert all((86 in p) == (87 in p) and len(p) == 5 for p in picked) and len(picked) > 10
    idx = balanced_indices([0, 0, 0, 1, 1, 2], [0, 1], per_class=2, seed=0)
    assert len(idx) == 4 and sum(i < 3 for i in idx) == 2
    with pytest.raises(ValueError, match="subset classes"):
        SomethingV1(ssv1, "train", subset=(5, 1))  # only 4 classes have clips


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("problem, match", [
    ("missing_folder", r"train_videofolder.txt:2: frame folder .*999.* is missing"),
    ("empty_folder", r"train_videofolder.txt:1: frame folder .* is empty"),
    ("bad_label", r"train_videofolder.txt:1: label 174 is outside the 174 classes"),
    ("bad_line", r"train_videofolder.txt:1: expected '<video id> <num_frames> <label>'"),
    ("swapped_names", r"flip_pairs: classes 86 .* not left/right mirror images"),
    ("no_categories", r"category.txt"),
])
def test_dataset_errors_name_the_file_and_line(ssv1, tmp_path, problem, match):
    root = _copy(ssv1, tmp_path / "copy")
    listing = root / "train_videofolder.txt"
    lines = listing.read_text().splitlines()
    first = root / "20bn-something-something-v1" / lines[0].split()[0]
    if problem == "missing_folder":
        lines[1] = "999 10 0"
    elif problem == "empty_folder":
        for f in os.listdir(first):
            os.remove(first / f)
    elif problem == "bad_label":
        lines[0] = lines[0].rsplit(" ", 1)[0] + " 174"
    elif problem == "bad_line":
        lines[0] = lines[0].split()[0] + " ten 0"
    elif problem == "swapped_names":
        names = (root / "category.txt").read_text().splitlines()
        names[87] = "Something else entirely"
        (root / "category.txt").write_text("\n".join(names))
    elif problem == "no_categories":
        os.remove(root / "category.txt")
    listing.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=match):
        SomethingV1(root, "train")


def test_unreadable_or_missing_jpeg_names_the_image_and_the_line(ssv1, tmp_path):
    root = _copy(ssv1, tmp_path / "copy")
    vid, count, _ = (root / "val_videofolder.txt").read_text().splitlines()[0].split()
    frame = root / "20bn-something-something-v1" / vid / "00001.jpg"
    ds = SomethingV1(root, "val", frames=int(count), size=16)
    frame.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ValueError, match=r"00001.jpg.*val_videofolder.txt:1"):
        ds[0]
    os.remove(root / "20bn-something-something-v1" / vid / f"{int(count):05d}.jpg")
    frame.unlink()
    shutil.copy(root / "20bn-something-something-v1" / vid / "00002.jpg", frame)
    with pytest.raises(ValueError, match=rf"{int(count):05d}.jpg.*missing.*val_videofolder.txt:1"):
        ds[0]


@pytest.mark.parametrize("kwargs, match", [
    ({"split": "test"}, "split"), ({"frames": 0}, "frames"), ({"crops": 4}, "crops"),
    ({"train": True, "clips": 2}, "views are for evaluation"), ({"subset": 3}, "subset"),
    ({"scale_size": 10, "size": 32}, "scale_size"),
])
def test_argument_errors(ssv1, kwargs, match):
    with pytest.raises(ValueError, match=match):
        SomethingV1(ssv1, **kwargs)


def test_lite_clips_as_an_ssv1_folder(tmp_path):
    """something-something-lite written in the SSv1 layout reads back as the same clips
    (up to JPEG), with the lite class names and labels, and disjoint train / val videos."""
    names = ["move_left", "move_right", "static_disk"]
    root = make_something_lite_fixture(tmp_path / "lite", classes=names, train_per_class=1,
                                       val_per_class=1, frames=4, size=(32, 40), quality=95)
    lite = SomethingLite(3, "train", frames=4, size=(32, 40), classes=names)
    ds = SomethingV1(root, "val", frames=4, size=32, scale_size=32, flip=False, flip_pairs=())
    train = SomethingV1(root, "train", frames=4, size=32, scale_size=32, flip=False,
                        flip_pairs=())
    assert ds.classes == names and len(ds) == len(train) == 3
    assert [s[2] for s in train.samples] == [0, 1, 2]
    assert not {s[0] for s in ds.samples} & {s[0] for s in train.samples}
    clip, label = SomethingV1(root, "train", frames=4, size=32, scale_size=32, flip=False,
                              flip_pairs=(), train=False)[1]  # 4 segments of 1 frame: all
    expected, expected_label = lite.clips([1])
    # evaluation: shorter side 32 (already), centre crop 32 of width 40 -> columns 4 … 35
    pixels = clip * STD.view(3, 1, 1, 1) + MEAN.view(3, 1, 1, 1)
    assert label == int(expected_label[0]) == 1
    assert (pixels - expected[0, :, :, :, 4:36]).abs().mean() < 0.03  # JPEG at quality 95
