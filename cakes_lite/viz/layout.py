"""Plotly figures of kernel layouts: which sub-kernel each output channel of each layer uses.

* :func:`layout_bars` — per layer, a stacked bar of output channels per sub-kernel;
* :func:`layout_grid` — one cell per output channel (rows = layers), coloured by sub-kernel;
* :func:`compare_layouts` — two layouts' per-layer shares side by side;
* :func:`cost_table` — MACs / params of several variants and their ratio to a reference.

Used by the search notebook (``notebooks/02_search.ipynb``) and the app's layout explorer.
Every figure has an explicit height. Sub-kernels are drawn in canonical order (``kxkxk`` first,
as :class:`~cakes_lite.ops.CAKESConv3d` lays out its channels) with fixed colours.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..kernels import SUBKERNELS
from ..layout import Layout

#: one fixed colour per sub-kernel, shared by every figure (colour-blind-friendly Okabe-Ito).
SUBKERNEL_COLORS: dict[str, str] = {
    "kxkxk": "#D55E00",  # full 3D: vermillion
    "1xkxk": "#0072B2",  # 2D spatial: blue
    "kx1xk": "#56B4E9",
    "kxkx1": "#009E73",
    "kx1x1": "#E69F00",  # 1D temporal: orange
    "1xkx1": "#CC79A7",
    "1x1xk": "#F0E442",
    "1x1x1": "#999999",
}


def subkernel_label(name: str, kernel_size: int = 3) -> str:
    """Render a sub-kernel name for a given k, e.g. ``"1xkxk"`` -> ``"1×3×3"``."""
    if name not in SUBKERNELS:
        raise ValueError(f"name: expected a sub-kernel from {list(SUBKERNELS)}, got {name!r}")
    return "×".join(str(kernel_size) if full else "1" for full in SUBKERNELS[name])


def _as_layout(layout) -> Layout:
    if isinstance(layout, Layout):
        return layout
    if isinstance(layout, Mapping):
        return Layout(layout)
    raise ValueError(f"layout: expected a Layout or a {{layer: split}} dict, got "
                     f"{type(layout).__name__}")


def _kernel_size(layout: Layout, kernel_size: int | None) -> int:
    if kernel_size is not None:
        return kernel_size
    k = layout.meta.get("kernel_size", 3)
    return k if isinstance(k, int) else 3


def _used_subkernels(*layouts: Layout) -> list[str]:
    used = {n for lay in layouts for split in lay.values() for n, c in split.items() if c}
    return [n for n in SUBKERNELS if n in used]


def _add_bars(fig: go.Figure, layout: Layout, k: int, normalize: bool, *, row=None, col=None,
              showlegend: bool = True, names: list[str] | None = None) -> None:
    layers = list(layout)
    for sk in names or _used_subkernels(layout):
        counts = [layout[name].get(sk, 0) for name in layers]
        totals = [sum(layout[name].values()) for name in layers]
        y = [c / t for c, t in zip(counts, totals)] if normalize else counts
        fig.add_trace(
            go.Bar(
                x=layers, y=y, name=subkernel_label(sk, k), legendgroup=sk,
                marker_color=SUBKERNEL_COLORS[sk], showlegend=showlegend,
                customdata=list(zip(counts, totals)),
                hovertemplate="%{x}<br>" + subkernel_label(sk, k)
                + ": %{customdata[0]} of %{customdata[1]} channels<extra></extra>",
            ),
            row=row, col=col,
        )


def layout_bars(layout: Layout | Mapping, *, normalize: bool = False, title: str | None = None,
                kernel_size: int | None = None, height: int = 420) -> go.Figure:
    """Per-layer stacked bars: output channels (or their share) per sub-kernel.

    Args:
        layout: a :class:`~cakes_lite.Layout` or a ``{layer: split}`` dict.
        normalize: plot shares of each layer's output channels (0–1) instead of counts.
        title: figure title.
        kernel_size: k used to label sub-kernels (default: the layout's ``meta`` or 3).
        height: figure height in pixels.

    Returns:
        A ``go.Figure`` with one ``Bar`` trace per sub-kernel used, x = layer names.
    """
    layout = _as_layout(layout)
    k = _kernel_size(layout, kernel_size)
    fig = go.Figure()
    _add_bars(fig, layout, k, normalize)
    fig.update_layout(
        barmode="stack", height=height, title=title, legend_title_text="sub-kernel",
        yaxis_title="share of output channels" if normalize else "output channels",
        xaxis_tickangle=-45, margin=dict(l=60, r=20, t=50 if title else 20, b=100),
    )
    return fig


def channel_assignment(layout: Layout | Mapping) -> dict[str, list[str]]:
    """Sub-kernel of every output channel, layer by layer, in CAKESConv3d's channel order."""
    layout = _as_layout(layout)
    return {name: [sk for sk, c in split.items() for _ in range(c)]
            for name, split in layout.items()}


def layout_grid(layout: Layout | Mapping, *, title: str | None = None,
                kernel_size: int | None = None, height: int | None = None) -> go.Figure:
    """A heatmap with one cell per output channel (x) of each layer (y), coloured by sub-kernel.

    Channels are in :class:`~cakes_lite.ops.CAKESConv3d` order (groups in canonical order);
    cells beyond a narrower layer's width are empty.

    Returns:
        A ``go.Figure`` with one ``Heatmap`` of shape (layers, max out_channels); ``z`` holds
        the sub-kernel's index in the legend order, ``None`` for no channel.
    """
    layout = _as_layout(layout)
    k = _kernel_size(layout, kernel_size)
    used = _used_subkernels(layout)
    index = {sk: i for i, sk in enumerate(used)}
    assign = channel_assignment(layout)
    width = max((len(a) for a in assign.values()), default=0)
    layers = list(assign)[::-1]  # first layer on top
    # z: (layers, width) sub-kernel index per channel, None past the layer's width
    z = [[index[a[c]] if c < len(a) else None for c in range(width)]
         for a in (assign[n] for n in layers)]
    text = [[subkernel_label(a[c], k) if c < len(a) else "" for c in range(width)]
            for a in (assign[n] for n in layers)]
    n = max(len(used), 1)
    # discrete colour scale: band i of n maps to used[i]'s colour
    scale = []
    for i, sk in enumerate(used):
        scale += [[i / n, SUBKERNEL_COLORS[sk]], [(i + 1) / n, SUBKERNEL_COLORS[sk]]]
    fig = go.Figure(go.Heatmap(
        z=z, x=list(range(width)), y=layers, text=text, zmin=-0.5, zmax=n - 0.5,
        colorscale=scale or [[0, "#999"], [1, "#999"]], xgap=0, ygap=2,
        hovertemplate="%{y}, channel %{x}: %{text}<extra></extra>",
        colorbar=dict(title="sub-kernel", tickvals=list(range(len(used))),
                      ticktext=[subkernel_label(sk, k) for sk in used]),
    ))
    fig.update_layout(
        height=height or max(260, 60 + 22 * len(layers)), title=title,
        xaxis_title="output channel", margin=dict(l=120, r=20, t=50 if title else 20, b=50),
        plot_bgcolor="white",
    )
    return fig


def compare_layouts(a: Layout | Mapping, b: Layout | Mapping, *,
                    names: Sequence[str] = ("A", "B"), normalize: bool = True,
                    kernel_size: int | None = None, height: int = 440) -> go.Figure:
    """Two layouts' per-layer stacked bars side by side (shares by default, shared y axis).

    The two layouts need not name the same layers (e.g. ResNet-50 vs our tiny ResNet).

    Returns:
        A ``go.Figure`` with two subplots; one legend entry per sub-kernel used by either.
    """
    a, b = _as_layout(a), _as_layout(b)
    if len(names) != 2:
        raise ValueError(f"names: expected two titles, got {list(names)}")
    k = _kernel_size(a, kernel_size)
    used = _used_subkernels(a, b)
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, subplot_titles=list(names),
                        horizontal_spacing=0.05)
    for col, (lay, show) in enumerate(((a, True), (b, False)), start=1):
        _add_bars(fig, lay, k, normalize, row=1, col=col, showlegend=show,
                  names=[sk for sk in used if any(s.get(sk) for s in lay.values())])
    # keep legend entries for sub-kernels only b uses
    only_b = [sk for sk in used if not any(s.get(sk) for s in a.values())]
    for trace in fig.data:
        if trace.legendgroup in only_b:
            trace.showlegend = True
    fig.update_layout(barmode="stack", height=height, legend_title_text="sub-kernel",
                      margin=dict(l=60, r=20, t=40, b=100))
    fig.update_xaxes(tickangle=-45)
    fig.update_yaxes(title_text="share of output channels" if normalize else "output channels",
                     row=1, col=1)
    return fig


def cost_table(costs: Mapping[str, tuple[int, int]], reference: str) -> list[list]:
    """Rows for a table of MACs / params per variant and their ratio to ``reference``.

    Args:
        costs: variant name -> (MACs, params), e.g. from :func:`cakes_lite.profile`.
        reference: the variant the ratios are relative to (e.g. the full 3D network).

    Returns:
        ``[[name, "MMACs", "M params", MACs ratio, params ratio], …]`` (ratios rounded to 3
        decimals) in the order of ``costs``; :data:`COST_HEADERS` names the columns.
    """
    if reference not in costs:
        raise ValueError(f"reference: expected one of {list(costs)}, got {reference!r}")
    ref_macs, ref_params = costs[reference]
    rows = []
    for name, (macs, params) in costs.items():
        rows.append([name, round(macs / 1e6, 2), round(params / 1e6, 4),
                     round(macs / ref_macs, 3) if ref_macs else None,
                     round(params / ref_params, 3) if ref_params else None])
    return rows


#: column names of :func:`cost_table` rows.
COST_HEADERS = ["variant", "MMACs", "M params", "MACs / reference", "params / reference"]
