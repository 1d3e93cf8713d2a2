"""Baseline convolution builders, all in one interface, for comparisons with CAKES.

A *builder* is a callable ``builder(in_channels, out_channels, stride=1, kernel_size=3)`` that
returns an ``nn.Module`` mapping (N, C_in, D, H, W) to (N, C_out, D', H', W') with the same output
shape as ``nn.Conv3d(C_in, C_out, k, stride, padding=k//2)``. Networks in ``cakes_lite.models``
take a builder (as torchvision's video ResNet does), so one network definition covers I3D, 2D,
P3D, R(2+1)D, ip-CSN and CAKES.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import nn

from ._helpers import check_kernel_size, triple
from .kernels import even_split, resolve_space
from .ops import CAKESConv3d

Builder = Callable[..., nn.Module]


def conv3d(in_channels: int, out_channels: int, stride=1, kernel_size: int = 3) -> nn.Module:
    """Full k×k×k convolution (I3D / C3D)."""
    k = check_kernel_size(kernel_size)
    return nn.Conv3d(in_channels, out_channels, k, triple(stride, "stride"), k // 2, bias=False)


def conv2d(in_channels: int, out_channels: int, stride=1, kernel_size: int = 3) -> nn.Module:
    """Frame-wise 1×k×k convolution (a 2D network run on every frame).

    A temporal stride s > 1 keeps frames 0, s, 2s, … and drops the others (the kernel has no
    temporal extent to cover them). In a network that strides time (``resnet3d_tiny``'s default)
    the classifier of an all-2D net then sees frames 0 and 4 of 8 only, and can tell some
    time-reversed clips apart by which frames those are. For a 2D baseline that sees every frame
    and is blind to their order (TSN-style: per-frame features, averaged), build the network with
    ``temporal_stride=False``.
    """
    k = check_kernel_size(kernel_size)
    return nn.Conv3d(
        in_channels, out_channels, (1, k, k), triple(stride, "stride"), (0, k // 2, k // 2),
        bias=False,
    )


class _Factorised(nn.Sequential):
    """Spatial 1×k×k conv -> BN -> ReLU -> temporal k×1×1 conv (stride split between the two)."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, stride, k: int):
        sd, sh, sw = triple(stride, "stride")
        k = check_kernel_size(k)
        super().__init__(
            nn.Conv3d(in_channels, mid_channels, (1, k, k), (1, sh, sw), (0, k // 2, k // 2),
                      bias=False),
            nn.BatchNorm3d(mid_channels),
            nn.ReLU(inplace=True),
            nn.Conv3d(mid_channels, out_channels, (k, 1, 1), (sd, 1, 1), (k // 2, 0, 0),
                      bias=False),
        )
        self.in_channels, self.out_channels = in_channels, out_channels


def p3d(in_channels: int, out_channels: int, stride=1, kernel_size: int = 3) -> nn.Module:
    """P3D-A style: 1×k×k (C_in -> C_out) then k×1×1 (C_out -> C_out), BN+ReLU between."""
    return _Factorised(in_channels, out_channels, out_channels, stride, kernel_size)


def r2plus1d_mid_channels(in_channels: int, out_channels: int, kernel_size: int = 3) -> int:
    """R(2+1)D's intermediate width, chosen so the pair has the params of the k×k×k conv.

    Tran et al. 2018, eq. (1):  M = floor( t·d²·N_in·N_out / (d²·N_in + t·N_out) ), t = d = k.
    """
    k = kernel_size
    return max(1, (k**3 * in_channels * out_channels) // (k * k * in_channels + k * out_channels))


def r2plus1d(in_channels: int, out_channels: int, stride=1, kernel_size: int = 3) -> nn.Module:
    """R(2+1)D: 1×k×k (C_in -> M) -> BN -> ReLU -> k×1×1 (M -> C_out), M matching 3D params."""
    mid = r2plus1d_mid_channels(in_channels, out_channels, kernel_size)
    return _Factorised(in_channels, mid, out_channels, stride, kernel_size)


class _CSN(nn.Sequential):
    """ip-CSN style: 1×1×1 (C_in -> C_out) then depthwise k×k×k (groups = C_out)."""

    def __init__(self, in_channels: int, out_channels: int, stride, k: int):
        k = check_kernel_size(k)
        super().__init__(
            nn.Conv3d(in_channels, out_channels, 1, bias=False),
            nn.Conv3d(out_channels, out_channels, k, triple(stride, "stride"), k // 2,
                      groups=out_channels, bias=False),
        )
        self.in_channels, self.out_channels = in_channels, out_channels


def csn(in_channels: int, out_channels: int, stride=1, kernel_size: int = 3) -> nn.Module:
    """Channel-separated, interaction-preserved (ip-CSN, Tran et al. 2019): pointwise 1×1×1
    then depthwise k×k×k, no BN between. (ir-CSN would keep only the depthwise conv.)"""
    return _CSN(in_channels, out_channels, stride, kernel_size)


def cakes(space="video-123d", split: Mapping[str, float] | None = None) -> Builder:
    """Builder of CAKESConv3d layers: an even split over ``space``, or a split given as shares
    (e.g. ``{"kxkxk": 0.5, "1xkxk": 0.5}``) rounded to each layer's width.

    Searched, per-layer layouts are applied with :func:`cakes_lite.shrink` instead.
    """
    names = resolve_space(space)

    def build(in_channels: int, out_channels: int, stride=1, kernel_size: int = 3) -> nn.Module:
        if split is None:
            counts = even_split(out_channels, names)
        else:
            # largest-remainder rounding: counts sum to out_channels and are never negative
            total = float(sum(split.values()))
            exact = {n: out_channels * split[n] / total for n in split}
            counts = {n: int(v) for n, v in exact.items()}
            by_remainder = sorted(exact, key=lambda n: counts[n] - exact[n])  # stable: dict order
            for n in by_remainder[: out_channels - sum(counts.values())]:
                counts[n] += 1
        return CAKESConv3d(in_channels, counts, kernel_size, stride)

    return build


#: name -> builder, for CLIs, configs and benchmarks.
BUILDERS: dict[str, Builder] = {
    "3d": conv3d,
    "2d": conv2d,
    "p3d": p3d,
    "r2plus1d": r2plus1d,
    "csn": csn,
    "cakes": cakes(),
}


def get_builder(name: str) -> Builder:
    """Look up a builder by name (``"3d"``, ``"2d"``, ``"p3d"``, ``"r2plus1d"``, ``"csn"``,
    ``"cakes"`` or ``"cakes:<space>"``)."""
    if name.startswith("cakes:"):
        return cakes(name.split(":", 1)[1])
    if name not in BUILDERS:
        raise ValueError(f"builder: expected one of {list(BUILDERS)} or 'cakes:<space>', got {name!r}")
    return BUILDERS[name]
