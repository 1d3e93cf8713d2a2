"""Pieces shared by the networks: builder resolution, conv-BN-ReLU units, JSON-able configs.

A network config names its convolution *builder* (see :mod:`cakes_lite.baselines`) as a string
(``"3d"``, ``"2d"``, ``"p3d"``, ``"r2plus1d"``, ``"csn"``, ``"cakes"``, ``"cakes:<space>"``), a
builder callable, or a list with one entry per stage/level (torchvision's MC3 style).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from ..baselines import BUILDERS, get_builder
from ..layout import Layout, shrink


def resolve_builders(builder: Any, n: int, what: str = "builder") -> list[Callable[..., nn.Module]]:
    """Return ``n`` builder callables from a name, a callable, or a list of ``n`` of those."""
    if isinstance(builder, (list, tuple)):
        if len(builder) != n:
            raise ValueError(
                f"{what}: expected one builder per stage ({n}), got a list of {len(builder)}"
            )
        return [resolve_builders(b, 1, what)[0] for b in builder]
    if isinstance(builder, str):
        return [get_builder(builder)] * n
    if callable(builder):
        return [builder] * n
    raise ValueError(
        f"{what}: expected a builder name ({list(BUILDERS)} or 'cakes:<space>'), a callable, "
        f"or a list of {n} of those, got {builder!r}"
    )


def builder_to_json(builder: Any) -> Any:
    """The JSON form of a builder spec: names stay names; known callables become their name.

    Raises:
        ValueError: a callable that is not one of :data:`cakes_lite.baselines.BUILDERS`.
    """
    if isinstance(builder, (list, tuple)):
        return [builder_to_json(b) for b in builder]
    if isinstance(builder, str):
        return builder
    for name, b in BUILDERS.items():
        if b is builder:
            return name
    raise ValueError(
        f"builder: a custom callable ({builder!r}) cannot be stored as JSON; pass a builder name "
        f"such as {list(BUILDERS)} or 'cakes:<space>' to make the model reproducible from a config"
    )


def check_positive_ints(values: Any, what: str, length: int | None = None) -> tuple[int, ...]:
    """Validate a non-empty sequence of positive ints (optionally of a given length)."""
    ok = isinstance(values, (list, tuple)) and len(values) > 0 and all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values
    )
    if not ok or (length is not None and len(values) != length):
        size = f"{length} " if length is not None else ""
        raise ValueError(f"{what}: expected a list of {size}positive ints, got {values!r}")
    return tuple(values)


class ConvBNReLU(nn.Sequential):
    """``builder(in, out, stride, k)`` -> BatchNorm3d -> ReLU, with children conv / bn / act."""

    def __init__(self, builder, in_channels: int, out_channels: int, stride=1,
                 kernel_size: int = 3, act: bool = True):
        super().__init__()
        self.conv = builder(in_channels, out_channels, stride=stride, kernel_size=kernel_size)
        self.bn = nn.BatchNorm3d(out_channels)
        if act:
            self.act = nn.ReLU(inplace=True)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as a JSON-able dict (tuples -> lists, builders -> names, layout dict)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name == "builder":
            value = builder_to_json(value)
        elif f.name == "layout" and value is not None:
            value = (value if isinstance(value, Layout) else Layout.from_dict(value)).to_dict()
        elif isinstance(value, tuple):
            value = [list(v) if isinstance(v, tuple) else v for v in value]
        out[f.name] = value
    return out


def apply_layout(model: nn.Module, layout: Layout | Mapping | None) -> nn.Module:
    """Shrink ``model`` in place with ``layout`` (a Layout, a ``{name: split}`` dict, or the
    Layout JSON dict); ``None`` leaves it as it is."""
    if layout is None:
        return model
    if not isinstance(layout, Layout):
        layout = Layout.from_dict(layout)
    return shrink(model, layout, inplace=True)
