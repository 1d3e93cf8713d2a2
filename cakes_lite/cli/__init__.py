"""Command-line interface: ``python -m cakes_lite {search,train,eval,profile,zoo,recipes} …``.

Each sub-command lives in its own module ``cakes_lite.cli.<name>`` exposing
``add_arguments(parser)`` and ``main(args) -> int``. Only the module of the command being run is
imported (so ``--help`` does not load what other commands need), and every user error — a bad
option value, a missing or corrupt file, a device this machine lacks — is one line on stderr with
exit status 2.
"""

from __future__ import annotations

import importlib
import sys

from .common import HelpFormatter, OneLineParser, report, user_error_types

#: sub-command -> one-line help; the module cakes_lite.cli.<name> implements it.
COMMANDS = {
    "profile": "count MACs/params of a built-in model with a given conv type or layout",
    "search": "search a per-layer kernel layout and write it as JSON",
    "train": "train a model (optionally with a layout) and write a checkpoint",
    "eval": "evaluate a checkpoint",
    "zoo": "list the models of a zoo folder (the app's: app/zoo)",
    "recipes": "list the named recipes (the paper's experiments) and their settings",
}


def build_parser(argv: list[str] | None = None) -> OneLineParser:
    """The parser; with ``argv``, only the sub-command named there gets its options (and its
    module imported); without, every sub-command does."""
    parser = OneLineParser(
        prog="python -m cakes_lite",
        description="CAKES: channel-wise automatic kernel shrinking for 3D networks.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    wanted = next((a for a in argv if not a.startswith("-")), None) if argv is not None else None
    for name, help_text in COMMANDS.items():
        if argv is not None and name != wanted:
            sub.add_parser(name, help=help_text)  # listed, not loaded
            continue
        module = importlib.import_module(f"cakes_lite.cli.{name}")
        p = sub.add_parser(name, help=help_text, description=module.__doc__,
                           formatter_class=HelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "_module", None):
        parser.print_help()
        return 2
    try:
        return int(args._module.main(args) or 0)
    except user_error_types() as e:
        return report(e)
