"""The paper's network: ResNet I3D (ResNet-50 by default) as in the authors' ``I3D.py``.

ImageNet's ResNet with every 2D layer made 3D and no temporal down-sampling anywhere (Carreira &
Zisserman's I3D, as the CAKES code builds it): a 1×7×7 stem conv with stride (1, 2, 2), BN,
ReLU, a (1, 3, 3) max-pool with stride (1, 2, 2) and padding (0, 1, 1); four stages of residual
blocks (ResNet-50: 3, 4, 6, 3 bottlenecks of widths 64, 128, 256, 512, expansion 4) whose first
block strides (1, 2, 2) from the second stage on, in the k×k×k ``conv2`` (torchvision's v1.5
placement); 1×1×1 ``conv1`` / ``conv3`` / projection shortcuts; global average pooling, dropout
and a linear classifier. Module names are torchvision's (``conv1``, ``bn1``, ``layer3.2.conv2``,
``fc``), so torchvision ImageNet weights inflate by name (:func:`cakes_lite.models.inflate`) and
the authors' searched layouts (:func:`cakes_lite.zoo.official_layouts`) apply as they are.

Only the k×k×k convolutions come from the *builder* (``"3d"``, ``"2d"``, ``"p3d"``,
``"r2plus1d"``, ``"csn"``, ``"cakes:<space>"`` … see :mod:`cakes_lite.baselines`): the
``conv2`` of every bottleneck, or both convs of a basic block (ResNet-18/34). User guide:
``docs/resnet50_i3d.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..convtypes import is_searchable
from ..layout import Layout
from ..official import official_layouts
from .common import apply_layout, check_positive_ints, config_to_dict, resolve_builders
from .resnet3d import BasicBlock, Bottleneck

#: depth -> (block type, blocks per stage), as torchvision's ResNets.
DEPTHS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
          50: ("bottleneck", (3, 4, 6, 3)), 101: ("bottleneck", (3, 4, 23, 3)),
          152: ("bottleneck", (3, 8, 36, 3))}
WIDTHS = (64, 128, 256, 512)  # inner width of each stage at width=64 (bottleneck output: ×4)
BLOCK_TYPES = {"basic": BasicBlock, "bottleneck": Bottleneck}


@dataclass
class ResNetI3dConfig:
    """Configuration of :class:`ResNetI3d` (defaults: the paper's ResNet-50 I3D for SSv1)."""

    depth: int = 50  # 18, 34 (basic blocks), 50, 101, 152 (bottlenecks)
    num_classes: int = 174  # Something-Something V1 classes
    in_channels: int = 3  # RGB clips
    builder: Any = "3d"  # builder name, callable, or one per stage, for the k×k×k convs
    kernel_size: int = 3  # k of the builder convs
    dropout: float = 0.3  # before fc, as the official TemporalModel (dropout 0.3)
    layout: Any = None  # optional Layout / {name: split} / official name, applied with shrink()
    width: int = 64  # stem and first-stage width, stages ×1, ×2, ×4, ×8 (64: ImageNet's ResNet)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form; ``ResNetI3d(ResNetI3dConfig(**cfg.to_dict()))`` rebuilds the net."""
        return config_to_dict(self)


def resolve_layout(layout: Any) -> Layout | None:
    """``None``, a :class:`Layout`, a ``{name: split}`` (or Layout JSON) dict, or the name of an
    official layout (``"CAKES123D_P"`` …, see :func:`cakes_lite.zoo.official_layouts`)."""
    if layout is None or isinstance(layout, Layout):
        return layout
    if isinstance(layout, str):
        official = official_layouts()
        if layout not in official:
            raise ValueError(f"layout: expected a Layout, a {{name: split}} dict or an official "
                             f"layout name {list(official)}, got {layout!r}")
        return official[layout]
    if isinstance(layout, Mapping):
        return Layout.from_dict(layout)
    raise ValueError(f"layout: expected a Layout, a {{name: split}} dict or an official layout "
                     f"name, got {type(layout).__name__}")


class ResNetI3d(nn.Module):
    """ResNet I3D: 1×7×7 stem + max-pool -> 4 stages -> global average pool -> dropout -> fc.

    Args:
        config: a :class:`ResNetI3dConfig` (or its dict form); keyword arguments override fields.

    Shapes:
        input (N, C_in, T, H, W) -> logits (N, num_classes). T is never strided; H, W are
        divided by 32 (224 -> 7). The authors' per-frame classifier averaged over frames equals
        this pooled classifier (the classifier is linear).
    """

    def __init__(self, config: ResNetI3dConfig | dict | None = None, **overrides: Any):
        super().__init__()
        if isinstance(config, dict):
            config = ResNetI3dConfig(**config)
        config = ResNetI3dConfig(**{**(config or ResNetI3dConfig()).__dict__, **overrides})
        if config.depth not in DEPTHS:
            raise ValueError(f"depth: expected one of {list(DEPTHS)}, got {config.depth!r}")
        for name in ("in_channels", "num_classes", "kernel_size", "width"):
            check_positive_ints([getattr(config, name)], name)
        if not (isinstance(config.dropout, (int, float)) and 0 <= config.dropout < 1):
            raise ValueError(f"dropout: expected a probability in [0, 1), got {config.dropout!r}")
        config.layout = resolve_layout(config.layout)
        self.config = config
        block_name, depths = DEPTHS[config.depth]
        block = BLOCK_TYPES[block_name]
        builders = resolve_builders(config.builder, len(WIDTHS))

        base = config.width
        self.conv1 = nn.Conv3d(config.in_channels, base, (1, 7, 7), (1, 2, 2), (0, 3, 3),
                               bias=False)
        self.bn1 = nn.BatchNorm3d(base)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))
        channels = base
        for i, (width, n_blocks) in enumerate(zip((w * base // 64 for w in WIDTHS), depths)):
            stride = (1, 1, 1) if i == 0 else (1, 2, 2)  # never in time
            blocks = []
            for j in range(n_blocks):
                blocks.append(block(builders[i], channels, width, stride if j == 0 else 1,
                                    config.kernel_size))
                channels = width * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(config.dropout)
        self.fc = nn.Linear(channels, config.num_classes)
        self.out_channels = channels
        if config.layout is not None:
            self._check_layout(config.layout)
            apply_layout(self, config.layout)

    @property
    def title(self) -> str:
        return f"ResNet-{self.config.depth} I3D"

    def searched_layers(self) -> dict[str, int]:
        """``{name: out_channels}`` of the k×k×k builder convs (what a layout may name)."""
        return {n: m.out_channels for n, m in self.named_modules()
                if n.startswith("layer") and is_searchable(m)}

    def _check_layout(self, layout: Layout) -> None:
        layers = self.searched_layers()
        if not layers:
            raise ValueError(f"layout: {self.title} built with builder={self.config.builder!r} "
                             f"has no k×k×k convs to shrink; build it with builder='3d'")
        names = list(layers)
        for name, split in layout.items():
            if name not in layers:
                raise ValueError(
                    f"layout: layer {name!r} is not one of the {len(names)} k×k×k convs of "
                    f"{self.title}; expected names {names[0]!r}, {names[1]!r} … {names[-1]!r}")
            total = sum(split.values())
            if total != layers[name]:
                raise ValueError(f"layout: layer {name!r} has {layers[name]} output channels in "
                                 f"{self.title}; expected a split summing to {layers[name]}, "
                                 f"got {total} ({dict(split)})")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Last-stage feature map (N, C, T, H/32, W/32)."""
        if x.dim() != 5 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"{self.title}: expected a clip (N, {self.config.in_channels}, T, "
                             f"H, W), got shape {tuple(x.shape)}")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x)).flatten(1)  # (N, C, 1, 1, 1) -> (N, C)
        return self.fc(self.dropout(x))


def resnet_i3d(depth: int = 50, **config: Any) -> ResNetI3d:
    """Generic constructor: ``resnet_i3d(depth, **ResNetI3dConfig fields)`` (what checkpoints
    rebuild); depth 18, 34, 50, 101 or 152; ``width=8`` gives a narrow copy (stages 8, 16, 32,
    64) for CPU smoke runs of the paper's recipes."""
    return ResNetI3d(ResNetI3dConfig(depth=depth, **config))


def resnet50_i3d(num_classes: int = 174, builder: Any = "3d", layout: Any = None,
                 dropout: float = 0.3, in_channels: int = 3) -> ResNetI3d:
    """The paper's ResNet-50 I3D (46.50 M params, 62.29 G MACs at 1×3×8×224² with 174 classes).

    Args:
        num_classes: output classes (174: Something-Something V1).
        builder: conv builder for the 16 ``layer{s}.{b}.conv2`` (``"3d"``, ``"2d"``, ``"p3d"``,
            ``"r2plus1d"``, ``"csn"``, ``"cakes:video-123d"`` …, a callable or one per stage).
        layout: ``None``, a :class:`~cakes_lite.Layout` / ``{name: split}`` keyed
            ``layer{s}.{b}.conv2``, or an official layout name (``"CAKES123D_P"`` …).
        dropout: dropout probability before ``fc``.
        in_channels: clip channels (3 for RGB).

    Shapes:
        (N, in_channels, T, H, W) -> (N, num_classes).

    Raises:
        ValueError: a layout naming a layer ResNet-50 lacks, or a split not summing to the
            layer's width; later, a clip with the wrong channel count.
    """
    return resnet_i3d(50, num_classes=num_classes, builder=builder, layout=layout,
                      dropout=dropout, in_channels=in_channels)
