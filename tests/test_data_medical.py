"""DecathlonTask and MedMNIST3D loaders on tiny fixtures written by the tests."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from cakes_lite.data import DecathlonTask, MedMNIST3D


def write_nifti(path, array, zooms=(1.0, 1.0, 1.0)):
    affine = np.diag([*zooms, 1.0])
    nib.save(nib.Nifti1Image(array, affine), str(path))


def make_task(root, cases=5, shape=(20, 16, 12), zooms=(1.0, 1.0, 2.0), channels=1,
              meta_overrides=None):
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    rng = np.random.default_rng(0)
    training = []
    for k in range(cases):
        label = np.zeros(shape, np.uint8)
        label[5:12, 4:10, 3:8] = 1
        label[7:10, 6:8, 4:6] = 2
        image = rng.normal(0, 1, (*shape, channels)).astype(np.float32) + 100 * label[..., None]
        write_nifti(root / "imagesTr" / f"case_{k:03d}.nii.gz",
                    image[..., 0] if channels == 1 else image, zooms)
        write_nifti(root / "labelsTr" / f"case_{k:03d}.nii.gz", label, zooms)
        training.append({"image": f"./imagesTr/case_{k:03d}.nii.gz",
                         "label": f"./labelsTr/case_{k:03d}.nii.gz"})
    meta = {"name": "Toy", "modality": {"0": "MRI"}, "numTraining": cases,
            "labels": {"0": "background", "1": "organ", "2": "tumour"}, "training": training}
    meta.update(meta_overrides or {})
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def test_whole_cases_split_and_resampling(tmp_path):
    make_task(tmp_path)
    train = DecathlonTask(tmp_path, "train", spacing=2.0, val_fraction=0.4, augment=False)
    val = DecathlonTask(tmp_path, "val", spacing=2.0, val_fraction=0.4)
    assert len(train) == 3 and len(val) == 2
    assert not set(train.cases) & set(val.cases)
    assert train.classes == ["background", "organ", "tumour"]
    x, y = train[0]
    # 20×16×12 voxels of 1×1×2 mm resampled to 2 mm: 10×8×12
    assert x.shape == (1, 10, 8, 12) and y.shape == (10, 8, 12)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert set(torch.unique(y).tolist()) == {0, 1, 2}
    assert abs(x.mean().item()) < 1e-4 and abs(x.std().item() - 1) < 1e-3  # z-scored
    assert x[0][y > 0].mean() > x[0][y == 0].mean() + 1  # image and label stay aligned
    native = DecathlonTask(tmp_path, "all", augment=False)
    assert native[0][0].shape == (1, 20, 16, 12) and len(native) == 5


def test_patches_multichannel_and_padding(tmp_path):
    make_task(tmp_path, channels=2)
    ds = DecathlonTask(tmp_path, "train", patch_size=(8, 24, 6), num_patches=6, seed=1)
    assert len(ds) == 6
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.shape == (2, 8, 24, 6) and y.shape == (8, 24, 6)  # 24 > 16: padded
    fg = sum(bool((ds[i][1] > 0).any()) for i in range(len(ds)))
    assert fg >= 3  # foreground-biased sampling
    again = DecathlonTask(tmp_path, "train", patch_size=(8, 24, 6), num_patches=6, seed=1)
    assert torch.equal(again[3][0], ds[3][0])


def test_shape_mismatch_names_both_files(tmp_path):
    make_task(tmp_path, cases=2)
    write_nifti(tmp_path / "labelsTr" / "case_001.nii.gz", np.zeros((20, 16, 11), np.uint8))
    ds = DecathlonTask(tmp_path, "all")
    with pytest.raises(ValueError, match=r"case_001\.nii\.gz.*shape"):
        ds.load_case(1)


@pytest.mark.parametrize("problem, match", [
    ("no_training", "lacks keys.*training"),
    ("no_labels", "lacks keys.*labels"),
    ("bad_entry", "needs 'image' and 'label'"),
    ("missing_file", "case_009.*missing"),
    ("bad_json", "cannot read"),
    ("label_values", "holds values"),
    ("garbage_nifti", "could not read"),
])
def test_bad_task_folders(tmp_path, problem, match):
    make_task(tmp_path, cases=2)
    meta = json.loads((tmp_path / "dataset.json").read_text())
    if problem == "no_training":
        del meta["training"]
    elif problem == "no_labels":
        del meta["labels"]
    elif problem == "bad_entry":
        meta["training"][0] = {"img": "x"}
    elif problem == "missing_file":
        meta["training"][0]["image"] = "./imagesTr/case_009.nii.gz"
    elif problem == "label_values":
        meta["labels"] = {"0": "background", "1": "organ"}
    elif problem == "garbage_nifti":
        (tmp_path / "imagesTr" / "case_000.nii.gz").write_bytes(b"\x1f\x8b garbage")
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    if problem == "bad_json":
        (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(ValueError, match=match):
        DecathlonTask(tmp_path, "all").load_case(0)


def write_medmnist(path, n=(6, 2, 3), size=8, label_width=1, keys=None):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in zip(("train", "val", "test"), n):
        arrays[f"{split}_images"] = rng.integers(0, 256, (count, size, size, size), np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 3, (count, label_width)).astype(np.uint8)
    if keys is not None:
        arrays = {k: arrays[k] for k in keys}
    np.savez(path, **arrays)
    return arrays


def test_medmnist3d_single_and_multi_label(tmp_path):
    arrays = write_medmnist(tmp_path / "organmnist3d.npz")
    ds = MedMNIST3D(tmp_path / "organmnist3d.npz", "train")
    assert len(ds) == 6 and len(MedMNIST3D(tmp_path / "organmnist3d.npz", "test")) == 3
    x, y = ds[2]
    assert x.shape == (1, 8, 8, 8) and x.dtype == torch.float32 and 0 <= x.min() <= x.max() <= 1
    assert torch.allclose(x[0] * 255, torch.from_numpy(arrays["train_images"][2]).float())
    assert y == int(arrays["train_labels"][2, 0]) and isinstance(y, int)
    write_medmnist(tmp_path / "multi.npz", label_width=4)
    _, ym = MedMNIST3D(tmp_path / "multi.npz", "val")[1]
    assert ym.shape == (4,) and ym.dtype == torch.float32


@pytest.mark.parametrize("problem, match", [
    ("wrong_keys", "lacks.*train_labels.*found keys"),
    ("garbage", "cannot read"),
    ("npy", "cannot read"),
    ("length", "same N"),
])
def test_medmnist3d_errors(tmp_path, problem, match):
    path = tmp_path / "x.npz"
    if problem == "wrong_keys":
        write_medmnist(path, keys=["train_images", "val_labels"])
    elif problem == "garbage":
        path.write_bytes(b"PK\x03\x04 not really a zip")
    elif problem == "npy":
        np.save(tmp_path / "x.npy", np.zeros(3))
        path = tmp_path / "x.npy"
    else:
        np.savez(path, train_images=np.zeros((3, 4, 4, 4), np.uint8),
                 train_labels=np.zeros((2, 1), np.uint8))
    with pytest.raises(ValueError, match=match):
        MedMNIST3D(path, "train")
