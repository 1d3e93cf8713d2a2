"""The app's bundled model zoo.

``python -m cakes_lite zoo build`` retrains every bundled model on CPU (seeded; about 10 minutes
on 2 cores) and writes them to ``app/zoo`` (safetensors + layout JSON + metadata JSON with data,
seed, metrics, MACs, params) and the example clips to ``app/examples``.
``python -m cakes_lite zoo list`` prints the bundled models and their recorded metrics.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..zoo import ZOO_DIR, list_models, read_index


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = sub.add_parser("build", help="retrain the zoo on CPU and write it",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    build.add_argument("--out", default=str(ZOO_DIR), help="output folder of the models")
    build.add_argument("--examples", default=str(ZOO_DIR.parent / "examples"),
                       help="folder for the example clips ('' to skip)")
    build.add_argument("--seed", type=int, default=0, help="seed of data, searches, training")
    build.add_argument("--epochs-scale", type=float, default=1.0,
                       help="multiply every epoch count (e.g. 0.5 for a quicker, worse zoo)")
    build.add_argument("--only", default="", help="comma-separated model names to build "
                       "(default all; e.g. one subset per process on a many-core machine)")
    build.add_argument("--quiet", action="store_true", help="no progress lines")
    show = sub.add_parser("list", help="print the bundled models and their metrics")
    show.add_argument("--root", default=str(ZOO_DIR), help="zoo folder")


def main(args: argparse.Namespace) -> int:
    if args.action == "list":
        for meta in list_models(args.root):
            print(f"{meta['name']:22s} {meta['task']:15s} {meta['macs'] / 1e6:8.2f} MMACs "
                  f"{meta['params'] / 1e6:7.4f} M params  {json.dumps(meta['metrics'])}")
        print(json.dumps(read_index(args.root)["build"], indent=1))
        return 0
    import dataclasses

    import torch

    from ..zoo_build import ZooRecipe, build_zoo

    if args.epochs_scale <= 0:
        raise ValueError(f"--epochs-scale: expected a positive number, got {args.epochs_scale}")
    recipe = ZooRecipe(seed=args.seed)
    scaled = {f.name: max(1, round(getattr(recipe, f.name) * args.epochs_scale))
              for f in dataclasses.fields(recipe) if f.name.endswith("epochs")}
    recipe = dataclasses.replace(recipe, **scaled)
    torch.set_num_threads(max(1, torch.get_num_threads()))

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    only = [n.strip() for n in args.only.split(",") if n.strip()] or None
    build = build_zoo(args.out, recipe, examples=args.examples or None, only=only,
                      progress=None if args.quiet else say)
    print(json.dumps(build, indent=1))
    for meta in list_models(args.out):
        print(f"{meta['name']:22s} {json.dumps(meta['metrics'])}")
    return 0
