"""Search a per-layer kernel layout (CAKES) on a small subset and write it as layout JSON.

Examples::

    python -m cakes_lite search --data synthetic-video --epochs 3 --out layout.json
    python -m cakes_lite search --data synthetic-video --mode cost --budget 0.5 --out l.json
    python -m cakes_lite search --data mni152 --space volume-all --out seg_layout.json
    python -m cakes_lite search --recipe ssv1-r50-search-p --data-root SSV1 --out layout.json
    torchrun --nnodes=2 --nproc_per_node=8 … -m cakes_lite search --recipe … # DDP search

The network is built with full k×k×k convolutions (``--builder 3d``), turned into a supernet,
trained, and the derived layout (keyed by the network's conv names) is written atomically. Train
the searched network from scratch with ``python -m cakes_lite train … --layout layout.json``.
``--recipe NAME`` runs one of the paper's searches on real data (``python -m cakes_lite
recipes`` lists them; flags override its settings). Under torchrun every process trains the
same supernet on its shard of each global batch (DDP): the candidates sampled at each step and
the importances γ are the same on every rank, and rank 0 writes the layout.
"""

from __future__ import annotations

import argparse
import json
import sys

from .common import HelpFormatter, check_device, nonnegative_float, positive_float, positive_int
from .recipe_args import add_recipe_arguments, check_plain_run
from .train import (MODEL_NAMES, add_data_arguments, data_config, fill_defaults, make_dataset,
                    model_for_data, num_classes, parse_model_args)

#: defaults of the flags a recipe sets otherwise (None in the parser: "not given")
DEFAULTS = {"batch_size": 16, "mode": "performance", "epochs": 3, "lr": 0.1, "round_to": 1,
            "device": "cpu"}

DEFAULT_SPACE = {"synthetic-video": "video-123d", "mni152": "volume-all"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = HelpFormatter
    m = parser.add_argument_group("model")
    m.add_argument("--model", choices=MODEL_NAMES, default=None,
                   help="network (default: resnet3d_tiny for video, unet3d_tiny for mni152)")
    m.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="extra model config field, JSON value (e.g. widths=[8,16,32]); repeatable")
    add_data_arguments(parser, required=False)
    add_recipe_arguments(parser, "search")
    parser.add_argument("--train-samples", type=positive_int, default=None,
                        help="training samples (default 256 clips / 32 patches)")
    s = parser.add_argument_group("search")
    s.add_argument("--space", default=None, help="search space (default: video-123d for video, "
                   "volume-all for mni152) or comma-separated sub-kernels, e.g. kxkxk,1xkxk")
    s.add_argument("--mode", choices=("performance", "cost"), default=None,
                   help="performance priority (sampled channels; the default) or cost "
                        "priority (L1 on γ)")
    s.add_argument("--epochs", type=positive_int, default=None, help="epochs (default 3)")
    s.add_argument("--lr", type=positive_float, default=None, help="SGD learning rate (default"
                   " 0.1, cosine; with --recipe: the lr at the global batch, not scaled)")
    s.add_argument("--sparsity", type=nonnegative_float, default=None,
                   help="L1 strength on γ (default: 0 for performance, 1e-2 for cost)")
    s.add_argument("--budget", type=positive_float, default=None, help="target cost of the "
                   "searched layers (with --mode cost or performance): a value in (0, 1] is a "
                   "fraction of their full k×k×k cost (0.5 = half); a value > 1 is an absolute "
                   "count of MACs (or params with --metric params), e.g. 2e6")
    s.add_argument("--target", type=positive_float, default=None, help="cost priority: the "
                   "cost fraction in (0, 1] the layout should reach; the search steers its L1 "
                   "strength to it (instead of --sparsity)")
    s.add_argument("--round-to", type=positive_int, default=None,
                   help="every group a multiple of this (default 1)")
    s.add_argument("--metric", choices=("macs", "params"), default="macs", help="budget metric")
    s.add_argument("--seed", type=int, default=0, help="search seed")
    s.add_argument("--device", default=None, help="cpu (default), cuda, cuda:1 …; with "
                   "--recipe: cuda:LOCAL_RANK where there is CUDA")
    s.add_argument("--no-amp", action="store_true", help="--recipe: no mixed precision on CUDA")
    s.add_argument("--channels-last", action="store_true", help="run the supernet in "
                   "channels_last_3d memory (the same values up to float rounding; faster on "
                   "CPU in performance priority, see docs/library.md)")
    s.add_argument("--out", required=True, metavar="LAYOUT.json", help="where to write the layout")
    s.add_argument("--supernet", default=None, metavar="FILE.safetensors", help="--recipe: "
                   "also write the trained supernet (weights, γ, BN statistics)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    # here, not at the top: `--help` must not load torch (cakes_lite/cli/__init__.py)
    import torch
    from torch.utils.data import DataLoader

    from ..models import build_model
    from ..search import run_search

    check_device(args.device)
    if args.recipe:
        # here, not at the top: it imports torch, and `--help` must not
        from .recipe_search import search as search_recipe

        return search_recipe(args)
    check_plain_run(args, ("smoke", "data_root", "subset", "set", "sync_bn", "supernet"))
    fill_defaults(args, DEFAULTS)
    cfg = data_config(args)
    video = cfg["name"] == "synthetic-video"
    model_name = model_for_data(args.model, cfg)
    space = args.space or DEFAULT_SPACE[cfg["name"]]
    if "," in space:
        space = [s.strip() for s in space.split(",") if s.strip()]
    train_ds = make_dataset(cfg, "train", args.train_samples or (256 if video else 32))
    torch.manual_seed(args.seed)
    model = build_model(model_name, num_classes=num_classes(train_ds),
                        in_channels=3 if video else 1, builder="3d",
                        **parse_model_args(args.model_arg))
    gen = torch.Generator().manual_seed(args.seed)
    loader = DataLoader(train_ds, batch_size=args.batch_size, shuffle=True, generator=gen,
                        num_workers=args.num_workers, drop_last=len(train_ds) > args.batch_size)

    def report(info: dict) -> None:
        shares = info["layout"].summary()["total"]["shares"]
        text = ", ".join(f"{k} {v:.0%}" for k, v in shares.items())
        print(f"epoch {info['epoch']}/{args.epochs} loss {info['loss']:.4f}  channels: {text}",
              flush=True)

    result = run_search(model, loader, space=space, mode=args.mode, epochs=args.epochs,
                        lr=args.lr, sparsity=args.sparsity, target=args.target,
                        budget=args.budget,
                        round_to=args.round_to, metric=args.metric, device=args.device,
                        seed=args.seed, channels_last=args.channels_last, callback=report,
                        progress=not args.no_progress)
    layout = result.layout
    layout.meta.update({"model": model_name, "model_args": parse_model_args(args.model_arg),
                        "data": {**cfg, "train_samples": len(train_ds)},
                        "command": "python -m cakes_lite search " + " ".join(sys.argv[2:])})
    layout.to_json(args.out)
    print(json.dumps({"layout": args.out, "layers": len(layout), "loss": result.history["loss"][-1],
                      "cost_fraction": layout.meta.get("cost_fraction"),
                      "total_shares": layout.summary()["total"]["shares"]}))
    return 0
