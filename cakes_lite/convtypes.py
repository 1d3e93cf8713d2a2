"""Which modules CAKES can replace: the one registry of convolution types, and their geometry.

A module is a *replaceable conv* if it computes a plain 3D convolution that CAKES can rebuild
from its weight, bias, stride and padding. Two ways in:

* **automatically**: ``nn.Conv3d`` and every subclass that keeps ``nn.Conv3d``'s ``forward``
  and ``_conv_forward`` (subclasses that only change the constructor, e.g. torchvision's video
  ResNet ``Conv3DSimple`` / ``Conv3DNoTemporal``);
* **registered**: :func:`register_conv_type` for a type with its own ``forward`` that still
  computes ``F.conv3d(x, weight, bias, stride, padding, dilation, groups)``, optionally with a
  reader of its geometry when its attributes are not named like ``nn.Conv3d``'s.

An ``nn.Conv3d`` subclass that overrides ``forward`` (weight standardisation, a mask, …) and is
not registered is refused with a message saying so. Layout.uniform, validate/shrink, supernet,
from_conv and profile all ask this module, so the rule lives here only.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .kernels import SUBKERNELS


@dataclass(frozen=True)
class ConvGeometry:
    """What CAKES reads from a conv it replaces (all spatial values as (d, h, w) tuples)."""

    in_channels: int
    out_channels: int
    kernel_size: tuple[int, int, int]
    stride: tuple[int, int, int]
    padding: tuple[int, int, int] | str
    dilation: tuple[int, int, int]
    groups: int
    padding_mode: str
    weight: torch.Tensor          # (C_out, C_in / groups, kd, kh, kw)
    bias: torch.Tensor | None     # (C_out,) or None


GeometryReader = Callable[[nn.Module], ConvGeometry]


def _t3(v) -> tuple[int, int, int]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v, v)  # type: ignore[return-value]


def conv3d_geometry(m: nn.Module) -> ConvGeometry:
    """Read the geometry from ``nn.Conv3d``-named attributes (the default reader)."""
    pad = m.padding if isinstance(m.padding, str) else _t3(m.padding)
    return ConvGeometry(m.in_channels, m.out_channels, _t3(m.kernel_size), _t3(m.stride), pad,
                        _t3(getattr(m, "dilation", 1)), getattr(m, "groups", 1),
                        getattr(m, "padding_mode", "zeros"), m.weight, getattr(m, "bias", None))


#: registered type -> geometry reader (nn.Conv3d itself is implicit).
_REGISTRY: dict[type, GeometryReader] = {}


def register_conv_type(cls: type, geometry: GeometryReader | None = None) -> type:
    """Declare that modules of type ``cls`` compute a plain 3D convolution CAKES may replace.

    ``cls``'s own subclasses that do not override ``forward`` are covered too. Usable as a
    class decorator.

    Args:
        cls: an ``nn.Module`` subclass.
        geometry: ``module -> ConvGeometry``; default: read ``nn.Conv3d``'s attribute names
            (in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
            padding_mode, weight, bias).

    Returns:
        ``cls``.
    """
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"cls: expected an nn.Module subclass, got {cls!r}")
    if geometry is not None and not callable(geometry):
        raise ValueError(f"geometry: expected a callable module -> ConvGeometry, got {geometry!r}")
    _REGISTRY[cls] = geometry or conv3d_geometry
    return cls


def unregister_conv_type(cls: type) -> None:
    """Undo :func:`register_conv_type` (no-op for a type that was not registered)."""
    _REGISTRY.pop(cls, None)


def _owner(cls: type, attr: str) -> type | None:
    """The class in ``cls``'s MRO that defines ``attr``."""
    return next((c for c in cls.__mro__ if attr in c.__dict__), None)


def _reader(module: nn.Module) -> tuple[GeometryReader | None, str | None]:
    """(geometry reader, None) for a replaceable conv type, else (None, why not)."""
    cls = type(module)
    fwd = _owner(cls, "forward")
    for reg, reader in _REGISTRY.items():
        if isinstance(module, reg) and fwd is not None and issubclass(reg, fwd):
            return reader, None  # the forward in use is the registered class's (or above it)
    if isinstance(module, nn.Conv3d):
        if fwd is nn.Conv3d and _owner(cls, "_conv_forward") is nn.Conv3d:
            return conv3d_geometry, None
        attr = "forward" if fwd is not nn.Conv3d else "_conv_forward"
        where = _owner(cls, attr).__name__
        return None, (f"{cls.__name__} subclasses nn.Conv3d but overrides forward "
                      f"({where}.{attr}), so CAKES cannot know it computes a plain convolution; "
                      f"if it does, register it: cakes_lite.register_conv_type({where})")
    return None, f"expected an nn.Conv3d, got {cls.__name__}"


def is_conv_type(module: nn.Module) -> bool:
    """True if ``module``'s type is a replaceable conv type (geometry not checked)."""
    return _reader(module)[0] is not None


def conv_geometry(module: nn.Module) -> ConvGeometry:
    """The geometry of a replaceable conv; ValueError (with the reason) for any other module."""
    reader, why = _reader(module)
    if reader is None:
        raise ValueError(why)
    return reader(module)


def _label(name: str | None, module: nn.Module) -> str:
    return repr(name) if name else f"{type(module).__name__}({module.extra_repr()})"


def check_conv(name: str | None, module: nn.Module) -> ConvGeometry:
    """Raise ValueError (naming the layer and what is wrong) unless CAKESConv3d/SearchConv3d
    can replace ``module`` exactly; return its geometry."""
    label = _label(name, module)
    reader, why = _reader(module)
    if reader is None:
        raise ValueError(f"layer {label}: {why}")
    g = reader(module)
    k = g.kernel_size
    if not (k[0] == k[1] == k[2] and k[0] % 2 == 1):
        raise ValueError(f"layer {label}: expected a cubic odd kernel (k, k, k), got {k}")
    if g.groups != 1:
        raise ValueError(f"layer {label}: expected groups=1, got groups={g.groups}")
    if g.dilation != (1, 1, 1):
        raise ValueError(f"layer {label}: expected dilation 1, got {g.dilation}")
    # padding="same" is symmetric k // 2 for an odd kernel with dilation 1 (checked above)
    if g.padding not in ((k[0] // 2,) * 3, "same") or g.padding_mode != "zeros":
        raise ValueError(
            f"layer {label}: expected zero 'same' padding {(k[0] // 2,) * 3}, "
            f"got padding={g.padding} padding_mode={g.padding_mode!r}")
    return g


def searchable_reason(module: nn.Module) -> str | None:
    """None if ``module`` is a conv CAKES can shrink (cubic odd k > 1, groups=1, dilation=1,
    zero 'same' padding), else why not (plain text)."""
    try:
        g = check_conv("", module)
    except ValueError as e:
        return str(e).split(": ", 1)[1]
    return None if g.kernel_size[0] > 1 else "kernel 1×1×1: nothing to shrink"


def is_searchable(module: nn.Module) -> bool:
    """True for a replaceable conv with a cubic odd kernel k > 1 that CAKES can shrink."""
    return searchable_reason(module) is None


def skipped_convs(model: nn.Module) -> dict[str, str]:
    """``{name: reason}`` for every conv-like module of ``model`` (an ``nn.Conv3d`` or a
    registered type) that is not searchable."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv3d) or is_conv_type(m):
            why = searchable_reason(m)
            if why is not None:
                out[name] = why
    return out


def refused_types(model: nn.Module) -> dict[str, str]:
    """``{name: reason}`` for the ``nn.Conv3d`` subclasses of ``model`` refused for their type
    (they override ``forward`` and are not registered): worth a warning."""
    return {name: _reader(m)[1] for name, m in model.named_modules()
            if isinstance(m, nn.Conv3d) and not is_conv_type(m)}


def warn_refused(model: nn.Module) -> None:
    """One UserWarning listing :func:`refused_types` of ``model``, if any."""
    refused = refused_types(model)
    if refused:
        lines = "; ".join(f"{n!r}: {why}" for n, why in refused.items())
        warnings.warn(f"skipped {len(refused)} conv layer(s) CAKES cannot replace: {lines}",
                      UserWarning, stacklevel=3)


def subkernel_weight(dense: torch.Tensor, name: str, init: str = "sum") -> torch.Tensor:
    """A sub-kernel's filters from dense k×k×k ones: ``"sum"`` over the shrunk axes (exact for
    inputs constant along them) or the ``"centre"`` slice.

    Args:
        dense: (n, C_in, k, k, k).
        name: sub-kernel, e.g. ``"1xkxk"``.

    Returns:
        (n, C_in, kd, kh, kw) with 1 on the shrunk axes.
    """
    k = dense.shape[2]
    for axis, full in enumerate(SUBKERNELS[name]):
        if not full:
            dim = 2 + axis  # (n, C_in, D, H, W): spatial axis ``axis`` is tensor dim 2 + axis
            dense = dense.sum(dim, keepdim=True) if init == "sum" else dense.narrow(dim, k // 2, 1)
    return dense
