"""Layouts: per-layer channel splits, their JSON form, validation, and ``shrink()``.

A layout maps qualified module names (as in ``model.named_modules()``) to splits
(sub-kernel name -> output channels), e.g. ``{"layer1.0.conv2": {"kxkxk": 22, "1xkxk": 21,
"kx1x1": 21}}``. ``shrink(model, layout)`` swaps exactly those conv layers for
:class:`~cakes_lite.ops.CAKESConv3d`. Walkthrough: ``notebooks/02_search.ipynb``.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from ._helpers import atomic_write_text
from .convtypes import check_conv, conv_geometry, is_searchable, skipped_convs, warn_refused
from .kernels import even_split, kernel_volume, resolve_space
from .ops import CAKESConv3d, normalise_split

FORMAT = "cakes_lite.layout"
VERSION = 1


class Layout(Mapping):
    """Per-layer splits plus metadata; behaves as a read-only ``{name: split}`` mapping.

    Args:
        splits: ``{qualified module name: {sub-kernel: channels}}``.
        meta: free-form JSON-able metadata (space, kernel_size, how it was made, …).
    """

    def __init__(self, splits: Mapping[str, Mapping[str, int]], meta: Mapping[str, Any] | None = None):
        if isinstance(splits, Layout):
            meta = {**splits.meta, **(meta or {})}
        if not isinstance(splits, Mapping):
            raise ValueError(f"layout: expected a dict of layer -> split, got {type(splits).__name__}")
        self.splits: dict[str, dict[str, int]] = {}
        for name, split in splits.items():
            if not isinstance(name, str):
                raise ValueError(f"layout: layer names must be strings, got {name!r}")
            self.splits[name] = normalise_split(split, where=f"layer {name!r}")
        self.meta: dict[str, Any] = dict(meta or {})
        #: ``{name: reason}`` of the convs :meth:`uniform` left out (not saved to JSON)
        self.skipped: dict[str, str] = {}

    # -- mapping protocol -------------------------------------------------------------------
    def __getitem__(self, name: str) -> dict[str, int]:
        return self.splits[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.splits)

    def __len__(self) -> int:
        return len(self.splits)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Layout):
            return self.splits == other.splits
        if isinstance(other, Mapping):
            return self.splits == {k: dict(v) for k, v in other.items()}
        return NotImplemented

    def __repr__(self) -> str:
        return f"Layout({len(self)} layers, meta={self.meta})"

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def uniform(cls, model: nn.Module, space="video-123d") -> Layout:
        """Even split over ``space`` for every searchable k×k×k conv of ``model``.

        Searchable: see :func:`cakes_lite.convtypes.is_searchable` (``nn.Conv3d`` and subclasses
        keeping its forward, or a type registered with :func:`cakes_lite.register_conv_type`).
        The convs left out are listed with the reason in ``layout.skipped``; convs refused for
        their type (a subclass overriding ``forward``) also emit a ``UserWarning``.
        """
        names = resolve_space(space)
        convs = {name: conv_geometry(m) for name, m in model.named_modules() if is_searchable(m)}
        splits = {name: even_split(g.out_channels, names) for name, g in convs.items()}
        ks = sorted({g.kernel_size[0] for g in convs.values()})
        meta = {"space": space if isinstance(space, str) else list(names), "method": "uniform",
                "kernel_size": ks[0] if len(ks) == 1 else ks}
        layout = cls(splits, meta)
        layout.skipped = skipped_convs(model)
        warn_refused(model)
        return layout

    # -- JSON -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "meta": self.meta, "layers": self.splits}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Layout:
        """Parse the JSON form; a bare ``{layer: split}`` dict is accepted too."""
        if not isinstance(data, Mapping):
            raise ValueError(f"layout JSON: expected an object, got {type(data).__name__}")
        if "layers" not in data:
            return cls(data)  # plain {name: split}
        if data.get("format", FORMAT) != FORMAT:
            raise ValueError(f"layout JSON: expected format {FORMAT!r}, got {data.get('format')!r}")
        version = data.get("version", VERSION)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError(f"layout JSON: expected an integer version >= 1, got {version!r}")
        if version > VERSION:
            raise ValueError(
                f"layout JSON: version {data.get('version')} is newer than supported ({VERSION})"
            )
        return cls(data["layers"], data.get("meta", {}))

    def to_json(self, path: str | os.PathLike) -> None:
        """Write the layout (atomically) as JSON with format version and metadata."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> Layout:
        """Read a layout JSON file written by :meth:`to_json` (or a bare ``{layer: split}``)."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"layout JSON {str(path)!r}: not valid JSON ({e})") from None
        return cls.from_dict(data)

    # -- checks and summaries ---------------------------------------------------------------
    def validate(self, model: nn.Module) -> None:
        """Raise ValueError (naming the layer) unless every entry fits a replaceable conv of
        ``model`` (the rule of :func:`cakes_lite.convtypes.check_conv`)."""
        modules = dict(model.named_modules())
        for name, split in self.splits.items():
            if name not in modules:
                near = [m for m in modules if m.endswith(name.split(".")[-1])][:5]
                raise ValueError(
                    f"layer {name!r}: not found in the model; expected a module name from "
                    f"model.named_modules(), e.g. {near or list(modules)[1:6]}"
                )
            module = modules[name]
            out_channels = check_conv(name, module).out_channels
            total = sum(split.values())
            if total != out_channels:
                raise ValueError(
                    f"layer {name!r}: split must sum to out_channels={out_channels}, "
                    f"got {total} ({split})"
                )

    def summary(self) -> dict[str, Any]:
        """Per-layer counts and shares, and network-wide channel shares per sub-kernel.

        Returns:
            ``{"layers": [{"name", "out_channels", "counts", "shares"}…],
            "total": {"counts", "shares"}}``.
        """
        rows, totals = [], {}
        for name, split in self.splits.items():
            out = sum(split.values())
            rows.append({"name": name, "out_channels": out, "counts": dict(split),
                         "shares": {k: v / out for k, v in split.items()}})
            for k, v in split.items():
                totals[k] = totals.get(k, 0) + v
        n = sum(totals.values()) or 1
        return {"layers": rows, "total": {"counts": totals,
                                          "shares": {k: v / n for k, v in totals.items()}}}

    def kernel_weight_share(self, kernel_size: int = 3) -> float:
        """Weights of the shrunk kernels as a share of the full k×k×k ones (channel-weighted)."""
        full = sum(sum(s.values()) for s in self.splits.values()) * kernel_size**3
        used = sum(c * kernel_volume(n, kernel_size) for s in self.splits.values()
                   for n, c in s.items())
        return used / full if full else 1.0


def shrink(model: nn.Module, layout: Layout | Mapping[str, Mapping[str, int]], *,
           inplace: bool = False, init: str = "sum") -> nn.Module:
    """Replace the conv layers named by ``layout`` with :class:`CAKESConv3d`.

    Works on any ``nn.Module`` (ours, torchvision, MONAI, a user's own); layers the layout does
    not name stay untouched. In/out channels, stride, bias, device and dtype are kept. Conv
    types: see :mod:`cakes_lite.convtypes` (register your own with
    :func:`cakes_lite.register_conv_type`).

    Args:
        model: the network.
        layout: a :class:`Layout` or a plain ``{name: split}`` dict.
        inplace: modify ``model`` itself instead of a deep copy.
        init: how to initialise the sub-kernels from the dense ones (see
            :meth:`CAKESConv3d.from_conv`): ``"sum"``, ``"centre"`` or ``"random"``.

    Returns:
        The shrunk model (``model`` itself if ``inplace``).

    Raises:
        ValueError: unknown layer, not a Conv3d, unknown sub-kernel, bad counts, wrong sum,
            groups/dilation/padding it cannot honour — the message names the layer.
    """
    layout = layout if isinstance(layout, Layout) else Layout(layout)
    layout.validate(model)
    target = model if inplace else copy.deepcopy(model)
    modules = dict(target.named_modules())
    for name, split in layout.items():
        conv = modules[name]
        new = CAKESConv3d.from_conv(conv, split, init=init, name=name)
        new.train(conv.training)
        parent_name, _, child = name.rpartition(".")
        parent = modules[parent_name] if parent_name else target
        if not parent_name and not child:
            raise ValueError("layout: cannot replace the model itself; wrap it in a module")
        setattr(parent, child, new)
    return target
