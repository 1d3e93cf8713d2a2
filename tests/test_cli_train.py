"""CLI: ``python -m cakes_lite train|eval`` help, tiny runs on both data sets, layout, resume."""

from __future__ import annotations

import json

import pytest
import torch

from cakes_lite import CAKESConv3d, Layout
from cakes_lite.cli import main
from cakes_lite.models import resnet3d_tiny
from cakes_lite.train import load_checkpoint, read_checkpoint_info

VIDEO = ["--data", "synthetic-video", "--train-samples", "16", "--val-samples", "8",
         "--batch-size", "8", "--frames", "4", "--size", "16", "--no-progress",
         "--model-arg", "widths=[8,8,16]", "--model-arg", "stem_width=8"]


pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py


@pytest.mark.parametrize("command, expected", [
    ("train", ["--builder", "--layout", "--resume", "--epochs", "cakes:<space>", "Examples"]),
    ("eval", ["--checkpoint", "--split", "--format"]),
])
def test_help_is_readable(command, expected, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])  # what `python -m cakes_lite COMMAND --help` runs
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for word in expected:
        assert word in out
    assert "(default: None)" not in out
    # examples keep their line breaks
    if command == "train":
        assert "\n    python -m cakes_lite train --data synthetic-video" in out


def test_tiny_video_run_eval_and_resume(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *VIDEO, "--epochs", "1", "--builder", "2d", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("epoch 1/1 loss ") and "val_top1" in lines[0]
    assert json.loads(lines[-1])["epoch"] == 1
    info = read_checkpoint_info(out)
    assert info["model"]["config"]["builder"] == "2d" and info["meta"]["data"]["frames"] == 4

    # --resume with more epochs continues at epoch 2
    assert main(["train", *VIDEO, "--epochs", "2", "--builder", "2d", "--out", str(out),
                 "--resume"]) == 0
    assert capsys.readouterr().out.startswith("epoch 2/2")
    assert read_checkpoint_info(out)["epoch"] == 2

    assert main(["eval", "--checkpoint", str(out), "--format", "json", "--no-progress"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["n"] == 8 and 0.0 <= metrics["top1"] <= 1.0 and metrics["epoch"] == 2


def test_train_with_layout_file(tmp_path, capsys):
    layout = Layout.uniform(resnet3d_tiny(widths=[8, 8, 16], stem_width=8), "video-12d")
    layout.to_json(tmp_path / "layout.json")
    out = tmp_path / "run"
    assert main(["train", *VIDEO, "--epochs", "1", "--val-samples", "0",
                 "--layout", str(tmp_path / "layout.json"), "--out", str(out)]) == 0
    model = load_checkpoint(out).model
    assert {n for n, m in model.named_modules() if isinstance(m, CAKESConv3d)} == set(layout)


def test_tiny_mni152_segmentation_run(tmp_path, capsys):
    out = tmp_path / "seg"
    args = ["train", "--data", "mni152", "--train-samples", "2", "--val-samples", "2",
            "--patch-size", "16", "--batch-size", "2", "--epochs", "1", "--no-progress",
            "--model-arg", "widths=[4,8]", "--out", str(out)]
    assert main(args) == 0
    assert "val_mean_dice" in capsys.readouterr().out
    assert main(["eval", "--checkpoint", str(out), "--format", "json", "--no-progress"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert len(metrics["dice"]) == 4 and metrics["data"] == "mni152"


@pytest.mark.parametrize("args, message", [
    (["train", "--data", "synthetic-video", "--model", "unet3d_tiny", "--out", "x"],
     "is for segmentation"),
    (["train", "--data", "synthetic-video", "--builder", "4d", "--out", "x"], "builder"),
    (["eval", "--checkpoint", "does/not/exist"], "no checkpoint.json"),
])
def test_errors_are_one_line_messages(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_train_channels_last_trains_in_channels_last_memory(tmp_path, capsys):
    """``--channels-last``: the 3×3×3 convs see channels_last_3d batches while training, and the
    checkpoint loads back into an ordinary model."""
    seen = []
    hook = torch.nn.modules.module.register_module_forward_pre_hook(
        lambda m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last_3d)
                                    and not args[0].is_contiguous())
        if isinstance(m, torch.nn.Conv3d) and m.training and m.kernel_size == (3, 3, 3) else None)
    out = tmp_path / "run"
    try:
        assert main(["train", *VIDEO, "--epochs", "1", "--val-samples", "0", "--channels-last",
                     "--out", str(out)]) == 0
    finally:
        hook.remove()
    assert seen and set(seen) == {True}
    model = load_checkpoint(out).model
    assert model(torch.randn(1, 3, 4, 16, 16)).shape == (1, 13)
