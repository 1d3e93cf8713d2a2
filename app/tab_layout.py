"""Layout explorer tab: a bundled or uploaded layout as bars, per-channel grid, cost table, and a
3D picture of each sub-kernel of one layer; two bundled layouts side by side."""

from __future__ import annotations

import json

import gradio as gr

from cakes_lite import Layout, profile, shrink, zoo
from cakes_lite.models import build_model
from cakes_lite.viz.kernels import subkernel_shapes
from cakes_lite.viz.layout import (COST_HEADERS, compare_layouts, cost_table, layout_bars,
                                   layout_grid)
from state import ZOO, fail, guarded, ok
from uploads import read_json_text


def layout_choices() -> list[tuple[str, str]]:
    """Dropdown entries: our searched layouts (zoo) and the six official ResNet-50 ones."""
    ours = [(f"ours · {m['title']} ({m['name']})", f"zoo:{m['name']}")
            for m in zoo.list_models(ZOO) if m.get("layout")]
    official = [(f"ResNet-50 · {title} (official, yucornetto/CAKES)", f"official:{key}")
                for key, title in zoo.OFFICIAL_TITLES.items()]
    return ours + official


def get_layout(choice: str | None, upload: str | None = None) -> tuple[Layout, str]:
    """The uploaded JSON if there is one, else the layout picked in the dropdown; its title."""
    if upload:
        text = read_json_text(upload)
        name = upload.replace("\\", "/").rsplit("/", 1)[-1]
        try:
            return Layout.from_dict(_json(text, name)), f"{name} (uploaded)"
        except (ValueError, TypeError, AttributeError) as e:
            raise fail(f"layout file {name!r} is not a valid layout: {e}") from None
    if not choice or ":" not in choice:
        raise fail(f"layout: expected a bundled layout or an uploaded JSON, got {choice!r}")
    kind, name = choice.split(":", 1)
    if kind == "official":
        layouts = zoo.official_layouts()
        if name not in layouts:
            raise fail(f"layout: expected one of {list(layouts)}, got {name!r}")
        return layouts[name], f"ResNet-50 {zoo.OFFICIAL_TITLES[name]} (official)"
    if kind == "zoo":
        try:
            layout = zoo.load_layout(name, ZOO)
        except ValueError as e:
            raise fail(str(e)) from None
        if layout is None:
            raise fail(f"layout: bundled model {name!r} has no layout (it is full 3D)")
        return layout, f"{zoo.read_meta(name, ZOO)['title']} ({name})"
    raise fail(f"layout: expected 'zoo:<name>' or 'official:<name>', got {choice!r}")


def _json(text: str, name: str) -> dict:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise fail(f"layout file {name!r} is not valid JSON: {e}") from None
    except RecursionError:
        raise fail(f"layout file {name!r}: expected a layout, got JSON nested too deeply") \
            from None


def _networks() -> list[tuple[str, dict]]:
    """(network name, full 3D spec) of each distinct bundled architecture."""
    seen, out = set(), []
    for meta in zoo.list_models(ZOO):
        spec = {**meta["model"]["config"], "layout": None, "builder": "3d"}
        key = repr(sorted(spec.items()))
        if key not in seen:
            seen.add(key)
            out.append((meta["model"]["name"], {"spec": spec, "meta": meta}))
    return out


def _resnet50_names() -> set[str]:
    return {f"layer{s}.{b}.conv2" for s, (_, n, _) in enumerate(zoo.RESNET50_STAGES, 1)
            for b in range(n)}


def layout_costs(layout: Layout, title: str) -> tuple[list[list], str, dict[str, int]]:
    """Cost rows (layout vs full 3D) on the network the layout's layer names belong to, how they
    were counted, and each layer's input channels (for the kernel picture)."""
    names = set(layout)
    if names <= _resnet50_names():
        try:
            c = zoo.resnet50_macs(layout)
        except ValueError as e:
            raise fail(f"layout does not fit ResNet-50: {e}") from None
        net = c["network"]
        rows = cost_table({title: (c["macs"], c["params"]),
                           "full 3D": (c["macs_3d"], c["params_3d"])}, "full 3D")
        rows += cost_table({f"{title} · whole network": (net["macs"], net["params"]),
                            "full 3D · whole network": (net["macs_3d"], net["params_3d"])},
                           "full 3D · whole network")
        c_in = {n: w for s, (w, b, _) in enumerate(zoo.RESNET50_STAGES, 1)
                for n in [f"layer{s}.{i}.conv2" for i in range(b)]}
        how = ("ResNet-50 I3D at the paper's 8×224×224 input (stage outputs 56², 28², 14², "
               "7², T = 8), analytic: the first two rows count the 16 searched 3×3×3 layers "
               "only, the last two the whole network with 174 classes (equal to "
               "`cakes_lite.profile` of `cakes_lite.models.resnet50_i3d`).")
        return rows, how, c_in
    known = []
    for net_name, info in _networks():
        base = build_model(net_name, **info["spec"])
        convs = {n: m for n, m in base.named_modules() if hasattr(m, "kernel_size")}
        known.append(f"{net_name} ({', '.join(list(convs)[:2])}, …)")
        if not names <= set(convs):
            continue  # not this network's layer names: its error would not help
        try:
            shrunk = shrink(base, layout)
        except ValueError as e:
            raise fail(f"layout does not fit {net_name}, the network whose layer names it "
                       f"uses: {e}") from None
        shape = tuple(info["meta"]["input_shape"])
        p, p3 = profile(shrunk, shape), profile(base, shape)
        rows = cost_table({title: (p.macs, p.params), "full 3D": (p3.macs, p3.params)},
                          "full 3D")
        c_in = {n: convs[n].in_channels for n in layout}
        return rows, (f"whole network `{net_name}` ({info['meta']['task']}), "
                      f"cakes_lite.profile at input {list(shape)}; the params ratio counts "
                      f"every layer (also the unsearched ones, norms and the classifier)."), c_in
    raise fail("layout does not fit: its layer names (e.g. "
               f"{sorted(names)[:2]}) belong to no bundled network; expected names of "
               f"ResNet-50 (layer1.0.conv2, …) or of {'; '.join(known)}")


def _kernel_figure(layout: Layout, layer: str | None, c_in: dict[str, int]):
    layer = layer if layer in layout else next(iter(layout))
    k = int(layout.meta.get("kernel_size", 3) or 3)
    return subkernel_shapes(layout[layer], kernel_size=k, in_channels=c_in.get(layer),
                            title=f"layer {layer}")


def _cleared_explore():
    return (None, None, gr.Dataframe(value=[], headers=COST_HEADERS), gr.Dropdown(choices=[]),
            None)


@guarded(_cleared_explore)
def explore(choice: str | None, upload: str | None, normalize: bool):
    """Bars, per-channel grid, cost table, layer picker, 3D sub-kernel picture, status note."""
    layout, title = get_layout(choice, upload)
    if len(layout) == 0:
        raise fail("layout: expected at least one layer, got an empty layout")
    rows, how, c_in = layout_costs(layout, title)
    share = layout.kernel_weight_share()
    source = ("Using the **uploaded file** (clear it to use the dropdown again). " if upload
              else "")
    note = (f"{source}**{title}** — {len(layout)} searched layers. Their kernel weights are "
            f"{share:.0%} of full 3D (3×3×3) kernels; the table's ratios are for {how}")
    first = next(iter(layout))
    return (layout_bars(layout, normalize=normalize, title=title),
            layout_grid(layout, title="sub-kernel of every output channel"),
            gr.Dataframe(rows, headers=COST_HEADERS),
            gr.Dropdown(choices=list(layout), value=first),
            _kernel_figure(layout, first, c_in), ok(note))


@guarded(lambda: (None,))
def kernel_view(choice: str | None, upload: str | None, layer: str | None):
    """The 3D sub-kernel picture of one layer of the shown layout."""
    layout, title = get_layout(choice, upload)
    if layer not in layout:
        raise fail(f"layer: expected one of {list(layout)[:4]}…, got {layer!r}")
    _, _, c_in = layout_costs(layout, title)
    split = layout[layer]
    text = ", ".join(f"{n} {c}" for n, c in split.items())
    return _kernel_figure(layout, layer, c_in), ok(f"layer `{layer}`: {text} output channels")


@guarded(lambda: (None, gr.Dataframe(value=[], headers=COST_HEADERS)))
def compare(choice_a: str | None, choice_b: str | None, normalize: bool):
    """Two bundled layouts side by side, with both cost tables."""
    (a, ta), (b, tb) = get_layout(choice_a), get_layout(choice_b)
    rows_a, _, _ = layout_costs(a, ta)
    rows_b, _, _ = layout_costs(b, tb)
    fig = compare_layouts(a, b, names=(ta, tb), normalize=normalize)
    return fig, gr.Dataframe(rows_a[:1] + rows_b[:1], headers=COST_HEADERS), \
        ok(f"**A** {ta} vs **B** {tb}")


def build() -> None:
    """The tab's components and events (call inside ``gr.Blocks``)."""
    layouts = layout_choices()
    first = layouts[0][1] if layouts else None
    official = [v for _, v in layouts if v.startswith("official:")]
    with gr.Row():
        choice = gr.Dropdown(layouts, value=first, label="bundled layout", scale=3)
        upload = gr.File(label="…or upload a layout JSON (used instead of the dropdown while "
                               "present)", file_types=[".json"], scale=2, height=120,
                         elem_id="layout-upload")
        normalize = gr.Checkbox(False, label="shares instead of channel counts")
    show = gr.Button("Show layout", variant="primary")
    status = gr.Markdown(elem_id="layout-note")
    bars = gr.Plot(label="channels per sub-kernel, per layer", elem_id="layout-bars")
    grid = gr.Plot(label="per-channel sub-kernel")
    costs = gr.Dataframe(headers=COST_HEADERS, label="cost vs full 3D", interactive=False,
                         wrap=True)
    gr.Markdown("### What the sub-kernels of one layer look like")
    layer = gr.Dropdown([], label="layer", allow_custom_value=False)
    shapes = gr.Plot(label="each sub-kernel's shape in 3D (T × H × W), with its channel count",
                     elem_id="kernel-shapes")
    gr.Markdown("### Compare two layouts")
    with gr.Row():
        a = gr.Dropdown(layouts, value=official[0] if official else first, label="A")
        b = gr.Dropdown(layouts, value=official[1] if len(official) > 1 else first, label="B")
        go_compare = gr.Button("Compare")
    cmp_status = gr.Markdown(elem_id="compare-note")
    cmp_plot = gr.Plot(label="side by side")
    cmp_costs = gr.Dataframe(headers=COST_HEADERS, label="costs (each vs its full 3D network)",
                             interactive=False, wrap=True)
    outs = [bars, grid, costs, layer, shapes, status]
    show.click(explore, [choice, upload, normalize], outs, api_name="explore")
    upload.upload(explore, [choice, upload, normalize], outs, api_name=False)
    # picking a bundled layout drops the uploaded file, so the two never disagree silently
    choice.input(lambda c, n: (None, *explore(c, None, n)), [choice, normalize],
                 [upload, *outs], api_name=False)
    layer.input(kernel_view, [choice, upload, layer], [shapes, status], api_name="kernels")
    go_compare.click(compare, [a, b, normalize], [cmp_plot, cmp_costs, cmp_status],
                     api_name="compare")
    return explore, [choice, upload, normalize], outs
