"""The sub-kernel catalogue, the named search spaces and the even split over a space.

A sub-kernel is named by its shape over the three axes (D or T, H, W): ``k`` for an axis that
keeps the layer's kernel size, ``1`` for a shrunk axis. Names do not depend on ``k``, so a layout
written for 3×3×3 convolutions also describes 5×5×5 ones. Explained in
``notebooks/01_operations.ipynb``.
"""

from __future__ import annotations

from collections.abc import Iterable

#: name -> which axes (D, H, W) keep the full kernel size ``k``. Canonical order: most expensive
#: first; CAKESConv3d lays out its output channels in this order.
SUBKERNELS: dict[str, tuple[bool, bool, bool]] = {
    "kxkxk": (True, True, True),
    "1xkxk": (False, True, True),
    "kx1xk": (True, False, True),
    "kxkx1": (True, True, False),
    "kx1x1": (True, False, False),
    "1xkx1": (False, True, False),
    "1x1xk": (False, False, True),
    "1x1x1": (False, False, False),
}

#: named search spaces (presets) -> tuple of sub-kernel names, in canonical order.
SPACES: dict[str, tuple[str, ...]] = {
    "video-12d": ("1xkxk", "kx1x1"),
    "video-23d": ("kxkxk", "1xkxk"),
    "video-123d": ("kxkxk", "1xkxk", "kx1x1"),
    "volume-2d": ("1xkxk", "kx1xk", "kxkx1"),
    "volume-all": ("kxkxk", "1xkxk", "kx1xk", "kxkx1", "kx1x1", "1xkx1", "1x1xk"),
}


def check_subkernel(name: object, where: str = "") -> str:
    """Return ``name`` if it is a catalogue sub-kernel, else raise a ValueError naming it."""
    if not isinstance(name, str) or name not in SUBKERNELS:
        prefix = f"{where}: " if where else ""
        raise ValueError(
            f"{prefix}unknown sub-kernel {name!r}; expected one of {list(SUBKERNELS)}"
        )
    return name


def kernel_shape(name: str, kernel_size: int) -> tuple[int, int, int]:
    """Shape (kd, kh, kw) of sub-kernel ``name`` for a layer of kernel size ``kernel_size``.

    >>> kernel_shape("1xkxk", 3)
    (1, 3, 3)
    """
    check_subkernel(name)
    return tuple(kernel_size if full else 1 for full in SUBKERNELS[name])  # type: ignore[return-value]


def kernel_volume(name: str, kernel_size: int) -> int:
    """Number of weights per (output, input) channel pair, e.g. 27 : 9 : 3 for k=3."""
    kd, kh, kw = kernel_shape(name, kernel_size)
    return kd * kh * kw


def resolve_space(space: str | Iterable[str]) -> tuple[str, ...]:
    """Turn a space name (``"video-123d"``) or an iterable of sub-kernel names into a tuple of
    distinct sub-kernel names in canonical order.

    Raises:
        ValueError: unknown space name, unknown sub-kernel, duplicates or an empty space.
    """
    if isinstance(space, str):
        if space in SPACES:
            return SPACES[space]
        if space in SUBKERNELS:
            return (space,)
        raise ValueError(
            f"unknown space {space!r}; expected one of {list(SPACES)} or a list of sub-kernels "
            f"from {list(SUBKERNELS)}"
        )
    names = list(space)
    for name in names:
        check_subkernel(name, "space")
    if not names:
        raise ValueError("space: expected at least one sub-kernel, got an empty list")
    if len(set(names)) != len(names):
        raise ValueError(f"space: sub-kernels must be distinct, got {names}")
    return tuple(n for n in SUBKERNELS if n in names)


def even_split(out_channels: int, space: str | Iterable[str]) -> dict[str, int]:
    """Split ``out_channels`` as evenly as possible over ``space`` (remainder to the first,
    most expensive, sub-kernels): 64 over video-123d -> kxkxk 22, 1xkxk 21, kx1x1 21."""
    names = resolve_space(space)
    q, r = divmod(out_channels, len(names))
    return {name: q + (1 if i < r else 0) for i, name in enumerate(names)}
