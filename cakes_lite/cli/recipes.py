"""List the named recipes — model, data pipeline and optimisation settings, each with where its
value comes from — and, with ``--cost``, what each costs on paper.

Examples::

    python -m cakes_lite recipes                        # every recipe, every setting
    python -m cakes_lite recipes ssv1-r50 --format json
    python -m cakes_lite recipes --smoke                # the CPU-sized copies --smoke runs
    python -m cakes_lite recipes --cost --tflops 100    # GPU-hours at 100 TFLOP/s sustained

Run one with ``python -m cakes_lite train|search --recipe NAME --data-root ROOT …``; any flag,
or ``--set SECTION.KEY=VALUE``, overrides a setting. The cost is an estimate from MACs × items
× epochs at an assumed throughput (``cakes_lite/recipe_cost.py`` says how), not a measurement.
"""

from __future__ import annotations

import argparse
import json

from ..recipes import RECIPES, SECTIONS, get_recipe
from .common import positive_float


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"recipes to show (default all: {', '.join(RECIPES)})")
    parser.add_argument("--format", choices=("table", "json"), default="table",
                        help="settings with their sources as text, or one JSON object")
    parser.add_argument("--smoke", action="store_true", help="show the --smoke copies")
    parser.add_argument("--cost", action="store_true", help="add the estimated GPU-hours "
                        "(MACs × items × epochs at --tflops; loads torch)")
    parser.add_argument("--tflops", type=positive_float, default=None,
                        help="assumed sustained TFLOP/s per GPU for --cost (default 50)")


def _value(v) -> str:
    return json.dumps(list(v) if isinstance(v, tuple) else v)


def main(args: argparse.Namespace) -> int:
    recipes = [get_recipe(n, "NAME") for n in args.names] if args.names else list(RECIPES.values())
    if args.smoke:
        recipes = [r.smoked() for r in recipes]
    costs = {}
    if args.cost:
        # here, not at the top: it imports torch, and a plain listing must not
        from ..recipe_cost import ASSUMED_TFLOPS, estimate

        costs = {r.name: estimate(r, args.tflops or ASSUMED_TFLOPS) for r in recipes}
    if args.format == "json":
        out = {r.name: {**r.to_dict(), "smoke": {k: _plain(v) for k, v in r.smoke.items()},
                        **({"cost_estimate": costs[r.name]} if costs else {})}
               for r in recipes}
        print(json.dumps(out, indent=1))
        return 0
    for i, r in enumerate(recipes):
        if i:
            print()
        print(f"{r.name}  ({r.command}, {r.dataset}: {r.summary})")
        settings = r.settings()
        width = max(len(f"{k} = {_value(v)}") for k, v in settings.items())
        for section in SECTIONS:
            for key, value in getattr(r, section).items():
                text = f"{section}.{key} = {_value(value)}"
                print(f"  {text.ljust(width)}  # {r.sources.get(f'{section}.{key}', '')}")
        if costs:
            c = costs[r.name]
            print(f"  cost (estimate): {c['step_macs'] / 1e9:.1f} GMACs per item and step × "
                  f"{c['train_items']:,} items × {c['epochs']} epochs"
                  + (f" + validation of {c['val_items']:,}" if c["val_items"] else "")
                  + f" ≈ {c['gpu_hours']:,.1f} GPU-hours at {c['tflops']:g} TFLOP/s sustained")
    return 0


def _plain(v):
    return list(v) if isinstance(v, tuple) else v
