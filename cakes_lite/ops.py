"""CAKESConv3d: a k×k×k 3D convolution replaced channel by channel by cheaper sub-kernels.

Paper (Yu et al., AAAI 2021, §3.1): instead of giving all C_out output channels the same k×k×k
kernel, output channel c gets its own sub-kernel shape s(c) ∈ {k×k×k, 1×k×k, k×1×1, …}:

    y_c = W_c^{s(c)} ⊛ x,   c = 1 … C_out,

so one layer mixes heterogeneous operations. Channels that share a sub-kernel form a *group*;
every group sees all input channels. Walkthrough: ``notebooks/01_operations.ipynb``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from .fast import autotune, plans
from ._helpers import check_kernel_size, triple
from .convtypes import check_conv, subkernel_weight
from .kernels import SUBKERNELS, check_subkernel, kernel_shape


def normalise_split(split: Mapping[str, int], where: str = "split") -> dict[str, int]:
    """Validate a split (sub-kernel name -> channel count) and return it in canonical order.

    Zero counts are kept (a group of 0 channels is simply absent from the layer).

    Raises:
        ValueError: not a mapping, unknown sub-kernel, negative or non-integer count, or all zero.
    """
    if not isinstance(split, Mapping):
        raise ValueError(
            f"{where}: expected a dict of sub-kernel -> channel count, got {type(split).__name__}"
        )
    for name, count in split.items():
        check_subkernel(name, where)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(
                f"{where}: channel count for {name!r} must be a non-negative int, got {count!r}"
            )
    if sum(split.values()) == 0:
        raise ValueError(f"{where}: expected at least one output channel, got {dict(split)}")
    return {name: int(split[name]) for name in SUBKERNELS if name in split}


class CAKESConv3d(nn.Module):
    """A 3D convolution whose output channels use heterogeneous sub-kernels.

    Output channels are laid out group by group in the canonical sub-kernel order of
    :data:`cakes_lite.SUBKERNELS` (``kxkxk`` first), whatever the order of the ``split`` dict.
    Each group uses "same" padding (``k // 2`` on its extended axes, 0 on shrunk ones), so all
    groups agree on the output shape for any input size and stride.

    Args:
        in_channels: C_in.
        split: sub-kernel name -> number of output channels, e.g.
            ``{"kxkxk": 22, "1xkxk": 21, "kx1x1": 21}``; zero counts allowed, not all zero.
        kernel_size: odd k of the layer this replaces.
        stride: int or (d, h, w).
        bias: add a learnable bias per output channel.
        impl: forward implementation: ``"fast"`` (default: grouped calls, see
            ``cakes_lite/fast/plans.py``), ``"direct"`` (one conv3d per group + cat, as the official
            code) or ``"direct_cl"`` (the same on channels_last_3d); all give equal results.
        plan: the fast path's plan (one of ``cakes_lite.fast.plans.PLANS``) or None (default:
            measured once per input shape and cached, see :mod:`cakes_lite.fast.autotune`).

    Attributes:
        last_plan: the plan the last forward ran (``"direct"`` for the direct impls), or None.
        allow_dense: let autotuning pick the ``"dense"`` plan (the parent k×k×k conv in one
            call: the same function, the parent's MACs) where it measures faster. None (default):
            allowed in eval mode, so an inference call is never slower than the parent conv
            measured alone; False: the layer runs only its own MACs (what
            ``benchmarks/layer_speed.py`` measures); True: also in train mode under no_grad.
            Calls that record gradients run the static plan anyway (cakes_lite/fast/autotune.py).

    Shapes:
        input (N, C_in, D, H, W) -> output (N, sum(split.values()), D', H', W') with
        D' = floor((D - 1) / s_d) + 1 (likewise H', W'), exactly as ``nn.Conv3d(…, padding=k//2)``.
        The output is in ``torch.channels_last_3d`` memory (the fast path computes it that way;
        following layers run faster on it too), except under the ``"direct"`` plan, which keeps
        the input's format; call ``.contiguous()`` if you need NCDHW strides.
    """

    def __init__(
        self,
        in_channels: int,
        split: Mapping[str, int],
        kernel_size: int = 3,
        stride: int | tuple[int, int, int] = 1,
        bias: bool = False,
        impl: str = "fast",
        plan: str | None = None,
    ) -> None:
        super().__init__()
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels: expected a positive int, got {in_channels!r}")
        self.in_channels = in_channels
        self.kernel_size = check_kernel_size(kernel_size)
        self.stride = triple(stride, "stride")
        self.split = normalise_split(split)
        self.out_channels = sum(self.split.values())
        self.weights = nn.ParameterDict()
        for name, count in self.split.items():
            if count:
                shape = kernel_shape(name, kernel_size)
                self.weights[name] = nn.Parameter(torch.empty(count, in_channels, *shape))
        self.bias = nn.Parameter(torch.empty(self.out_channels)) if bias else None
        self.impl = impl
        self.plan = plan
        self.last_plan: str | None = None
        self.allow_dense: bool | None = None
        self._prepared: dict[str, tuple[tuple, plans.Prepared]] = {}  # inference cache
        self._fast: tuple | None = None  # (input signature, weight stamp, plan) of the last call
        self.reset_parameters()

    @property
    def impl(self) -> str:
        """Forward implementation, validated when set: "fast", "direct" or "direct_cl"."""
        return self._impl

    @impl.setter
    def impl(self, value: str) -> None:
        self._impl = plans.check_impl(value)

    @property
    def plan(self) -> str | None:
        """The fast path's plan (one of ``plans.PLANS``), or None for measured (autotuned)."""
        return self._plan

    @plan.setter
    def plan(self, value: str | None) -> None:
        if value is not None and value not in plans.PLANS:
            raise ValueError(f"plan: expected None or one of {plans.PLANS}, got {value!r}")
        self._plan = value

    def reset_parameters(self) -> None:
        """Initialise each group like an ``nn.Conv3d`` of that group's kernel shape would be."""
        for w in self.weights.values():
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.in_channels * self.kernel_size**3
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

    def groups(self) -> list[tuple[str, torch.Tensor, tuple[int, int, int]]]:
        """Non-empty groups as (name, weight (n, C_in, kd, kh, kw), padding) in channel order."""
        return [
            (name, w, tuple(s // 2 for s in w.shape[2:]))  # type: ignore[misc]
            for name, w in self.weights.items()
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, C_in, D, H, W)
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"CAKESConv3d: expected input (N, {self.in_channels}, D, H, W), "
                f"got {tuple(x.shape)}"
            )
        fast = self._fast
        if fast is not None and not torch.is_grad_enabled():
            # inference fast path: same input layout, threads and weights as the last call
            sig, stamp, prep = fast
            if sig == self._signature(x) and stamp == self._stamp():
                return plans.run(x, prep, self.stride)
        weights = list(self.weights.values())
        if self._impl != "fast":
            self.last_plan = "direct"
            return plans.forward(x, weights, self.bias, self.stride, self._impl)
        # groups share big conv calls (see cakes_lite/fast/plans.py)
        plan = self._plan or autotune.choose(x, weights, self.bias, self.stride,
                                             self.dense_allowed())
        self.last_plan = plan
        prep = self._prepare(weights, plan)
        self._fast = None
        if not torch.is_grad_enabled():
            self._fast = (self._signature(x), self._stamp(), prep)
        return plans.run(x, prep, self.stride)

    def dense_allowed(self) -> bool:
        """Whether the ``"dense"`` plan may compete: ``allow_dense``, or eval mode if None."""
        return (not self.training) if self.allow_dense is None else bool(self.allow_dense)

    def _signature(self, x: torch.Tensor) -> tuple:
        """What the plan choice depends on besides the weights."""
        return (x.shape, x.stride(), x.dtype, x.device, torch.get_num_threads(), self._impl,
                self._plan, self.dense_allowed(), autotune.generation())

    def _stamp(self) -> tuple:
        """Changes whenever a weight does (in-place version counter, storage, dtype, device)."""
        # the registries themselves, not self.parameters() or nn.Module.__getattr__ (~2 µs):
        # this runs on every cached inference call
        params = [*self._modules["weights"]._parameters.values(), self._parameters.get("bias")]
        return tuple((p._version, p.data_ptr(), p.dtype, p.device) for p in params
                     if p is not None)

    def _prepare(self, weights: list[torch.Tensor], plan: str) -> plans.Prepared:
        """The plan's calls on the current weights; cached while no gradient is recorded, and
        rebuilt whenever a weight changes (in-place version counter, storage, dtype or device)."""
        params = [*weights, *([] if self.bias is None else [self.bias])]
        if torch.is_grad_enabled() and any(p.requires_grad for p in params):
            return plans.prepare(weights, self.bias, self.stride, plan)  # autograd sees it
        stamp = self._stamp()
        hit = self._prepared.get(plan)
        if hit is None or hit[0] != stamp:
            with torch.no_grad():
                hit = (stamp, plans.prepare(weights, self.bias, self.stride, plan))
            # one entry per plan while the weights stay the same (plans compared in a network
            # by cakes_lite.deploy.network_tuning alternate without re-preparing)
            self._prepared = {k: v for k, v in self._prepared.items() if v[0] == stamp}
            self._prepared[plan] = hit
        return hit[1]

    def dense_weight(self) -> torch.Tensor:
        """The equivalent (out, in, k, k, k) kernel: each sub-kernel embedded at the centre.

        ``F.conv3d(x, layer.dense_weight(), layer.bias, layer.stride, layer.kernel_size // 2)``
        equals ``layer(x)``.
        """
        # each (n, C_in, kd, kh, kw) embedded at the centre of (n, C_in, k, k, k)
        return plans.dense_kernel(list(self.weights.values()), self.kernel_size)

    @classmethod
    def from_conv(cls, conv: nn.Module, split: Mapping[str, int], init: str = "sum", *,
                  name: str | None = None) -> CAKESConv3d:
        """Build a CAKESConv3d that replaces ``conv`` (same in/out channels, stride, bias).

        Args:
            conv: a cubic, odd-kernel conv with groups=1, dilation=1, zero padding k//2: an
                ``nn.Conv3d`` (or a subclass keeping its forward) or a type registered with
                :func:`cakes_lite.register_conv_type`; checked exactly as :func:`cakes_lite.shrink`
                checks it.
            split: channel counts summing to ``conv.out_channels``.
            init: ``"sum"`` (each channel's dense kernel summed over the shrunk axes: exact for
                inputs constant along them), ``"centre"`` (the central slice) or ``"random"``.
            name: the layer's name for error messages.

        Raises:
            ValueError: a conv it cannot replace exactly (naming the layer and what is wrong),
                a bad split or init.
        """
        if init not in ("sum", "centre", "random"):
            raise ValueError(f"init: expected 'sum', 'centre' or 'random', got {init!r}")
        g = check_conv(name, conv)
        layer = cls(g.in_channels, split, g.kernel_size[0], g.stride, bias=g.bias is not None)
        if layer.out_channels != g.out_channels:
            raise ValueError(
                f"split: must sum to conv.out_channels={g.out_channels}, "
                f"got {layer.out_channels} ({layer.split})"
            )
        layer = layer.to(device=g.weight.device, dtype=g.weight.dtype)
        if init == "random":
            return layer
        with torch.no_grad():
            start = 0
            for sub, w, _ in layer.groups():
                n = w.shape[0]
                w.copy_(subkernel_weight(g.weight[start : start + n], sub, init))
                start += n
            if g.bias is not None:
                layer.bias.copy_(g.bias)
        return layer

    def extra_repr(self) -> str:
        split = ", ".join(f"{n}={c}" for n, c in self.split.items())
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, [{split}]"
        if self.stride != (1, 1, 1):
            s += f", stride={self.stride}"
        if self.bias is None:
            s += ", bias=False"
        return s

    def macs_per_output_voxel(self) -> int:
        """Multiply-accumulates per output voxel (summed over all output channels)."""
        return sum(w[0].numel() * w.shape[0] for w in self.weights.values())
