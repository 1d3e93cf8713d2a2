"""CLI: every user error is one line on stderr with exit status 2 — corrupt or truncated
checkpoints, missing files, bad numbers, a device the machine lacks, a split the data lacks —
and ``zoo list`` prints a table with a header."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from cakes_lite.cli import build_parser, main
from cakes_lite.cli.train import MODEL_NAMES
from cakes_lite.models import MODELS

ROOT = Path(__file__).resolve().parents[1]
VIDEO = ["--data", "synthetic-video", "--train-samples", "8", "--val-samples", "4",
         "--batch-size", "4", "--frames", "4", "--size", "16", "--no-progress",
         "--model-arg", "widths=[8,8,16]", "--model-arg", "stem_width=8"]
SEARCH = VIDEO[:4] + VIDEO[6:]  # search has no --val-samples
SEG = ["--data", "mni152", "--train-samples", "2", "--val-samples", "2", "--patch-size", "16",
       "--batch-size", "2", "--no-progress", "--model-arg", "widths=[4,8]"]

pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny trained video checkpoint and a tiny mni152 one (1 epoch each)."""
    root = tmp_path_factory.mktemp("runs")
    torch.set_num_threads(1)
    assert main(["train", *VIDEO, "--epochs", "1", "--out", str(root / "video")]) == 0
    assert main(["train", *SEG, "--epochs", "1", "--out", str(root / "seg")]) == 0
    return root


def one_line_error(capsys, argv) -> str:
    """Run the CLI; assert exit status 2 and exactly one line on stderr; return it."""
    try:
        code = main(argv)
    except SystemExit as e:  # argparse usage errors exit from parse_args
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def _damaged(runs: Path, tmp_path: Path, how: str) -> Path:
    ck = tmp_path / "ck"
    shutil.copytree(runs / "video", ck)
    weights = next(ck.glob("model-*.safetensors"))
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if how == "truncated" else b"\x07" * len(data))
    return ck


@pytest.mark.parametrize("how", ["truncated", "corrupt"])
def test_damaged_checkpoint_eval(runs, tmp_path, capsys, how):
    ck = _damaged(runs, tmp_path, how)
    err = one_line_error(capsys, ["eval", "--checkpoint", str(ck), "--no-progress"])
    assert "--checkpoint" in err and "truncated or corrupt" in err


def test_damaged_checkpoint_resume(runs, tmp_path, capsys):
    ck = _damaged(runs, tmp_path, "truncated")
    err = one_line_error(capsys, ["train", *VIDEO, "--epochs", "2", "--out", str(ck),
                                  "--resume"])
    assert "resumed checkpoint" in err and "truncated or corrupt" in err


@pytest.mark.parametrize("argv, message", [
    (["eval", "--checkpoint", "no/such/run"], "no checkpoint.json"),
    (["train", *VIDEO, "--layout", "no_such_layout.json", "--out", "x"], "no_such_layout.json"),
    (["zoo", "list", "--root", "no/such/zoo"], "no index.json"),
])
def test_missing_files(capsys, argv, message):
    assert message in one_line_error(capsys, argv)


@pytest.mark.parametrize("option, value, message", [
    ("--train-samples", "0", "expected a positive integer, got '0'"),
    ("--epochs", "-1", "expected a positive integer, got '-1'"),
    ("--batch-size", "eight", "expected a positive integer, got 'eight'"),
    ("--lr", "0", "expected a positive number, got '0'"),
    ("--lr", "nan", "expected a positive number, got 'nan'"),
    ("--val-samples", "-3", "expected an integer >= 0, got '-3'"),
])
def test_bad_numbers(capsys, option, value, message):
    argv = ["train", *VIDEO, option, value, "--out", "x"]
    err = one_line_error(capsys, argv)
    assert option in err and message in err


def test_bad_search_budget(capsys):
    err = one_line_error(capsys, ["search", *SEARCH, "--budget", "0", "--out", "l.json"])
    assert "--budget" in err and "positive" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("command", ["train", "search", "eval"])
def test_device_not_available(runs, capsys, command):
    extra = {"train": [*VIDEO, "--out", "x"], "search": [*SEARCH, "--out", "l.json"],
             "eval": ["--checkpoint", str(runs / "video")]}[command]
    err = one_line_error(capsys, [command, *extra, "--device", "cuda"])
    assert "--device" in err and "CUDA is not available" in err


def test_split_not_available(runs, capsys):
    err = one_line_error(capsys, ["eval", "--checkpoint", str(runs / "seg"), "--split", "test",
                                  "--no-progress"])
    assert "--split" in err and "'train' and 'val' only" in err


def test_budget_help_says_values_above_one_are_absolute(capsys):
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "a value > 1 is an absolute count" in out and "fraction" in out


def test_help_parses_only_the_command_it_shows():
    parser = build_parser(["profile", "--help"])
    sub = parser._subparsers._group_actions[0].choices
    assert "--input" in sub["profile"].format_help()
    assert "--data" not in sub["train"].format_help()  # train's options were not loaded


def test_help_lists_the_models_the_library_has():
    assert sorted(MODEL_NAMES) == sorted(MODELS)


def test_profile_help_keeps_its_examples(capsys):
    with pytest.raises(SystemExit):
        main(["profile", "--help"])
    assert "\n    python -m cakes_lite profile --model cakes_lite.models:resnet3d_tiny" in \
        capsys.readouterr().out


@pytest.mark.skipif(not (ROOT / "app" / "zoo" / "index.json").is_file(),
                    reason="app/zoo is not built (python app/zoo_build.py)")
def test_zoo_list_prints_a_table(capsys):
    assert main(["zoo", "list", "--root", str(ROOT / "app" / "zoo")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "task", "MMACs", "M", "params", "accuracy", "title"]
    assert set(lines[1]) == {"-"}
    assert lines[2].split()[1] in ("classification", "segmentation")
    assert "{" not in "\n".join(lines)  # no raw dicts
