"""A small 3D U-Net segmenter built from a convolution builder.

Every k×k×k convolution of the encoder and decoder comes from ``builder(in, out, stride,
kernel_size)`` followed by BatchNorm3d and ReLU; with the ``"3d"`` builder those are plain
``nn.Conv3d(k=3, padding=1, bias=False)`` that :func:`cakes_lite.shrink` and
:func:`cakes_lite.supernet` can replace. Pooling, transposed-conv upsampling and the 1×1×1 head are
fixed. Inputs of any size work: they are zero-padded to a multiple of the total stride and the
logits cropped back. Walkthrough: ``notebooks/04_volumetric_segmentation.ipynb``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._helpers import triple
from .common import ConvBNReLU, apply_layout, check_positive_ints, config_to_dict, resolve_builders


@dataclass
class UNet3dConfig:
    """Configuration of :class:`UNet3d` (defaults: a tiny net for 32³ MRI patches, 4 classes)."""

    in_channels: int = 1  # one MRI modality
    num_classes: int = 4  # background / other brain / grey / white matter
    builder: Any = "3d"  # builder name, callable, or one per level (encoder level = decoder level)
    widths: tuple = (8, 16, 32)  # channels per level, shallow to deep (deepest = bottleneck)
    strides: Any = None  # between levels: len(widths) - 1 ints or (d, h, w); None: 2 everywhere
    convs_per_level: Any = 2  # conv-BN-ReLU units per level (encoder and decoder): int or list
    kernel_size: int = 3  # k of the builder convs
    layout: Any = None  # optional Layout / {name: split} applied with shrink() after building

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form; ``UNet3d(UNet3dConfig(**cfg.to_dict()))`` rebuilds the net."""
        return config_to_dict(self)


class _Level(nn.Sequential):
    """``convs_per_level`` conv-BN-ReLU units (named ``0``, ``1`` …; the first changes width)."""

    def __init__(self, builder, in_channels: int, out_channels: int, n: int, k: int):
        super().__init__(*[ConvBNReLU(builder, in_channels if i == 0 else out_channels,
                                      out_channels, 1, k) for i in range(n)])


class UNet3d(nn.Module):
    """3D U-Net: encoder levels with max-pool between, transposed-conv decoder with skips.

    Module names: ``encoder.<level>.<unit>.conv``, ``decoder.<level>.<unit>.conv``,
    ``up.<level>``, ``head``.

    Args:
        config: a :class:`UNet3dConfig` (or its dict form); keyword arguments override fields.

    Shapes:
        input (N, C_in, D, H, W) -> logits (N, num_classes, D, H, W); any D, H, W ≥ 1.
    """

    def __init__(self, config: UNet3dConfig | dict | None = None, **overrides: Any):
        super().__init__()
        if isinstance(config, dict):
            config = UNet3dConfig(**config)
        config = UNet3dConfig(**{**(config or UNet3dConfig()).__dict__, **overrides})
        self.config = config
        widths = check_positive_ints(config.widths, "widths")
        n = len(widths)
        if n < 2:
            raise ValueError(f"widths: expected at least 2 levels, got {config.widths!r}")
        strides = [2] * (n - 1) if config.strides is None else config.strides
        if not isinstance(strides, (list, tuple)) or len(strides) != n - 1:
            raise ValueError(
                f"strides: expected len(widths) - 1 = {n - 1} strides, got {config.strides!r}"
            )
        self.strides = [triple(s, f"strides[{i}]") for i, s in enumerate(strides)]
        for name in ("in_channels", "num_classes"):
            check_positive_ints([getattr(config, name)], name)
        m = config.convs_per_level
        m = check_positive_ints([m] * n if isinstance(m, int) else m, "convs_per_level", n)
        builders = resolve_builders(config.builder, n)
        k = config.kernel_size

        self.encoder = nn.ModuleList()
        channels = config.in_channels
        for i, w in enumerate(widths):
            self.encoder.append(_Level(builders[i], channels, w, m[i], k))
            channels = w
        self.pool = nn.ModuleList(nn.MaxPool3d(s, s) for s in self.strides)
        self.up = nn.ModuleList(
            nn.ConvTranspose3d(widths[i + 1], widths[i], s, s, bias=False)
            for i, s in enumerate(self.strides)
        )
        # decoder level i takes [upsampled (w_i), skip (w_i)] -> w_i
        self.decoder = nn.ModuleList(
            _Level(builders[i], 2 * widths[i], widths[i], m[i], k) for i in range(n - 1)
        )
        self.head = nn.Conv3d(widths[0], config.num_classes, 1)
        self.multiple = tuple(math.prod(s[a] for s in self.strides) for a in range(3))
        apply_layout(self, config.layout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or x.shape[1] != self.config.in_channels:
            raise ValueError(
                f"UNet3d: expected input (N, {self.config.in_channels}, D, H, W), "
                f"got {tuple(x.shape)}"
            )
        size = x.shape[2:]
        # zero-pad D, H, W up to multiples of the total stride so skips line up
        pad = [(-s) % m for s, m in zip(size, self.multiple)]
        if any(pad):
            x = F.pad(x, (0, pad[2], 0, pad[1], 0, pad[0]))
        skips = []
        for i, level in enumerate(self.encoder):
            x = level(x)
            if i < len(self.pool):
                skips.append(x)
                x = self.pool[i](x)
        for i in reversed(range(len(self.decoder))):
            x = self.up[i](x)
            x = self.decoder[i](torch.cat([x, skips[i]], dim=1))  # (N, 2·w_i, …) -> (N, w_i, …)
        x = self.head(x)
        return x[:, :, : size[0], : size[1], : size[2]]


def unet3d(**config: Any) -> UNet3d:
    """Generic constructor: ``unet3d(**UNet3dConfig fields)`` (what checkpoints rebuild)."""
    return UNet3d(UNet3dConfig(**config))


def unet3d_tiny(num_classes: int = 4, in_channels: int = 1, builder: Any = "3d",
                layout: Any = None, **overrides: Any) -> UNet3d:
    """Tiny segmenter for 32³ single-channel patches: levels 8/16/32; one conv-BN-ReLU per
    encoder/decoder side at full resolution (halves the CPU step time), two at the others.

    Args:
        num_classes: output classes (incl. background).
        in_channels: input channels.
        builder: conv builder name / callable / per-level list (see :mod:`cakes_lite.baselines`).
        layout: optional :class:`~cakes_lite.Layout` applied with ``shrink`` after building.
        **overrides: any other :class:`UNet3dConfig` field.

    Shapes:
        (N, in_channels, D, H, W) -> (N, num_classes, D, H, W).
    """
    if "convs_per_level" not in overrides:
        n = len(overrides.get("widths", UNet3dConfig.widths))
        overrides["convs_per_level"] = [1] + [2] * (n - 1)
    return UNet3d(UNet3dConfig(num_classes=num_classes, in_channels=in_channels,
                               builder=builder, layout=layout, **overrides))
