"""Soft-edged 2D shapes rendered on a pixel grid, batched over (N, T) with numpy.

Used by :mod:`cakes_lite.data.synthetic_video`. Each shape is a *signed distance* function
``sd(u, v)`` in object units (positive inside, the object's "radius" is 1); rendering turns it
into an anti-aliased coverage mask ``clip(sd * radius_px + 0.5, 0, 1)``. numpy (single-threaded,
float32) rather than torch: on a busy 2-core machine torch's multi-threaded element-wise ops on
these small arrays were 20× slower than one thread.
"""

from __future__ import annotations

import numpy as np


def _box(u: np.ndarray, v: np.ndarray, cu: float, cv: float, hu: float, hv: float) -> np.ndarray:
    """Signed distance (inside > 0, L∞ approximation) of an axis-aligned box."""
    return np.minimum(hu - np.abs(u - cu), hv - np.abs(v - cv))


def _disk(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return 1.0 - np.sqrt(u * u + v * v)


def _square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return _box(u, v, 0.0, 0.0, 0.85, 0.85)


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.maximum(_box(u, v, 0.0, 0.0, 0.32, 1.0), _box(u, v, 0.0, 0.0, 1.0, 0.32))


def _triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # Isosceles "arrow head": apex at v = -1, base at v = 0.8 with half-width 0.8 (no rotational
    # symmetry, so its rotation direction is visible).
    side = 0.8 * (v + 1.0) / 1.8 - np.abs(u)
    return np.minimum(0.8 - v, side * 0.9)


def _ell(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # An "L": a vertical bar and a horizontal foot (chiral, no rotational symmetry).
    return np.maximum(_box(u, v, -0.55, 0.0, 0.35, 0.95), _box(u, v, 0.0, 0.6, 0.95, 0.35))


SHAPES = {"disk": _disk, "square": _square, "cross": _cross, "triangle": _triangle, "ell": _ell}
SHAPE_NAMES = tuple(SHAPES)


def render_masks(shape: np.ndarray, cx: np.ndarray, cy: np.ndarray, radius: np.ndarray,
                 angle: np.ndarray, height: int, width: int) -> np.ndarray:
    """Anti-aliased coverage masks of one object per (clip, frame).

    Args:
        shape: (N,) int64 index into :data:`SHAPE_NAMES`.
        cx, cy: (N, T) centre in pixels (x to the right, y down).
        radius: (N, T) object radius in pixels.
        angle: (N, T) rotation in radians; increasing angle turns clockwise on screen (y is down).
        height, width: frame size in pixels.

    Returns:
        (N, T, H, W) float32 in [0, 1].
    """
    n, t = cx.shape
    ys = np.arange(height, dtype=np.float32) + 0.5
    xs = np.arange(width, dtype=np.float32) + 0.5
    out = np.zeros((n, t, height, width), np.float32)
    for k, fn in enumerate(SHAPES.values()):
        idx = np.flatnonzero(shape == k)
        if idx.size == 0:
            continue
        c = np.cos(angle[idx])[..., None, None].astype(np.float32)  # (n_k, T, 1, 1)
        s = np.sin(angle[idx])[..., None, None].astype(np.float32)
        r = radius[idx][..., None, None].astype(np.float32)
        dx = xs.reshape(1, 1, 1, width) - cx[idx, :, None, None].astype(np.float32)  # (n_k,T,1,W)
        dy = ys.reshape(1, 1, height, 1) - cy[idx, :, None, None].astype(np.float32)  # (n_k,T,H,1)
        # object coordinates: rotate the pixel offset by -angle, then divide by the radius
        u = (c * dx + s * dy) / r  # (n_k, T, H, W)
        v = (-s * dx + c * dy) / r
        out[idx] = np.clip(fn(u, v) * r + 0.5, 0.0, 1.0)
    return out
