"""``train --recipe NAME`` and ``eval`` of its checkpoints: the paper's training on real data
(Something-Something V1 frame folders, Medical Segmentation Decathlon tasks), one process or
many under torchrun."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import torch

from ..layout import Layout
from ..recipes import get_recipe
from ..train import (NonFiniteLossError, cleanup, evaluate_views, fit, init_distributed,
                     is_main, sliding_window_evaluate)
from ..train.distributed import barrier
from ..train.sync_bn import convert_sync_batchnorm
from . import recipe_data as R
from .common import load_checked, no_nan
from .recipe_args import check_data_root, resolve_recipe, resolve_subset


def _note(text: str) -> None:
    if is_main():
        print(f"note: {' '.join(text.split())}", file=sys.stderr, flush=True)


def train(args: argparse.Namespace) -> int:
    """Train the recipe's network; the checkpoint (rank 0) records the recipe and the devices."""
    recipe = resolve_recipe(args, "train")
    subset = resolve_subset(args.subset, recipe.dataset, args.smoke)
    data_seed = args.data_seed if args.data_seed is not None else 0
    info = init_distributed()
    device = torch.device(args.device) if args.device else info.device
    R.batch_per_process(recipe)  # fail before reading any data if it does not divide
    train_ds = R.make_dataset(recipe, args.data_root, "train", subset, data_seed)
    val_ds = R.make_dataset(recipe, args.data_root, "val", subset, data_seed)
    num_classes, in_channels = R.shape_of(recipe, train_ds)
    layout = Layout.from_json(args.layout).to_dict() if args.layout else None
    torch.manual_seed(args.seed)  # weight initialisation, the same on every rank
    model = R.build(recipe, num_classes, in_channels, layout=layout)
    if args.pretrained2d:
        if recipe.dataset != "ssv1":
            raise ValueError("--pretrained2d: ImageNet inflation is for the ssv1 recipes "
                             f"(ResNet I3D); {recipe.name!r} trains a U-Net")
        for message in R.inflate_from(model, args.pretrained2d):
            _note(message)
    if recipe.optim["sync_bn"]:
        convert_sync_batchnorm(model)
    cost = R.cost_per_item(recipe, num_classes, in_channels, layout=layout)
    where = R.where_it_ran(device)
    train_loader = R.train_loader(train_ds, recipe, args.seed, args.num_workers)
    val_loader = R.eval_loader(val_ds, R.batch_per_process(recipe), args.num_workers)
    meta = {"recipe": recipe.to_dict(), **where,
            "data": {"dataset": recipe.dataset, "root": args.data_root, "seed": data_seed,
                     "subset": list(subset) if isinstance(subset, tuple) else subset,
                     "train_items": len(train_ds), "val_items": len(val_ds),
                     "classes": list(train_ds.classes)},
            "global_batch": recipe.optim["batch_size"], "lr_scaled": R.scaled_lr(recipe),
            "cost_per_item": cost,
            "layout_file": args.layout, "pretrained2d": args.pretrained2d,
            "command": "cakes_lite train " + " ".join(sys.argv[2:])}
    key = "val_top1" if recipe.task == "classification" else "val_mean_dice"
    epochs = recipe.optim["epochs"]

    def report(rec: dict) -> None:
        extra = f" {key} {rec[key]:.4f}" if key in rec else ""
        print(f"epoch {rec['epoch']}/{epochs} loss {rec['train_loss']:.4f}{extra} "
              f"({rec['time_s']:.1f} s)", flush=True)

    try:
        result = fit(model, train_loader, val_loader, task=recipe.task, device=device,
                     amp=not args.no_amp, seed=args.seed, deterministic=args.deterministic,
                     checkpoint_dir=args.out, resume=args.resume, meta=meta, callback=report,
                     channels_last=args.channels_last, progress=not args.no_progress,
                     **R.optimiser_settings(recipe, model))
    except NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr)
        cleanup()
        return 1
    if is_main():
        last = {k: v for k, v in result.last.items() if not isinstance(v, list)}
        print(json.dumps({"checkpoint": args.out, "recipe": recipe.name,
                          "world_size": where["world_size"], **cost, **last}))
    barrier()
    cleanup()
    return 0


def evaluate(args: argparse.Namespace, info: dict[str, Any]) -> int:
    """``eval`` of a recipe checkpoint: top-1 / top-5 (SSv1, optional multi-clip/crop) or Dice
    per class over whole volumes with sliding windows (MSD)."""
    meta = info["meta"]
    stored = meta["recipe"]
    recipe = get_recipe(stored["name"]).with_settings(
        {f"{s}.{k}": v for s in ("model", "data", "optim", "search") for k, v in
         stored.get(s, {}).items()}, source="checkpoint")
    root = args.data_root or meta["data"]["root"]
    check_data_root(root, recipe.dataset)
    subset = (resolve_subset(args.subset, recipe.dataset, False) if args.subset
              else meta["data"].get("subset"))
    views = (args.clips or recipe.data.get("clips", 1), args.crops or recipe.data.get("crops", 1))
    if views[0] < 1:
        raise ValueError(f"--clips: expected a positive number, got {views[0]}")
    split = "val" if args.split in (None, "val") else args.split
    if split not in ("train", "val"):
        raise ValueError(f"--split: a recipe's data has 'train' and 'val', got {split!r}")
    ds = R.make_dataset(recipe, root, split, subset, meta["data"].get("seed", 0),
                        evaluation=True, views=views)
    if recipe.dataset == "ssv1" and list(ds.classes) != meta["data"].get("classes", ds.classes):
        raise ValueError("--subset: the checkpoint was trained on other classes "
                         f"({len(meta['data']['classes'])}) than this subset gives")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    ck = load_checked(args.checkpoint, map_location=device)
    out: dict[str, Any] = {"checkpoint": str(args.checkpoint), "epoch": ck.epoch,
                           "recipe": recipe.name, "split": split, "items": len(ds)}
    if recipe.dataset == "ssv1":
        loader = R.eval_loader(ds, args.batch_size or 8, args.num_workers)
        metrics = evaluate_views(ck.model, loader, device=device, progress=not args.no_progress)
        out.update({"views": views[0] * views[1], **metrics})
    else:
        metrics = sliding_window_evaluate(ck.model, ds, recipe.data["patch_size"],
                                          overlap=recipe.data["overlap"],
                                          sw_batch_size=recipe.data["sw_batch_size"],
                                          device=device, progress=not args.no_progress)
        out.update({"dice": dict(zip(ds.classes, metrics["dice"])),
                    "mean_dice": metrics["mean_dice"],  # over the foreground classes
                    "case_mean_dice": metrics["case_mean_dice"], "n": metrics["n"]})
    return out_print(args, out)


def out_print(args: argparse.Namespace, out: dict[str, Any]) -> int:
    if args.format == "json":
        print(json.dumps(no_nan(out)))
        return 0
    rows = [(f"{k} {name}", x) for k, v in out.items() if isinstance(v, dict)
            for name, x in v.items()]
    for k, v in [(k, v) for k, v in out.items() if not isinstance(v, dict)] + rows:
        print(f"{k:>14}: {f'{v:.4f}' if isinstance(v, float) else v}")
    return 0


def recipe_of(info: dict[str, Any]) -> dict[str, Any] | None:
    """The recipe (JSON) a checkpoint was trained with, or None (a synthetic-data run)."""
    return info.get("meta", {}).get("recipe")
