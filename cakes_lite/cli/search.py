"""Search a per-layer kernel layout (CAKES) on a small subset and write it as layout JSON.

Examples::

    python -m cakes_lite search --data synthetic-video --epochs 3 --out layout.json
    python -m cakes_lite search --data synthetic-video --mode cost --budget 0.5 --out l.json
    python -m cakes_lite search --data mni152 --space volume-all --out seg_layout.json

The network is built with full k×k×k convolutions (``--builder 3d``), turned into a supernet,
trained, and the derived layout (keyed by the network's conv names) is written atomically. Train
the searched network from scratch with ``python -m cakes_lite train … --layout layout.json``.
"""

from __future__ import annotations

import argparse
import json
import sys

from .common import HelpFormatter, check_device, nonnegative_float, positive_float, positive_int
from .train import (MODEL_NAMES, add_data_arguments, data_config, make_dataset, model_for_data,
                    num_classes, parse_model_args)

DEFAULT_SPACE = {"synthetic-video": "video-123d", "mni152": "volume-all"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = HelpFormatter
    m = parser.add_argument_group("model")
    m.add_argument("--model", choices=MODEL_NAMES, default=None,
                   help="network (default: resnet3d_tiny for video, unet3d_tiny for mni152)")
    m.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="extra model config field, JSON value (e.g. widths=[8,16,32]); repeatable")
    add_data_arguments(parser)
    parser.add_argument("--train-samples", type=positive_int, default=None,
                        help="training samples (default 256 clips / 32 patches)")
    s = parser.add_argument_group("search")
    s.add_argument("--space", default=None, help="search space (default: video-123d for video, "
                   "volume-all for mni152) or comma-separated sub-kernels, e.g. kxkxk,1xkxk")
    s.add_argument("--mode", choices=("performance", "cost"), default="performance",
                   help="performance priority (sampled channels) or cost priority (L1 on γ)")
    s.add_argument("--epochs", type=positive_int, default=3, help="epochs")
    s.add_argument("--lr", type=positive_float, default=0.1, help="SGD learning rate (cosine)")
    s.add_argument("--sparsity", type=nonnegative_float, default=None,
                   help="L1 strength on γ (default: 0 for performance, 1e-2 for cost)")
    s.add_argument("--budget", type=positive_float, default=None, help="target cost of the "
                   "searched layers (with --mode cost or performance): a value in (0, 1] is a "
                   "fraction of their full k×k×k cost (0.5 = half); a value > 1 is an absolute "
                   "count of MACs (or params with --metric params), e.g. 2e6")
    s.add_argument("--round-to", type=positive_int, default=1,
                   help="every group a multiple of this")
    s.add_argument("--metric", choices=("macs", "params"), default="macs", help="budget metric")
    s.add_argument("--seed", type=int, default=0, help="search seed")
    s.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 …")
    s.add_argument("--out", required=True, metavar="LAYOUT.json", help="where to write the layout")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    # here, not at the top: `--help` must not load torch (cakes_lite/cli/__init__.py)
    import torch
    from torch.utils.data import DataLoader

    from ..models import build_model
    from ..search import run_search

    check_device(args.device)
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
                        lr=args.lr, sparsity=args.sparsity, budget=args.budget,
                        round_to=args.round_to, metric=args.metric, device=args.device,
                        seed=args.seed, callback=report, progress=not args.no_progress)
    layout = result.layout
    layout.meta.update({"model": model_name, "model_args": parse_model_args(args.model_arg),
                        "data": {**cfg, "train_samples": len(train_ds)},
                        "command": "python -m cakes_lite search " + " ".join(sys.argv[2:])})
    layout.to_json(args.out)
    print(json.dumps({"layout": args.out, "layers": len(layout), "loss": result.history["loss"][-1],
                      "cost_fraction": layout.meta.get("cost_fraction"),
                      "total_shares": layout.summary()["total"]["shares"]}))
    return 0
