"""Analytic cost of any model: multiply-accumulates (MACs) and parameters, per layer.

We count MACs of the layers that multiply by weights (convolutions incl. CAKESConv3d, linear
layers). Normalisation, activations, pooling and additions are reported with 0 MACs: they are a
rounding error next to the convolutions and tools disagree on them. FLOPs = 2 × MACs
(``torch.utils.flop_counter.FlopCounterMode`` counts FLOPs). Tests cross-check these numbers
against thop and FlopCounterMode. Walkthrough: ``notebooks/01_operations.ipynb``.

A module can declare its own cost with a method ``cakes_macs(inputs, output) -> int``; its
sub-modules are then not counted separately (used by CAKESConv3d and SearchConv3d). Conv types
registered with :func:`cakes_lite.register_conv_type` are counted as the Conv3d of their geometry;
``nn.Conv3d`` subclasses are counted as ``nn.Conv3d`` (``MAC_COUNTERS`` is looked up along the MRO).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .convtypes import conv_geometry, is_conv_type
from .ops import CAKESConv3d

MacCounter = Callable[[nn.Module, tuple, torch.Tensor], int]


def _conv_macs(m: nn.modules.conv._ConvNd, inputs: tuple, out: torch.Tensor) -> int:
    # each output element: (C_in / groups) · prod(kernel) multiply-accumulates
    per_out = (m.in_channels // m.groups) * math.prod(m.kernel_size)
    return out.numel() * per_out


def _conv_transpose_macs(m: nn.modules.conv._ConvTransposeNd, inputs: tuple, out) -> int:
    # each input element is scattered to (C_out / groups) · prod(kernel) outputs
    return inputs[0].numel() * (m.out_channels // m.groups) * math.prod(m.kernel_size)


def _linear_macs(m: nn.Linear, inputs: tuple, out: torch.Tensor) -> int:
    return out.numel() * m.in_features


def _cakes_macs(m: CAKESConv3d, inputs: tuple, out: torch.Tensor) -> int:
    # output voxels per sample-channel × Σ_groups n_g · C_in · |kernel_g|
    n, _, d, h, w = out.shape
    return n * d * h * w * m.macs_per_output_voxel()


#: module type -> MAC counter; extend with your own types.
MAC_COUNTERS: dict[type, MacCounter] = {
    nn.Conv1d: _conv_macs,
    nn.Conv2d: _conv_macs,
    nn.Conv3d: _conv_macs,
    nn.ConvTranspose1d: _conv_transpose_macs,
    nn.ConvTranspose2d: _conv_transpose_macs,
    nn.ConvTranspose3d: _conv_transpose_macs,
    nn.Linear: _linear_macs,
    CAKESConv3d: _cakes_macs,
}


@dataclass
class LayerCost:
    """One row of a :class:`Profile`."""

    name: str
    type: str
    macs: int
    params: int
    output_shape: tuple[int, ...] = ()
    plan: str | None = None  # CAKESConv3d: the forward plan it ran (see cakes_lite.fast.autotune)


@dataclass
class Profile:
    """Result of :func:`profile`: integer totals and per-layer rows (MACs, not FLOPs)."""

    macs: int
    params: int
    layers: list[LayerCost] = field(default_factory=list)
    input_shape: tuple[int, ...] = ()

    @property
    def flops(self) -> int:
        """2 × MACs (one multiply + one add)."""
        return 2 * self.macs

    def layer(self, name: str) -> LayerCost:
        for row in self.layers:
            if row.name == name:
                return row
        raise KeyError(f"no layer named {name!r} in this profile")

    def __str__(self) -> str:
        return (f"{self.macs / 1e6:.2f} M MACs, {self.params / 1e6:.3f} M params "
                f"for input {self.input_shape}")


def _registered_conv_macs(m: nn.Module, inputs: tuple, out: torch.Tensor) -> int:
    # a registered conv type (cakes_lite.register_conv_type): as a Conv3d of its geometry
    g = conv_geometry(m)
    return out.numel() * (g.in_channels // g.groups) * math.prod(g.kernel_size)


def _counter_for(m: nn.Module) -> MacCounter | None:
    if hasattr(m, "cakes_macs"):
        return lambda mod, i, o: int(mod.cakes_macs(i, o))
    if is_conv_type(m) and not isinstance(m, nn.Conv3d):
        return _registered_conv_macs
    for cls in type(m).__mro__:
        if cls in MAC_COUNTERS:
            return MAC_COUNTERS[cls]
    return None


@torch.no_grad()
def profile(model: nn.Module, input_shape: Sequence[int] | torch.Tensor) -> Profile:
    """Count MACs and parameters of ``model`` for one forward pass, analytically.

    The model runs once in eval mode (restored afterwards) on zeros of ``input_shape`` (batch
    dimension included; MACs are for the whole batch) on the model's device and dtype. Neither
    the model's weights nor its state_dict are changed.

    Args:
        model: any ``nn.Module``.
        input_shape: e.g. ``(1, 3, 8, 32, 32)``, or an input tensor.

    Returns:
        :class:`Profile` with ``.macs``, ``.params`` (int totals) and ``.layers`` rows for every
        counted layer (weight layers and other leaf modules) in forward order.
    """
    if isinstance(input_shape, torch.Tensor):
        x = input_shape
    else:
        shape = tuple(input_shape)
        if not shape or not all(isinstance(s, int) and s > 0 for s in shape):
            raise ValueError(f"input_shape: expected a tuple of positive ints, got {input_shape!r}")
        p = next(model.parameters(), None)
        x = torch.zeros(shape, device=p.device if p is not None else "cpu",
                        dtype=p.dtype if p is not None and p.is_floating_point() else torch.float32)
    # choose the modules to count: those with a counter (their children are skipped) and leaves
    chosen: dict[nn.Module, str] = {}
    skip: set[int] = set()
    for name, m in model.named_modules():
        if id(m) in skip:
            continue
        if _counter_for(m) is not None:
            chosen[m] = name
            skip.update(id(c) for c in m.modules() if c is not m)
        elif next(m.children(), None) is None:
            chosen[m] = name
    rows: list[LayerCost] = []

    def hook(m: nn.Module, inputs: tuple, out) -> None:
        counter = _counter_for(m)
        macs = int(counter(m, inputs, out)) if counter is not None else 0
        params = sum(p.numel() for p in m.parameters())
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else ()
        rows.append(LayerCost(chosen[m] or type(m).__name__, type(m).__name__, macs, params, shape,
                              getattr(m, "last_plan", None)))

    handles = [m.register_forward_hook(hook) for m in chosen]
    # restore each module's own mode afterwards (a model may hold e.g. frozen BN in eval mode)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        model(x)
    finally:
        for m, mode in modes:
            m.training = mode
        for h in handles:
            h.remove()
    total_params = sum(p.numel() for p in model.parameters())
    return Profile(sum(r.macs for r in rows), total_params, rows, tuple(x.shape))
