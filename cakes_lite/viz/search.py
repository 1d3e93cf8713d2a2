"""Figures of a search run: how the importance |γ| of candidate channels evolves over epochs.

Inputs are the ``history`` of :func:`cakes_lite.run_search` (``history["importance"][e]`` =
``{layer: {sub-kernel: [|γ| per channel]}}`` after epoch e+1, ``history["layout"][e]`` = the
layout derived then). Used by ``notebooks/02_search.ipynb``. Pure functions returning figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from ..kernels import SUBKERNELS
from .layout import SUBKERNEL_COLORS, subkernel_label

__all__ = ["allocation_evolution", "importance_evolution", "top_k_threshold"]


def _epochs(history: Mapping[str, Any]) -> list[dict]:
    imp = history.get("importance") if isinstance(history, Mapping) else None
    if not imp:
        raise ValueError("history: expected run_search's history with a non-empty "
                         "'importance' list (one entry per epoch)")
    return list(imp)


def top_k_threshold(scores: Mapping[str, Sequence[float]]) -> float:
    """The C_out-th largest |γ| of a layer (C_out = channels per sub-kernel): the paper's
    derivation keeps the candidates at or above it."""
    values = [list(v) for v in scores.values()]
    c_out = len(values[0])
    flat = np.sort(np.concatenate([np.asarray(v, dtype=float) for v in values]))[::-1]
    return float(flat[c_out - 1])


def importance_evolution(history: Mapping[str, Any], layer: str | None = None, *,
                         kernel_size: int = 3, height: int = 460,
                         title: str | None = None) -> go.Figure:
    """Sorted |γ| of every candidate channel of one layer, one frame per epoch (slider + play).

    Each sub-kernel's C_out candidates are drawn as a curve of |γ| sorted in decreasing order;
    the dashed line is the top-C_out cut (candidates above it are kept) and the frame title
    gives the split derived at that epoch.

    Args:
        history: ``run_search(...).history``.
        layer: a searched layer's name (default: the first one).
        kernel_size: k, for labels.
        height: figure height in pixels.
        title: prefix of every frame's title (default ``"importance |γ| of <layer>"``).

    Returns:
        A ``go.Figure`` with ``frames`` (one per epoch), a slider and a play button; the
        initial state shows the last epoch.
    """
    epochs = _epochs(history)
    layer = layer or next(iter(epochs[0]))
    if layer not in epochs[0]:
        raise ValueError(f"layer: expected one of {list(epochs[0])}, got {layer!r}")
    names = [n for n in SUBKERNELS if n in epochs[0][layer]]
    layouts = history.get("layout") or [None] * len(epochs)
    # y range over all epochs, zoomed to the data: |γ| often moves by a few percent only
    lo = min(min(min(v) for v in e[layer].values()) for e in epochs)
    hi = max(max(max(v) for v in e[layer].values()) for e in epochs)
    pad = 0.08 * (hi - lo) or 0.05 * max(abs(hi), 1e-3)
    head = title or f"importance |γ| of {layer}"

    def frame_data(e: int) -> tuple[list[go.Scatter], str]:
        scores = epochs[e][layer]
        traces = [go.Scatter(x=list(range(1, len(scores[n]) + 1)),
                             y=sorted(scores[n], reverse=True), mode="lines+markers",
                             name=subkernel_label(n, kernel_size), marker=dict(size=4),
                             line=dict(color=SUBKERNEL_COLORS[n]))
                  for n in names]
        cut = top_k_threshold(scores)
        c_out = len(scores[names[0]])
        traces.append(go.Scatter(x=[1, c_out], y=[cut, cut], mode="lines", name="top-C_out cut",
                                 line=dict(color="black", dash="dash", width=1)))
        split = layouts[e][layer] if layouts[e] else None
        text = ", ".join(f"{subkernel_label(n, kernel_size)}: {c}" for n, c in split.items()) \
            if split else ""
        return traces, f"{head} — epoch {e + 1}" + (f" — derived split {text}" if text else "")

    last, last_title = frame_data(len(epochs) - 1)
    fig = go.Figure(data=last)
    frames = []
    for e in range(len(epochs)):
        data, ftitle = frame_data(e)
        frames.append(go.Frame(data=data, name=str(e + 1), layout=dict(title_text=ftitle)))
    fig.frames = frames
    steps = [dict(method="animate", label=str(e + 1),
                  args=[[str(e + 1)], dict(mode="immediate", frame=dict(duration=0, redraw=True),
                                           transition=dict(duration=0))])
             for e in range(len(epochs))]
    fig.update_layout(
        title=last_title, height=height, margin=dict(l=60, r=20, t=60, b=40),
        xaxis_title="candidate rank within its sub-kernel", yaxis=dict(title="|γ|",
                                                                       range=[lo - pad, hi + pad]),
        sliders=[dict(active=len(epochs) - 1, steps=steps, currentvalue=dict(prefix="epoch "),
                      pad=dict(t=40), x=0.12, len=0.88)],
        updatemenus=[dict(type="buttons", showactive=False, x=0, y=-0.18, xanchor="left",
                          buttons=[dict(label="▶ play", method="animate",
                                        args=[None, dict(frame=dict(duration=600, redraw=True),
                                                         fromcurrent=False)])])],
    )
    return fig


def allocation_evolution(history: Mapping[str, Any], layer: str | None = None, *,
                         kernel_size: int = 3, height: int = 340,
                         title: str | None = None) -> go.Figure:
    """Share of output channels per sub-kernel in the layout derived after each epoch.

    Args:
        history: ``run_search(...).history`` (uses ``history["layout"]``).
        layer: one layer, or None for all searched layers together (channel-weighted).

    Returns:
        A ``go.Figure`` of stacked areas, x = epoch, y = share of channels (0–1).
    """
    layouts = history.get("layout") if isinstance(history, Mapping) else None
    if not layouts:
        raise ValueError("history: expected run_search's history with a non-empty 'layout' list")
    if layer is not None and layer not in layouts[0]:
        raise ValueError(f"layer: expected one of {list(layouts[0])}, got {layer!r}")
    totals = []
    for lay in layouts:
        counts: dict[str, int] = {}
        for name, split in lay.items():
            if layer is None or name == layer:
                for sk, c in split.items():
                    counts[sk] = counts.get(sk, 0) + c
        totals.append(counts)
    used = [n for n in SUBKERNELS if any(t.get(n) for t in totals)]
    x = list(range(1, len(layouts) + 1))
    fig = go.Figure()
    for n in used:
        y = [t.get(n, 0) / max(sum(t.values()), 1) for t in totals]
        fig.add_trace(go.Scatter(x=x, y=y, stackgroup="one", name=subkernel_label(n, kernel_size),
                                 line=dict(color=SUBKERNEL_COLORS[n]), mode="lines+markers"))
    fig.update_layout(
        height=height, margin=dict(l=60, r=20, t=50, b=40),
        title=title or f"derived split per epoch — {layer or 'all searched layers'}",
        xaxis=dict(title="epoch", dtick=1), yaxis=dict(title="share of output channels",
                                                       range=[0, 1]))
    return fig
