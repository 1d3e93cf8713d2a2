"""Plotly figures for 3D volumes: a slice with a segmentation overlay, per-class volumes.

Used by the segmentation notebook and the app's volume tab. Arrays are numpy or torch, shaped
(D, H, W) (a leading channel axis of size 1 is accepted). Every figure has an explicit height.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

#: colours of segmentation classes 1, 2, … (class 0 = background is left transparent).
CLASS_COLORS = ["#E69F00", "#56B4E9", "#009E73", "#D55E00", "#CC79A7", "#0072B2", "#F0E442"]

#: slice names for arrays in RAS order (nibabel's canonical voxel order: x left→right,
#: y posterior→anterior, z inferior→superior), as cakes_lite.data.load_mni152 returns them.
AXES = {"sagittal": 0, "coronal": 1, "axial": 2}


def _volume(x, what: str) -> np.ndarray:
    a = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]  # (1, D, H, W) -> (D, H, W)
    if a.ndim != 3:
        raise ValueError(f"{what}: expected a (D, H, W) volume, got shape {tuple(a.shape)}")
    return a


def _axis(axis: int | str) -> int:
    if isinstance(axis, str):
        if axis not in AXES:
            raise ValueError(f"axis: expected 0, 1, 2 or one of {list(AXES)}, got {axis!r}")
        return AXES[axis]
    if axis not in (0, 1, 2):
        raise ValueError(f"axis: expected 0, 1, 2 or one of {list(AXES)}, got {axis!r}")
    return axis


def take_slice(volume, index: int, axis: int | str = 0) -> np.ndarray:
    """The 2D slice ``index`` of a (D, H, W) volume along ``axis`` (clipped into range)."""
    v = _volume(volume, "volume")
    ax = _axis(axis)
    index = int(np.clip(index, 0, v.shape[ax] - 1))
    return np.take(v, index, axis=ax)


def slice_figure(image, labels=None, *, index: int | None = None, axis: int | str = 0,
                 class_names: Sequence[str] | None = None, opacity: float = 0.45,
                 ras: bool = False, title: str | None = None, height: int = 420) -> go.Figure:
    """One slice of ``image`` in grey with ``labels`` (same shape) overlaid in colour.

    Args:
        image: (D, H, W) intensities (or (1, D, H, W)).
        labels: optional (D, H, W) integer classes; 0 is background and is not drawn.
        index: slice index along ``axis`` (default: the middle slice).
        axis: 0/1/2 (array axes D/H/W) or "sagittal"/"coronal"/"axial" (= 0/1/2, for RAS
            arrays).
        class_names: names of classes 0, 1, …; used in hover text and the legend.
        opacity: overlay opacity in [0, 1].
        ras: the array is in RAS order: draw the slice radiologically upright (the later of
            its two axes pointing up, e.g. anterior up in an axial slice) instead of as a
            matrix (first axis down).
        height: figure height in pixels.

    Returns:
        A ``go.Figure``: a grey ``Heatmap`` of the slice, then (with labels) one coloured
        ``Heatmap`` per class present in the volume, so the legend shows every class.
    """
    img = _volume(image, "image")
    ax = _axis(axis)
    if index is None:
        index = img.shape[ax] // 2
    # draw z[row][col]: as a matrix (row = first remaining axis, down) or, for RAS, transposed
    # with the later axis as rows pointing up
    orient = (lambda a: a.T) if ras else (lambda a: a)
    sl = orient(take_slice(img, index, ax).astype(np.float32))
    lo, hi = np.percentile(sl, [1, 99]) if sl.size else (0.0, 1.0)
    fig = go.Figure(go.Heatmap(z=sl, colorscale="gray", zmin=float(lo), zmax=float(hi),
                               showscale=False, name="image",
                               hovertemplate="(%{y}, %{x}): %{z:.2f}<extra>image</extra>"))
    if labels is not None:
        lab = _volume(labels, "labels")
        if lab.shape != img.shape:
            raise ValueError(f"labels: expected the image's shape {img.shape}, got {lab.shape}")
        lab_sl = orient(take_slice(lab, index, ax).astype(np.int64))
        n_classes = max(int(lab.max()) + 1 if lab.size else 1, len(class_names or ()))
        names = list(class_names) if class_names is not None else \
            [f"class {c}" for c in range(n_classes)]
        for c in range(1, n_classes):
            # z: 1 where the slice has class c, NaN elsewhere (transparent)
            z = np.where(lab_sl == c, 1.0, np.nan)
            color = CLASS_COLORS[(c - 1) % len(CLASS_COLORS)]
            name = names[c] if c < len(names) else f"class {c}"
            fig.add_trace(go.Heatmap(
                z=z, colorscale=[[0, color], [1, color]], showscale=False, opacity=opacity,
                name=name, showlegend=True, hovertemplate=f"{name}<extra></extra>",
            ))
    names = ["x (L→R)", "y (P→A)", "z (I→S)"] if ras else ["D", "H", "W"]
    # axes count voxels (array indices), not millimetres
    rest = [f"{names[i]}, voxel index" for i in range(3) if i != ax]
    row, col = (rest[1], rest[0]) if ras else (rest[0], rest[1])
    fig.update_layout(
        height=height, title=title or f"slice {index} along {names[ax]}",
        xaxis=dict(title=col, scaleanchor="y", constrain="domain", showgrid=False),
        yaxis=dict(title=row, autorange=True if ras else "reversed", constrain="domain",
                   showgrid=False),
        margin=dict(l=40, r=20, t=40, b=40), plot_bgcolor="black",
        legend=dict(orientation="h", y=-0.12),
    )
    return fig


def class_volumes(labels, spacing: float | Sequence[float] = 1.0,
                  num_classes: int | None = None) -> list[float]:
    """Volume of each class in millilitres (voxel count × voxel volume in mm³ / 1000).

    Args:
        labels: (D, H, W) integer classes.
        spacing: voxel size in mm, one value or (d, h, w).
        num_classes: length of the result (default: max label + 1).
    """
    lab = _volume(labels, "labels").astype(np.int64)
    sp = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (3,))
    if (sp <= 0).any():
        raise ValueError(f"spacing: expected positive voxel sizes in mm, got {spacing!r}")
    n = num_classes if num_classes is not None else int(lab.max()) + 1
    counts = np.bincount(lab.ravel(), minlength=n)[:n]
    return [float(c) * float(np.prod(sp)) / 1000.0 for c in counts]


def class_volume_figure(labels, spacing: float | Sequence[float] = 1.0, *,
                        class_names: Sequence[str] | None = None, reference=None,
                        skip_background: bool = True, height: int = 320) -> go.Figure:
    """Bar chart of per-class volumes (mL); with ``reference`` labels, their volumes alongside.

    Returns:
        A ``go.Figure`` with one ``Bar`` trace ("prediction") and optionally a second
        ("reference"); x = class names.
    """
    n = int(_volume(labels, "labels").max()) + 1
    if reference is not None:
        n = max(n, int(_volume(reference, "reference").max()) + 1)
    if class_names is not None:
        n = max(n, len(class_names))
    names = list(class_names) if class_names is not None else [f"class {c}" for c in range(n)]
    start = 1 if skip_background else 0
    fig = go.Figure()
    series = [("prediction", labels, "#0072B2")]
    if reference is not None:
        series.append(("reference", reference, "#999999"))
    for label, lab, color in series:
        vols = class_volumes(lab, spacing, n)
        fig.add_trace(go.Bar(x=names[start:n], y=vols[start:], name=label, marker_color=color,
                             hovertemplate="%{x}: %{y:.1f} mL<extra>" + label + "</extra>"))
    fig.update_layout(height=height, barmode="group", yaxis_title="volume (mL)",
                      margin=dict(l=60, r=20, t=30, b=40))
    return fig
