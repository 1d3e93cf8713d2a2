"""Decathlon pipeline: resampling, intensity normalisation by modality, foreground
oversampling, subsets, sliding-window evaluation with Dice per class, and the errors — on tiny
NIfTI tasks with anisotropic voxels written by the tests."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from cakes_lite.data import DecathlonTask
from cakes_lite.data.fixtures import make_decathlon_fixture, write_nifti
from cakes_lite.data.intensity import ct_normalize, mri_normalize
from cakes_lite.train import dice_per_class, predict_volume, sliding_window_evaluate


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return make_decathlon_fixture(tmp_path_factory.mktemp("Task00"), cases=4,
                                  shape=(20, 16, 12), zooms=(1.0, 1.0, 2.0), seed=0)


def extent(mask: torch.Tensor, axis: int) -> int:
    """Voxels spanned by ``mask`` along ``axis``."""
    other = tuple(a for a in range(3) if a != axis)
    hits = torch.nonzero(mask.any(dim=other)).flatten()
    return int(hits.max() - hits.min() + 1)


@pytest.mark.parametrize("spacing, shape", [(None, (20, 16, 12)), (1.0, (20, 16, 24)),
                                            ((2.0, 2.0, 2.0), (10, 8, 12)),
                                            ((1.0, 0.5, 4.0), (20, 32, 6))])
def test_resampling_to_a_target_spacing(task, spacing, shape):
    native = DecathlonTask(task, "all", augment=False)
    ds = DecathlonTask(task, "all", spacing=spacing, augment=False)
    x, y = ds[0]
    assert x.shape == (1, *shape) and y.shape == shape and y.dtype == torch.int64
    assert set(torch.unique(y).tolist()) <= {0, 1, 2}  # nearest: no new label values
    y0 = native[0][1]
    zooms, target = (1.0, 1.0, 2.0), spacing or (1.0, 1.0, 2.0)
    target = (target,) * 3 if isinstance(target, float) else target
    for axis in range(3):  # the organ keeps its size in mm
        mm = extent(y0 > 0, axis) * zooms[axis]
        assert abs(extent(y > 0, axis) * target[axis] - mm) <= target[axis]
    assert x[0][y > 0].mean() > x[0][y == 0].mean() + 1  # image and label stay aligned


def test_intensity_normalisation_by_modality(tmp_path):
    x = torch.linspace(-1000, 2000, 1000).view(10, 10, 10)
    ct = ct_normalize(x, window=(-100, 200))
    assert torch.allclose(ct.mean(), torch.tensor(0.0), atol=1e-5)
    assert torch.allclose(ct.std(), torch.tensor(1.0), atol=1e-5)
    assert ct[x <= -100].unique().numel() == 1 and ct[x >= 200].unique().numel() == 1  # clipped
    pct = ct_normalize(x)  # the case's 0.5 … 99.5 percentiles
    assert (pct == pct.min()).sum() >= 5 and (pct == pct.max()).sum() >= 5
    brain = torch.zeros(10, 10, 10)
    brain[2:8, 2:8, 2:8] = torch.rand(6, 6, 6) * 50 + 100
    m = mri_normalize(brain)
    assert torch.equal(m[brain == 0], torch.zeros_like(m[brain == 0]))  # background stays 0
    inside = m[brain != 0]
    assert abs(float(inside.mean())) < 1e-5 and abs(float(inside.std()) - 1) < 1e-5
    with pytest.raises(ValueError, match="ct_window"):
        ct_normalize(x, window=(5, 5))


def test_multichannel_ct_and_mri_channels(tmp_path):
    make_decathlon_fixture(tmp_path, cases=2, modality=("CT", "T2", "ADC", "FLAIR"))
    ds = DecathlonTask(tmp_path, "all", augment=False, ct_window=(-150, 250))
    x, y = ds[0]
    assert x.shape == (4, 20, 16, 12) and ds.modalities == ["CT", "T2", "ADC", "FLAIR"]
    for c in range(4):
        assert abs(float(x[c].mean())) < 1e-4 and abs(float(x[c].std()) - 1) < 1e-3
    meta = json.loads((tmp_path / "dataset.json").read_text())
    meta["modality"] = {"0": "T1", "1": "T2"}
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"case_000.nii.gz.*4 channel.*'modality' lists 2"):
        DecathlonTask(tmp_path, "all").load_case(0)


def test_foreground_oversampling_rate_and_determinism(task):
    ds = DecathlonTask(task, "train", patch_size=(6, 6, 4), num_patches=30, foreground=1 / 3,
                       val_fraction=0.25, seed=2)
    forced = [i for i in range(30) if ds.is_foreground_patch(i)]
    assert len(forced) == 10  # exactly a third of the patches
    classes = set()
    for i in forced:
        centre = ds.patch_centre(i)
        label = ds.load_case(i % len(ds.cases))[1]
        classes.add(int(label[tuple(centre)]))
        x, y = ds[i]
        assert x.shape == (1, 6, 6, 4) and y.shape == (6, 6, 4) and (y > 0).any()
    assert classes == {1, 2}  # the tiny class 2 (8 voxels) is sampled too
    again = DecathlonTask(task, "train", patch_size=(6, 6, 4), num_patches=30,
                          foreground=1 / 3, val_fraction=0.25, seed=2)
    assert all(torch.equal(ds[i][0], again[i][0]) for i in (0, 5, 29))
    ds.set_epoch(1)
    assert any(not torch.equal(ds[i][0], again[i][0]) for i in range(30))
    assert not any(DecathlonTask(task, "train", patch_size=4, foreground=0.0)
                   .is_foreground_patch(i) for i in range(20))


def test_case_subset_is_a_seeded_choice(task):
    full = DecathlonTask(task, "all")
    picks = [DecathlonTask(task, "all", subset=2, seed=s).cases for s in range(6)]
    assert all(len(p) == 2 and set(p) <= set(full.cases) for p in picks)
    assert picks[0] == DecathlonTask(task, "all", subset=2, seed=0).cases
    assert len({tuple(p) for p in picks}) > 1
    with pytest.raises(ValueError, match="subset cases"):
        DecathlonTask(task, "all", subset=9)


# ---- sliding-window evaluation -------------------------------------------------------------

def small_net(in_channels=2, classes=3, k=3):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv3d(in_channels, 8, k, padding=k // 2), nn.BatchNorm3d(8),
                        nn.ReLU(), nn.Conv3d(8, classes, k, padding=k // 2))
    return net.eval()


def test_sliding_window_equals_a_direct_forward():
    x = torch.randn(2, 12, 10, 8)
    net = small_net()
    whole = predict_volume(net, x, (12, 10, 8))  # one window covers the volume
    assert whole.shape == (3, 12, 10, 8)
    assert torch.allclose(whole, net(x[None])[0], atol=1e-5)
    pointwise = small_net(k=1)  # no context: tiles must stitch back to the direct result
    for mode in ("gaussian", "constant"):
        tiled = predict_volume(pointwise, x, 6, overlap=0.5, mode=mode, sw_batch_size=3)
        assert torch.allclose(tiled, pointwise(x[None])[0], atol=1e-5)
    with pytest.raises(ValueError, match="image"):
        predict_volume(net, torch.randn(2, 2, 4, 4, 4), 4)


class OneHotToLogits(nn.Module):
    """Logits = the input: an image holding the one-hot of a label map predicts that map."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return x * self.scale


def test_sliding_window_dice_per_class():
    rng = np.random.default_rng(0)
    labels = [torch.from_numpy(rng.integers(0, 3, (9, 7, 5))) for _ in range(3)]
    preds = [y.clone() for y in labels]
    preds[1][:4][preds[1][:4] == 2] = 1  # some lesion voxels called organ
    cases = [(nn.functional.one_hot(p, 3).permute(3, 0, 1, 2).float(), y)
             for p, y in zip(preds, labels)]
    out = sliding_window_evaluate(OneHotToLogits(), cases, (4, 4, 4), overlap=0.25)
    assert out["n"] == 3 and out["case_dice"][0] == [1.0, 1.0, 1.0]
    assert out["case_dice"][1] == dice_per_class(preds[1], labels[1], 3)
    expect = dice_per_class(torch.cat([p.flatten() for p in preds]),
                            torch.cat([y.flatten() for y in labels]), 3)
    assert out["dice"] == pytest.approx(expect) and out["dice"][2] < 1.0
    assert out["mean_dice"] == pytest.approx((expect[1] + expect[2]) / 2)
    missing = [(cases[0][0], labels[0][:, :, :4])]
    with pytest.raises(ValueError, match="label: expected shape"):
        sliding_window_evaluate(OneHotToLogits(), missing, 4)


def test_whole_validation_cases_through_sliding_windows(task):
    val = DecathlonTask(task, "val", spacing=2.0, val_fraction=0.5, augment=False)
    seen = []
    out = sliding_window_evaluate(small_net(in_channels=1), val, (8, 8, 8), num_classes=3,
                                  callback=lambda k, d: seen.append(k))
    assert out["n"] == len(val) == 2 and seen == [0, 1] and len(out["dice"]) == 3
    assert all(0.0 <= d <= 1.0 for d in out["dice"] if not math.isnan(d))


def test_label_map_with_the_wrong_shape_names_the_file(tmp_path):
    make_decathlon_fixture(tmp_path, cases=2)
    write_nifti(tmp_path / "labelsTr" / "case_001.nii.gz", np.zeros((20, 16, 11), np.uint8))
    with pytest.raises(ValueError, match=r"label .*case_001\.nii\.gz.* has shape \(20, 16, 11\)"):
        DecathlonTask(tmp_path, "all").load_case(1)
    meta = json.loads((tmp_path / "dataset.json").read_text())
    meta["training"][1]["image"] = "./imagesTr/nowhere.nii.gz"
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"dataset.json' lists .*nowhere.nii.gz.*missing"):
        DecathlonTask(tmp_path, "all")
    with pytest.raises(ValueError, match="foreground"):
        DecathlonTask(tmp_path, "all", foreground=1.5)
