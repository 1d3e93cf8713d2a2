"""Command-line interface: ``python -m cakes_lite {search,train,eval,profile,zoo} …``.

Each sub-command lives in its own module ``cakes_lite.cli.<name>`` exposing
``add_arguments(parser)`` and ``main(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: sub-command -> one-line help; the module cakes_lite.cli.<name> implements it.
COMMANDS = {
    "profile": "count MACs/params of a built-in model with a given conv type or layout",
    "search": "search a per-layer kernel layout and write it as JSON",
    "train": "train a model (optionally with a layout) and write a checkpoint",
    "eval": "evaluate a checkpoint",
    "zoo": "build the app's bundled model zoo",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cakes_lite",
        description="CAKES: channel-wise automatic kernel shrinking for 3D networks.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        try:
            module = importlib.import_module(f"cakes_lite.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"cakes_lite.cli.{name}":
                raise
            continue  # not implemented yet
        p = sub.add_parser(name, help=help_text, description=module.__doc__,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_module", None):
        parser.print_help()
        return 2
    try:
        return int(args._module.main(args) or 0)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
