"""Plotly figures for clips: a strip of frames, and top-k class probabilities.

A clip is (C=3, T, H, W) as the models take it (numpy or torch); values in [0, 1], in [0, 255],
or normalised (then rescaled min-max for display). Every figure has an explicit height.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go


def clip_frames(clip) -> np.ndarray:
    """Frames of a (3, T, H, W) clip as uint8 images (T, H, W, 3) for display.

    Values in [0, 1] are scaled by 255, values in [0, 255] kept, anything else (e.g. a
    mean/std-normalised clip) is rescaled min-max over the whole clip.
    """
    a = clip.detach().cpu().numpy() if hasattr(clip, "detach") else np.asarray(clip)
    if a.ndim != 4 or a.shape[0] not in (1, 3):
        raise ValueError(f"clip: expected (3, T, H, W) (or 1 channel), got {tuple(a.shape)}")
    a = a.astype(np.float32)
    if a.shape[0] == 1:
        a = np.repeat(a, 3, axis=0)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 1.0)
    if lo >= 0 and hi <= 1:
        a = a * 255
    elif not (lo >= 0 and hi <= 255):
        a = (a - lo) / (hi - lo + 1e-8) * 255
    # (3, T, H, W) -> (T, H, W, 3)
    return np.clip(a, 0, 255).round().astype(np.uint8).transpose(1, 2, 3, 0)


def clip_strip(clip, *, gap: int = 2, title: str | None = None, height: int = 200) -> go.Figure:
    """All frames of a clip side by side (time runs left to right) in one image.

    Args:
        clip: (3, T, H, W).
        gap: white pixels between frames.
        height: figure height in pixels.

    Returns:
        A ``go.Figure`` with one ``Image`` trace of shape (H, T·W + (T-1)·gap, 3).
    """
    frames = clip_frames(clip)  # (T, H, W, 3)
    t, h, w, _ = frames.shape
    if gap < 0:
        raise ValueError(f"gap: expected >= 0, got {gap}")
    strip = np.full((h, t * w + max(t - 1, 0) * gap, 3), 255, dtype=np.uint8)
    for i in range(t):
        strip[:, i * (w + gap): i * (w + gap) + w] = frames[i]
    fig = go.Figure(go.Image(z=strip, hovertemplate="frame %{customdata}<extra></extra>",
                             customdata=np.broadcast_to(
                                 (np.arange(strip.shape[1]) // (w + gap))[None, :],
                                 strip.shape[:2])))
    fig.update_layout(
        height=height, title=title, margin=dict(l=10, r=10, t=40 if title else 10, b=30),
        xaxis=dict(showticklabels=True, tickvals=[i * (w + gap) + w / 2 for i in range(t)],
                   ticktext=[f"t={i}" for i in range(t)], showgrid=False),
        yaxis=dict(showticklabels=False, showgrid=False),
    )
    return fig


def topk(probs, class_names: Sequence[str], k: int = 5) -> dict[str, float]:
    """The ``k`` most probable classes as ``{name: probability}``, most probable first."""
    p = probs.detach().cpu().numpy() if hasattr(probs, "detach") else np.asarray(probs)
    p = p.reshape(-1).astype(np.float64)
    if len(p) != len(class_names):
        raise ValueError(f"probs: expected {len(class_names)} values (one per class), "
                         f"got {len(p)}")
    order = np.argsort(-p, kind="stable")[:k]
    return {str(class_names[i]): float(p[i]) for i in order}


def topk_figure(probs, class_names: Sequence[str], k: int = 5, height: int = 260) -> go.Figure:
    """Horizontal bars of the top-``k`` class probabilities (most probable on top)."""
    top = topk(probs, class_names, k)
    fig = go.Figure(go.Bar(x=list(top.values())[::-1], y=list(top)[::-1], orientation="h",
                           marker_color="#0072B2",
                           hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    fig.update_layout(height=height, xaxis=dict(range=[0, 1], title="probability"),
                      margin=dict(l=140, r=20, t=20, b=40))
    return fig
