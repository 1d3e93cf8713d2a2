"""The options that run a named recipe on real data (``--recipe``, ``--data-root``, ``--smoke``,
``--subset``, ``--set``), and how the ordinary flags override a recipe's settings. Torch-free:
``--help`` must stay fast."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..recipes import RECIPES, Recipe, get_recipe, parse_settings, parse_subset

#: ordinary flag (argparse dest) -> the recipe setting it overrides, per dataset
FLAG_SETTINGS = {
    "epochs": "optim.epochs", "batch_size": "optim.batch_size", "optimizer": "optim.optimizer",
    "weight_decay": "optim.weight_decay", "warmup_epochs": "optim.warmup_epochs",
    "max_steps_per_epoch": "optim.max_steps_per_epoch", "builder": "model.builder",
    "frames": "data.frames", "size": "data.size", "space": "search.space",
    "sparsity": "search.sparsity", "budget": "search.budget", "round_to": "search.round_to",
    "mode": "search.mode", "target": "search.target",
}
#: flags that mean nothing with a recipe (they size the synthetic data sets)
SYNTHETIC_ONLY = ("train_samples", "val_samples", "model")


def add_recipe_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """``--recipe`` & co. for ``train`` / ``search`` (``command``), ``--data-root`` & co. for
    ``eval``."""
    g = parser.add_argument_group(
        "recipes on real data (python -m cakes_lite recipes lists them; docs/cluster.md)")
    if command != "eval":
        g.add_argument("--recipe", choices=list(RECIPES), default=None, metavar="NAME",
                       help=f"a named recipe: {', '.join(RECIPES)}; other flags override it")
        g.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="change one recipe setting, JSON value (e.g. optim.lr_steps=[30,40])"
                            "; repeatable")
        g.add_argument("--smoke", action="store_true", help="the recipe at CPU smoke size "
                       "(narrow network, 4 frames of 64 px or 16³ patches, one short epoch; "
                       "a small subset unless --subset says otherwise)")
        g.add_argument("--sync-bn", action="store_true", help="BatchNorm statistics over all "
                       "processes (default: per process, as the authors' DataParallel)")
    g.add_argument("--data-root", default=None, metavar="ROOT",
                   help="ssv1: the folder with category.txt, the list files and "
                        "20bn-something-something-v1/; msd: the task folder with dataset.json"
                        + ("" if command != "eval" else " (default: the training run's)"))
    g.add_argument("--subset", default=None, metavar="CxN|CASES",
                   help="seeded class-balanced subset: ssv1 CLASSESxCLIPS (e.g. 10x20), msd a "
                        "number of cases" + (" (default: the training run's)"
                                             if command == "eval" else ""))
    if command == "train":
        g.add_argument("--pretrained2d", default=None, metavar="FILE", help="ssv1: inflate "
                       "these torchvision ResNet-50 ImageNet weights (.pth or .safetensors)")
    if command == "eval":
        g.add_argument("--clips", type=int, default=None, help="ssv1: clips per video (multi-"
                       "clip testing; default the recipe's 1)")
        g.add_argument("--crops", type=int, default=None, choices=(1, 3, 5),
                       help="ssv1: crops per clip (default the recipe's 1)")


def resolve_recipe(args: argparse.Namespace, command: str) -> Recipe:
    """The recipe ``args`` ask for: ``--recipe``, then ``--smoke``, then ``--set``, then the
    ordinary flags (and ``--sync-bn``). ValueError naming the option for anything that does
    not fit (a recipe for the other command, a flag for the synthetic data, no ``--data-root``).
    """
    recipe = get_recipe(args.recipe)
    if recipe.command != command:
        others = [n for n, r in RECIPES.items() if r.command == command]
        raise ValueError(f"--recipe: {recipe.name!r} is a {recipe.command} recipe; "
                         f"'{command}' takes one of {others}")
    if getattr(args, "data", None):
        raise ValueError(f"--data: the synthetic data sets and --recipe exclude each other "
                         f"(a recipe reads real data from --data-root), got --data {args.data}")
    for name in SYNTHETIC_ONLY:
        if getattr(args, name, None) not in (None, []):
            raise ValueError(f"--{name.replace('_', '-')}: sizes the synthetic data sets; with "
                             "--recipe use --subset (or --set for a recipe setting)")
    check_data_root(args.data_root, recipe.dataset)
    if args.smoke:
        recipe = recipe.smoked()
    recipe = recipe.with_settings(parse_settings(args.set))
    model_args = parse_settings([f"model.{p}" for p in getattr(args, "model_arg", [])],
                                "--model-arg")
    recipe = recipe.with_settings(model_args, source="--model-arg")
    return recipe.with_settings(flag_settings(args, recipe), source="a flag")


def flag_settings(args: argparse.Namespace, recipe: Recipe) -> dict[str, Any]:
    """``{"section.key": value}`` for every ordinary flag given (not None)."""
    known = recipe.settings()
    out: dict[str, Any] = {}
    for dest, dotted in FLAG_SETTINGS.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        if dotted not in known:
            raise ValueError(f"--{dest.replace('_', '-')}: recipe {recipe.name!r} has no "
                             f"setting {dotted!r} to override")
        out[dotted] = value
    if getattr(args, "size", None) is not None and "data.scale_size" in known:
        out["data.scale_size"] = round(args.size * 256 / 224)  # the authors' 256 / 224 ratio
    if getattr(args, "patch_size", None) is not None:
        out["data.patch_size"] = [args.patch_size] * 3
    if getattr(args, "spacing", None) is not None:
        out["data.spacing"] = [args.spacing] * 3
    if getattr(args, "lr", None) is not None:  # the lr at the global batch used: no scaling
        out["optim.lr"] = args.lr
        out["optim.lr_batch"] = out.get("optim.batch_size", known["optim.batch_size"])
    if getattr(args, "sync_bn", False):
        out["optim.sync_bn"] = True
    for dotted in list(out):
        if dotted not in known:
            raise ValueError(f"flag for {dotted!r}: recipe {recipe.name!r} has no such setting")
    return out


def check_data_root(root: str | None, dataset: str) -> str:
    """``root`` if it is a folder of the dataset's layout; ValueError naming what is missing."""
    if not root:
        raise ValueError("--data-root: a recipe reads real data; expected the "
                         + ("SSv1 folder (category.txt, train_videofolder.txt, …)"
                            if dataset == "ssv1" else "Decathlon task folder (dataset.json)")
                         + ", got nothing")
    if not os.path.isdir(root):
        raise ValueError(f"--data-root: {root!r} is not a folder")
    marker = "category.txt" if dataset == "ssv1" else "dataset.json"
    if not os.path.isfile(os.path.join(root, marker)):
        raise ValueError(f"--data-root: {root!r} has no {marker}; expected "
                         + ("the SSv1 layout (category.txt, train_videofolder.txt, "
                            "val_videofolder.txt, 20bn-something-something-v1/)"
                            if dataset == "ssv1" else "a Decathlon task folder"))
    return root


def resolve_subset(text: str | None, dataset: str, smoke: bool) -> Any:
    """``--subset`` parsed; ``--smoke`` without one takes 4 classes × 4 clips / 3 cases."""
    if text is not None:
        return parse_subset(text, dataset)
    if smoke:
        return (4, 4) if dataset == "ssv1" else 3
    return None


def check_plain_run(args: argparse.Namespace, recipe_only: tuple[str, ...]) -> None:
    """A run without ``--recipe``: refuse the recipe-only options and insist on ``--data``.

    Raises:
        ValueError: one of ``recipe_only`` was given, or neither ``--data`` nor ``--recipe``.
    """
    for name in recipe_only:
        if getattr(args, name) not in (None, False, []):
            raise ValueError(f"--{name.replace('_', '-')}: needs --recipe NAME (the paper's "
                             "recipes on real data; python -m cakes_lite recipes lists them)")
    if not args.data:
        raise ValueError("--data or --recipe: expected synthetic-video, mni152 or a recipe "
                         "with --data-root, got neither")
