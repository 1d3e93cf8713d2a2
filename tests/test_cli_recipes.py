"""CLI recipes on real-format data (tiny fixtures in the official layouts): search -> layout ->
train -> eval for Something-Something V1, train -> sliding-window eval for a Decathlon task,
bit-exact resume, --subset, and every kind of bad input as one line, exit 2, nothing written."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from cakes_lite import Layout
from cakes_lite.cli import main
from cakes_lite.data.fixtures import make_decathlon_fixture, make_something_fixture, write_nifti
from cakes_lite.train import read_checkpoint_info

pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py

#: the smoke recipe made smaller still: a ResNet-50 I3D of width 4 on 4 frames of 32 px
SSV1 = ["--smoke", "--set", "model.width=4", "--size", "32", "--no-progress"]
MSD = ["--smoke", "--no-progress"]


@pytest.fixture(scope="module")
def ssv1(tmp_path_factory):
    return make_something_fixture(tmp_path_factory.mktemp("ssv1"), videos_per_class=2,
                                  width=64, height=48)


@pytest.fixture(scope="module")
def msd(tmp_path_factory):
    return make_decathlon_fixture(tmp_path_factory.mktemp("msd"), cases=5)


def weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(next(directory.glob("model-*.safetensors")))


def test_ssv1_search_then_train_with_the_layout_then_eval(ssv1, tmp_path, capsys):
    layout_file = tmp_path / "layout.json"
    supernet_file = tmp_path / "supernet.safetensors"
    assert main(["search", "--recipe", "ssv1-r50-search-p", "--data-root", ssv1, *SSV1,
                 "--out", str(layout_file), "--supernet", str(supernet_file)]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert summary["layers"] == 16 and summary["world_size"] == 1
    layout = Layout.from_json(layout_file)
    assert layout.meta["recipe"]["name"] == "ssv1-r50-search-p"
    gammas = load_file(supernet_file)
    for name, split in layout.items():  # γ of the 3 candidates of every channel
        assert gammas[f"{name}.bn.weight"].shape == (3 * sum(split.values()),)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layout.json", "supernet.safetensors"]
    assert layout.meta["recipe"]["model"]["width"] == 4 and layout.meta["world_size"] == 1

    out = tmp_path / "run"
    assert main(["train", "--recipe", "ssv1-r50", "--data-root", ssv1, *SSV1,
                 "--layout", str(layout_file), "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("epoch 1/1 loss ") and "val_top1" in lines[0]
    info = read_checkpoint_info(out)
    meta = info["meta"]
    assert meta["recipe"]["name"] == "ssv1-r50" and meta["recipe"]["optim"]["lr"] == 0.04
    assert meta["world_size"] == 1 and meta["devices"][0]["device"] == "cpu"
    assert meta["lr_scaled"] == pytest.approx(0.04 * 4 / 96)  # smoke: global batch 4
    stored = Layout.from_dict(info["model"]["config"]["layout"])  # rebuilt with it on load
    assert {k: dict(v) for k, v in stored.items()} == {k: dict(v) for k, v in layout.items()}
    fit = meta["fit"]
    assert fit["optimizer"] == "sgd" and fit["nesterov"] is False
    assert fit["lr_schedule"]["name"] == "MultiStepWarmup"

    assert main(["eval", "--checkpoint", str(out), "--data-root", ssv1, "--format", "json",
                 "--no-progress"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["n"] == 4 and metrics["views"] == 1
    assert 0 <= metrics["top1"] <= metrics["top5"] == 1.0  # 4 classes: top-5 holds them all
    assert main(["eval", "--checkpoint", str(out), "--clips", "2", "--crops", "3",
                 "--format", "json", "--no-progress"]) == 0  # --data-root: the run's
    assert json.loads(capsys.readouterr().out)["views"] == 6


def test_ssv1_subset_is_class_balanced_and_stored(ssv1, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--recipe", "ssv1-r50", "--data-root", ssv1, *SSV1, "--subset", "2x1",
                 "--batch-size", "2", "--out", str(out)]) == 0
    meta = read_checkpoint_info(out)["meta"]
    assert meta["data"]["subset"] == [2, 1] and meta["data"]["train_items"] == 2
    assert len(meta["data"]["classes"]) == 2
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(out), "--format", "json", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 2  # one validation clip per class


def test_resume_is_bit_exact(ssv1, tmp_path):
    common = ["train", "--recipe", "ssv1-r50", "--data-root", ssv1, *SSV1,
              "--set", "optim.max_steps_per_epoch=2"]
    assert main([*common, "--epochs", "2", "--out", str(tmp_path / "whole")]) == 0
    assert main([*common, "--epochs", "1", "--out", str(tmp_path / "cut")]) == 0
    assert main([*common, "--epochs", "2", "--out", str(tmp_path / "cut"), "--resume"]) == 0
    a, b = weights(tmp_path / "whole"), weights(tmp_path / "cut")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_msd_search_train_and_sliding_window_dice(msd, tmp_path, capsys):
    layout_file = tmp_path / "layout.json"
    assert main(["search", "--recipe", "msd-unet-search-c", "--data-root", msd, *MSD,
                 "--subset", "2", "--out", str(layout_file)]) == 0
    layout = Layout.from_json(layout_file)
    assert layout.meta["recipe"]["name"] == "msd-unet-search-c" and len(layout) > 0
    assert set(layout.meta["search_settings"]) >= {"l1_steps", "lr_schedule", "sync_bn"}
    assert layout.meta["search_settings"]["l1_steps"] == layout.meta["search_settings"]["steps"]
    out = tmp_path / "seg"
    assert main(["train", "--recipe", "msd-unet", "--data-root", msd, *MSD, "--subset", "2",
                 "--layout", str(layout_file), "--out", str(out)]) == 0
    assert "val_mean_dice" in capsys.readouterr().out
    meta = read_checkpoint_info(out)["meta"]
    assert meta["layout_file"] == str(layout_file)
    assert meta["data"]["subset"] == 2 and meta["recipe"]["data"]["patch_size"] == [16, 16, 16]
    assert main(["eval", "--checkpoint", str(out), "--data-root", msd, "--format", "json",
                 "--no-progress"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert list(metrics["dice"]) == ["background", "organ", "lesion"] and metrics["n"] == 1
    assert 0.0 <= metrics["dice"]["background"] <= 1.0


def one_line_error(capsys, argv) -> str:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse usage errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def _ssv1_copy(src, dst, problem: str):
    root = str(shutil.copytree(src, dst))
    frames = os.path.join(root, "20bn-something-something-v1")
    with open(os.path.join(root, "train_videofolder.txt")) as f:
        first = f.read().split()[0]
    if problem == "missing_folder":
        shutil.rmtree(os.path.join(frames, first))
    elif problem == "empty_folder":
        for f in os.listdir(os.path.join(frames, first)):
            os.remove(os.path.join(frames, first, f))
    else:  # an unreadable JPEG, found when the clip is read
        for f in os.listdir(os.path.join(frames, first)):
            with open(os.path.join(frames, first, f), "wb") as fh:
                fh.write(b"\xff\xd8 not a jpeg")
    return root


@pytest.mark.parametrize("problem, workers, match", [
    ("missing_folder", 0, r"train_videofolder.txt:1: frame folder .* is missing"),
    ("empty_folder", 0, r"train_videofolder.txt:1: frame folder .* is empty"),
    ("bad_jpeg", 0, r"cannot read '.*\.jpg' \(listed at .*train_videofolder.txt:1\)"),
    ("bad_jpeg", 1, r"^error: SomethingV1: cannot read '.*\.jpg' \(listed at"),
])
def test_bad_ssv1_data_one_line_nothing_written(ssv1, tmp_path, capsys, problem, workers, match):
    root = _ssv1_copy(ssv1, tmp_path / "data", problem)
    out = tmp_path / "out"
    err = one_line_error(capsys, ["train", "--recipe", "ssv1-r50", "--data-root", root, *SSV1,
                                  "--num-workers", str(workers), "--out", str(out)])
    assert re.search(match, err), err
    assert not out.exists() or not any(out.iterdir())


def _msd_copy(src, dst, problem: str):
    root = str(shutil.copytree(src, dst))
    if problem == "missing_image":
        with open(os.path.join(root, "dataset.json")) as f:
            meta = json.load(f)
        meta["training"][1]["image"] = "./imagesTr/nowhere.nii.gz"
        with open(os.path.join(root, "dataset.json"), "w") as f:
            json.dump(meta, f)
    else:  # every label map one voxel short along z
        for name in os.listdir(os.path.join(root, "labelsTr")):
            write_nifti(os.path.join(root, "labelsTr", name), np.zeros((20, 16, 11), np.uint8),
                        (1.0, 1.0, 2.0))
    return root


@pytest.mark.parametrize("problem, match", [
    ("missing_image", r"dataset.json' lists .*nowhere.nii.gz', which is missing"),
    ("label_shape", r"label .*case_00\d\.nii\.gz' has shape \(20, 16, 11\)"),
])
def test_bad_msd_data_one_line_nothing_written(msd, tmp_path, capsys, problem, match):
    root = _msd_copy(msd, tmp_path / "data", problem)
    out = tmp_path / "out"
    err = one_line_error(capsys, ["train", "--recipe", "msd-unet", "--data-root", root, *MSD,
                                  "--out", str(out)])
    assert re.search(match, err), err
    assert not out.exists()


@pytest.mark.parametrize("argv, match", [
    (["train", "--recipe", "ssv1-r18"], r"--recipe: invalid choice: 'ssv1-r18'"),
    (["train", "--recipe", "ssv1-r50", "--data-root", "SSV1", "--set", "optim.lrr=1"],
     r"--set: recipe 'ssv1-r50' has no setting 'optim.lrr'"),
    (["train", "--recipe", "ssv1-r50", "--data-root", "SSV1", "--set", "optim.epochs=two"],
     r"'optim.epochs' expects an integer \(like 70\), got \"two\""),
    (["train", "--recipe", "ssv1-r50-search-p"], r"is a search recipe; 'train' takes one of"),
    (["search", "--recipe", "msd-unet"], r"is a train recipe; 'search' takes one of"),
    (["search", "--recipe", "ssv1-r50-search-c", "--data-root", "SSV1", "--set",
      "search.reweight=false"], r"search.reweight: .* always weights the L1 step"),
    (["search", "--recipe", "ssv1-r50-search-p", "--data-root", "SSV1", "--target", "0.5"],
     r"search.target: needs search.mode 'cost', got 'performance'"),
    (["search", "--recipe", "ssv1-r50-search-c", "--data-root", "SSV1", "--target", "1.5"],
     r"search.target: expected"),
    (["train", "--recipe", "ssv1-r50", "--data-root", "SSV1", "--smoke", "--set",
      "data.flip_pairs=ssv"], r"data.flip_pairs: expected 'ssv1' .* or 'none', got 'ssv'"),
    (["train", "--recipe", "ssv1-r50", "--data", "mni152"], r"--data: .* exclude each other"),
    (["train", "--recipe", "ssv1-r50", "--train-samples", "3"], r"--train-samples: sizes the"),
    (["train", "--recipe", "ssv1-r50"], r"--data-root: a recipe reads real data"),
    (["train", "--recipe", "msd-unet", "--data-root", "SSV1"], r"has no dataset.json"),
    (["train", "--smoke"], r"--smoke: needs --recipe NAME"),
    (["train", "--recipe", "msd-unet", "--data-root", "MSD", "--pretrained2d", "x.pth"],
     r"--pretrained2d: .* for the ssv1 recipes"),
    (["train", "--recipe", "ssv1-r50", "--data-root", "SSV1", "--pretrained2d", "nothere.pth"],
     r"--pretrained2d: 'nothere.pth' is not a file"),
])
def test_bad_options_one_line(ssv1, msd, tmp_path, capsys, argv, match):
    argv = [ssv1 if a == "SSV1" else msd if a == "MSD" else a for a in argv]
    err = one_line_error(capsys, [*argv, "--out", str(tmp_path / "out")])
    assert re.search(match, err), err
    assert not (tmp_path / "out").exists()
