"""Count MACs and parameters of a model, optionally shrunk by a layout, layer by layer.

Examples::

    python -m cakes_lite profile --model cakes_lite.models:resnet3d_tiny --input 1,3,8,32,32
    python -m cakes_lite profile --model my_pkg.nets:build --arg width=16 \\
        --layout layout.json --input 1,1,32,32,32

``--model`` is a factory ``module:callable`` (or ``module.callable``) imported only when the
command runs; it is called with the ``--arg KEY=VALUE`` keyword arguments (values parsed as JSON
when possible, e.g. ``--arg num_classes=10``, else kept as strings). With ``--layout`` (a layout
JSON file) or ``--uniform SPACE`` the model is shrunk with :func:`cakes_lite.shrink` and its cost
is compared with the unshrunk model's. Counts are MACs (multiply-accumulates); FLOPs = 2 × MACs.
"""

from __future__ import annotations

import argparse
import importlib
import json
from typing import Any

from .common import parse_kwargs

DEFAULT_MODEL = "cakes_lite.models:resnet3d_tiny"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="model factory as 'module:callable' (imported lazily)")
    parser.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE",
                        help="keyword argument for the factory (repeatable; JSON values)")
    parser.add_argument("--input", default="1,3,8,32,32",
                        help="input shape N,C,D,H,W (batch included; MACs are for the batch)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--layout", help="layout JSON to apply with cakes_lite.shrink")
    group.add_argument("--uniform", metavar="SPACE",
                       help="apply an even split over SPACE (e.g. video-123d) to every "
                       "k×k×k conv")
    parser.add_argument("--all", action="store_true",
                        help="list every leaf layer, not only those with MACs or parameters")
    parser.add_argument("--format", choices=("table", "json"), default="table",
                        help="human-readable table or one JSON object")


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1,3,8,32,32"`` -> ``(1, 3, 8, 32, 32)``; ValueError naming --input otherwise."""
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(",") if s.strip())
    except ValueError:
        shape = ()
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"--input: expected positive ints like 1,3,8,32,32, got {text!r}")
    return shape


def load_factory(path: str):
    """Import ``"package.module:attr"`` (or ``"package.module.attr"``) and return the attribute."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"--model: expected 'module:callable', got {path!r}")
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise ValueError(f"--model: cannot import module {module_name!r} ({e})") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"--model: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"--model: expected a callable returning an nn.Module, got {obj!r}")
    return obj


def build_report(args: argparse.Namespace) -> dict[str, Any]:
    """Build, optionally shrink and profile the model; return the report as plain data."""
    # here, not at the top: `--help` must not load torch (cakes_lite/cli/__init__.py)
    from torch import nn

    from .. import Layout, profile, shrink

    shape = parse_shape(args.input)
    model = load_factory(args.model)(**parse_kwargs(args.arg))
    if not isinstance(model, nn.Module):
        raise ValueError(f"--model: {args.model!r} returned {type(model).__name__}, "
                         "expected an nn.Module")
    base = profile(model, shape)
    layout = None
    if args.layout:
        layout = Layout.from_json(args.layout)
    elif args.uniform:
        layout = Layout.uniform(model, args.uniform)
    prof = base if layout is None else profile(shrink(model, layout, init="random"), shape)
    rows = [r for r in prof.layers if args.all or r.macs or r.params]
    report = {
        "model": args.model, "input_shape": list(shape), "macs": prof.macs, "params": prof.params,
        "layers": [{"name": r.name, "type": r.type, "output_shape": list(r.output_shape),
                    "macs": r.macs, "params": r.params, "plan": r.plan} for r in rows],
    }
    if layout is not None:
        report["layout"] = {"layers": len(layout), "meta": layout.meta}
        report["unshrunk"] = {"macs": base.macs, "params": base.params}
    return report


def format_table(report: dict[str, Any]) -> str:
    """The report as an aligned text table with totals."""
    total = report["macs"] or 1
    # "plan": the forward plan each CAKES layer ran (measured once per shape:
    # cakes_lite.fast.autotune)
    plans = any(r.get("plan") for r in report["layers"])
    head = ("layer", "type", "output", "MACs", "% MACs", "params") + (("plan",) if plans else ())
    lines = [(r["name"], r["type"], "×".join(map(str, r["output_shape"])), f"{r['macs']:,}",
              f"{100 * r['macs'] / total:.1f}", f"{r['params']:,}")
             + ((r.get("plan") or "-",) if plans else ()) for r in report["layers"]]
    widths = [max(len(str(c)) for c in col) for col in zip(head, *lines)]
    out = ["  ".join(str(c).ljust(w) if i < 3 or i == 6 else str(c).rjust(w)
                     for i, (c, w) in enumerate(zip(row, widths))).rstrip()
           for row in [head, *lines]]
    out.insert(1, "-" * len(out[0]))
    out.append(f"total: {report['macs']:,} MACs ({report['macs'] / 1e6:.2f} M; FLOPs = 2 × MACs), "
               f"{report['params']:,} params, input {tuple(report['input_shape'])}")
    if "unshrunk" in report:
        base = report["unshrunk"]
        out.append(f"unshrunk: {base['macs']:,} MACs, {base['params']:,} params -> shrunk is "
                   f"{report['macs'] / max(base['macs'], 1):.3f}× the MACs, "
                   f"{report['params'] / max(base['params'], 1):.3f}× the params "
                   f"({report['layout']['layers']} layers replaced)")
    return "\n".join(out)


def main(args: argparse.Namespace) -> int:
    report = build_report(args)
    print(json.dumps(report, indent=1) if args.format == "json" else format_table(report))
    return 0
