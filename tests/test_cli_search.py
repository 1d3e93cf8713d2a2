"""``python -m cakes_lite search``: writes a layout JSON that shrink() applies to the same model."""

from __future__ import annotations

import json

import pytest
import torch

import cakes_lite as cl

pytest.importorskip("cakes_lite.models")
pytest.importorskip("cakes_lite.data")

from cakes_lite.cli import main  # noqa: E402
from cakes_lite.models import build_model  # noqa: E402


def test_search_cli_writes_a_usable_layout(tmp_path, capsys):
    out = tmp_path / "layout.json"
    argv = ["search", "--data", "synthetic-video", "--frames", "4", "--size", "16",
            "--train-samples", "16", "--batch-size", "8", "--epochs", "1", "--mode", "cost",
            "--budget", "0.5", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[0].startswith("epoch 1/1 loss")
    summary = json.loads(printed[-1])
    assert summary["layout"] == str(out) and abs(summary["cost_fraction"] / 0.5 - 1) <= 0.02
    layout = cl.Layout.from_json(out)
    assert layout.meta["mode"] == "cost" and layout.meta["model"] == "resnet3d_tiny"
    model = build_model("resnet3d_tiny", num_classes=len(cl.data.SomethingLite(1).classes),
                        builder="3d")
    assert set(layout) == {n for n, m in model.named_modules() if cl.layout.is_searchable(m)}
    shrunk = cl.shrink(model, layout)
    assert shrunk(torch.randn(1, 3, 4, 16, 16)).shape[0] == 1


def test_search_cli_rejects_a_bad_budget(tmp_path, capsys):
    argv = ["search", "--data", "synthetic-video", "--frames", "4", "--size", "16",
            "--train-samples", "8", "--batch-size", "8", "--epochs", "1", "--budget", "0.01",
            "--no-progress", "--out", str(tmp_path / "l.json")]
    assert main(argv) == 2
    assert "smallest reachable" in capsys.readouterr().err
    assert not (tmp_path / "l.json").exists()


def test_search_cli_channels_last_runs_the_supernet_in_channels_last_memory(tmp_path, capsys):
    """``--channels-last``: every training forward of a searched layer gets channels_last_3d
    input, and the layout is written as without it."""
    seen = []
    hook = torch.nn.modules.module.register_module_forward_pre_hook(
        lambda m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last_3d)
                                    and not args[0].is_contiguous())
        if isinstance(m, cl.SearchConv3d) and m.training else None)
    out = tmp_path / "layout.json"
    try:
        assert main(["search", "--data", "synthetic-video", "--frames", "4", "--size", "16",
                     "--train-samples", "16", "--batch-size", "8", "--epochs", "1",
                     "--channels-last", "--no-progress", "--out", str(out)]) == 0
    finally:
        hook.remove()
    assert seen and set(seen) == {True}
    assert set(cl.Layout.from_json(out)) and json.loads(
        capsys.readouterr().out.strip().splitlines()[-1])["layout"] == str(out)
