"""The authors' checkpoints: a ``.pth.tar`` of the official CAKES code as a ``resnet50_i3d``.

The official training script saves ``{"epoch", "arch", "state_dict", "best_prec1"}`` where
``state_dict`` is a DataParallel ``TemporalModel``'s: ``module.base_model.<ResNet-50 I3D>`` and
``module.new_fc`` (the classifier after dropout; ``module.base_model.fc`` when trained without
dropout). Their bottleneck's middle convolution is a ``convT`` module:

* CAKES ops (their ``ConvST``, ``Conv1_2D``, ``Conv2_3D``, ``Conv1_2_3D``): one
  ``convT.convs.<i>.0`` conv per non-empty sub-kernel group, run in the fixed order k×k×k,
  1×k×k, k×1×1 (an empty group is simply absent, so ``<i>`` shifts), their outputs concatenated
  in that order, then ``convT.out.0`` (BatchNorm over the concatenation) and ReLU;
* plain ops (``conv3d``, ``conv2d``): ``convT.op.0`` conv, ``convT.op.1`` BatchNorm, ReLU.

Our :class:`~cakes_lite.CAKESConv3d` lays its groups out in :data:`cakes_lite.SUBKERNELS` order;
each group's sub-kernel is read from its kernel shape and its channels are moved to our order,
together with the matching entries of the BatchNorm and the input columns of ``conv3`` (for the
released k×k×k / 1×k×k / k×1×1 ops both orders agree, so this is the identity). Their classifier
runs per frame and averages the logits; ours pools first: the same function, the classifier
being linear. User guide: ``docs/resnet50_i3d.md``.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..kernels import SUBKERNELS
from ..layout import Layout
from ..official import official_layouts
from .resnet_i3d import WIDTHS, ResNetI3d, resnet50_i3d, resolve_layout

BLOCKS = (3, 4, 6, 3)  # ResNet-50
SUPPORTED = ("kxkxk", "1xkxk", "kx1x1")  # sub-kernels of the released video ops
KEYS = (".weight", ".bias", ".running_mean", ".running_var", ".num_batches_tracked")


def _fail(what: str, why: str) -> ValueError:
    return ValueError(f"official checkpoint {what}: {why}")


def _read(path: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The TemporalModel state dict without its ``module.`` prefix, and the other entries."""
    if isinstance(path, Mapping):
        ckpt = path
    else:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
            raise _fail(repr(Path(path).name), f"expected a torch.save file readable with "
                                               f"weights_only=True, got an error: "
                                               f"{str(e).splitlines()[0]}") from None
    name = "checkpoint" if isinstance(path, Mapping) else repr(Path(path).name)
    extra = {}
    if isinstance(ckpt, Mapping) and isinstance(ckpt.get("state_dict"), Mapping):
        extra = {k: v for k, v in ckpt.items() if k != "state_dict"}
        ckpt = ckpt["state_dict"]
    if not isinstance(ckpt, Mapping) or not all(isinstance(v, torch.Tensor)
                                                for v in ckpt.values()):
        raise _fail(name, "expected a dict with a 'state_dict' of tensors (as the official "
                                "main.py saves), got something else")
    sd = {k.removeprefix("module."): v for k, v in ckpt.items()}
    if not any(k.startswith("base_model.") for k in sd):
        hint = (" (a 2D torchvision ResNet? use cakes_lite.models.inflate)"
                if "conv1.weight" in sd else "")
        raise _fail(name, f"expected the official TemporalModel's keys such as "
                                f"'module.base_model.conv1.weight', got e.g. {list(sd)[:3]}{hint}")
    arch = extra.get("arch", "resnet50")
    if arch != "resnet50":
        raise _fail(name, f"expected arch 'resnet50', got {arch!r}")
    return sd, extra


def _subkernel(shape: tuple[int, ...], key: str) -> str:
    """'kxkxk' / '1xkxk' / 'kx1x1' from a (C_out, C_in, kd, kh, kw) weight shape (k = 3)."""
    name = "x".join("k" if s == 3 else "1" if s == 1 else "?" for s in shape[2:])
    if len(shape) != 5 or name not in SUPPORTED:
        raise _fail(f"key {key!r}", f"expected a 3D conv weight with a kernel of {SUPPORTED} "
                                    f"(k = 3), got shape {tuple(shape)}")
    return name


def _block(sd: dict[str, torch.Tensor], p: str, width: int) -> tuple[dict[str, str], str]:
    """``({sub-kernel: their weight key} in their channel order, their BN prefix)``."""
    if any(k.startswith(f"{p}.convT.norm.") for k in sd):
        raise _fail(f"block {p!r}", "a search supernet (convT.norm holds every candidate "
                                    "channel); derive its layout, retrain, and load that")
    if f"{p}.convT.op.2.weight" in sd:
        raise _fail(f"block {p!r}", "the official P3D op (two convs, no BN between) has no "
                                    "cakes_lite counterpart")
    pattern = rf"{re.escape(p)}\.convT\.convs\.\d+\.0\.weight"
    convs = sorted((k for k in sd if re.fullmatch(pattern, k)), key=lambda k: int(k.split(".")[-3]))
    if convs:
        bn = f"{p}.convT.out.0"
    elif f"{p}.convT.op.0.weight" in sd:
        convs, bn = [f"{p}.convT.op.0.weight"], f"{p}.convT.op.1"
    else:
        raise _fail(f"block {p!r}", f"expected a convT (convT.convs.<i>.0 or convT.op.0), got "
                                    f"keys {[k for k in sd if k.startswith(p + '.')][:4]}")
    groups: dict[str, str] = {}
    for key in convs:
        name = _subkernel(tuple(sd[key].shape), key)
        if name in groups or sd[key].shape[1] != width:
            raise _fail(f"key {key!r}", f"expected one {width}-input conv per sub-kernel, got "
                                        f"shape {tuple(sd[key].shape)} after {list(groups)}")
        groups[name] = key
    total = sum(sd[k].shape[0] for k in groups.values())
    if total != width:
        raise _fail(f"block {p!r}", f"its sub-kernel groups have {total} output channels, "
                                    f"expected {width} (a search supernet's n·C_out candidates?)")
    return groups, bn


def _choose_layout(splits: dict[str, dict[str, int]], layout: Any) -> tuple[str, Any]:
    """(builder, layout) for resnet50_i3d; checks a given layout against the checkpoint."""
    def clean(split):
        return {k: v for k, v in split.items() if v}

    if layout is not None:
        label = repr(layout) if isinstance(layout, str) else "given"
        layout = resolve_layout(layout)
        for name, theirs in splits.items():
            width = sum(theirs.values())
            expected = clean(layout.get(name, {"kxkxk": width}))
            if expected != theirs:
                raise ValueError(f"load_official: layout {label} has {expected} at {name!r}, "
                                 f"the checkpoint {theirs}")
        return "3d", layout
    kinds = {tuple(s) for s in splits.values()}
    if kinds in ({("kxkxk",)}, {("1xkxk",)}):  # the plain conv3d / conv2d op codes
        return ("3d" if kinds == {("kxkxk",)} else "2d"), None
    for official in official_layouts().values():
        if {n: clean(s) for n, s in official.items()} == splits:
            return "3d", official
    return "3d", Layout(splits, {"title": "read from an official checkpoint"})


def _source(key: str, blocks: dict, sd: dict[str, torch.Tensor],
            head: str) -> tuple[str, torch.Tensor | None, int]:
    """Their key for our state-dict ``key``, and the channel permutation to apply along a dim."""
    m = re.fullmatch(r"(layer\d\.\d+)\.(conv2|bn2|conv3)(?:\.weights\.(\w+)|(\.\w+))", key)
    if key.startswith("fc."):
        return f"{head}{key[2:]}", None, 0
    if not m:
        return f"base_model.{key}", None, 0
    groups, bn = blocks[m.group(1)]
    if m.group(2) == "conv2":  # a group's weight (CAKES), or the one plain conv
        return groups[m.group(3) or next(iter(groups))], None, 0
    # our channel c is their channel perm[c]: their groups are concatenated in their order
    starts, start = {}, 0
    for g, k in groups.items():
        starts[g], start = start, start + sd[k].shape[0]
    perm = torch.cat([torch.arange(starts[g], starts[g] + sd[groups[g]].shape[0])
                      for g in SUBKERNELS if g in groups])
    if m.group(2) == "bn2":
        return bn + m.group(4), perm, 0
    return f"base_model.{key}", perm, 1  # conv3: its input channels


def load_official(path: str | Path | Mapping, layout: Any = None) -> ResNetI3d:
    """Load a checkpoint of the official CAKES code (yucornetto/CAKES) into ``resnet50_i3d``.

    Args:
        path: the ``.pth.tar`` (e.g. ``8frame_CAKES123D_PerformancePriority.tar``), read with
            ``torch.load(weights_only=True)`` (nothing is executed), or that file's content.
        layout: ``None`` to read the layout from the checkpoint's tensor shapes (one of the six
            official layouts, named in ``model.config.layout.meta["title"]``, or any other
            split of the released ops), or an official layout name / Layout that the checkpoint
            must match.

    Returns:
        :func:`resnet50_i3d` with the checkpoint's classes (174 for Something-Something V1)
        and layout, weights loaded, in eval mode. Input: (N, 3, T, 224, 224) clips normalised
        with ImageNet mean / std, as the official evaluation.

    Raises:
        ValueError: not the official TemporalModel (another architecture, a 2D or torchvision
            state dict, a search supernet, their P3D op, ResNet-101), a layout that does not
            match, or a missing, mis-shaped or unexpected key (named).
    """
    sd, _ = _read(path)
    where = "checkpoint" if isinstance(path, Mapping) else repr(Path(path).name)
    counts = [len({m.group(1) for k in sd
                   if (m := re.match(rf"base_model\.layer{s}\.(\d+)\.", k))}) for s in range(1, 5)]
    if counts != list(BLOCKS) or "base_model.layer1.0.conv3.weight" not in sd:
        raise _fail(where, f"expected ResNet-50 I3D (bottleneck blocks {list(BLOCKS)}), got "
                           f"blocks {counts}")
    blocks, splits = {}, {}
    for s, (width, n) in enumerate(zip(WIDTHS, BLOCKS), start=1):
        for b in range(n):
            name = f"layer{s}.{b}"
            blocks[name] = _block(sd, f"base_model.{name}", width)
            splits[f"{name}.conv2"] = {g: sd[k].shape[0] for g, k in blocks[name][0].items()}
    builder, layout = _choose_layout(splits, layout)
    head = "new_fc" if "new_fc.weight" in sd else "base_model.fc"
    fc = sd.get(f"{head}.weight")
    stem = sd.get("base_model.conv1.weight")
    if fc is None or fc.dim() != 2 or stem is None or stem.dim() != 5:
        raise _fail(where, "expected 'base_model.conv1.weight' (5D) and 'new_fc.weight' or "
                           "'base_model.fc.weight' (2D)")
    with torch.device("meta"):  # every tensor is loaded below (strict): no random init needed
        model = resnet50_i3d(num_classes=fc.shape[0], builder=builder, layout=layout,
                             dropout=0.3 if head == "new_fc" else 0.0, in_channels=stem.shape[1])
    model = model.to_empty(device="cpu")
    ours, used = {}, set()
    for key, target in model.state_dict().items():
        theirs, perm, dim = _source(key, blocks, sd, head)
        if theirs not in sd:
            if key.endswith("num_batches_tracked"):  # older PyTorch did not save it
                ours[key] = torch.zeros((), dtype=torch.long)
                continue
            raise _fail(f"key {theirs!r}", f"missing (needed for {key!r})")
        value = sd[theirs]
        if value.shape != target.shape:
            raise _fail(f"key {theirs!r}", f"expected shape {tuple(target.shape)} for "
                                           f"{key!r}, got {tuple(value.shape)}")
        if perm is not None and value.dim() > 0:
            value = value.index_select(dim, perm)
        ours[key] = value.to(target.dtype)
        used.add(theirs)
    unexpected = [k for k in sd if k not in used]
    if unexpected:
        raise _fail(f"key {unexpected[0]!r}", f"unexpected for ResNet-50 I3D "
                                              f"({len(unexpected)} unexpected keys in all)")
    model.load_state_dict(ours, strict=True)
    return model.eval()
