"""Test-only restatement of the official CAKES video network (yucornetto/CAKES, MIT licence:
``ActionRecognition/I3D.py``, ``operations.py``, ``models.py``): the module structure, and so the
exact state-dict key names and shapes, of a DataParallel ``TemporalModel`` around their ResNet-50
I3D with a retrained CAKES op (``Conv1_2_3D`` and friends) or a plain ``conv3d`` / ``conv2d`` op.

Written from their code's structure, not copied: ``convT.convs.<i>.0`` holds one conv per
non-empty group in the fixed order k×k×k, 1×k×k, k×1×1 (``order`` lets a test shuffle it),
``convT.out.0`` is the BN over the concatenated groups. Their base model classifies every
frame (``AvgPool2d(7)`` on (N·T, C, 7, 7), then ``fc``); ``pool`` below is that kernel size so
small test clips work too (it is global average pooling either way).
"""

from __future__ import annotations

import torch
from torch import nn

SHAPES = {"kxkxk": ((3, 3, 3), (1, 1, 1)), "1xkxk": ((1, 3, 3), (0, 1, 1)),
          "kx1x1": ((3, 1, 1), (1, 0, 0))}


class ConvT(nn.Module):
    """Their CAKES op (retrained): convs.<i>.0 per non-empty group, cat, out = BN + ReLU."""

    def __init__(self, c_in: int, split: dict[str, int], stride: int, order=tuple(SHAPES)):
        super().__init__()
        self.convs = nn.ModuleList()
        for name in order:
            if split.get(name, 0) > 0:
                k, pad = SHAPES[name]
                self.convs.append(nn.Sequential(nn.Conv3d(c_in, split[name], k, (1, stride, stride),
                                                          pad, bias=False)))
        self.out = nn.Sequential(nn.BatchNorm3d(sum(split.values())), nn.ReLU(inplace=True))

    def forward(self, x):
        return self.out(torch.cat([conv(x) for conv in self.convs], dim=1))


class PlainT(nn.Module):
    """Their ``conv3d`` / ``conv2d`` op: op = conv, BN, ReLU."""

    def __init__(self, width: int, stride: int, kind: str):
        super().__init__()
        k, pad = SHAPES["kxkxk" if kind == "conv3d" else "1xkxk"]
        self.op = nn.Sequential(nn.Conv3d(width, width, k, (1, stride, stride), pad, bias=False),
                                nn.BatchNorm3d(width), nn.ReLU(inplace=True))

    def forward(self, x):
        return self.op(x)


class P3DT(nn.Module):
    """Their ``convp3d`` op: op = 1×k×k conv (C -> C), k×1×1 conv, BN, ReLU (no BN between)."""

    def __init__(self, width: int, stride: int):
        super().__init__()
        self.op = nn.Sequential(
            nn.Conv3d(width, width, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False),
            nn.Conv3d(width, width, (3, 1, 1), 1, (1, 0, 0), bias=False),
            nn.BatchNorm3d(width), nn.ReLU(inplace=True))


class Bottleneck(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int, op: nn.Module):
        super().__init__()
        self.conv1 = nn.Conv3d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.convT = op
        self.conv3 = nn.Conv3d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(
                nn.Conv3d(inplanes, planes * 4, 1, (1, stride, stride), bias=False),
                nn.BatchNorm3d(planes * 4))

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn3(self.conv3(self.convT(out)))  # convT ends with its own BN and ReLU
        return self.relu(out + residual)


class BaseModel(nn.Module):
    """Their ``I3D.ResNet`` (ResNet-50) with ``fc`` replaced by Dropout (dropout > 0)."""

    def __init__(self, ops, pool: int = 7, blocks=(3, 4, 6, 3)):
        super().__init__()
        self.conv1 = nn.Conv3d(3, 64, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))
        ops, inplanes = iter(ops), 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), blocks)):
            layer = []
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                layer.append(Bottleneck(inplanes, planes, stride, next(ops)(planes, stride)))
                inplanes = planes * 4
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
        self.avgpool = nn.AvgPool2d(pool, stride=1)
        self.fc = nn.Dropout(0.3)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = x.transpose(1, 2).contiguous()  # (N, T, C, H, W)
        x = x.view((-1,) + x.size()[2:])  # (N·T, C, H, W): every frame on its own
        return self.fc(self.avgpool(x).view(x.size(0), -1))


class TemporalModel(nn.Module):
    def __init__(self, ops, num_classes: int = 174, segments: int = 8, pool: int = 7,
                 blocks=(3, 4, 6, 3)):
        super().__init__()
        self.segments = segments
        self.base_model = BaseModel(ops, pool, blocks)
        self.new_fc = nn.Linear(2048, num_classes)

    def forward(self, x):  # x: (N, T·3, H, W), as their data loader stacks frames
        x = x.view((-1, self.segments, 3) + x.size()[-2:]).transpose(1, 2).contiguous()
        out = self.new_fc(self.base_model(x))  # (N·T, classes)
        return out.view((-1, self.segments) + out.size()[1:]).mean(dim=1)


class DataParallelLike(nn.Module):
    """Keys as torch.nn.DataParallel's state_dict: ``module.`` + the wrapped model's."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module


def cakes_ops(splits: list[dict[str, int]], orders=None):
    """One op factory per block (16), from a layout's splits in block order."""
    orders = orders or [tuple(SHAPES)] * len(splits)
    return [lambda planes, stride, s=s, o=o: ConvT(planes, s, stride, o)
            for s, o in zip(splits, orders)]
