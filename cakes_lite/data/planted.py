"""Planted search tasks: tiny video tasks whose right kernel layout is known in advance.

A search is only worth trusting if it finds what a task needs. These tasks are built so that
the label lives along **one** axis of the clip and a network can only see it with sub-kernels
that extend along that axis:

* ``"temporal"`` — every pixel of a random static texture follows one brightness profile over
  the clip (label 0 rise, 1 fall, 2 rise-then-fall, 3 fall-then-rise), with fresh noise in
  every frame. The four profiles visit the same brightness levels in different orders, so all
  classes have the same distribution of frame *sets*: a network that looks at frames one at a
  time (1×k×k kernels, pointwise layers, a global average pool) is at chance. The label needs
  kernels that extend in time (k×k×k, k×1×1).
* ``"spatial"`` — a *static* clip (one frame, noise included, repeated) with two 5-pixel bars
  of one orientation (label 0 horizontal, 1 vertical, 2 diagonal, 3 anti-diagonal) at random
  places. The classes have the same distribution of pixel values, and on a static clip a
  temporal kernel (k×1×1) is only a pointwise filter: the label needs kernels that extend in
  height and width (k×k×k, 1×k×k).

:func:`planted_model` is a small 3D CNN whose **only** searchable layer is its first conv
(everything after it is pointwise, then a global average pool), so the planted layout is
exact: every channel of that layer should use a sub-kernel that sees the planted axis
(:func:`right_subkernels`). :func:`planted_recovery` scores a derived layout by the share of
the planted layers' channels that do. In the ``video-12d`` space (1×k×k, k×1×1) exactly one
sub-kernel is right, an even split scores 0.5 and any fixed choice scores 0 on one of the two
tasks; in ``video-123d`` the full k×k×k is right for both, so there a search must also give
the axis's own cheap sub-kernel (k×1×1 or 1×k×k) more channels than the other one.

>>> x, y = planted_clips("temporal", n=64, seed=0)   # (64, 1, 8, 16, 16), (64,)
>>> res = run_search(planted_model(), [(x, y)], space="video-123d", epochs=10)
>>> planted_recovery(res.layout, "temporal")          # share of k×k×k + k×1×1 channels
>>> res = planted_search("spatial", "cost", seed=1, space="video-12d")  # the tests' recipe
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ..kernels import SUBKERNELS, check_subkernel, resolve_space
from ..search.run import SearchResult, run_search

PLANTED_KINDS = ("temporal", "spatial")


def _check_kind(kind: object) -> str:
    if kind not in PLANTED_KINDS:
        raise ValueError(f"kind: expected one of {list(PLANTED_KINDS)}, got {kind!r}")
    return kind  # type: ignore[return-value]


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}: expected an int ≥ {low}, got {value!r}")
    return value


def planted_clips(kind: str, n: int = 256, frames: int = 8, size: int = 16,
                  noise: float = 0.1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips of a planted task (see the module docstring) and their binary labels.

    Args:
        kind: ``"temporal"`` (brighten vs dim) or ``"spatial"`` (horizontal vs vertical bars).
        n: number of clips (≥ 4); labels cycle 0, 1, 2, 3 (balanced). Temporal: rise, fall,
            rise-then-fall, fall-then-rise; spatial: horizontal, vertical, diagonal,
            anti-diagonal bars.
        frames: clip length T (≥ 3, so a 3-tap temporal kernel fits).
        size: frame height and width S (≥ 7, so a 5-pixel bar fits with a margin).
        noise: standard deviation of the Gaussian noise (≥ 0; per frame for ``"temporal"``,
            one static field for ``"spatial"``).
        seed: the clips are a pure function of the arguments.

    Returns:
        ``x`` (n, 1, T, S, S) float32 and ``y`` (n,) int64 in {0, 1, 2, 3}.

    Raises:
        ValueError: naming the argument that cannot work.
    """
    _check_kind(kind)
    _check_int("n", n, 4)
    _check_int("frames", frames, 3)
    _check_int("size", size, 7)
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not (
            math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise: expected a finite number ≥ 0, got {noise!r}")
    _check_int("seed", seed, 0)
    g = torch.Generator().manual_seed(seed * 2 + PLANTED_KINDS.index(kind))
    y = torch.arange(n) % 4
    if kind == "temporal":
        texture = 0.5 + 0.5 * torch.rand(n, 1, 1, size, size, generator=g)
        # one brightness profile per class, all visiting the same levels (the same frame set):
        # rise, fall (rise reversed), rise-then-fall (tent), fall-then-rise (valley)
        levels = torch.linspace(-1.0, 1.0, frames)
        order = torch.cat([torch.arange(0, frames, 2), torch.arange(frames - 1 - frames % 2, 0,
                                                                     -2)])
        profiles = torch.stack([levels, levels.flip(0), levels[order], levels[order].flip(0)])
        x = texture * (1.0 + 0.5 * profiles[y].view(n, 1, frames, 1, 1))  # (n, 1, T, S, S)
        x = x + noise * torch.randn(n, 1, frames, size, size, generator=g)
        return x.float(), y
    frame = torch.zeros(n, size, size)
    step = ((0, 1), (1, 0), (1, 1), (1, -1))  # horizontal, vertical, diagonal, anti-diagonal
    for k in range(n):
        dy, dx = step[int(y[k])]
        for _ in range(2):  # two bars of 5 pixels, same orientation
            cy, cx = (int(torch.randint(2, size - 2, (1,), generator=g)) for _ in range(2))
            amp = 0.7 + 0.6 * float(torch.rand(1, generator=g))
            for t in range(-2, 3):
                frame[k, cy + t * dy, cx + t * dx] += amp
    frame = frame + noise * torch.randn(n, size, size, generator=g)
    # static clip: the same frame T times, (n, S, S) -> (n, 1, T, S, S)
    return frame.view(n, 1, 1, size, size).expand(n, 1, frames, size, size).contiguous(), y


def planted_model(width: int = 4, in_channels: int = 1, num_classes: int = 4,
                  depth: int = 1) -> nn.Sequential:
    """A small 3D CNN for planted clips; its searchable layers are :func:`planted_layers`.

    ``depth`` × (conv 3×3×3 → BN → ReLU) → conv 1×1×1 → BN → ReLU → global average pool →
    linear. With ``depth=1`` (default) nothing after the first conv mixes neighbouring voxels,
    so what that layer's channels can see is all the network can see, and the planted layout is
    exact. The default width is small so that the task needs every channel: a channel the
    network does not need has no right sub-kernel (cost priority's L1 switches all its
    candidates off, and the derivation then picks one by noise). ``depth > 1`` with a larger
    ``width`` (e.g. 3 convs of 16) is the wider, deeper net on which a search must still give
    the planted axis more channels on its task than on the other (docs/search.md).

    Shapes:
        (N, in_channels, T, H, W) -> (N, num_classes).
    """
    _check_int("width", width, 1)
    _check_int("in_channels", in_channels, 1)
    _check_int("num_classes", num_classes, 2)
    _check_int("depth", depth, 1)
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Conv3d(in_channels if i == 0 else width, width, 3, padding=1, bias=False),
                   nn.BatchNorm3d(width), nn.ReLU()]
    return nn.Sequential(
        *layers,
        nn.Conv3d(width, 2 * width, 1, bias=False), nn.BatchNorm3d(2 * width), nn.ReLU(),
        nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(2 * width, num_classes),
    )


def planted_layers(depth: int = 1) -> tuple[str, ...]:
    """Names of the searchable 3×3×3 convs of ``planted_model(depth=depth)``: "0", "3", …"""
    _check_int("depth", depth, 1)
    return tuple(str(3 * i) for i in range(depth))


def planted_search(kind: str, mode: str = "performance", seed: int = 0, *,
                   space="video-123d", width: int = 4, depth: int = 1, n: int = 256,
                   frames: int = 8, size: int = 16, epochs: int = 10, lr: float = 0.1,
                   batch_size: int = 32, progress: bool = False,
                   **search_kwargs) -> SearchResult:
    """Search :func:`planted_model` on :func:`planted_clips` — one call for a notebook cell.

    The recipe of the planted tests: ``n`` clips of task ``kind`` (seed ``seed``), shuffled
    batches of ``batch_size`` (seeded), the model initialised under ``seed`` (the caller's RNG
    state is restored), :func:`~cakes_lite.run_search` with ``epochs`` and ``lr``.

    >>> res = planted_search("temporal", "cost", seed=1, space="video-12d")
    >>> planted_recovery(res.layout, "temporal")

    Args:
        kind: ``"temporal"`` or ``"spatial"``.
        mode: ``"performance"`` or ``"cost"``.
        seed: data, initialisation, shuffling and search seed.
        space: search space (``"video-12d"``: exactly one right sub-kernel per task).
        width, depth: of :func:`planted_model`.
        n, frames, size: of :func:`planted_clips`.
        epochs, lr, batch_size: the search recipe.
        progress: show run_search's progress bar.
        **search_kwargs: passed to :func:`~cakes_lite.run_search` (``target=``, ``sparsity=``,
            ``warmup_epochs=`` …).

    Returns:
        :class:`~cakes_lite.SearchResult` (score it with :func:`planted_recovery`).
    """
    _check_kind(kind)
    x, y = planted_clips(kind, n=n, frames=frames, size=size, seed=seed)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = planted_model(width=width, depth=depth)
    return run_search(model, loader, space=space, mode=mode, epochs=epochs, lr=lr, seed=seed,
                      progress=progress, **search_kwargs)


def _sees(kind: str, subkernel: str) -> bool:
    full_d, full_h, full_w = SUBKERNELS[subkernel]
    return bool(full_d) if kind == "temporal" else bool(full_h and full_w)


#: the searchable layers of :func:`planted_model` (where the layout is planted)
PLANTED_LAYERS = ("0",)


def right_subkernels(kind: str, space="video-12d") -> tuple[str, ...]:
    """The sub-kernels of ``space`` that can see the planted axis of ``kind``.

    ``"temporal"``: those extending in time (kd > 1); ``"spatial"``: those extending in height
    and width (kh, kw > 1).

    Raises:
        ValueError: if none or all of the space's sub-kernels are right (nothing to recover).
    """
    _check_kind(kind)
    names = resolve_space(space)
    right = tuple(s for s in names if _sees(kind, s))
    if not right or len(right) == len(names):
        raise ValueError(f"space: {list(names)} has {'no' if not right else 'only'} sub-kernels "
                         f"that see the {kind} axis; a search on it has nothing to recover")
    return right


def planted_recovery(layout, kind: str, layers=PLANTED_LAYERS) -> float:
    """Share of the planted layers' channels that use a right sub-kernel (1.0: fully recovered).

    Args:
        layout: a :class:`~cakes_lite.Layout` (or ``{layer: {sub-kernel: channels}}``).
        kind: the planted task the layout was searched on.
        layers: the layers where the layout is planted (default: :func:`planted_model`'s).

    Returns:
        Channels on :func:`right_subkernels` / all channels of ``layers``, in [0, 1].

    Raises:
        ValueError: unknown kind, a layer missing from the layout, or no layers.
    """
    _check_kind(kind)
    layers = [layers] if isinstance(layers, str) else list(layers)
    if not layers:
        raise ValueError("layers: expected at least one layer name, got none")
    splits = {name: dict(layout[name]) for name in layout} if hasattr(layout, "items") else None
    if splits is None:
        raise ValueError(f"layout: expected a Layout or a mapping, got {type(layout).__name__}")
    missing = [name for name in layers if name not in splits]
    if missing:
        raise ValueError(f"layers: {missing} not in the layout (it has {list(splits)})")
    for name in layers:
        for s in splits[name]:
            check_subkernel(s, f"layout[{name!r}]")
    total = sum(sum(splits[name].values()) for name in layers)
    good = sum(c for name in layers for s, c in splits[name].items() if _sees(kind, s))
    return good / total if total else 0.0
