"""What a network that cannot see frame order can know about something-something-lite.

A 2D network (every conv 1×k×k) followed by global average pooling over (T, H, W) is a *bag of
frames*: each frame is described on its own, where the object is in the frame is pooled away,
and the descriptions are averaged, so it cannot see motion at all — not only its direction. Per
frame, a ``static_disk`` clip looks exactly like a ``move_left`` clip whose (random) shape is a
disk: same radius range, colours, background and distractor. What such a model can still see
is whether the object's size changes (``grow``/``shrink``), whether it blinks on or off
(``appear``/``disappear``), whether its orientation varies (``rotate_*``, in the average of
per-frame features), and its shape. :func:`frame_blind_ceiling` turns that into the best top-1
any model with that view can reach (the Bayes accuracy, equal class priors), computed from the
generator's own class definitions so it stays in step with them.

Walkthrough: ``notebooks/03_video_training.ipynb`` (where the 2D network fails).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from .shapes import SHAPE_NAMES
from .synthetic_video import _ANY_SHAPE, _CHIRAL, _SPEC, CLASSES

#: what a bag of frames sees of each generated motion (position is pooled away, order is lost)
_BAG_VIEW = {"move_x": "steady", "move_y": "steady", "still": "steady", "spin": "spinning",
             "scale": "size changes", "pop": "blinks"}
#: class groups by kind of motion, for per-group accuracy tables
_GROUPS = {"move": ("move_x", "move_y"), "grow/shrink": ("scale",), "appear/disappear": ("pop",),
           "rotate": ("spin",), "static": ("still",)}


def _shapes(name: str) -> list[int]:
    """The target shapes a clip of class ``name`` draws from (uniformly)."""
    motion = _SPEC[name][0]
    if motion == "still":
        return [SHAPE_NAMES.index(name.removeprefix("static_"))]
    return list(_CHIRAL if motion == "spin" else _ANY_SHAPE)


def _check(classes: Sequence[str] | None) -> list[str]:
    names = list(CLASSES if classes is None else classes)
    bad = [c for c in names if c not in _SPEC]
    if bad or not names or len(set(names)) != len(names):
        raise ValueError(f"classes: expected distinct names from {CLASSES}, got {classes!r}")
    return names


def class_groups(classes: Sequence[str] | None = None) -> dict[str, list[str]]:
    """``{"move": [...], "grow/shrink": [...], "appear/disappear": [...], "rotate": [...],
    "static": [...]}`` for the given classes (default all 13); empty groups are left out."""
    names = _check(classes)
    out = {g: [c for c in names if _SPEC[c][0] in motions] for g, motions in _GROUPS.items()}
    return {g: cs for g, cs in out.items() if cs}


def frame_blind_ceiling(classes: Sequence[str] | None = None, *, shape_visible: bool = True,
                        motion_visible: bool = False) -> dict:
    """Best expected top-1 of a model that cannot see frame order (equal class priors).

    Each clip is reduced to what the model can see — its kind of change (steady, spinning,
    size changes, blinks; with ``motion_visible`` also the axis of motion, as a model that
    compares frames but not their order would) and, with ``shape_visible``, the target's shape —
    and every view is given to the class most likely to produce it (ties split evenly, as a
    coin flip would). A time-reversed pair always shares its views, so it is at best 50/50.

    Args:
        classes: the task's classes (default all 13).
        shape_visible: the model recognises the target's shape perfectly (an upper bound; a
            tiny network at 32×32 does not).
        motion_visible: the model sees where the object moves (a *set* of frames), not only a
            bag of per-frame descriptions.

    Returns:
        ``{"top1": mean over classes, "per_class": {name: best expected accuracy}}`` (floats).
    """
    names = _check(classes)
    # P(view | class) for every class: view = (what changes, shape or None)
    likelihood: dict[str, dict[tuple, Fraction]] = {}
    for c in names:
        motion = _SPEC[c][0]
        kind = motion if motion_visible and motion in ("move_x", "move_y") else _BAG_VIEW[motion]
        shapes = _shapes(c) if shape_visible else [None]
        likelihood[c] = {(kind, s): Fraction(1, len(shapes)) for s in shapes}
    per_class = dict.fromkeys(names, Fraction(0))
    for view in {v for lk in likelihood.values() for v in lk}:
        p = {c: likelihood[c].get(view, Fraction(0)) for c in names}
        best = max(p.values())
        winners = [c for c in names if p[c] == best]
        for c in winners:  # Bayes decision with equal priors, ties broken at random
            per_class[c] += best / len(winners)
    return {"top1": float(sum(per_class.values()) / len(names)),
            "per_class": {c: float(a) for c, a in per_class.items()}}
