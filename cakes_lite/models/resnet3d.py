"""A small 3D ResNet classifier built from a convolution builder (torchvision video-ResNet style).

One network definition covers I3D (``"3d"``), C2D (``"2d"``), P3D, R(2+1)D, ip-CSN and CAKES: every
k×k×k convolution inside the residual blocks comes from ``builder(in, out, stride, kernel_size)``;
with the default ``"3d"`` builder those are plain ``nn.Conv3d(k=3, padding=1, bias=False)``
followed by a BatchNorm3d, which is what :func:`cakes_lite.shrink` and :func:`cakes_lite.supernet`
replace. The stem (1×5×5 by default, so it models no time) and the 1×1×1 shortcuts are fixed.
Walkthrough: ``notebooks/03_video_training.ipynb``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._helpers import triple
from .common import apply_layout, check_positive_ints, config_to_dict, resolve_builders


@dataclass
class ResNet3dConfig:
    """Configuration of :class:`ResNet3d` (defaults: a tiny net for 8×32×32 clips, ~10 classes)."""

    in_channels: int = 3  # RGB clips
    num_classes: int = 10  # something-something-lite classes
    builder: Any = "3d"  # builder name, callable, or one per stage
    widths: tuple = (16, 32, 64)  # output channels of each stage (bottleneck: its inner width)
    depths: tuple = (1, 1, 1)  # residual blocks per stage
    strides: Any = None  # each stage's first-block stride, int or (t, h, w); None: 1, 2, 2 …
    temporal_stride: bool = True  # False: int stage strides apply to H, W only (short clips;
    # and the "2d" builder, which drops the skipped frames: False keeps it blind to frame order)
    block: str = "basic"  # "basic" (two k×k×k convs) or "bottleneck" (1-k-1, ×4 expansion)
    stem_width: int = 16  # channels after the stem
    stem_kernel: Any = (1, 5, 5)  # stem conv kernel (t, h, w); 1 in t keeps the 2D baseline 2D
    stem_stride: Any = (1, 2, 2)  # 32×32 -> 16×16 for CPU speed
    kernel_size: int = 3  # k of the builder convs
    dropout: float = 0.0  # before the classifier
    layout: Any = None  # optional Layout / {name: split} applied with shrink() after building

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form; ``ResNet3d(ResNet3dConfig(**cfg.to_dict()))`` rebuilds the net."""
        return config_to_dict(self)


class BasicBlock(nn.Module):
    """conv1 (stride) -> BN -> ReLU -> conv2 -> BN, plus the (projected) input, -> ReLU."""

    expansion = 1

    def __init__(self, builder, in_channels: int, width: int, stride, kernel_size: int):
        super().__init__()
        out = width * self.expansion
        self.conv1 = builder(in_channels, width, stride=stride, kernel_size=kernel_size)
        self.bn1 = nn.BatchNorm3d(width)
        self.conv2 = builder(width, out, stride=1, kernel_size=kernel_size)
        self.bn2 = nn.BatchNorm3d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + identity)


class Bottleneck(nn.Module):
    """1×1×1 -> BN -> ReLU -> builder conv (stride) -> BN -> ReLU -> 1×1×1 (×4) -> BN, + input."""

    expansion = 4

    def __init__(self, builder, in_channels: int, width: int, stride, kernel_size: int):
        super().__init__()
        out = width * self.expansion
        self.conv1 = nn.Conv3d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(width)
        self.conv2 = builder(width, width, stride=stride, kernel_size=kernel_size)
        self.bn2 = nn.BatchNorm3d(width)
        self.conv3 = nn.Conv3d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + identity)


def _shortcut(in_channels: int, out_channels: int, stride) -> nn.Module | None:
    stride = triple(stride, "stride")
    if in_channels == out_channels and stride == (1, 1, 1):
        return None
    return nn.Sequential(nn.Conv3d(in_channels, out_channels, 1, stride, bias=False),
                         nn.BatchNorm3d(out_channels))


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet3d(nn.Module):
    """3D ResNet: stem -> stages of residual blocks -> global average pool -> linear.

    Module names follow torchvision (``stem``, ``layer1.0.conv1``, ``layer1.0.conv2`` …,
    ``fc``), so layouts keyed like the official ResNet-50 ones read naturally.

    Args:
        config: a :class:`ResNet3dConfig` (or its dict form); keyword arguments override fields.

    Shapes:
        input (N, C_in, T, H, W) -> logits (N, num_classes); any T, H, W ≥ 1.
    """

    def __init__(self, config: ResNet3dConfig | dict | None = None, **overrides: Any):
        super().__init__()
        if isinstance(config, dict):
            config = ResNet3dConfig(**config)
        config = ResNet3dConfig(**{**(config or ResNet3dConfig()).__dict__, **overrides})
        self.config = config
        widths = check_positive_ints(config.widths, "widths")
        n = len(widths)
        depths = check_positive_ints(config.depths, f"depths (one per stage of widths={widths})", n)
        strides = [1] + [2] * (n - 1) if config.strides is None else config.strides
        if not isinstance(strides, (list, tuple)) or len(strides) != n:
            raise ValueError(f"strides: expected one stride per stage ({n}), "
                             f"got {config.strides!r}")
        if config.block not in BLOCKS:
            raise ValueError(f"block: expected one of {list(BLOCKS)}, got {config.block!r}")
        for name in ("in_channels", "num_classes", "stem_width"):
            check_positive_ints([getattr(config, name)], name)
        builders = resolve_builders(config.builder, n)
        block = BLOCKS[config.block]

        stem_k = triple(config.stem_kernel, "stem_kernel")
        self.stem = nn.Sequential(
            nn.Conv3d(config.in_channels, config.stem_width, stem_k,
                      triple(config.stem_stride, "stem_stride"), tuple(k // 2 for k in stem_k),
                      bias=False),
            nn.BatchNorm3d(config.stem_width),
            nn.ReLU(inplace=True),
        )
        channels = config.stem_width
        self.stages: list[str] = []
        for i, (width, depth, stride) in enumerate(zip(widths, depths, strides)):
            if isinstance(stride, int) and not config.temporal_stride:
                stride = (1, stride, stride)
            stride = triple(stride, f"strides[{i}]")
            blocks = []
            for j in range(depth):
                blocks.append(block(builders[i], channels, width, stride if j == 0 else 1,
                                    config.kernel_size))
                channels = width * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            self.stages.append(f"layer{i + 1}")
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(config.dropout)
        self.fc = nn.Linear(channels, config.num_classes)
        self.out_channels = channels
        apply_layout(self, config.layout)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Last-stage feature map (N, C, T', H', W')."""
        if x.dim() != 5 or x.shape[1] != self.config.in_channels:
            raise ValueError(
                f"ResNet3d: expected input (N, {self.config.in_channels}, T, H, W), "
                f"got {tuple(x.shape)}"
            )
        x = self.stem(x)
        for name in self.stages:
            x = getattr(self, name)(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x)).flatten(1)  # (N, C, 1, 1, 1) -> (N, C)
        return self.fc(self.dropout(x))


def resnet3d(**config: Any) -> ResNet3d:
    """Generic constructor: ``resnet3d(**ResNet3dConfig fields)`` (what checkpoints rebuild)."""
    return ResNet3d(ResNet3dConfig(**config))


def resnet3d_tiny(num_classes: int = 10, in_channels: int = 3, builder: Any = "3d",
                  layout: Any = None, **overrides: Any) -> ResNet3d:
    """Tiny video classifier for 8×32×32 clips: stem 16 -> stages 16/32/64, one block each.

    Args:
        num_classes: output classes.
        in_channels: input channels (3 for RGB).
        builder: conv builder name / callable / per-stage list (see :mod:`cakes_lite.baselines`).
        layout: optional :class:`~cakes_lite.Layout` applied with ``shrink`` after building.
        **overrides: any other :class:`ResNet3dConfig` field.

    Shapes:
        (N, in_channels, T, H, W) -> (N, num_classes).
    """
    return ResNet3d(ResNet3dConfig(num_classes=num_classes, in_channels=in_channels,
                                   builder=builder, layout=layout, **overrides))
