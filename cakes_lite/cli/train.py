"""Train a network on a small subset and write a checkpoint (safetensors + JSON) every epoch.

Examples::

    python -m cakes_lite train --data synthetic-video --builder 3d --epochs 5 --out runs/i3d
    python -m cakes_lite train --data synthetic-video --builder cakes:video-123d --out runs/cakes
    python -m cakes_lite train --data synthetic-video --layout layout.json --out runs/searched
    python -m cakes_lite train --data mni152 --builder 2d --train-samples 64 --out runs/seg2d
    python -m cakes_lite train … --out runs/i3d --resume          # continue an interrupted run
    python -m cakes_lite train --recipe ssv1-r50 --data-root SSV1 --layout layout.json --out r50
    python -m cakes_lite train --recipe msd-unet --data-root Task02_Heart --smoke --out heart
    torchrun --standalone --nproc_per_node=2 -m cakes_lite train … # DDP (gloo on CPU)

The task follows the data: ``synthetic-video`` (something-something-lite clips) trains a
classifier (default ``resnet3d_tiny``), ``mni152`` (MNI152 tissue patches) a segmenter (default
``unet3d_tiny``). ``--recipe NAME`` trains one of the paper's recipes on real data instead
(``python -m cakes_lite recipes`` lists them; any flag overrides a recipe setting; with a
recipe ``--batch-size`` is the global batch, split over the torchrun processes, and the
recipe's lr scales linearly with it). ``--layout`` shrinks the built model's k×k×k convs with
a layout JSON (as written by ``python -m cakes_lite search``). ``python -m cakes_lite eval
--checkpoint DIR`` evaluates the result.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .common import (HelpFormatter, check_checkpoint, check_device, nonnegative_float,
                     nonnegative_int, parse_kwargs, positive_float, positive_int)
from .recipe_args import add_recipe_arguments, check_plain_run

DATA = {"synthetic-video": "classification", "mni152": "segmentation"}
DEFAULT_MODEL = {"synthetic-video": "resnet3d_tiny", "mni152": "unet3d_tiny"}
#: defaults of the flags a recipe sets otherwise (None in the parser: "not given")
DEFAULTS = {"batch_size": 16, "builder": "3d", "epochs": 5, "lr": 3e-3, "optimizer": "adamw",
            "weight_decay": 0.05, "warmup_epochs": 1.0}


def fill_defaults(args: argparse.Namespace, defaults: dict[str, Any]) -> None:
    """Give the flags not given (None) their defaults without a recipe."""
    for key, value in defaults.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)


def add_data_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """Options that pick and size the dataset (shared with ``eval``)."""
    g = parser.add_argument_group("data")
    g.add_argument("--data", choices=list(DATA), required=required, default=None,
                   help="synthetic-video: classification clips; mni152: tissue segmentation")
    g.add_argument("--frames", type=positive_int, default=None,
                   help="synthetic-video: frames per clip (default 8)")
    g.add_argument("--size", type=positive_int, default=None,
                   help="synthetic-video: frame size (default 32)")
    g.add_argument("--patch-size", type=positive_int, default=None, help="mni152: cubic patch size "
                   "(default 32)")
    g.add_argument("--spacing", type=positive_float, default=None, help="mni152: voxel size in mm "
                   "(default 2.0)")
    g.add_argument("--data-seed", type=int, default=None, help="dataset seed (default 0)")
    g.add_argument("--batch-size", type=positive_int, default=None, help="batch size per process"
                   " (default 16); with --recipe the global batch, split over the processes")
    g.add_argument("--num-workers", type=nonnegative_int, default=0,
                   help="DataLoader worker processes")


def data_config(args: argparse.Namespace, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The dataset config from the options, missing values taken from ``base`` or defaults."""
    base = dict(base or {})
    cfg = {"name": args.data or base.get("name")}
    if cfg["name"] is None:
        raise ValueError("--data: expected one of "
                         f"{list(DATA)} (the checkpoint does not say), got nothing")
    if cfg["name"] == "synthetic-video":
        cfg["frames"] = args.frames or base.get("frames", 8)
        cfg["size"] = args.size or base.get("size", 32)
    else:
        cfg["patch_size"] = args.patch_size or base.get("patch_size", 32)
        cfg["spacing"] = args.spacing or base.get("spacing", 2.0)
    cfg["seed"] = args.data_seed if args.data_seed is not None else base.get("seed", 0)
    return cfg


def model_for_data(model: str | None, cfg: dict[str, Any]) -> str:
    """The ``--model`` to use for the ``--data`` in ``cfg`` (its default if None); ValueError if
    the model is built for the other task."""
    # here, not at the top: `--help` must not load torch (cakes_lite/cli/__init__.py)
    from ..models import TASKS

    model_name = model or DEFAULT_MODEL[cfg["name"]]
    if TASKS[model_name] != DATA[cfg["name"]]:
        raise ValueError(f"--model: {model_name!r} is for {TASKS[model_name]}, but --data "
                         f"{cfg['name']!r} is {DATA[cfg['name']]}")
    return model_name


def make_dataset(cfg: dict[str, Any], split: str, samples: int):
    """Build ``cfg["name"]``'s dataset for ``split`` with ``samples`` items."""
    # here, not at the top: `--help` must not load torch (cakes_lite/cli/__init__.py)
    from .. import data

    if samples < 1:
        raise ValueError(f"samples: expected a positive number of samples, got {samples}")
    if cfg["name"] == "synthetic-video":
        return data.SomethingLite(samples, split=split, frames=cfg["frames"], size=cfg["size"],
                                  seed=cfg["seed"])
    if split not in ("train", "val"):  # MNI152 is one template: train and val slabs only
        raise ValueError(f"--split: the mni152 data has the splits 'train' and 'val' only, got "
                         f"{split!r}")
    return data.MNI152Tissue(split=split, patch_size=cfg["patch_size"], num_patches=samples,
                             spacing=cfg["spacing"], seed=cfg["seed"])


def num_classes(ds) -> int:
    if hasattr(ds, "classes"):
        return len(ds.classes)
    # here, not at the top: `--help` must not load torch (cakes_lite/cli/__init__.py)
    from ..data import TISSUE_CLASSES

    return len(TISSUE_CLASSES)


def parse_model_args(pairs: list[str]) -> dict[str, Any]:
    """``--model-arg`` pairs -> keyword arguments of the model constructor."""
    return parse_kwargs(pairs, "--model-arg")


#: the built-in networks (cakes_lite.models.MODELS; listed here so --help needs no torch).
MODEL_NAMES = ("resnet3d", "resnet3d_tiny", "resnet_i3d", "resnet50_i3d", "unet3d", "unet3d_tiny")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = HelpFormatter

    m = parser.add_argument_group("model")
    m.add_argument("--model", choices=MODEL_NAMES, default=None,
                   help="network (default: resnet3d_tiny for video, unet3d_tiny for mni152)")
    m.add_argument("--builder", default=None, help="conv builder: 3d (default), 2d, p3d, "
                   "r2plus1d, csn, cakes or cakes:<space> (e.g. cakes:video-123d, "
                   "cakes:volume-all)")
    m.add_argument("--layout", default=None, metavar="L.json",
                   help="layout JSON applied with cakes_lite.shrink after building")
    m.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="extra model config field, JSON value (e.g. widths=[8,16,32]); repeatable")
    add_data_arguments(parser, required=False)
    add_recipe_arguments(parser, "train")
    d = parser.add_argument_group("subset")
    d.add_argument("--train-samples", type=positive_int, default=None,
                   help="training samples (default 512 clips / 64 patches)")
    d.add_argument("--val-samples", type=nonnegative_int, default=None,
                   help="validation samples, 0 to skip (default 128 clips / 16 patches)")
    t = parser.add_argument_group("training")
    t.add_argument("--epochs", type=positive_int, default=None, help="epochs (default 5)")
    t.add_argument("--lr", type=positive_float, default=None, help="peak learning rate (default "
                   "3e-3; with --recipe: the lr at the global batch, not scaled)")
    t.add_argument("--optimizer", choices=("adamw", "sgd"), default=None,
                   help="optimizer (default adamw)")
    t.add_argument("--weight-decay", type=nonnegative_float, default=None,
                   help="weight decay, weights only (default 0.05)")
    t.add_argument("--warmup-epochs", type=nonnegative_float, default=None,
                   help="linear warm-up, in epochs (default 1)")
    t.add_argument("--max-steps-per-epoch", type=positive_int, default=None,
                   help="cap batches per epoch")
    t.add_argument("--seed", type=int, default=0, help="training seed (data order, init)")
    t.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda if any)")
    t.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    t.add_argument("--deterministic", action="store_true", help="deterministic cuDNN")
    t.add_argument("--channels-last", action="store_true", help="train in channels_last_3d "
                   "memory (the same values up to float rounding; faster on CPU for most "
                   "nets, see docs/library.md)")
    t.add_argument("--out", required=True, metavar="DIR", help="checkpoint directory")
    t.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint in --out if there is one")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")


def main(args: argparse.Namespace) -> int:
    # here, not at the top: `--help` must not load torch (cakes_lite/cli/__init__.py)
    import torch
    from torch.utils.data import DataLoader

    from ..layout import Layout
    from ..models import build_model
    from ..train import NonFiniteLossError, cleanup, fit, init_distributed, is_main

    check_device(args.device)
    if args.resume and (Path(args.out) / "checkpoint.json").exists():
        check_checkpoint(args.out, "--out (resumed checkpoint)")
    if args.recipe:
        # here, not at the top: it imports torch, and `--help` must not
        from .recipe_train import train as train_recipe

        return train_recipe(args)
    check_plain_run(args, ("smoke", "pretrained2d", "data_root", "subset", "set", "sync_bn"))
    fill_defaults(args, DEFAULTS)
    info = init_distributed()
    cfg = data_config(args)
    video = cfg["name"] == "synthetic-video"
    model_name = model_for_data(args.model, cfg)
    n_train = args.train_samples if args.train_samples is not None else (512 if video else 64)
    n_val = (128 if video else 16) if args.val_samples is None else args.val_samples
    train_ds = make_dataset(cfg, "train", n_train)
    val_ds = make_dataset(cfg, "val", n_val) if n_val > 0 else None
    layout = Layout.from_json(args.layout).to_dict() if args.layout else None
    in_channels = 3 if video else 1
    torch.manual_seed(args.seed)  # weight initialisation
    model = build_model(model_name, num_classes=num_classes(train_ds), in_channels=in_channels,
                        builder=args.builder, layout=layout, **parse_model_args(args.model_arg))
    gen = torch.Generator().manual_seed(args.seed)
    train = DataLoader(train_ds, batch_size=args.batch_size, shuffle=True, generator=gen,
                       num_workers=args.num_workers, drop_last=len(train_ds) > args.batch_size)
    val = DataLoader(val_ds, batch_size=args.batch_size, num_workers=args.num_workers) \
        if val_ds is not None else None
    key = "val_top1" if video else "val_mean_dice"

    def report(rec: dict) -> None:
        extra = f" {key} {rec[key]:.4f}" if key in rec else ""
        print(f"epoch {rec['epoch']}/{args.epochs} loss {rec['train_loss']:.4f}{extra} "
              f"({rec['time_s']:.1f} s)", flush=True)

    meta = {"data": {**cfg, "train_samples": n_train, "val_samples": n_val},
            "command": "python -m cakes_lite train " + " ".join(sys.argv[2:])}
    try:
        result = fit(model, train, val, task=DATA[cfg["name"]], epochs=args.epochs, lr=args.lr,
                     optimizer=args.optimizer, weight_decay=args.weight_decay,
                     warmup_epochs=args.warmup_epochs, device=args.device,
                     amp=not args.no_amp, seed=args.seed, deterministic=args.deterministic,
                     checkpoint_dir=args.out, resume=args.resume, meta=meta, callback=report,
                     max_steps_per_epoch=args.max_steps_per_epoch,
                     channels_last=args.channels_last, progress=not args.no_progress)
    except NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr)
        cleanup()
        return 1
    if is_main():
        last = {k: v for k, v in result.last.items() if not isinstance(v, list)}
        print(json.dumps({"checkpoint": args.out, "world_size": info.world_size, **last}))
    cleanup()
    return 0
