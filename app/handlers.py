"""What the app's buttons do: plain functions (paths and names in, figures and dicts out).

Bad input raises :class:`gradio.Error` with a message saying what was expected and what was
given; the app shows it and keeps serving. Models are loaded once and shared between requests
(inference runs under ``torch.no_grad`` in eval mode, so concurrent requests are safe).
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from pathlib import Path

import gradio as gr
import torch

from cakes_lite import Layout, profile, shrink, zoo
from cakes_lite.models import build_model
from cakes_lite.viz.layout import (COST_HEADERS, compare_layouts, cost_table, layout_bars,
                                   layout_grid)

HERE = Path(__file__).resolve().parent
ZOO = Path(os.environ.get("CAKES_LITE_ZOO", HERE / "zoo"))  # override for tests / rebuilt zoos
EXAMPLES = HERE / "examples"
VIDEO_TYPES = (".mp4", ".webm", ".avi")
MAX_VIDEO_SECONDS = 30.0  # longer uploads are refused before decoding
MAX_VIDEO_FRAMES = 900

_lock = threading.Lock()
_models: dict[str, tuple[torch.nn.Module, dict]] = {}
_costs: dict[str, tuple[list[list], str]] = {}


def fail(message: str) -> gr.Error:
    """A user-facing error (shown in the UI; the app keeps serving)."""
    return gr.Error(message, print_exception=False)


def model(name: str) -> tuple[torch.nn.Module, dict]:
    """A bundled model and its metadata, loaded once."""
    with _lock:
        if name not in _models:
            try:
                _models[name] = zoo.load_model(name, ZOO)
            except (ValueError, FileNotFoundError) as e:
                raise fail(f"model {name!r}: {e}") from None
        return _models[name]


def models_for(task: str) -> list[tuple[str, str]]:
    """(label, name) of the bundled models of a task, for a dropdown."""
    return [(f"{m['title']} — {m['name']}", m["name"]) for m in zoo.list_models(ZOO, task)]


def default_model(task: str) -> str | None:
    """The first CAKES model (one with a layout) of ``task``, else the first model."""
    metas = zoo.list_models(ZOO, task)
    cakes = [m["name"] for m in metas if m.get("layout")]
    return (cakes or [m["name"] for m in metas] or [None])[0]


def baseline_for(task: str) -> str:
    """Name of the full 3D model of ``task`` in the zoo."""
    for m in zoo.list_models(ZOO, task):
        if m.get("layout") is None:
            return m["name"]
    raise fail(f"the zoo has no full 3D {task} model to compare with")


def timed(fn, repeats: int = 3) -> tuple[object, float]:
    """Run ``fn()`` ``repeats`` times; return its result and the median time in ms."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return out, statistics.median(times)


# -- layout explorer -------------------------------------------------------------------------

def layout_choices() -> list[tuple[str, str]]:
    """Dropdown entries: our searched layouts (zoo) and the six official ResNet-50 ones."""
    ours = [(f"ours · {m['title']} ({m['name']})", f"zoo:{m['name']}")
            for m in zoo.list_models(ZOO) if m.get("layout")]
    official = [(f"ResNet-50 · {title} (official, yucornetto/CAKES)", f"official:{key}")
                for key, title in zoo.OFFICIAL_TITLES.items()]
    return ours + official


def get_layout(choice: str | None, upload: str | None = None) -> tuple[Layout, str]:
    """The layout picked in the dropdown, or the uploaded JSON if there is one; and its title."""
    if upload:
        path = Path(upload)
        if path.suffix.lower() != ".json":
            raise fail(f"layout file: expected a .json file, got {path.name!r}")
        try:
            return Layout.from_json(path), path.name
        except (ValueError, UnicodeDecodeError, TypeError, AttributeError) as e:
            raise fail(f"layout file {path.name!r} is not a valid layout: {e}") from None
    if not choice or ":" not in choice:
        raise fail(f"layout: expected a bundled layout or an uploaded JSON, got {choice!r}")
    kind, name = choice.split(":", 1)
    if kind == "official":
        layouts = zoo.official_layouts()
        if name not in layouts:
            raise fail(f"layout: expected one of {list(layouts)}, got {name!r}")
        return layouts[name], f"ResNet-50 {zoo.OFFICIAL_TITLES[name]} (official)"
    if kind == "zoo":
        layout = zoo.load_layout(name, ZOO)
        if layout is None:
            raise fail(f"layout: bundled model {name!r} has no layout (it is full 3D)")
        return layout, f"{zoo.read_meta(name, ZOO)['title']} ({name})"
    raise fail(f"layout: expected 'zoo:<name>' or 'official:<name>', got {choice!r}")


def _base_spec(meta: dict) -> dict:
    """The full 3D architecture of a zoo model (its config with no layout and builder 3d)."""
    return {**meta["model"]["config"], "layout": None, "builder": "3d"}


def layout_costs(layout: Layout, title: str) -> tuple[list[list], str]:
    """Cost rows (layout vs full 3D) on the network the layout fits, and how it was counted."""
    names = set(layout)
    errors = []
    if names and all(n.startswith("layer") and n.endswith("conv2") for n in names):
        try:
            c = zoo.resnet50_macs(layout)
        except ValueError as e:
            errors.append(f"ResNet-50: {e}")
        else:
            rows = cost_table({title: (c["macs"], c["params"]),
                               "full 3D": (c["macs_3d"], c["params_3d"])}, "full 3D")
            return rows, ("ResNet-50 I3D, the 16 searched 3×3×3 layers only, analytic, at the "
                          "paper's 8×224×224 input (stage outputs 56², 28², 14², 7², T = 8).")
    seen = set()
    for meta in zoo.list_models(ZOO):
        spec = _base_spec(meta)
        key = repr(sorted(spec.items()))
        if key in seen:
            continue
        seen.add(key)
        base = build_model(meta["model"]["name"], **spec)
        try:
            shrunk = shrink(base, layout)
        except ValueError as e:
            errors.append(f"{meta['model']['name']}: {e}")
            continue
        shape = tuple(meta["input_shape"])
        p, p3 = profile(shrunk, shape), profile(base, shape)
        rows = cost_table({title: (p.macs, p.params), "full 3D": (p3.macs, p3.params)},
                          "full 3D")
        return rows, (f"whole network `{meta['model']['name']}` ({meta['task']}), "
                      f"cakes_lite.profile at input {list(shape)}.")
    raise fail("layout does not fit ResNet-50 or any bundled network: " + " | ".join(errors))


def explore(choice: str | None, upload: str | None, normalize: bool):
    """Layout explorer: stacked bars, per-channel grid, cost table, a note."""
    layout, title = get_layout(choice, upload)
    if len(layout) == 0:
        raise fail("layout: expected at least one layer, got an empty layout")
    rows, how = layout_costs(layout, title)
    share = layout.kernel_weight_share()
    note = (f"**{title}** — {len(layout)} layers; kernel weights {share:.0%} of full 3D. "
            f"MACs/params: {how}")
    return (layout_bars(layout, normalize=normalize, title=title),
            layout_grid(layout, title="sub-kernel of every output channel"),
            gr.Dataframe(rows, headers=COST_HEADERS), note)


def compare(choice_a: str | None, choice_b: str | None, normalize: bool):
    """Two bundled layouts side by side, with both cost tables."""
    (a, ta), (b, tb) = get_layout(choice_a), get_layout(choice_b)
    rows_a, _ = layout_costs(a, ta)
    rows_b, _ = layout_costs(b, tb)
    rows = rows_a[:1] + rows_b[:1]
    fig = compare_layouts(a, b, names=(ta, tb), normalize=normalize)
    return fig, gr.Dataframe(rows, headers=COST_HEADERS)
