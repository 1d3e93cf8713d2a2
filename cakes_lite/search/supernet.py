"""``supernet()``: any model with k×k×k convs → a search supernet.

Every searchable conv (see :func:`cakes_lite.convtypes.is_searchable`: ``nn.Conv3d``, its
subclasses that keep its forward, types registered with :func:`cakes_lite.register_conv_type`)
is replaced, under the same qualified name, by a :class:`~cakes_lite.search.layer.SearchConv3d`
with the same C_in, C_out, k and stride, so layouts derived from the supernet are keyed by the
given model's conv names.

A **BatchNorm3d that consumes the conv's output** (and nothing else, called once, with
``num_features == C_out``; wherever it is registered) is absorbed: its statistics and affine
parameters seed the candidates' BN and it is replaced by ``nn.Identity`` in the supernet (conv +
BN in the model become conv + BN in the supernet: never BN twice, and the model's BN would
otherwise pool the statistics of whichever candidates were sampled for a channel). The pairing
follows the data flow (torch.fx, or hooks on a dry run with ``example_input``; see
:mod:`.bn_pairing`). A SyncBatchNorm is refused (the candidates' BN is not synchronised).
Without a BN, the SearchConv3d still normalises (it needs γ); the conv's bias is dropped either
way (β takes its role). Layouts are keyed by the conv's name, so ``shrink(model, layout)`` keeps
the model's BN.
Walkthrough: ``notebooks/02_search.ipynb``.
"""

from __future__ import annotations

import copy

from torch import nn

from ..convtypes import conv_geometry, is_searchable, skipped_convs, warn_refused
from ..kernels import resolve_space
from .bn_pairing import VerifyPairing, pair_by_fx, pair_by_hooks, pair_by_registration
from .layer import SearchConv3d, check_mode


def pair_bns(net: nn.Module, convs: dict[str, int], example_input=None) -> tuple[dict, str]:
    """``({conv: bn}, method)`` with method ``"fx"``, ``"hooks"``, ``"registration"`` (checked
    on the first forward) or ``"none"`` (the model has no BatchNorm3d)."""
    if not any(type(m) in (nn.BatchNorm3d, nn.SyncBatchNorm) for m in net.modules()):
        return {}, "none"
    pairs = pair_by_fx(net, convs)
    if pairs is not None:
        return pairs, "fx"
    if example_input is not None:
        return pair_by_hooks(net, convs, example_input), "hooks"
    return pair_by_registration(net, convs), "registration"


def supernet(model: nn.Module, space="video-123d", mode: str = "performance", *,
             absorb_bn: bool = True, init: str = "sum", example_input=None) -> nn.Module:
    """Copy ``model`` with every searchable k×k×k conv replaced by a SearchConv3d.

    Works on any model (ours, torchvision, MONAI, a user's own). Each SearchConv3d sits under
    the conv's qualified name, so layouts derived from the supernet are keyed by the given
    model's conv names and ``shrink(model, layout)`` works directly.

    Args:
        model: the network (not modified).
        space: search space name or list of sub-kernels.
        mode: ``"performance"`` or ``"cost"``.
        absorb_bn: absorb the BatchNorm3d consuming each conv's output (module docstring).
        init: ``"sum"`` (inherit the conv's weights) or ``"random"``.
        example_input: one input batch (or a tuple of forward arguments), used to pair convs
            and BNs by a dry run when the model does not trace with torch.fx. Without it such a
            model is paired by registration order (the BN registered right after the conv) and
            the first forward raises ValueError if the data flow disagrees.

    Returns:
        The supernet (a deep copy); ``supernet.cakes_search`` holds space, mode,
        ``layers`` ``{conv name: absorbed BN name or None}``, ``bn_pairing`` (how the pairs
        were found) and ``skipped`` ``{conv name: why it is not searched}``.

    Raises:
        ValueError: bad space or mode, no searchable conv in the model, a SyncBatchNorm to
            absorb.

    Warns:
        UserWarning: convs skipped for their type (an ``nn.Conv3d`` subclass overriding
        ``forward``; register it with :func:`cakes_lite.register_conv_type` if it is a plain
        convolution).
    """
    names = resolve_space(space)
    check_mode(mode)
    net = copy.deepcopy(model)
    modules = dict(net.named_modules())
    convs = {name: conv_geometry(m).out_channels for name, m in net.named_modules()
             if is_searchable(m) and name}
    skipped = skipped_convs(net)
    warn_refused(net)
    if not convs:
        raise ValueError("model: expected at least one searchable conv (nn.Conv3d with cubic odd "
                         "k > 1, groups=1, dilation=1, padding k//2), found none; skipped: "
                         f"{skipped}")
    pairs, method = pair_bns(net, convs, example_input) if absorb_bn else ({}, "off")
    for conv, bn in pairs.items():
        if type(modules[bn]) is nn.SyncBatchNorm:
            raise ValueError(
                f"layer {conv!r}: its output goes to SyncBatchNorm {bn!r}, which the search "
                "cannot absorb (the candidates' BN is not synchronised across processes); search "
                "a copy with nn.BatchNorm3d on one process, or pass absorb_bn=False")
    absorbed: dict[str, str | None] = {}
    for name in convs:
        parent_name, _, child = name.rpartition(".")
        parent = modules[parent_name] if parent_name else net
        bn_name = pairs.get(name)
        bn = modules[bn_name] if bn_name else None
        conv = modules[name]
        layer = SearchConv3d.from_conv(conv, names, mode, bn=bn, init=init, name=name)
        layer.train(conv.training)
        setattr(parent, child, layer)
        if bn_name:
            bn_parent, _, bn_child = bn_name.rpartition(".")
            setattr(modules[bn_parent] if bn_parent else net, bn_child, nn.Identity())
            layer.source_bn = bn_name
        absorbed[name] = layer.source_bn
    if method == "registration":
        net.register_forward_pre_hook(VerifyPairing(dict(absorbed)), with_kwargs=True)
    net.cakes_search = {"space": space if isinstance(space, str) else list(names),
                        "mode": mode, "layers": absorbed, "bn_pairing": method,
                        "skipped": skipped}
    return net


def search_layers(model: nn.Module) -> list[tuple[str, SearchConv3d]]:
    """``(qualified name, layer)`` of every SearchConv3d in ``model``, in module order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, SearchConv3d)]
