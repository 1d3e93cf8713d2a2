"""The zoo format (written, then read back), the bundled zoo (committed files), and the official
ResNet-50 layouts' analytic cost."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from cakes_lite import Layout, profile, zoo
from cakes_lite.models import resnet3d_tiny
from cakes_lite.ops import CAKESConv3d

ROOT = Path(__file__).resolve().parents[1]
ZOO = Path(os.environ.get("CAKES_LITE_ZOO", ROOT / "app" / "zoo"))
built = pytest.mark.skipif(not (ZOO / "index.json").is_file(),
                           reason="app/zoo is not built (python app/zoo_build.py)")


def test_official_layouts_cover_resnet50_and_cost_as_the_paper_says():
    layouts = zoo.official_layouts()
    assert sorted(layouts) == sorted(zoo.OFFICIAL_TITLES)
    widths = {f"layer{s}.{b}.conv2": w for s, (w, n, _) in enumerate(zoo.RESNET50_STAGES, 1)
              for b in range(n)}
    for lay in layouts.values():
        assert {n: sum(s.values()) for n, s in lay.items()} == widths
    full = zoo.resnet50_macs({})
    # 16 layers, each T·H·W·C²·27 with C·H constant per stage: 16 · 8·56²·64²·27
    assert full["macs"] == full["macs_3d"] == 16 * 8 * 56 * 56 * 64 * 64 * 27
    c12 = zoo.resnet50_macs(layouts["CAKES12D_C"])
    # only 2D (9) and 1D (3) sub-kernels: between 1/9 and 1/3 of full 3D
    assert 3 / 27 < c12["macs"] / c12["macs_3d"] < 9 / 27
    assert len(c12["layers"]) == 16


@pytest.mark.parametrize("bad,match", [({"layer5.0.conv2": {"kxkxk": 8}}, "not one of"),
                                       ({"layer1.0.conv2": {"kxkxk": 63}}, "sum to 64")])
def test_resnet50_macs_rejects_layers_resnet50_does_not_have(bad, match):
    with pytest.raises(ValueError, match=match):
        zoo.resnet50_macs(bad)


@built
def test_zoo_files_small_and_complete():
    index = zoo.read_index(ZOO)
    total = sum(p.stat().st_size for p in ZOO.iterdir() if p.is_file())
    assert total <= 10 * 2**20, f"zoo is {total / 2**20:.1f} MB, over 10 MB"
    tasks = {m["task"] for m in zoo.list_models(ZOO)}
    assert tasks == {"classification", "segmentation"}
    for meta in zoo.list_models(ZOO):
        for key in ("data", "seed", "metrics", "macs", "params", "classes", "input_shape"):
            assert key in meta, f"{meta['name']}: metadata lacks {key!r}"
    build = index["build"]
    parts = build.get("parts", [build])  # one build, or parallel partial builds
    assert sorted(n for p in parts for n in p["models"]) == sorted(index["models"])
    assert all(p["seconds"] > 0 and p["recipe"] == build["recipe"] for p in parts)


@built
@pytest.mark.parametrize("name", json.loads((ZOO / "index.json").read_text())["models"]
                         if (ZOO / "index.json").is_file() else [])
def test_zoo_model_loads_and_matches_its_metadata(name):
    model, meta = zoo.load_model(name, ZOO)
    layout = zoo.load_layout(name, ZOO)
    cakes = {n: m.split for n, m in model.named_modules() if isinstance(m, CAKESConv3d)}
    assert cakes == (dict(layout) if layout is not None else {})
    if layout is not None:
        assert isinstance(layout, Layout)
    p = profile(model, tuple(meta["input_shape"]))
    assert (p.macs, p.params) == (meta["macs"], meta["params"])
    x = torch.rand(meta["input_shape"])
    with torch.no_grad():
        out = model(x)
    n = len(meta["classes"])
    expected = (1, n) if meta["task"] == "classification" else (1, n, *meta["input_shape"][2:])
    assert tuple(out.shape) == expected and torch.isfinite(out).all()


def test_missing_zoo_says_how_to_build(tmp_path):
    with pytest.raises(FileNotFoundError, match="app/zoo_build.py"):
        zoo.list_models(tmp_path)


def test_zoo_root_is_explicit():
    with pytest.raises(TypeError):
        zoo.list_models()  # no default folder outside the package
    with pytest.raises(ValueError, match="root: expected the zoo folder"):
        zoo.read_index(None)


def test_zoo_build_recipe_lives_with_the_app(capsys, monkeypatch):
    import importlib.util
    import sys

    assert not (ROOT / "cakes_lite" / "zoo_build.py").exists()
    spec = importlib.util.spec_from_file_location("zoo_build", ROOT / "app" / "zoo_build.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "zoo_build", module)  # dataclasses look it up there
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script prepends app/ to sys.path
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as exit_:
        module.main(["--help"])
    assert exit_.value.code == 0 and "--out" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        module.main(["--only", "no_such_model", "--out", "unused"])
    assert exit_.value.code == 2 and "no_such_model" in capsys.readouterr().err


def test_save_model_and_write_index_give_what_the_readers_load(tmp_path, no_autotune):
    layout = Layout.uniform(resnet3d_tiny(5, widths=(8, 8, 8), stem_width=8), "video-12d")
    model = resnet3d_tiny(5, widths=(8, 8, 8), stem_width=8, layout=layout).eval()
    meta = {"title": "tiny", "task": "classification", "input_shape": [1, 3, 4, 16, 16],
            "classes": list("abcde")}
    written = zoo.save_model("tiny", model, tmp_path / "z", meta, layout)
    zoo.write_index(tmp_path / "z", ["tiny"], {"command": "test"})
    assert sorted(p.name for p in (tmp_path / "z").iterdir()) == [
        "index.json", "tiny.json", "tiny.layout.json", "tiny.safetensors"]  # no temporary files
    assert zoo.list_models(tmp_path / "z") == [written] == [zoo.read_meta("tiny", tmp_path / "z")]
    assert zoo.read_index(tmp_path / "z") == {"models": ["tiny"], "build": {"command": "test"}}
    assert zoo.load_layout("tiny", tmp_path / "z") == layout
    loaded, meta_back = zoo.load_model("tiny", tmp_path / "z")
    assert meta_back["macs"] == profile(model, (1, 3, 4, 16, 16)).macs
    x = torch.rand(1, 3, 4, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
