"""``supernet()``: any model with k×k×k ``nn.Conv3d`` layers → a search supernet.

Every searchable conv (see :func:`cakes_lite.layout.is_searchable`) is replaced, under the
same qualified name, by a :class:`~cakes_lite.search.layer.SearchConv3d` with the same
C_in, C_out, k and stride, so layouts derived from the supernet are keyed by the given
model's conv names.

A **following BatchNorm3d** (the next sibling module of the conv, e.g. ``conv1``/``bn1`` or
``Sequential(conv, bn, relu)``, with ``num_features == C_out``) is absorbed: its statistics and
affine parameters seed the candidates' BN and it is replaced by ``nn.Identity`` in the supernet
(conv + BN in the model become conv + BN in the supernet: never BN twice, and the model's BN
would otherwise pool the statistics of whichever candidates were sampled for a channel).
Without one, the SearchConv3d still normalises (it needs γ); the conv's bias is dropped either
way (β takes its role). Layouts are keyed by the conv's name, so ``shrink(model, layout)`` keeps
the model's BN.
Walkthrough: ``notebooks/02_search.ipynb``.
"""

from __future__ import annotations

import copy

from torch import nn

from ..kernels import resolve_space
from ..layout import is_searchable
from .layer import SearchConv3d, check_mode


def _following_bn(parent: nn.Module, child: str, conv: nn.Conv3d) -> str | None:
    """Name (within ``parent``) of the BatchNorm3d registered right after ``child``, if it
    normalises ``conv.out_channels`` features."""
    names = list(parent._modules)
    i = names.index(child)
    if i + 1 < len(names):
        nxt = parent._modules[names[i + 1]]
        if type(nxt) is nn.BatchNorm3d and nxt.num_features == conv.out_channels:
            return names[i + 1]
    return None


def supernet(model: nn.Module, space="video-123d", mode: str = "performance", *,
             absorb_bn: bool = True, init: str = "sum") -> nn.Module:
    """Copy ``model`` with every searchable k×k×k ``nn.Conv3d`` replaced by a SearchConv3d.

    Works on any model (ours, torchvision, MONAI, a user's own). Each SearchConv3d sits under
    the conv's qualified name, so layouts derived from the supernet are keyed by the given
    model's Conv3d names and ``shrink(model, layout)`` works directly.

    Args:
        model: the network (not modified).
        space: search space name or list of sub-kernels.
        mode: ``"performance"`` or ``"cost"``.
        absorb_bn: absorb a BatchNorm3d that directly follows a conv (see module docstring).
        init: ``"sum"`` (inherit the conv's weights) or ``"random"``.

    Returns:
        The supernet (a deep copy); ``supernet.cakes_search`` holds space, mode and
        ``{conv name: absorbed BN name or None}``.

    Raises:
        ValueError: bad space or mode, or no searchable Conv3d in the model.
    """
    names = resolve_space(space)
    check_mode(mode)
    net = copy.deepcopy(model)
    modules = dict(net.named_modules())
    convs = [(name, m) for name, m in net.named_modules() if is_searchable(m) and name]
    if not convs:
        raise ValueError("model: expected at least one searchable nn.Conv3d (cubic odd k > 1, "
                         "groups=1, dilation=1, padding k//2), found none")
    absorbed: dict[str, str | None] = {}
    for name, conv in convs:
        parent_name, _, child = name.rpartition(".")
        parent = modules[parent_name] if parent_name else net
        bn_child = _following_bn(parent, child, conv) if absorb_bn else None
        bn = parent._modules[bn_child] if bn_child else None
        layer = SearchConv3d.from_conv(conv, names, mode, bn=bn, init=init)
        layer.train(conv.training)
        setattr(parent, child, layer)
        if bn_child:
            setattr(parent, bn_child, nn.Identity())
            layer.source_bn = f"{parent_name}.{bn_child}" if parent_name else bn_child
        absorbed[name] = layer.source_bn
    net.cakes_search = {"space": space if isinstance(space, str) else list(names),
                        "mode": mode, "layers": absorbed}
    return net


def search_layers(model: nn.Module) -> list[tuple[str, SearchConv3d]]:
    """``(qualified name, layer)`` of every SearchConv3d in ``model``, in module order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, SearchConv3d)]
