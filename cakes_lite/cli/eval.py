"""Evaluate a checkpoint written by ``train`` (the model is rebuilt from its JSON config).

Examples::

    python -m cakes_lite eval --checkpoint runs/i3d
    python -m cakes_lite eval --checkpoint runs/i3d --split test --samples 512 --format json
    python -m cakes_lite eval --checkpoint runs/seg --data mni152 --patch-size 48
    python -m cakes_lite eval --checkpoint runs/r50 --data-root SSV1 --clips 2 --crops 3
    python -m cakes_lite eval --checkpoint runs/heart --data-root Task02_Heart --format json

By default the data set, its sizes and the number of samples are those of the run's validation
set (stored in the checkpoint); any ``--data …`` option overrides them. A checkpoint of a
``--recipe`` run is evaluated on the recipe's real data: top-1 / top-5 on the SSv1 validation
list (optionally several clips × crops per video, logits averaged), or Dice per class on whole
Decathlon validation volumes with sliding windows.
"""

from __future__ import annotations

import argparse
import json

from .common import HelpFormatter, check_device, load_checked, no_nan, positive_int
from .recipe_args import add_recipe_arguments
from .train import DATA, add_data_arguments, data_config, make_dataset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = HelpFormatter
    parser.add_argument("--checkpoint", required=True, metavar="DIR",
                        help="checkpoint directory (or its checkpoint.json)")
    parser.add_argument("--split", choices=("train", "val", "test"), default="val",
                        help="which split to evaluate (mni152 has train/val only)")
    parser.add_argument("--samples", type=positive_int, default=None,
                        help="number of samples (default: the run's validation size)")
    add_data_arguments(parser, required=False)
    add_recipe_arguments(parser, "eval")
    parser.add_argument("--device", default=None, help="cpu, cuda … (default: cuda if any)")
    parser.add_argument("--format", choices=("table", "json"), default="table",
                        help="human-readable lines or one JSON object")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    # here, not at the top: `--help` must not load torch (cakes_lite/cli/__init__.py)
    import torch
    from torch.utils.data import DataLoader

    from ..train import evaluate, read_checkpoint_info

    check_device(args.device)
    info = read_checkpoint_info(args.checkpoint)
    if info.get("meta", {}).get("recipe"):
        if args.data:
            raise ValueError(f"--data: the checkpoint is of recipe "
                             f"{info['meta']['recipe'].get('name')!r} (real data); pass "
                             "--data-root instead")
        # here, not at the top: it imports torch, and `--help` must not
        from .recipe_train import evaluate as evaluate_recipe

        return evaluate_recipe(args, info)
    for name in ("data_root", "subset", "clips", "crops"):
        if getattr(args, name) is not None:
            raise ValueError(f"--{name.replace('_', '-')}: for checkpoints of a --recipe run; "
                             f"{str(args.checkpoint)!r} was trained on synthetic data")
    stored = info.get("meta", {}).get("data", {})
    cfg = data_config(args, stored)
    samples = args.samples or stored.get("val_samples") or stored.get("train_samples") or 64
    ds = make_dataset(cfg, args.split, samples)  # checks the split before loading weights
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    ck = load_checked(args.checkpoint, map_location=device)
    loader = DataLoader(ds, batch_size=args.batch_size or 16, num_workers=args.num_workers)
    metrics = evaluate(ck.model, loader, DATA[cfg["name"]], device=device,
                       progress=not args.no_progress)
    out = {"checkpoint": str(args.checkpoint), "epoch": ck.epoch, "split": args.split,
           "data": cfg["name"], **metrics}
    if args.format == "json":
        print(json.dumps(no_nan(out)))
    else:
        for k, v in out.items():
            if isinstance(v, list):
                v = ", ".join(f"{x:.4f}" for x in v)
            elif isinstance(v, float):
                v = f"{v:.4f}"
            print(f"{k:>12}: {v}")
    return 0
