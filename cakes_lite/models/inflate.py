"""ImageNet inflation: a torchvision 2D ResNet state dict into a cakes_lite 3D ResNet.

The rule of the official CAKES code (and of I3D, Carreira & Zisserman 2017), for a 2D kernel
W (C_out, C_in, k, k) and any 3D target, whatever its builder or layout:

* a kt×k×k conv gets W repeated kt times over time ÷ kt (k×k×k: ÷ k; 1×k×k and 1×1×1: W
  itself), so a clip of identical frames gives the 2D response away from the clip's ends;
* a CAKES layer: inflate the dense k×k×k kernel, then cut each group's sub-kernel out of it by
  summing over its shrunk axes (``shrink(init="sum")``): 1×k×k = W, k×1×1 = W's spatial sum
  repeated over time ÷ k; output channel c keeps 2D filter c whatever group it is in;
* P3D / R(2+1)D (1×k×k conv -> BN -> ReLU -> k×1×1 conv, then the block's BN): the spatial conv
  gets W (extra R(2+1)D channels keep their initialisation), the inner BN gets the 2D BN, the
  temporal conv is the identity in time (centre tap = identity, zero elsewhere, zero from the
  extra channels) and the block's BN is the identity, so in eval mode the block computes its 2D
  counterpart on every frame;
* a ip-CSN pair (1×1×1 then depthwise k×k×k) has no 2D counterpart: it and its BN keep their
  initialisation (one warning lists them);
* BatchNorm statistics and affine weights, the stem and the 1×1×1 convs are copied; ``fc`` is
  copied when the class counts agree and otherwise skipped with a warning.

User guide: ``docs/resnet50_i3d.md``.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..baselines import _Factorised
from ..convtypes import subkernel_weight
from ..ops import CAKESConv3d
from .resnet3d import Bottleneck, ResNet3d
from .resnet_i3d import DEPTHS, ResNetI3d

BN_KEYS = ("weight", "bias", "running_mean", "running_var")


def read_state_dict(source: Any) -> dict[str, torch.Tensor]:
    """A state dict from a mapping, a ``.safetensors`` file or a ``torch.save`` file (read with
    ``weights_only=True``); a DataParallel ``module.`` prefix is dropped."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file  # optional dependency, only for this format

            source = load_file(str(path))
        else:
            source = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(source, Mapping):
        raise ValueError(f"state_dict: expected a mapping of names to tensors (torchvision "
                         f"format), got {type(source).__name__}")
    for key, value in source.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"state_dict: expected a tensor for every key (torchvision format), "
                             f"got {type(value).__name__} for {key!r}")
    if source and all(k.startswith("module.") for k in source):
        source = {k[len("module."):]: v for k, v in source.items()}
    return dict(source)


def _describe(kind: str, counts: list[int]) -> str:
    depth = next((d for d, (b, c) in DEPTHS.items() if b == kind and list(c) == counts), None)
    return f"ResNet-{depth}" if depth else f"a ResNet of {kind} blocks {counts}"


def _structure(model: nn.Module) -> tuple[str, str, list[int], dict[str, str]]:
    """(title, block kind, blocks per stage, {torchvision stem name: our module name})."""
    if isinstance(model, ResNetI3d):
        stages, stem = [getattr(model, f"layer{i}") for i in range(1, 5)], {}
    elif isinstance(model, ResNet3d):
        stages, stem = [getattr(model, n) for n in model.stages], {"conv1": "stem.0",
                                                                   "bn1": "stem.1"}
    else:
        raise ValueError(f"model: expected a cakes_lite ResNetI3d or ResNet3d, got "
                         f"{type(model).__name__}")
    kind = "bottleneck" if isinstance(stages[0][0], Bottleneck) else "basic"
    counts = [len(s) for s in stages]
    title = model.title if isinstance(model, ResNetI3d) else f"ResNet3d ({kind} blocks {counts})"
    return title, kind, counts, stem


class _Inflater:
    """Collects the model's new tensors from the 2D state dict, key by key, in model order."""

    def __init__(self, model: nn.Module, sd: dict[str, torch.Tensor]):
        self.model, self.sd, self.used = model, sd, set()
        self.new: dict[str, torch.Tensor] = {}  # our state-dict key -> tensor
        self.skipped: dict[str, list[str]] = {}  # why -> layers that keep their initialisation

    def take(self, key: str, shape: tuple | None = None) -> torch.Tensor:
        if key not in self.sd:
            raise ValueError(f"state_dict: missing key {key!r} (expected a torchvision 2D ResNet "
                             f"state dict)")
        value = self.sd[key]
        if shape is not None and tuple(value.shape) != tuple(shape):
            raise ValueError(f"state_dict[{key!r}]: expected shape {tuple(shape)}, got "
                             f"{tuple(value.shape)}")
        self.used.add(key)
        return value.detach().float()

    def bn(self, ours: str, key: str, identity: bool = False) -> None:
        m = self.model.get_submodule(ours)
        for p in BN_KEYS:
            if identity:  # y = x in eval mode: (x - 0) / sqrt((1 - eps) + eps) · 1 + 0
                value = {"weight": 1.0, "bias": 0.0, "running_mean": 0.0,
                         "running_var": 1.0 - m.eps}[p]
                self.new[f"{ours}.{p}"] = torch.full((m.num_features,), value)
            else:
                self.new[f"{ours}.{p}"] = self.take(f"{key}.{p}", (m.num_features,))
        if not identity:
            self.used.add(f"{key}.num_batches_tracked")

    def conv(self, ours: str, key: str, bn_ours: str, bn_key: str) -> None:
        """Inflate 2D conv ``key`` (+ its BN) into our module ``ours`` (+ ``bn_ours``)."""
        m = self.model.get_submodule(ours)
        if isinstance(m, nn.Conv3d) and m.groups == 1:
            o, i, kt, kh, kw = m.weight.shape
            w = self.take(f"{key}.weight", (o, i, kh, kw))
            # I3D inflation: W_3d[:, :, t] = W_2d / kt for every t
            self.new[f"{ours}.weight"] = w.unsqueeze(2).repeat(1, 1, kt, 1, 1) / kt
            self.bn(bn_ours, bn_key)
        elif isinstance(m, CAKESConv3d):
            k = m.kernel_size
            w = self.take(f"{key}.weight", (m.out_channels, m.in_channels, k, k))
            dense = w.unsqueeze(2).repeat(1, 1, k, 1, 1) / k  # (C_out, C_in, k, k, k)
            start = 0
            for name, weight in m.weights.items():  # groups in channel order
                n = weight.shape[0]
                self.new[f"{ours}.weights.{name}"] = subkernel_weight(dense[start:start + n], name)
                start += n
            self.bn(bn_ours, bn_key)
        elif isinstance(m, _Factorised) and m[0].out_channels >= m.out_channels:
            self._factorised(ours, m, key, bn_ours, bn_key)
        else:
            why = f"{type(m).__name__}: no 2D counterpart; it and its BN keep their initialisation"
            self.skipped.setdefault(why, []).append(ours)
            self.used.update({f"{key}.weight", *(f"{bn_key}.{p}" for p in BN_KEYS),
                              f"{bn_key}.num_batches_tracked"})

    def _factorised(self, ours: str, m: nn.Sequential, key: str, bn_ours: str,
                    bn_key: str) -> None:
        spatial, temporal = m[0], m[3]
        o, k = m.out_channels, temporal.kernel_size[0]
        w = self.take(f"{key}.weight", (o, spatial.in_channels, *spatial.kernel_size[1:]))
        s = spatial.weight.detach().float().clone()
        s[:o] = w.unsqueeze(2)  # the first C_out channels are the 2D conv; extras keep theirs
        self.new[f"{ours}.0.weight"] = s
        mid = m[1]
        for p in BN_KEYS:
            value = getattr(mid, p).detach().float().clone()
            value[:o] = self.take(f"{bn_key}.{p}", (o,))
            self.new[f"{ours}.1.{p}"] = value
        self.used.add(f"{bn_key}.num_batches_tracked")
        t = torch.zeros_like(temporal.weight, dtype=torch.float32)  # (C_out, M, k, 1, 1)
        t[:, :o, k // 2, 0, 0] = torch.eye(o)  # identity in time and over the first C_out
        self.new[f"{ours}.3.weight"] = t
        self.bn(bn_ours, "", identity=True)


def inflate(model: nn.Module, state_dict_2d: Any) -> nn.Module:
    """Copy ImageNet (torchvision-format) 2D ResNet weights into a cakes_lite 3D ResNet in place.

    Args:
        model: a :class:`~cakes_lite.models.ResNetI3d` (any depth, builder or layout, shrunk
            or not) or a :class:`~cakes_lite.models.ResNet3d` of torchvision's widths.
        state_dict_2d: a torchvision ResNet state dict of the same depth (keys ``conv1.weight``,
            ``layer1.0.conv2.weight``, ``fc.bias`` …), e.g. from
            ``torch.load(path, weights_only=True)`` or ``safetensors.torch.load_file(path)``, or
            such a file's path.

    Returns:
        ``model`` itself, its weights replaced (see the module docstring for the rule).

    Raises:
        ValueError: not a ResNet of ours, a state dict of another depth or block type, or the
            first missing, mis-shaped or unexpected key.

    Warns:
        UserWarning: ``fc`` skipped (other class count), layers with no 2D counterpart.
    """
    net = getattr(model, "module", model)
    sd = read_state_dict(state_dict_2d)
    title, kind, counts, stem = _structure(net)
    stage_keys = [{m.group(1) for k in sd if (m := re.match(rf"layer{s}\.(\d+)\.", k))}
                  for s in range(1, 5)]
    if any(stage_keys):
        sd_kind = "bottleneck" if any(k.endswith(".conv3.weight") for k in sd) else "basic"
        sd_counts = [len(s) for s in stage_keys]
        if (sd_kind, sd_counts) != (kind, counts):
            raise ValueError(f"state_dict: a 2D {_describe(sd_kind, sd_counts)} ({sd_kind} blocks "
                             f"{sd_counts}); expected one for {title} ({kind} blocks {counts})")
    job = _Inflater(net, sd)
    job.conv(stem.get("conv1", "conv1"), "conv1", stem.get("bn1", "bn1"), "bn1")
    n_convs = 3 if kind == "bottleneck" else 2
    for s, n in enumerate(counts, start=1):
        for b in range(n):
            p = f"layer{s}.{b}"
            for i in range(1, n_convs + 1):
                job.conv(f"{p}.conv{i}", f"{p}.conv{i}", f"{p}.bn{i}", f"{p}.bn{i}")
            if net.get_submodule(p).downsample is not None:
                job.conv(f"{p}.downsample.0", f"{p}.downsample.0", f"{p}.downsample.1",
                         f"{p}.downsample.1")
    fc_w, fc_b = job.take("fc.weight"), job.take("fc.bias")
    if fc_w.shape == net.fc.weight.shape and fc_b.shape == net.fc.bias.shape:
        job.new.update({"fc.weight": fc_w, "fc.bias": fc_b})
    else:
        job.skipped[f"the state dict has {fc_w.shape[0]} classes of {fc_w.shape[1]} features, "
                    f"the model {net.fc.out_features} of {net.fc.in_features}: fc keeps its "
                    f"initialisation"] = ["fc"]
    unexpected = [k for k in sd if k not in job.used]
    if unexpected:
        raise ValueError(f"state_dict: unexpected key {unexpected[0]!r} ({len(unexpected)} in "
                         f"all) for {title}")
    own = net.state_dict()
    with torch.no_grad():
        for key, value in job.new.items():
            own[key].copy_(value.to(own[key].dtype))
    for why, names in job.skipped.items():
        warnings.warn(f"inflate: {len(names)} layer(s) not inflated ({why}): "
                      f"{', '.join(names[:4])}{' …' if len(names) > 4 else ''}", UserWarning,
                      stacklevel=2)
    return model
