"""Pictures of one CAKES layer: which sub-kernel each output channel uses (3D cubes, 2D strip).

A channel's sub-kernel is drawn as the voxels of the k×k×k cube it keeps: ``1xkxk`` is the
central T-slice, ``kx1x1`` the central T-column, ``kxkxk`` the full cube. Used by the split widget
in ``notebooks/01_operations.ipynb`` and by the app. Pure functions: they return figures.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..kernels import SUBKERNELS, kernel_volume
from ..ops import normalise_split
from .layout import SUBKERNEL_COLORS, subkernel_label

__all__ = ["SUBKERNEL_COLORS", "channel_strip", "kernel_cubes", "pretty", "split_channels",
           "subkernel_mask", "subkernel_shapes"]


def pretty(name: str, kernel_size: int = 3) -> str:
    """Display name with ``k`` filled in: ``pretty("1xkxk", 3) == "1×3×3"``."""
    return subkernel_label(name, kernel_size)


def subkernel_mask(name: str, kernel_size: int = 3) -> np.ndarray:
    """Boolean (k, k, k) mask over (T/D, H, W) of the voxels sub-kernel ``name`` keeps (centred)."""
    k = kernel_size
    mask = np.zeros((k, k, k), dtype=bool)
    sl = tuple(slice(0, k) if full else slice(k // 2, k // 2 + 1) for full in SUBKERNELS[name])
    mask[sl] = True
    return mask


def split_channels(split: Mapping[str, int]) -> list[str]:
    """Sub-kernel of every output channel, in the channel order CAKESConv3d uses (canonical)."""
    split = normalise_split(split)
    return [name for name, count in split.items() for _ in range(count)]


def _cube_mesh(origins: np.ndarray, size: float) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (8·n, 3) and triangles (12·n, 3) of n axis-aligned cubes at ``origins`` (n, 3)."""
    corners = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0],
                        [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], dtype=float) * size
    faces = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7], [0, 1, 5], [0, 5, 4],
                      [2, 3, 7], [2, 7, 6], [1, 2, 6], [1, 6, 5], [0, 3, 7], [0, 7, 4]])
    # (n, 8, 3) -> (8n, 3);  triangles offset by 8 per cube: (n, 12, 3) -> (12n, 3)
    verts = (origins[:, None, :] + corners[None]).reshape(-1, 3)
    tris = (faces[None] + 8 * np.arange(len(origins))[:, None, None]).reshape(-1, 3)
    return verts, tris


def kernel_cubes(
    split: Mapping[str, int],
    kernel_size: int = 3,
    max_channels: int = 32,
    per_row: int = 8,
    height: int = 520,
    title: str | None = None,
) -> go.Figure:
    """3D picture: one k×k×k cube per output channel, its sub-kernel's voxels filled.

    Args:
        split: sub-kernel -> output channels, e.g. ``{"kxkxk": 22, "1xkxk": 21, "kx1x1": 21}``.
        kernel_size: k (only for drawing; layouts do not depend on it).
        max_channels: draw at most this many channels, sampled proportionally from every group
            so each sub-kernel stays visible (the title says so).
        per_row: channels per row of the grid.
        height: figure height in pixels.
        title: figure title (default: the split and its weight share of a full k×k×k layer).

    Returns:
        A ``go.Figure`` with one Mesh3d trace per sub-kernel (legend) and a faint wireframe.
    """
    split = normalise_split(split)
    if max_channels < 1 or per_row < 1:
        raise ValueError(f"max_channels/per_row: expected >= 1, got {max_channels}/{per_row}")
    total = sum(split.values())
    shown = _sample_counts(split, max_channels)
    # gap between cubes, in voxels: wide enough that neighbours stay apart in the picture
    # (orthographic view from the camera below; tests/test_viz_notebook.py checks it)
    k, gap = kernel_size, 1.6
    fig = go.Figure()
    index, wire = 0, ([], [], [])
    for name, count in shown.items():
        mask = subkernel_mask(name, k)
        origins = []
        for _ in range(count):
            row, col = divmod(index, per_row)
            # rows further apart than columns: seen from above, a cube also shows its top face
            base = np.array([col * (k + gap), 0.0, -row * (k + 2 * gap)])
            # voxel (t, h, w) drawn at x = w, y = t (depth, "time"), z = -h (image rows downward)
            for t, h, w in zip(*np.nonzero(mask)):
                origins.append(base + [w, t, k - 1 - h])
            _wireframe(wire, base, k)
            index += 1
        if not origins:
            continue
        verts, tris = _cube_mesh(np.array(origins) + 0.06, 0.88)
        fig.add_trace(go.Mesh3d(
            x=verts[:, 0], y=verts[:, 1], z=verts[:, 2], i=tris[:, 0], j=tris[:, 1], k=tris[:, 2],
            color=SUBKERNEL_COLORS[name], opacity=0.9, flatshading=True, showlegend=True,
            name=f"{pretty(name, k)} ({split[name]} ch)", hoverinfo="name"))
    fig.add_trace(go.Scatter3d(x=wire[0], y=wire[1], z=wire[2], mode="lines", hoverinfo="skip",
                               line=dict(color="rgba(90,90,90,0.6)", width=2),
                               showlegend=False))
    if title is None:
        share = sum(c * kernel_volume(n, k) for n, c in split.items()) / (total * k**3)
        drawn = sum(shown.values())
        note = f" — {drawn} of {total} channels drawn" if drawn < total else ""
        title = f"{total} output channels; weights/MACs = {share:.0%} of {k}×{k}×{k}{note}"
    fig.update_layout(
        title=title, height=height, margin=dict(l=0, r=0, t=40, b=0),
        legend=dict(orientation="h", y=-0.02),
        scene=dict(aspectmode="data", xaxis_visible=False, yaxis_visible=False,
                   zaxis_visible=False,
                   camera=dict(eye=dict(x=0.5, y=-1.1, z=0.6),
                               projection=dict(type="orthographic"))))
    return fig


def _sample_counts(split: dict[str, int], max_channels: int) -> dict[str, int]:
    """Scale group sizes down to at most ``max_channels`` total, keeping every group >= 1."""
    total = sum(split.values())
    if total <= max_channels:
        return dict(split)
    nonzero = {n: c for n, c in split.items() if c}
    out = {n: max(1, round(c * max_channels / total)) for n, c in nonzero.items()}
    while sum(out.values()) > max(max_channels, len(out)):
        biggest = max(out, key=out.get)
        out[biggest] -= 1
    return out


def _wireframe(acc: tuple[list, list, list], base: np.ndarray, k: int) -> None:
    """Append the 12 edges of the k-cube at ``base`` (None-separated) to ``acc`` (x, y, z)."""
    c = np.array([[0, 0, 0], [k, 0, 0], [k, k, 0], [0, k, 0],
                  [0, 0, k], [k, 0, k], [k, k, k], [0, k, k]], dtype=float) + base
    for a, b in [(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4),
                 (0, 4), (1, 5), (2, 6), (3, 7)]:
        for axis in range(3):
            acc[axis].extend([c[a, axis], c[b, axis], None])


def channel_strip(
    split: Mapping[str, int],
    kernel_size: int = 3,
    height: int = 220,
    title: str | None = None,
) -> go.Figure:
    """2D picture: every output channel as a cell coloured by its sub-kernel, with a second row
    showing each channel's MACs relative to a full k×k×k channel (hover for details).

    Returns:
        A ``go.Figure`` (bars per sub-kernel, so the legend names them).
    """
    names = split_channels(split)
    k = kernel_size
    full = k**3
    fig = go.Figure()
    for name in dict.fromkeys(names):
        idx = [i for i, n in enumerate(names) if n == name]
        rel = kernel_volume(name, k) / full
        fig.add_trace(go.Bar(
            x=idx, y=[1.0] * len(idx), base=[1.1] * len(idx), marker_color=SUBKERNEL_COLORS[name],
            name=pretty(name, k), legendgroup=name, width=0.95,
            customdata=[[pretty(name, k), kernel_volume(name, k), rel]] * len(idx),
            hovertemplate="channel %{x}: %{customdata[0]}<br>%{customdata[1]} weights per input"
                          " channel (%{customdata[2]:.0%} of full)<extra></extra>"))
        fig.add_trace(go.Bar(
            x=idx, y=[rel] * len(idx), marker_color=SUBKERNEL_COLORS[name], opacity=0.6,
            legendgroup=name, showlegend=False, width=0.95, hoverinfo="skip"))
    share = sum(kernel_volume(n, k) for n in names) / (len(names) * full)
    fig.update_layout(
        barmode="overlay", height=height, margin=dict(l=40, r=10, t=40, b=30), bargap=0,
        title=title or f"sub-kernel per output channel (top) and its cost vs {k}×{k}×{k} "
                       f"(bottom): layer total {share:.0%}",
        yaxis=dict(tickvals=[0.5, 1.6], ticktext=["cost", "kernel"], range=[0, 2.15]),
        xaxis=dict(title="output channel"), legend=dict(orientation="h", y=-0.35))
    return fig


def subkernel_shapes(
    split: Mapping[str, int],
    kernel_size: int = 3,
    in_channels: int | None = None,
    height: int = 340,
    title: str | None = None,
) -> go.Figure:
    """3D picture of what each sub-kernel of one layer *is*: one k×k×k cube per sub-kernel, its
    kept voxels filled, axes labelled T (time / depth), H, W, and its channel count.

    ``1×3×3`` fills one T-slice (a 2D spatial kernel), ``3×1×1`` one T-column (a 1D temporal
    kernel), ``3×3×3`` the whole cube.

    Args:
        split: sub-kernel -> output channels of the layer, e.g. ``{"kxkxk": 8, "1xkxk": 24}``.
        kernel_size: k.
        in_channels: the layer's input channels (shown in the title when given).
        height: figure height in pixels.
        title: prefix of the figure title (e.g. the layer name).

    Returns:
        A ``go.Figure`` with one 3D scene per sub-kernel that has channels (Mesh3d of its voxels
        plus the cube's wireframe).
    """
    split = {n: c for n, c in normalise_split(split).items() if c}
    if not split:
        raise ValueError("split: expected at least one sub-kernel with channels, got none")
    k = kernel_size
    total = sum(split.values())
    names = list(split)
    titles = [f"{pretty(n, k)}: {c} of {total} ch<br>{kernel_volume(n, k)} weights per input ch"
              for n, c in split.items()]
    fig = make_subplots(rows=1, cols=len(names), specs=[[{"type": "scene"}] * len(names)],
                        subplot_titles=titles, horizontal_spacing=0.02)
    for col, name in enumerate(names, start=1):
        mask = subkernel_mask(name, k)
        # voxel (t, h, w) drawn at x = w, y = t (the T axis into the screen), z = k-1-h
        origins = np.array([[w, t, k - 1 - h] for t, h, w in zip(*np.nonzero(mask))], float)
        verts, tris = _cube_mesh(origins + 0.06, 0.88)
        fig.add_trace(go.Mesh3d(
            x=verts[:, 0], y=verts[:, 1], z=verts[:, 2], i=tris[:, 0], j=tris[:, 1], k=tris[:, 2],
            color=SUBKERNEL_COLORS[name], opacity=0.95, flatshading=True, showlegend=False,
            name=pretty(name, k), hoverinfo="name"), row=1, col=col)
        wire: tuple[list, list, list] = ([], [], [])
        _wireframe(wire, np.zeros(3), k)
        fig.add_trace(go.Scatter3d(x=wire[0], y=wire[1], z=wire[2], mode="lines",
                                   hoverinfo="skip", showlegend=False,
                                   line=dict(color="rgba(90,90,90,0.6)", width=2)),
                      row=1, col=col)
    axis = dict(showticklabels=False, showgrid=False, zeroline=False, range=[-0.2, k + 0.2])
    for i in range(1, len(names) + 1):
        fig.update_layout({f"scene{'' if i == 1 else i}": dict(
            aspectmode="cube", xaxis=dict(title="W", **axis), yaxis=dict(title="T", **axis),
            zaxis=dict(title="H", **axis), camera=dict(eye=dict(x=1.3, y=-1.6, z=0.9)))})
    c_in = f"{in_channels} input → " if in_channels else ""
    share = sum(c * kernel_volume(n, k) for n, c in split.items()) / (total * k**3)
    head = f"{title}: " if title else ""
    fig.update_layout(
        height=height, margin=dict(l=0, r=0, t=90, b=0),
        title=dict(text=f"{head}{c_in}{total} output channels; weights {share:.0%} of "
                        f"{k}×{k}×{k}", y=0.98, x=0.5, xanchor="center"))
    return fig
