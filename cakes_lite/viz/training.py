"""Figures (and the small tallies behind them) for training results: accuracy/Dice vs MACs
Pareto plots, training curves, confusion matrices that expose time-reversed class pairs.

Used by ``notebooks/03_video_training.ipynb``, ``04_volumetric_segmentation.ipynb`` and the app.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch
from torch import nn

__all__ = ["PARETO_SYMBOLS", "class_accuracy", "confusion_figure", "confusion_matrix", "curves",
           "pair_confusion", "pareto", "pareto_front", "predict"]


@torch.no_grad()
def predict(model: nn.Module, loader: Iterable) -> tuple[np.ndarray, np.ndarray]:
    """Run a classifier in eval mode over ``(inputs, targets)`` batches.

    Returns:
        ``(targets (N,), predictions (N,))`` as int64 numpy arrays (argmax of the logits).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ys, ps = [], []
    try:
        for x, y in loader:
            ps.append(model(x.to(device)).argmax(1).cpu())
            ys.append(torch.as_tensor(y).cpu())
    finally:
        model.train(was_training)
    if not ys:
        raise ValueError("loader: yielded no batches")
    return torch.cat(ys).numpy().astype(np.int64), torch.cat(ps).numpy().astype(np.int64)


def confusion_matrix(targets: Sequence[int], preds: Sequence[int], num_classes: int) -> np.ndarray:
    """Counts ``m[true, predicted]`` as an int64 (num_classes, num_classes) array."""
    t, p = np.asarray(targets, dtype=np.int64), np.asarray(preds, dtype=np.int64)
    if t.shape != p.shape:
        raise ValueError(f"targets/preds: expected equal shapes, got {t.shape} and {p.shape}")
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= num_classes):
        raise ValueError(f"targets/preds: expected class ids in [0, {num_classes}), got "
                         f"[{min(t.min(), p.min())}, {max(t.max(), p.max())}]")
    return np.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes,
                                                                                num_classes)


def class_accuracy(matrix: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """Accuracy (recall) of every class from a confusion matrix: ``{name: m[i, i] / m[i].sum()}``
    (NaN for a class without samples). Read it before the mean: on something-something-lite a
    network blind to motion fails whole groups of classes (``cakes_lite.data.frame_blind``)."""
    m = np.asarray(matrix)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] != len(classes):
        raise ValueError(f"matrix: expected ({len(classes)}, {len(classes)}) for "
                         f"{len(classes)} classes, got {m.shape}")
    rows = m.sum(1)
    return {c: float(m[i, i] / rows[i]) if rows[i] else float("nan")
            for i, c in enumerate(classes)}


def pair_confusion(matrix: np.ndarray, classes: Sequence[str],
                   pairs: Iterable[tuple[str, str]]) -> float:
    """Share of the samples of paired classes that are predicted as their time-reversed partner
    (0 = never confused; a frame-order-blind model that still finds the pair sits near 0.5)."""
    m = np.asarray(matrix)
    index = {c: i for i, c in enumerate(classes)}
    swapped = total = 0
    for a, b in pairs:
        i, j = index[a], index[b]
        swapped += m[i, j] + m[j, i]
        total += m[i].sum() + m[j].sum()
    return float(swapped / total) if total else float("nan")


def confusion_figure(matrix: np.ndarray, classes: Sequence[str], *,
                     pairs: Iterable[tuple[str, str]] = (), normalize: bool = True,
                     title: str | None = None, height: int = 520) -> go.Figure:
    """Heatmap of a confusion matrix (rows = true class), reversed pairs outlined.

    Args:
        matrix: (K, K) counts from :func:`confusion_matrix`.
        classes: the K class names.
        pairs: class-name pairs to outline (e.g. ``cakes_lite.data.REVERSED_PAIRS``): the two
            off-diagonal cells (a→b, b→a) get a box, so confusion between them stands out.
        normalize: show each row as shares (recall per class) instead of counts.
        height: figure height in pixels.
    """
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] != len(classes):
        raise ValueError(f"matrix: expected ({len(classes)}, {len(classes)}) for "
                         f"{len(classes)} classes, got {m.shape}")
    z = m / np.maximum(m.sum(1, keepdims=True), 1) if normalize else m
    fig = go.Figure(go.Heatmap(
        z=z, x=list(classes), y=list(classes), colorscale="Blues", zmin=0,
        zmax=1 if normalize else None, customdata=m,
        hovertemplate="true %{y}<br>predicted %{x}<br>%{customdata:.0f} samples"
                      + (" (%{z:.0%})" if normalize else "") + "<extra></extra>",
        colorbar=dict(title="share of row" if normalize else "samples")))
    index = {c: i for i, c in enumerate(classes)}
    for a, b in pairs:
        for r, c in ((index[a], index[b]), (index[b], index[a])):
            fig.add_shape(type="rect", x0=c - 0.5, x1=c + 0.5, y0=r - 0.5, y1=r + 0.5,
                          line=dict(color="#D55E00", width=2))
    fig.update_layout(
        title=title, height=height, margin=dict(l=110, r=20, t=50 if title else 20, b=110),
        xaxis=dict(title="predicted", tickangle=-45),
        yaxis=dict(title="true", autorange="reversed"))
    return fig


def pareto_front(points: Sequence[Mapping[str, Any]], x: str = "macs",
                 y: str = "score") -> list[int]:
    """Indices of the non-dominated points (lower ``x`` and higher ``y`` are better), by ``x``."""
    order = sorted(range(len(points)), key=lambda i: (points[i][x], -points[i][y]))
    front, best = [], -np.inf
    for i in order:
        if points[i][y] > best:
            front.append(i)
            best = points[i][y]
    return front


#: marker symbols cycled over a Pareto plot's traces, so points that coincide stay distinguishable
PARETO_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "cross", "triangle-down",
                  "star", "pentagon", "hexagon")


def pareto(points: Sequence[Mapping[str, Any]], *, x: str = "macs", y: str = "score",
           x_title: str = "MACs per sample (millions)", y_title: str = "accuracy",
           x_scale: float = 1e-6, title: str | None = None, height: int = 420) -> go.Figure:
    """Score vs cost scatter with the Pareto front (up-left is better).

    Points are named in the legend, not by text beside the markers (labels of nearby points
    overlap): each trace gets its own colour and open marker symbol, and a point that sits on top
    of an earlier one is drawn smaller, so both outlines stay visible. Both axes are padded
    around the data (error bars included), so no marker is cut at an edge.

    Args:
        points: dicts with ``"name"``, ``x`` (e.g. MACs) and ``y`` (e.g. top-1 or mean Dice),
            optionally ``"group"`` (one legend entry and symbol), ``"params"`` (on hover) and
            ``"error"`` (a vertical error bar of that half-length, e.g. the std over seeds).
        x_scale: multiply ``x`` by this for display (default: MACs in millions).

    Returns:
        A ``go.Figure``: one marker trace per group (named like the group, so callers can add
        error bars by trace name), and a dashed step line through the non-dominated points.
    """
    if not points:
        raise ValueError("points: expected at least one {'name', x, y} dict, got none")
    for p in points:
        missing = [k for k in ("name", x, y) if k not in p]
        if missing:
            raise ValueError(f"points: entry {dict(p)!r} lacks {missing}")
    xs = np.array([float(p[x]) * x_scale for p in points])
    ys = np.array([float(p[y]) for p in points])
    errors = np.array([float(p.get("error", 0.0)) for p in points])
    x_range, y_range = _padded(xs), _padded(np.concatenate([ys - errors, ys + errors]))
    sizes = _stacked_sizes(xs, ys, x_range, y_range)
    fig = go.Figure()
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(points):
        groups.setdefault(str(p.get("group", p["name"])), []).append(i)
    for n, (g, idx) in enumerate(groups.items()):
        fig.add_trace(go.Scatter(
            x=xs[idx], y=ys[idx], mode="markers", name=g, text=[points[i]["name"] for i in idx],
            marker=dict(size=[sizes[i] for i in idx], line=dict(width=2.5),
                        symbol=PARETO_SYMBOLS[n % len(PARETO_SYMBOLS)] + "-open"),
            error_y=dict(type="data", array=errors[idx], visible=bool(errors[idx].any())),
            customdata=[[points[i].get("params", float("nan"))] for i in idx],
            hovertemplate="%{text}<br>%{x:.2f} " + x_title + "<br>" + y_title
                          + " %{y:.3f}<br>params %{customdata[0]:,}<extra></extra>"))
    front = [points[i] for i in pareto_front(points, x, y)]
    if len(front) > 1:
        fig.add_trace(go.Scatter(x=[p[x] * x_scale for p in front], y=[p[y] for p in front],
                                 mode="lines", line=dict(dash="dash", color="grey", shape="hv"),
                                 name="Pareto front", hoverinfo="skip"))
    fig.update_layout(title=title, height=height, xaxis=dict(title=x_title, range=x_range),
                      yaxis=dict(title=y_title, range=y_range), legend=dict(itemsizing="constant"),
                      margin=dict(l=60, r=20, t=50 if title else 20, b=50))
    return fig


def _padded(values: np.ndarray, share: float = 0.08) -> list[float]:
    """Axis range around ``values`` with ``share`` of their span (or of their size) each side."""
    lo, hi = float(values.min()), float(values.max())
    pad = share * ((hi - lo) or abs(hi) or 1.0)
    return [lo - pad, hi + pad]


def _stacked_sizes(xs: np.ndarray, ys: np.ndarray, x_range: list[float],
                   y_range: list[float], size: float = 16.0, step: float = 4.0) -> list[float]:
    """Marker sizes: a point within 2 % of the axes of k earlier points is ``k * step`` smaller,
    so (open) symbols of points that coincide show as concentric outlines."""
    # positions as shares of the axis ranges: (n,) each
    u = (xs - x_range[0]) / (x_range[1] - x_range[0])
    v = (ys - y_range[0]) / (y_range[1] - y_range[0])
    out = []
    for i in range(len(xs)):
        below = int(np.sum(np.hypot(u[:i] - u[i], v[:i] - v[i]) < 0.02))
        out.append(max(6.0, size - step * below))
    return out


def curves(histories: Mapping[str, Sequence[Mapping[str, Any]]], key: str = "val_top1", *,
           y_title: str | None = None, title: str | None = None, height: int = 360) -> go.Figure:
    """One line per run of ``record[key]`` over epochs (records as in ``fit(...).history``)."""
    fig = go.Figure()
    for name, records in histories.items():
        pts = [(r.get("epoch", i + 1), r[key]) for i, r in enumerate(records) if key in r]
        if not pts:
            raise ValueError(f"histories[{name!r}]: no record has the key {key!r}; available: "
                             f"{sorted(records[0]) if records else []}")
        fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts],
                                 mode="lines+markers", name=name))
    fig.update_layout(title=title, height=height, xaxis=dict(title="epoch", dtick=1),
                      yaxis_title=y_title or key, margin=dict(l=60, r=20, t=50 if title else 20,
                                                              b=50))
    return fig
