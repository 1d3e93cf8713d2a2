"""Named recipes: the settings of the paper's experiments, one object each.

A :class:`Recipe` fixes the model, the data pipeline and the optimisation of one experiment,
with a source note for every setting (where the value comes from). ``python -m cakes_lite
recipes`` lists them; ``python -m cakes_lite train|search --recipe NAME`` runs one, any flag
(or ``--set section.key=VALUE``) overriding it; ``--smoke`` shrinks it to a CPU-sized run.

* ``ssv1-r50`` — ResNet-50 I3D on Something-Something V1, the authors' training
  (``opts.py`` / ``main.py`` / the README's commands of yucornetto/CAKES);
* ``ssv1-r50-search-p`` / ``ssv1-r50-search-c`` — their searches, performance priority
  (140 epochs, steps at 100 / 120) and cost priority (L1 on γ, s = 1e-4, cost re-weighting);
* ``msd-unet`` / ``msd-unet-search-c`` — a 3D U-Net on a Medical Segmentation Decathlon task.
  The authors released no segmentation code: these settings are cakes_lite's, and the notes
  say so.

Torch-free (the CLI's ``recipes`` and ``--help`` stay fast). Walkthrough: ``docs/cluster.md``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

SECTIONS = ("model", "data", "optim", "search")
#: settings that may be null although their default is not ("off" / "native grid")
NULLABLE = {"optim.grad_clip", "data.spacing", "data.ct_window", "search.budget"}
_AUTHORS = "the authors' "  # prefix of notes on values taken from yucornetto/CAKES


@dataclass(frozen=True)
class Recipe:
    """One experiment's settings (see the module docstring).

    Attributes:
        name: the registry key, e.g. ``"ssv1-r50"``.
        summary: one line.
        command: ``"train"`` or ``"search"`` — what the recipe is for.
        dataset: ``"ssv1"`` (Something-Something V1 frame folders) or ``"msd"`` (a Decathlon
            task folder).
        model, data, optim, search: the settings (``search`` empty for training recipes).
        sources: ``"section.key"`` -> where the value comes from.
        smoke: ``"section.key"`` -> value, applied by :meth:`smoked`.
    """

    name: str
    summary: str
    command: str
    dataset: str
    model: Mapping[str, Any]
    data: Mapping[str, Any]
    optim: Mapping[str, Any]
    search: Mapping[str, Any] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)
    smoke: Mapping[str, Any] = field(default_factory=dict)

    @property
    def task(self) -> str:
        return "classification" if self.dataset == "ssv1" else "segmentation"

    def settings(self) -> dict[str, Any]:
        """``{"section.key": value}`` of every setting, in section order."""
        return {f"{s}.{k}": v for s in SECTIONS for k, v in getattr(self, s).items()}

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (what checkpoints and layouts store as ``recipe``)."""
        return {"name": self.name, "summary": self.summary, "command": self.command,
                "dataset": self.dataset, **{s: _plain(getattr(self, s)) for s in SECTIONS},
                "sources": dict(self.sources)}

    def with_settings(self, values: Mapping[str, Any], *, source: str = "--set") -> Recipe:
        """A copy with ``{"section.key": value}`` changed; each key must be one of this
        recipe's settings and each value of its type (ints for floats are fine; ``None``
        where the default is None, or for a setting in :data:`NULLABLE`).

        Raises:
            ValueError: naming the recipe, the setting and what was expected.
        """
        sections = {s: dict(getattr(self, s)) for s in SECTIONS}
        for dotted, value in values.items():
            section, _, key = dotted.partition(".")
            if section not in SECTIONS or key not in sections[section]:
                raise ValueError(f"{source}: recipe {self.name!r} has no setting {dotted!r}; "
                                 f"expected one of {sorted(self.settings())}")
            sections[section][key] = _checked(self.name, dotted, sections[section][key], value,
                                              source)
        return replace(self, **sections)

    def smoked(self) -> Recipe:
        """The CPU-sized copy ``--smoke`` runs (narrow network, 4 frames of 64 px or small
        patches, one short epoch)."""
        return replace(self.with_settings(self.smoke, source="smoke"),
                       summary=self.summary + " (smoke size)")


def _plain(section: Mapping[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in section.items()}


def _checked(recipe: str, dotted: str, default: Any, value: Any, source: str) -> Any:
    """``value`` converted to the type of ``default``, or a ValueError."""
    if value is None and (default is None or dotted in NULLABLE):
        return None
    if default is None:
        return value
    ok = (isinstance(value, bool) if isinstance(default, bool) else
          isinstance(value, int) and not isinstance(value, bool) if isinstance(default, int) else
          isinstance(value, (int, float)) and not isinstance(value, bool)
          if isinstance(default, float) else
          isinstance(value, (list, tuple)) if isinstance(default, (list, tuple)) else
          isinstance(value, type(default)))
    if not ok:
        raise ValueError(f"{source}: recipe {recipe!r} setting {dotted!r} expects "
                         f"{_kind(default)} (like {json.dumps(_plain({'v': default})['v'])}), "
                         f"got {json.dumps(value) if _jsonable(value) else repr(value)}")
    if isinstance(default, float):
        return float(value)
    return tuple(value) if isinstance(default, (list, tuple)) else value


def _kind(v: Any) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        type(v), "a list")


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
    except (TypeError, ValueError):
        return False
    return True


def parse_settings(pairs: list[str], option: str = "--set") -> dict[str, Any]:
    """``["optim.lr=0.01", "data.frames=16"]`` -> ``{"optim.lr": 0.01, "data.frames": 16}``
    (each value parsed as JSON, else kept as a string)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not re.fullmatch(r"[a-z]+\.[a-z_0-9]+", key):
            raise ValueError(f"{option}: expected SECTION.KEY=VALUE (e.g. optim.lr=0.01), got "
                             f"{pair!r}")
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out


def parse_subset(text: str, dataset: str) -> tuple[int, int] | int:
    """``--subset``: ``"CLASSESxCLIPS"`` for SSv1 (e.g. ``"10x20"``: 10 classes, up to 20 clips
    each), ``"CASES"`` for MSD."""
    if dataset == "ssv1":
        m = re.fullmatch(r"\s*(\d+)\s*[x×,]\s*(\d+)\s*", text)
        if not m or min(int(m.group(1)), int(m.group(2))) < 1:
            raise ValueError(f"--subset: expected CLASSESxCLIPS_PER_CLASS for ssv1 (e.g. 10x20),"
                             f" got {text!r}")
        return int(m.group(1)), int(m.group(2))
    if not text.strip().isdigit() or int(text) < 1:
        raise ValueError(f"--subset: expected a positive number of cases for msd, got {text!r}")
    return int(text)


# -- the registry ------------------------------------------------------------------------------

_SSV1_MODEL = {"name": "resnet_i3d", "depth": 50, "width": 64, "builder": "3d", "dropout": 0.3}
_SSV1_DATA = {"frames": 8, "size": 224, "scale_size": 256, "scales": (1.0, 0.875, 0.75, 0.66),
              "flip": True, "flip_pairs": "ssv1", "clips": 1, "crops": 1}
_SSV1_OPTIM = {"optimizer": "sgd", "momentum": 0.9, "nesterov": False, "lr": 0.04,
               "lr_batch": 96, "batch_size": 96, "epochs": 70, "warmup_epochs": 5.0,
               "warmup_start": 0.25, "lr_steps": (50, 60), "lr_gamma": 0.1,
               "weight_decay": 3e-4, "param_groups": "bn_bias", "bias_lr_mult": 2.0,
               "grad_clip": 20.0, "schedule": "multistep", "sync_bn": False,
               "max_steps_per_epoch": 0}
_SSV1_SOURCES = {
    "model.name": "ResNet I3D as the authors' I3D.py builds it (README: --type I3D)",
    "model.depth": _AUTHORS + "README commands: --arch resnet50",
    "model.width": "ImageNet ResNet-50's widths (64 … 512)",
    "model.builder": "full 3D convolutions (I3D); --layout FILE shrinks them",
    "model.dropout": _AUTHORS + "opts.py: --dropout 0.3",
    "data.frames": _AUTHORS + "README commands: --num_segments 8 (TSN segments)",
    "data.size": _AUTHORS + "models.py: input_size 224",
    "data.scale_size": _AUTHORS + "models.py: scale_size 256 (evaluation resize)",
    "data.scales": _AUTHORS + "models.py: GroupMultiScaleCrop(224, [1, .875, .75, .66])",
    "data.flip": _AUTHORS + "models.py: GroupRandomHorizontalFlip(target_transforms)",
    "data.flip_pairs": _AUTHORS + "main.py: labels 86<->87, 93<->94, 166<->167 swap on a flip "
                       "('none' for other class lists)",
    "data.clips": _AUTHORS + "evaluation: one clip (segment centres)",
    "data.crops": _AUTHORS + "main.py: GroupCenterCrop(224), one crop",
    "optim.optimizer": _AUTHORS + "main.py: torch.optim.SGD",
    "optim.momentum": _AUTHORS + "opts.py: --momentum 0.9 (plain momentum)",
    "optim.nesterov": _AUTHORS + "main.py: SGD without nesterov",
    "optim.lr": _AUTHORS + "README commands: -b 96 --lr 0.04",
    "optim.lr_batch": "the batch optim.lr belongs to; lr = lr · global batch / lr_batch "
                      "(linear scaling, Goyal et al. 2017)",
    "optim.batch_size": _AUTHORS + "README commands: -b 96 (global, 8 GPUs × 12)",
    "optim.epochs": _AUTHORS + "opts.py: --epochs 70",
    "optim.warmup_epochs": _AUTHORS + "opts.py: --warm 5 (utils.py WarmUpLR, per step)",
    "optim.warmup_start": _AUTHORS + "utils.py: warm-up from lr 0.01 = 0.25 × 0.04",
    "optim.lr_steps": _AUTHORS + "opts.py: --lr_steps 50 60",
    "optim.lr_gamma": _AUTHORS + "main.py adjust_learning_rate: × 0.1 per step",
    "optim.weight_decay": _AUTHORS + "opts.py: --weight_decay 3e-4",
    "optim.param_groups": _AUTHORS + "main.py get_optim_policies: no decay on BN and biases",
    "optim.bias_lr_mult": _AUTHORS + "main.py get_optim_policies: bias lr_mult 2",
    "optim.grad_clip": _AUTHORS + "opts.py: --clip-gradient 20",
    "optim.schedule": _AUTHORS + "main.py: warm-up, then steps",
    "optim.sync_bn": _AUTHORS + "main.py: DataParallel, BN statistics per GPU (12 clips)",
    "optim.max_steps_per_epoch": "0: whole epochs",
}
_SEARCH_SOURCES = {
    "search.space": _AUTHORS + "README: op_code conv1_2_3d (sub-kernels 3×3×3, 1×3×3, 3×1×1)",
    "search.weight_warmup_epochs": "0: the paper (γ trains from the first step); cakes_lite's "
                                   "run_search can first train the weights alone",
    "search.budget": "none: keep the top C_out channels per layer, as the paper",
    "search.round_to": "1: no rounding of group sizes",
    "search.target": "none: the paper's fixed L1 strength s; a cost fraction in (0, 1] makes "
                     "cakes_lite's run_search steer the L1 strength to it (cost priority only, "
                     "search.sparsity then unused)",
}
_SSV1_SMOKE = {"model.width": 8, "data.frames": 4, "data.size": 64, "data.scale_size": 73,
               "optim.batch_size": 4, "optim.epochs": 1, "optim.warmup_epochs": 0.0,
               "optim.max_steps_per_epoch": 4}

_MSD_MODEL = {"name": "unet3d", "widths": (32, 64, 128, 256), "builder": "3d",
              "convs_per_level": 2}
_MSD_DATA = {"spacing": (1.5, 1.5, 1.5), "patch_size": (96, 96, 96), "patches_per_epoch": 500,
             "foreground": 0.67, "ct_window": None, "val_fraction": 0.2, "flip_axes": (0,),
             "overlap": 0.5, "sw_batch_size": 4}
_MSD_OPTIM = {"optimizer": "adamw", "lr": 1e-3, "lr_batch": 2, "batch_size": 2, "epochs": 300,
              "warmup_epochs": 5.0, "weight_decay": 1e-5, "param_groups": "default",
              "grad_clip": 12.0, "schedule": "cosine", "sync_bn": False,
              "max_steps_per_epoch": 0}
_OURS = "cakes_lite's choice (the authors released no segmentation code)"
_MSD_SOURCES = {
    "model.name": "cakes_lite's 3D U-Net (conv-BN-ReLU levels, transposed-conv decoder); " + _OURS,
    "model.widths": "four levels of 32 … 256 channels; " + _OURS,
    "data.spacing": "1.5 mm isotropic; use the task's median spacing for serious runs; " + _OURS,
    "data.patch_size": "96³ patches, common for 3D U-Nets on one GPU; " + _OURS,
    "data.patches_per_epoch": "250 steps of 2 patches per epoch; " + _OURS,
    "data.foreground": "2 of 3 patches centred on a foreground voxel (nnU-Net samples 1 of 3); "
                       + _OURS,
    "data.ct_window": "none: each CT case clipped to its 0.5 … 99.5 percentiles, then z-scored",
    "data.flip_axes": "left-right flips only (other flips can swap anatomical labels)",
    "data.overlap": "sliding-window evaluation, half-window overlap, Gaussian blending (MONAI)",
    "optim.optimizer": "AdamW with cross-entropy + soft Dice; " + _OURS,
    "optim.lr": "1e-3 at batch 2, scaled linearly with the global batch; " + _OURS,
    "optim.epochs": "300 epochs × 250 steps; " + _OURS,
    "optim.grad_clip": "norm 12 (as nnU-Net); " + _OURS,
    "optim.sync_bn": "per-GPU BN statistics (2 patches per GPU; --sync-bn to pool them)",
    "model.builder": "full 3D convolutions; --layout FILE shrinks them",
    "model.convs_per_level": "two conv-BN-ReLU units per level, as the original 3D U-Net",
    "data.val_fraction": "a seeded fifth of the cases for validation; " + _OURS,
    "data.sw_batch_size": "windows per forward pass in evaluation (memory, not accuracy)",
    "optim.lr_batch": "the batch optim.lr belongs to (linear scaling)",
    "optim.batch_size": "2 patches of 96³ (global); " + _OURS,
    "optim.warmup_epochs": "linear warm-up, then cosine to 0; " + _OURS,
    "optim.weight_decay": "on conv weights only; " + _OURS,
    "optim.param_groups": "decay on weights with >= 2 dims, none on BN and biases",
    "optim.schedule": "warm-up + cosine (fit's default); " + _OURS,
    "optim.max_steps_per_epoch": "0: whole epochs",
}
_MSD_SMOKE = {"model.widths": (4, 8), "data.spacing": None, "data.patch_size": (16, 16, 16),
              "data.patches_per_epoch": 8, "data.sw_batch_size": 2, "optim.epochs": 1,
              "optim.warmup_epochs": 0.0}

RECIPES: dict[str, Recipe] = {}


def _register(recipe: Recipe) -> None:
    RECIPES[recipe.name] = recipe


_register(Recipe(
    "ssv1-r50", "ResNet-50 I3D on Something-Something V1, the authors' training (70 epochs)",
    "train", "ssv1", _SSV1_MODEL, _SSV1_DATA, _SSV1_OPTIM, {}, _SSV1_SOURCES, _SSV1_SMOKE))
_register(Recipe(
    "ssv1-r50-search-p", "CAKES^P search (1,2,3D) on SSv1: sampled channels, 140 epochs",
    "search", "ssv1", _SSV1_MODEL, _SSV1_DATA,
    {**_SSV1_OPTIM, "epochs": 140, "lr_steps": (100, 120)},
    {"mode": "performance", "space": "video-123d", "sparsity": 0.0, "reweight": False,
     "weight_warmup_epochs": 0, "budget": None, "round_to": 1, "target": None},
    {**_SSV1_SOURCES, **_SEARCH_SOURCES,
     "optim.epochs": _AUTHORS + "README, search P: --epochs 140",
     "optim.lr_steps": _AUTHORS + "README, search P: --lr_steps 100 120",
     "search.mode": _AUTHORS + "README, search P: --search --op_code conv1_2_3d_dropout",
     "search.sparsity": _AUTHORS + "README, search P: no -sr (no L1 on γ)",
     "search.reweight": "no L1 term to weight"},
    {**_SSV1_SMOKE, "optim.lr_steps": ()}))
_register(Recipe(
    "ssv1-r50-search-c", "CAKES^C search (1,2,3D) on SSv1: L1 on γ, s = 1e-4, cost re-weighted",
    "search", "ssv1", _SSV1_MODEL, _SSV1_DATA, dict(_SSV1_OPTIM),
    {"mode": "cost", "space": "video-123d", "sparsity": 1e-4, "reweight": True,
     "weight_warmup_epochs": 0, "budget": None, "round_to": 1, "target": None},
    {**_SSV1_SOURCES, **_SEARCH_SOURCES,
     "optim.epochs": _AUTHORS + "README, search C: no --epochs, so opts.py's 70",
     "optim.lr_steps": _AUTHORS + "README, search C: no --lr_steps, so opts.py's 50 60",
     "search.mode": _AUTHORS + "README, search C: --search -sr --op_code conv1_2_3d",
     "search.sparsity": _AUTHORS + "README, search C: --s 0.0001",
     "search.reweight": _AUTHORS + "README: --reweight (main.py: 9/13, 3/13, 1/13 of s)"},
    {**_SSV1_SMOKE, "optim.lr_steps": ()}))
_register(Recipe(
    "msd-unet", "3D U-Net on a Medical Segmentation Decathlon task (cakes_lite's settings)",
    "train", "msd", _MSD_MODEL, _MSD_DATA, _MSD_OPTIM, {}, _MSD_SOURCES, _MSD_SMOKE))
_register(Recipe(
    "msd-unet-search-c", "CAKES^C search of the 3D U-Net in volume-all (cakes_lite's settings)",
    "search", "msd", _MSD_MODEL, _MSD_DATA, {**_MSD_OPTIM, "epochs": 100},
    {"mode": "cost", "space": "volume-all", "sparsity": 1e-4, "reweight": True,
     "weight_warmup_epochs": 0, "budget": None, "round_to": 1, "target": None},
    {**_MSD_SOURCES, "optim.epochs": "100 epochs × 250 steps; " + _OURS,
     "search.mode": "cost priority, as the paper's medical experiments; " + _OURS,
     "search.space": "all seven axis-aligned sub-kernels (volumes have no special axis)",
     "search.sparsity": "the video search's s = 1e-4 (authors' README); " + _OURS,
     "search.reweight": "L1 weighted by sub-kernel volume, as the authors' --reweight",
     "search.weight_warmup_epochs": _SEARCH_SOURCES["search.weight_warmup_epochs"],
     "search.budget": _SEARCH_SOURCES["search.budget"],
     "search.round_to": _SEARCH_SOURCES["search.round_to"],
     "search.target": _SEARCH_SOURCES["search.target"]},
    _MSD_SMOKE))


def get_recipe(name: str, option: str = "--recipe") -> Recipe:
    """The registered recipe ``name``; ValueError (naming ``option``) listing the names
    otherwise."""
    if name not in RECIPES:
        raise ValueError(f"{option}: expected one of {list(RECIPES)}, got {name!r}")
    return RECIPES[name]


__all__ = ["NULLABLE", "RECIPES", "Recipe", "get_recipe", "parse_settings", "parse_subset"]
