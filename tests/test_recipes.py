"""Recipes: the paper's settings as the authors' code has them, every setting with a source note,
overrides that refuse unknown settings and wrong types, the --smoke copies, the cost on paper,
and ``python -m cakes_lite recipes`` (table and JSON)."""

from __future__ import annotations

import json

import pytest

from cakes_lite.cli import main
from cakes_lite.recipe_cost import SSV1_VIDEOS, estimate
from cakes_lite.recipes import RECIPES, get_recipe, parse_settings, parse_subset

# (recipe, setting, value) — from the authors' opts.py / main.py / utils.py / README commands
PAPER = [
    ("ssv1-r50", "model.depth", 50), ("ssv1-r50", "model.dropout", 0.3),
    ("ssv1-r50", "data.frames", 8), ("ssv1-r50", "data.size", 224),
    ("ssv1-r50", "data.scale_size", 256), ("ssv1-r50", "data.scales", (1.0, 0.875, 0.75, 0.66)),
    ("ssv1-r50", "optim.optimizer", "sgd"), ("ssv1-r50", "optim.momentum", 0.9),
    ("ssv1-r50", "optim.nesterov", False), ("ssv1-r50", "optim.lr", 0.04),
    ("ssv1-r50", "optim.lr_batch", 96), ("ssv1-r50", "optim.batch_size", 96),
    ("ssv1-r50", "optim.epochs", 70), ("ssv1-r50", "optim.warmup_epochs", 5.0),
    ("ssv1-r50", "optim.warmup_start", 0.25), ("ssv1-r50", "optim.lr_steps", (50, 60)),
    ("ssv1-r50", "optim.lr_gamma", 0.1), ("ssv1-r50", "optim.weight_decay", 3e-4),
    ("ssv1-r50", "optim.param_groups", "bn_bias"), ("ssv1-r50", "optim.bias_lr_mult", 2.0),
    ("ssv1-r50", "optim.grad_clip", 20.0), ("ssv1-r50", "optim.sync_bn", False),
    ("ssv1-r50-search-p", "optim.epochs", 140), ("ssv1-r50-search-p", "optim.lr_steps", (100, 120)),
    ("ssv1-r50-search-p", "search.mode", "performance"),
    ("ssv1-r50-search-p", "search.sparsity", 0.0),
    ("ssv1-r50-search-p", "search.weight_warmup_epochs", 0),
    ("ssv1-r50-search-c", "optim.epochs", 70), ("ssv1-r50-search-c", "optim.lr_steps", (50, 60)),
    ("ssv1-r50-search-c", "search.mode", "cost"), ("ssv1-r50-search-c", "search.sparsity", 1e-4),
    ("ssv1-r50-search-c", "search.reweight", True),
    ("ssv1-r50-search-c", "search.space", "video-123d"),
    ("msd-unet-search-c", "search.space", "volume-all"),
]


@pytest.mark.parametrize("name, key, value", PAPER)
def test_paper_settings(name, key, value):
    assert get_recipe(name).settings()[key] == value


@pytest.mark.parametrize("name", list(RECIPES))
def test_every_setting_has_a_source_and_the_smoke_copy_is_small(name):
    recipe = RECIPES[name]
    assert set(recipe.settings()) <= set(recipe.sources)
    assert all(note.strip() for note in recipe.sources.values())
    smoke = recipe.smoked().settings()
    assert smoke["optim.epochs"] == 1
    if recipe.dataset == "ssv1":
        assert (smoke["model.width"], smoke["data.frames"], smoke["data.size"]) == (8, 4, 64)
        assert smoke["optim.max_steps_per_epoch"] > 0
    else:
        assert max(smoke["data.patch_size"]) <= 16 and max(smoke["model.widths"]) <= 8
    assert recipe.settings()["optim.epochs"] > 1  # the registry entry itself is untouched


def test_msd_notes_say_the_settings_are_ours():
    for name in ("msd-unet", "msd-unet-search-c"):
        assert "no segmentation code" in RECIPES[name].sources["optim.lr"]


def test_overrides_are_typed_and_named():
    r = get_recipe("ssv1-r50")
    s = r.with_settings({"optim.lr": 1, "optim.lr_steps": [30, 40], "optim.grad_clip": None})
    assert s.optim["lr"] == 1.0 and isinstance(s.optim["lr"], float)
    assert s.optim["lr_steps"] == (30, 40) and s.optim["grad_clip"] is None
    assert r.optim["lr"] == 0.04  # a copy
    with pytest.raises(ValueError, match=r"--set: recipe 'ssv1-r50' has no setting "
                                         r"'optim.lrr'; expected one of \[.*'optim.lr'"):
        r.with_settings({"optim.lrr": 0.1})
    with pytest.raises(ValueError, match=r"no setting 'search.mode'"):
        r.with_settings({"search.mode": "cost"})
    with pytest.raises(ValueError, match=r"setting 'optim.epochs' expects an integer \(like 70\)"
                                         r", got 2.5"):
        r.with_settings({"optim.epochs": 2.5})
    with pytest.raises(ValueError, match=r"'optim.nesterov' expects true or false .* got 1"):
        r.with_settings({"optim.nesterov": 1})
    with pytest.raises(ValueError, match=r"'optim.epochs' expects an integer .* got null"):
        r.with_settings({"optim.epochs": None})


@pytest.mark.parametrize("pairs, error", [
    (["lr=0.1"], r"--set: expected SECTION.KEY=VALUE \(e.g. optim.lr=0.01\), got 'lr=0.1'"),
    (["optim.lr"], r"got 'optim.lr'"),
])
def test_parse_settings_errors(pairs, error):
    with pytest.raises(ValueError, match=error):
        parse_settings(pairs)
    assert parse_settings(["optim.lr_steps=[1,2]", "model.builder=2d"]) == \
        {"optim.lr_steps": [1, 2], "model.builder": "2d"}


@pytest.mark.parametrize("text, dataset, expected", [
    ("10x20", "ssv1", (10, 20)), ("4 × 2", "ssv1", (4, 2)), ("3", "msd", 3),
    ("10", "ssv1", r"expected CLASSESxCLIPS_PER_CLASS for ssv1 \(e.g. 10x20\), got '10'"),
    ("0x3", "ssv1", "got '0x3'"), ("2x3", "msd", r"positive number of cases for msd"),
])
def test_parse_subset(text, dataset, expected):
    if isinstance(expected, str):
        with pytest.raises(ValueError, match=expected):
            parse_subset(text, dataset)
    else:
        assert parse_subset(text, dataset) == expected


def test_cost_on_paper_follows_the_formula():
    e = estimate(get_recipe("ssv1-r50"), tflops=50)
    assert e["forward_macs"] == 62_292_455_424  # the pinned ResNet-50 I3D cost (1×3×8×224²)
    total = 70 * (3 * e["forward_macs"] * SSV1_VIDEOS["train"]
                  + e["forward_macs"] * SSV1_VIDEOS["val"])
    assert e["total_macs"] == total
    assert e["gpu_hours"] == pytest.approx(2 * total / 50e12 / 3600)
    cost = estimate(get_recipe("ssv1-r50-search-c"))
    # cost priority: the 16 searched convs run 27 + 9 + 3 taps instead of 27
    assert 1.0 < cost["step_macs"] / cost["forward_macs"] < (27 + 9 + 3) / 27
    assert estimate(get_recipe("ssv1-r50-search-p"))["step_macs"] == e["forward_macs"]
    with pytest.raises(ValueError, match="tflops: expected a positive number, got 0"):
        estimate(get_recipe("ssv1-r50"), tflops=0)


def test_recipes_command_table_and_json(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    for name in RECIPES:
        assert f"\n{name}  (" in "\n" + out
    assert 'optim.lr_steps = [100, 120]' in out and "--clip-gradient 20" in out
    assert main(["recipes", "ssv1-r50", "msd-unet", "--format", "json", "--smoke"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert list(data) == ["ssv1-r50", "msd-unet"]
    assert data["ssv1-r50"]["data"]["frames"] == 4 and data["msd-unet"]["optim"]["epochs"] == 1
    assert data["ssv1-r50"]["sources"]["optim.lr"].startswith("the authors'")


def test_recipes_command_cost_and_unknown_name(capsys):
    assert main(["recipes", "ssv1-r50", "--cost", "--tflops", "100"]) == 0
    out = capsys.readouterr().out
    hours = estimate(get_recipe("ssv1-r50"), 100)["gpu_hours"]
    assert "62.3 GMACs per item and step × 86,017 items × 70 epochs" in out
    assert f"≈ {hours:,.1f} GPU-hours at 100 TFLOP/s sustained" in out
    assert main(["recipes", "ssv1-r18"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "NAME: expected one of ['ssv1-r50'" in err
