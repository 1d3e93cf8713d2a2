"""``python -m cakes_lite profile``: per-layer MACs/params of a factory-built (shrunk) model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from torch import nn

import cakes_lite as cl
from cakes_lite.cli import main

ROOT = Path(__file__).resolve().parents[1]
FACTORY = f"{__name__}:tiny_net"


def tiny_net(width: int = 4, num_classes: int = 3) -> nn.Module:
    """A small model of our own (the models package is not needed by these tests)."""
    return nn.Sequential(
        nn.Conv3d(1, width, 3, padding=1, bias=False), nn.BatchNorm3d(width), nn.ReLU(),
        nn.Conv3d(width, 2 * width, 3, stride=2, padding=1, bias=False), nn.ReLU(),
        nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(2 * width, num_classes),
    )


def not_a_model() -> int:
    return 3


def run_json(capsys, *argv: str) -> dict:
    assert main(["profile", "--model", FACTORY, "--input", "1,1,4,8,8", "--format", "json",
                 *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_report_matches_library_profile(capsys):
    report = run_json(capsys, "--arg", "width=6")
    prof = cl.profile(tiny_net(6), (1, 1, 4, 8, 8))
    assert (report["macs"], report["params"]) == (prof.macs, prof.params)
    assert [r["name"] for r in report["layers"]] == ["0", "1", "3", "7"]  # MACs or params only
    assert report["layers"][0] == {"name": "0", "type": "Conv3d", "output_shape": [1, 6, 4, 8, 8],
                                   "macs": 6 * 4 * 8 * 8 * 27, "params": 6 * 27, "plan": None}
    assert "unshrunk" not in report


def test_layout_is_applied_and_compared(capsys, tmp_path):
    layout = cl.Layout({"3": {"kxkxk": 2, "1xkxk": 3, "kx1x1": 3}}, {"method": "hand"})
    layout.to_json(tmp_path / "l.json")
    report = run_json(capsys, "--layout", str(tmp_path / "l.json"))
    shrunk = cl.profile(cl.shrink(tiny_net(), layout), (1, 1, 4, 8, 8))
    assert report["macs"] == shrunk.macs < report["unshrunk"]["macs"]
    assert report["layers"][2]["type"] == "CAKESConv3d"
    assert report["layout"] == {"layers": 1, "meta": {"method": "hand"}}


def test_table_output_lists_layers_and_totals(capsys):
    assert main(["profile", "--model", FACTORY, "--input", "2,1,4,8,8",
                 "--uniform", "video-123d", "--all"]) == 0
    out = capsys.readouterr().out
    prof = cl.profile(cl.shrink(tiny_net(), cl.Layout.uniform(tiny_net(), "video-123d")),
                      (2, 1, 4, 8, 8))
    assert f"total: {prof.macs:,} MACs" in out and f"{prof.params:,} params" in out
    assert "CAKESConv3d" in out and "AdaptiveAvgPool3d" in out and "unshrunk:" in out
    assert "2 layers replaced" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "no_such_module_xyz:f"], "--model: cannot import module 'no_such_module_xyz'"),
        (["--model", f"{__name__}:missing"], "has no attribute 'missing'"),
        (["--model", f"{__name__}:not_a_model"], "returned int, expected an nn.Module"),
        (["--model", FACTORY, "--input", "1,a,3"], "--input: expected positive ints"),
        (["--model", FACTORY, "--arg", "width"], "--arg: expected KEY=VALUE"),
        (["--model", FACTORY, "--input", "1,1,4,8,8", "--layout", "/nonexistent.json"],
         "nonexistent.json"),
    ],
)
def test_errors_are_reported_with_exit_code_2(capsys, argv, message):
    assert main(["profile", *argv]) == 2
    assert message in capsys.readouterr().err


def test_invalid_layout_names_the_layer(capsys, tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps({"3": {"kxkxk": 5}}))
    assert main(["profile", "--model", FACTORY, "--layout", str(tmp_path / "bad.json"),
                 "--input", "1,1,4,8,8"]) == 2
    assert "layer '3': split must sum to out_channels=8, got 5" in capsys.readouterr().err


def test_python_dash_m_entry_point(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(Path(__file__).parent)])}
    result = subprocess.run(
        [sys.executable, "-m", "cakes_lite", "profile", "--model", "test_cli_core:tiny_net",
         "--input", "1,1,4,8,8", "--format", "json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["macs"] == cl.profile(tiny_net(), (1, 1, 4, 8, 8)).macs


def test_key_value_arguments_are_parsed_by_one_function():
    from cakes_lite.cli.common import parse_kwargs
    from cakes_lite.cli.train import parse_model_args

    assert parse_kwargs(["widths=[8,16]", "block=basic", "k=3"]) == {
        "widths": [8, 16], "block": "basic", "k": 3}
    assert parse_model_args(["width=4"]) == {"width": 4}
    with pytest.raises(ValueError, match=r"--model-arg: expected KEY=VALUE.*'9x=1'"):
        parse_model_args(["9x=1"])
    with pytest.raises(ValueError, match=r"--arg: expected KEY=VALUE.*'novalue'"):
        parse_kwargs(["novalue"])


def test_help_answers_without_importing_torch():
    # `python -m cakes_lite CMD --help` must stay fast: the package and the CLI import lazily
    code = ("import contextlib, io, sys\n"
            "from cakes_lite.cli import main\n"
            "for cmd in ('profile', 'search', 'train', 'eval', 'zoo'):\n"
            "    with contextlib.redirect_stdout(io.StringIO()):\n"
            "        try:\n"
            "            main([cmd, '--help'])\n"
            "        except SystemExit:\n"
            "            pass\n"
            "print(sorted(m for m in ('torch', 'numpy', 'gradio') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_profile_table_shows_each_cakes_layers_forward_plan(capsys):
    from cakes_lite.fast.plans import PLANS

    assert main(["profile", "--uniform", "video-123d", "--input", "1,3,8,16,16"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-1] == "plan"
    cakes = [ln.split() for ln in lines if "CAKESConv3d" in ln]
    assert cakes and all(row[-1] in PLANS for row in cakes)
    assert all(ln.split()[-1] == "-" for ln in lines if " Conv3d " in ln)
