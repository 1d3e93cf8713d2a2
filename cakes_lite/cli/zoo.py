"""List the models of a zoo folder as a table: name, task, cost, recorded accuracy, title.

Examples::

    python -m cakes_lite zoo list                 # the app's zoo (app/zoo of this checkout)
    python -m cakes_lite zoo list --root my_zoo --format json

The app's zoo is rebuilt by its own recipe, ``python app/zoo_build.py`` (seeded, CPU).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

#: the app's zoo when run from a source checkout (the folder holding app/ and cakes_lite/).
DEFAULT_ROOT = Path("app") / "zoo"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True,
                                parser_class=type(parser))
    show = sub.add_parser("list", help="print the models and their recorded metrics as a table",
                          description=__doc__, formatter_class=parser.formatter_class)
    show.add_argument("--root", default=str(DEFAULT_ROOT), help="zoo folder")
    show.add_argument("--format", choices=("table", "json"), default="table",
                      help="aligned table or one JSON object (metadata and build summary)")


def _metric(meta: dict) -> str:
    m = meta.get("metrics", {})
    if "top1" in m:
        return f"top-1 {m['top1']:.3f}"
    if "dice_mean" in m:
        return f"Dice {m['dice_mean']:.3f}"
    return "-"


def table(metas: list[dict]) -> str:
    """The models as an aligned text table with a header row."""
    head = ("name", "task", "MMACs", "M params", "accuracy", "title")
    rows = [(m["name"], m["task"], f"{m['macs'] / 1e6:.2f}", f"{m['params'] / 1e6:.4f}",
             _metric(m), m.get("title", "")) for m in metas]
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows)]
    right = {2, 3}
    lines = ["  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                       for i, (c, w) in enumerate(zip(row, widths))).rstrip()
             for row in [head, *rows]]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    # here, not at the top: `--help` must not load torch (cakes_lite/cli/__init__.py)
    from ..zoo import list_models, read_index

    metas = list_models(args.root)
    if args.format == "json":
        print(json.dumps({"models": metas, "build": read_index(args.root).get("build")}))
        return 0
    print(table(metas))
    build = read_index(args.root).get("build", {})
    parts = build.get("parts", [build])
    cpu = sum(p.get("cpu_seconds", 0) for p in parts)
    command = parts[0].get("command", "") if parts else ""
    print(f"\nbuilt by `{command}` (seed {build.get('recipe', {}).get('seed')}, "
          f"{cpu / 60:.1f} CPU-minutes); accuracy: top-1 on the held-out synthetic test clips, "
          f"mean Dice on the MNI152 held-out slab")
    return 0
