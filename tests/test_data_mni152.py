"""MNI152 tissue segmentation: volume, labels, split without left-right leakage, patches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cakes_lite.data import CORRUPTIONS, TISSUE_CLASSES, MNI152Tissue, corrupt, load_mni152
from cakes_lite.data.mni152 import mni152_split_bounds


@pytest.fixture(scope="module")
def volume():
    return load_mni152(2.0, return_affine=True)


def test_volume_shapes_labels_and_affine(volume):
    image, labels, affine = volume
    assert image.shape == (1, 98, 116, 94) and image.dtype == torch.float32
    assert labels.shape == (98, 116, 94) and labels.dtype == torch.int64
    counts = torch.bincount(labels.flatten(), minlength=4)
    assert len(counts) == len(TISSUE_CLASSES) == 4
    brain = counts[1:].sum().item() * 8 / 1000  # ml at 2 mm
    assert 1300 < brain < 2100, f"brain mask volume {brain:.0f} ml"  # ~1.9 l (MNI is large)
    assert counts[2] > counts[3] > counts[1] > 0  # grey > white > other brain (CSF …)
    assert image[0][labels == 0].abs().max() == 0  # background is exactly 0
    # on a T1, white matter is brighter than grey matter, which is brighter than CSF
    means = [image[0][labels == k].mean().item() for k in (1, 2, 3)]
    assert means[0] < means[1] < means[2]
    assert np.allclose(np.diag(affine)[:3], 2.0, atol=0.05)
    assert load_mni152(2.0)[0] is image  # cached


def test_labels_left_right_symmetric(volume):
    """The template is symmetric: why the split must not be left-right (axis 0)."""
    _, labels, _ = volume
    agree = (labels == labels.flip(0)).float().mean().item()
    assert agree > 0.95


@pytest.mark.parametrize("axis_name, axis", [("ap", 1), ("si", 2)])
def test_split_slabs_are_disjoint_and_cover(axis_name, axis):
    shape = (98, 116, 94)
    a, lo_t, hi_t = mni152_split_bounds(shape, "train", axis_name, 0.3)
    b, lo_v, hi_v = mni152_split_bounds(shape, "val", axis_name, 0.3)
    assert a == b == axis and lo_t == 0 and hi_t == lo_v and hi_v == shape[axis]
    with pytest.raises(ValueError, match="split_axis"):
        mni152_split_bounds(shape, "train", "lr")


@pytest.mark.parametrize("split_axis", ["ap", "si"])
def test_patches_never_leak_across_the_split(volume, split_axis):
    """Every patch lies inside its own split's slab and is an exact crop of the volume."""
    image, labels, _ = volume
    for split in ("train", "val"):
        ds = MNI152Tissue(split, patch_size=24, num_patches=16, augment=False, seed=1,
                          split_axis=split_axis)
        axis, lo, hi = mni152_split_bounds(tuple(labels.shape), split, split_axis)
        with_brain = 0
        for i in range(len(ds)):
            x, y = ds[i]
            assert x.shape == (1, 24, 24, 24) and y.shape == (24, 24, 24)
            assert y.dtype == torch.int64
            with_brain += bool((y > 0).any())
            o = ds.patch_origin(i)
            assert lo <= o[axis] and o[axis] + 24 <= hi, (split, i, o)
            sl = tuple(slice(max(s, 0), s + 24) for s in o)
            inner = tuple(slice(max(-s, 0), max(-s, 0) + (t.stop - t.start)) for s, t in zip(o, sl))
            assert torch.equal(x[0][inner], image[0][sl]) and torch.equal(y[inner], labels[sl])
        assert with_brain >= 12  # 90% of patches are centred on brain voxels


def test_patches_deterministic_balanced_and_augmented():
    a = MNI152Tissue("train", patch_size=16, num_patches=8, seed=0)
    b = MNI152Tissue("train", patch_size=16, num_patches=8, seed=0)
    for i in (0, 5):
        assert torch.equal(a[i][0], b[i][0]) and torch.equal(a[i][1], b[i][1])
    b.set_epoch(1)
    assert not torch.equal(a[0][0], b[0][0])
    labels = torch.stack([a[i][1] for i in range(8)])
    assert set(torch.unique(labels).tolist()) == {0, 1, 2, 3}  # foreground-centred patches
    # augmentation flips left-right only: with and without augment the label sets agree
    plain = MNI152Tissue("train", patch_size=16, num_patches=8, seed=0, augment=False)
    flipped = sum(not torch.equal(a[i][1], plain[i][1]) for i in range(8))
    assert all(torch.equal(a[i][1], plain[i][1]) or torch.equal(a[i][1], plain[i][1].flip(0))
               for i in range(8))
    assert 0 < flipped < 8


def test_anisotropic_patch_and_thin_slab_padding():
    ds = MNI152Tissue("val", patch_size=(20, 40, 12), num_patches=2, split_axis="si",
                      val_fraction=0.1)  # slab of 9 slices < 12: rest is background padding
    x, y = ds[1]
    assert x.shape == (1, 20, 40, 12) and y.shape == (20, 40, 12)
    assert (y[:, :, 0] == 0).all() and (x[0, :, :, -1] == 0).all()


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_corruptions_change_image_and_are_seeded(kind):
    x = torch.rand(1, 8, 9, 10)
    a = corrupt(x, kind, np.random.default_rng(0))
    b = corrupt(x, kind, np.random.default_rng(0))
    assert a.shape == x.shape and torch.equal(a, b)
    assert (a - x).abs().mean() > 1e-3
    assert torch.equal(corrupt(x, kind, np.random.default_rng(0), severity=0.0), x) or \
        torch.allclose(corrupt(x, kind, np.random.default_rng(0), severity=0.0), x, atol=1e-6)


def test_corrupted_dataset_and_bad_arguments():
    clean = MNI152Tissue("val", patch_size=16, num_patches=2, augment=False)
    noisy = MNI152Tissue("val", patch_size=16, num_patches=2, augment=True,
                         corruptions=("noise",), p_corrupt=1.0)
    assert torch.equal(clean[0][1].flip(0), noisy[0][1]) or torch.equal(clean[0][1], noisy[0][1])
    assert not torch.equal(clean[0][0], noisy[0][0])
    with pytest.raises(ValueError, match="corruptions"):
        MNI152Tissue(corruptions=("blur",))
    with pytest.raises(ValueError, match="spacing"):
        load_mni152(0.1)
    with pytest.raises(ValueError, match="split"):
        MNI152Tissue("test")
