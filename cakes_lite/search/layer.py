"""The supernet layer :class:`SearchConv3d` (paper §3.2; walkthrough: ``notebooks/02_search.ipynb``).

A SearchConv3d replacing a k×k×k conv with C_out outputs holds, for each of the n candidate
sub-kernels of the search space, a full set of C_out filters, and one BatchNorm3d over all
n·C_out *candidate channels*. Candidate j = i·C_out + c is filter c of sub-kernel i (canonical
order, ``kxkxk`` first); its BN scale |γ_j| is its importance. Two ways to train it:

* **performance priority** (CAKES^P): each training step samples exactly C_out of the n·C_out
  candidates — for every output channel c one of its n candidates (i, c), uniformly — and runs
  conv + BN for those only: the sampled filters are gathered from the sub-kernels' weights and
  zero-embedded into one (C_out, C_in, k, k, k) kernel, so a step costs about what the original
  layer costs (one conv3d of C_out filters; nothing of the other candidates is computed) and
  the next layer always sees C_out channels. We sample per channel rather than any C_out of
  the n·C_out (the official code) so that channel c always carries "feature c" computed by one
  of its sub-kernels: the next layer's weights keep a meaning from step to step, the supernet
  learns in tens of steps instead of hundreds, and γ_{i,c} measures how well sub-kernel i can
  produce feature c. BN uses the sampled channels' γ, β and running statistics, and the
  updated statistics are written back (the official code updates copies). In eval mode every
  channel c uses its current best candidate, argmax_i |γ_{i,c}| (ties: round robin).
* **cost priority** (CAKES^C): all n·C_out candidates run; output channel c is the *sum* of
  its n candidates after BN,  y_c = Σ_i (γ_{i,c} · x̂_{i,c} + β_{i,c}).  We sum rather than
  concatenate because the next layer is the model's own and expects C_out channels, and because
  then every γ_{i,c} is a per-channel, per-sub-kernel gate: L1 on the γ (weighted by the
  sub-kernel's cost, :func:`~cakes_lite.sparsity_step`) switches expensive candidates off
  where the cheap ones suffice, and the survivors keep computing the same channel c. γ start at
  γ_0/n so the sum starts at the scale of one BN. The supernet starts from an *even split*:
  all candidates are equal at the start, and the deterministic tie-break of
  :func:`rank_candidates` (round robin over sub-kernels) then derives the even split.

In both modes :func:`~cakes_lite.derive_layout` counts, as the paper does, the top C_out of the
n·C_out candidates by |γ| per layer; in performance mode that can differ by a few channels from
the per-channel argmax the eval-mode forward uses (which must give every channel one candidate).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .._helpers import check_kernel_size, triple
from ..convtypes import check_conv, subkernel_weight
from ..fast import plans
from ..kernels import kernel_shape, kernel_volume, resolve_space
from ..train.sync_bn import SyncBatchNorm3d, sync_batch_norm
from .distributed import agree
from .memory_format import memory_format, same_format_grad, sum_candidates

MODES = ("performance", "cost")


def check_mode(mode: object) -> str:
    if mode not in MODES:
        raise ValueError(f"mode: expected 'performance' or 'cost', got {mode!r}")
    return mode  # type: ignore[return-value]


def rank_candidates(scores: torch.Tensor) -> torch.Tensor:
    """Candidate indices, most important first, with a deterministic round-robin tie-break.

    Args:
        scores: (n, C_out) importance of candidate (sub-kernel i, channel c).

    Returns:
        (n·C_out,) flat indices j = i·C_out + c ordered by descending score, ties broken by
        channel c, then sub-kernel i (so equal scores give an even split, remainder to the
        first, most expensive sub-kernels, as :func:`cakes_lite.kernels.even_split`).
    """
    n, c_out = scores.shape
    # tie-break order: (c, i) -> j = i·C_out + c; a stable sort by -score keeps it among ties
    tie = torch.arange(n * c_out).view(n, c_out).t().reshape(-1)
    flat = scores.detach().reshape(-1).cpu().to(torch.float64)  # .cpu() first: MPS has no f64
    order = torch.sort(-flat[tie], stable=True).indices
    return tie[order]


class SearchConv3d(nn.Module):
    """Supernet layer: n candidate sub-kernels × C_out filters, one BN over n·C_out channels.

    Args:
        in_channels: C_in.
        out_channels: C_out, the width the next layer sees in both modes.
        candidates: a space name (``"video-123d"``) or a list of sub-kernel names.
        kernel_size: odd k of the layer this replaces.
        stride: int or (d, h, w).
        mode: ``"performance"`` (sample C_out candidates per step) or ``"cost"`` (run all,
            sum the n candidates of each channel); settable later via ``layer.mode = …``.

    Shapes:
        input (N, C_in, D, H, W) -> output (N, C_out, D', H', W'), as
        ``nn.Conv3d(C_in, C_out, k, stride, padding=k//2)`` followed by BN.

    Attributes:
        output_size: (D', H', W') of the last forward (used for MACs in derive_layout).
        last_counts: sub-kernel -> channels computed in the last forward.
        impl: how performance mode convolves: ``"dense"`` (default: the C_out sampled filters
            zero-embedded in k×k×k kernels, one conv3d: on CPU a split layer is barely faster
            than the full conv at these widths, and this needs no extra calls) or
            ``"fast"`` / ``"direct"`` (one call per sub-kernel family,
            :mod:`cakes_lite.fast.plans`).
            Cost mode always groups (``"fast"`` unless ``"direct"``).
    """

    def __init__(self, in_channels: int, out_channels: int, candidates="video-123d",
                 kernel_size: int = 3, stride=1, mode: str = "performance") -> None:
        super().__init__()
        for what, v in (("in_channels", in_channels), ("out_channels", out_channels)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{what}: expected a positive int, got {v!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.candidates = resolve_space(candidates)
        self.kernel_size = check_kernel_size(kernel_size)
        self.stride = triple(stride, "stride")
        self._mode = check_mode(mode)
        n = len(self.candidates)
        self.weights = nn.ParameterDict({
            name: nn.Parameter(torch.empty(out_channels, in_channels,
                                           *kernel_shape(name, kernel_size)))
            for name in self.candidates
        })
        self.bn = nn.BatchNorm3d(n * out_channels)
        self.output_size: tuple[int, ...] | None = None
        self.last_counts: dict[str, int] | None = None
        self.source_bn: str | None = None  # name of the model's BN this layer absorbed
        self.impl = "dense"  # see the class docstring
        self.sampling_power = 0.0  # performance mode: 0 = uniform sampling (see sample())
        self.reset_parameters()

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        self._mode = check_mode(value)

    def reset_parameters(self) -> None:
        """Filters like ``nn.Conv3d`` of each kernel shape; γ = 1 (performance) or 1/n (cost)."""
        for w in self.weights.values():
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))
        self.bn.reset_parameters()
        if self._mode == "cost":
            with torch.no_grad():
                self.bn.weight.fill_(1.0 / len(self.candidates))

    # -- importance and selection ---------------------------------------------------------
    def importance(self) -> torch.Tensor:
        """(n, C_out) |γ| of every candidate channel (detached)."""
        return self.bn.weight.detach().abs().view(len(self.candidates), self.out_channels)

    def _per_channel(self, op: torch.Tensor) -> torch.Tensor:
        """Flat indices in channel order, idx[c] = op[c]·C_out + c, for one sub-kernel per c."""
        c_out = self.out_channels
        return (op.cpu() * c_out + torch.arange(c_out)).to(self.bn.weight.device)

    def selected(self) -> torch.Tensor:
        """Eval mode: per channel c the candidate with the largest |γ_{i,c}| (ties: the
        sub-kernel (c + t) mod n for the smallest t, i.e. round robin), as flat indices
        in channel order."""
        n, c_out = len(self.candidates), self.out_channels
        scores = self.importance().cpu().to(torch.float64)  # (n, C_out); .cpu() first (MPS: no f64)
        # rotate each column so that index t means sub-kernel (c + t) mod n; argmax takes the
        # first maximum, which is the round-robin tie-break
        shift = (torch.arange(n).view(n, 1) + torch.arange(c_out).view(1, c_out)) % n
        t = torch.gather(scores, 0, shift).argmax(dim=0)
        return self._per_channel((torch.arange(c_out) + t) % n)

    def sample(self) -> torch.Tensor:
        """Training: one candidate drawn per channel, as flat indices in channel order (exactly
        C_out of the n·C_out candidates): uniformly while ``sampling_power`` is 0 (the paper),
        else candidate i of channel c with probability ∝ |γ_{i,c}|^sampling_power. Under
        torchrun every process uses rank 0's draw (:func:`~.distributed.agree`)."""
        n, c_out = len(self.candidates), self.out_channels
        if not self.sampling_power:
            return agree(self._per_channel(torch.randint(n, (c_out,))))
        # p_{i,c} = |γ_{i,c}|^a / Σ_i' |γ_{i',c}|^a  (a tiny floor keeps every candidate alive)
        weights = self.importance().cpu().to(torch.float64).clamp_min(1e-6) ** self.sampling_power
        return agree(self._per_channel(torch.multinomial(weights.t(), 1).view(c_out)))

    def counts(self, idx: torch.Tensor) -> dict[str, int]:
        """Sub-kernel -> number of the flat candidate indices ``idx`` that belong to it."""
        per_op = torch.bincount(idx.cpu() // self.out_channels, minlength=len(self.candidates))
        return {name: int(c) for name, c in zip(self.candidates, per_op.tolist())}

    # -- forward --------------------------------------------------------------------------
    def _grouped(self, x: torch.Tensor, rows: list[torch.Tensor | None]) -> torch.Tensor:
        """The candidates' convolutions, groups concatenated in canonical order (one entry of
        ``rows`` per sub-kernel: filter indices to compute, None for all, empty to skip), in
        the memory format of ``x``."""
        weights = [w if r is None else w.index_select(0, r)  # only these filters are computed
                   for w, r in zip((self.weights[n] for n in self.candidates), rows)
                   if r is None or r.numel()]
        # groups share conv calls where that is faster (cakes_lite/fast/plans.py), as CAKESConv3d
        impl = "fast" if self.impl == "dense" else self.impl
        y = plans.forward(x, weights, None, self.stride, impl)
        # the input's format again (NCDHW, or channels_last_3d where the caller chose it, e.g.
        # run_search(channels_last=True)): BatchNorm's CPU backward is many times slower when
        # its input and incoming gradient differ in format
        return y.contiguous(memory_format=memory_format(x))

    def _embedded(self, op: torch.Tensor) -> torch.Tensor:
        """(C_out, C_in, k, k, k): filter c of sub-kernel op[c], zero-embedded at the centre."""
        k = self.kernel_size
        padded = []
        for name in self.candidates:
            w = self.weights[name]  # (C_out, C_in, kd, kh, kw)
            pd, ph, pw = ((k - s) // 2 for s in w.shape[2:])
            padded.append(F.pad(w, (pw, pw, ph, ph, pd, pd)))
        # (n, C_out, C_in, k, k, k) -> row (op[c], c) for every channel c
        return torch.stack(padded)[op, torch.arange(self.out_channels, device=op.device)]

    def _forward_subset(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        c_out, bn, fmt = self.out_channels, self.bn, memory_format(x)
        op = idx // c_out  # idx in channel order: idx[c] = op[c]·C_out + c
        if self.impl == "dense":
            # one conv3d with the C_out chosen filters embedded in k×k×k kernels: the time of
            # the plain layer, and nothing of the n·C_out - C_out other candidates is computed
            y = F.conv3d(x, self._embedded(op), None, self.stride, self.kernel_size // 2)
        else:  # one call per sub-kernel family (fast/plans.py), then back to channel order
            grouped = torch.sort(idx).values
            y = self._grouped(x, [grouped[grouped // c_out == i] % c_out
                                  for i in range(len(self.candidates))])
            y = y.index_select(1, torch.argsort(grouped % c_out))  # (N, C_out, D', H', W')
            y = y.contiguous(memory_format=fmt)
        track = bn.track_running_stats and bn.running_mean is not None
        update = self.training and track
        momentum = 0.0 if bn.momentum is None else bn.momentum
        if update:
            bn.num_batches_tracked.add_(1)
            if bn.momentum is None:  # cumulative average, as nn.BatchNorm3d does
                momentum = 1.0 / float(bn.num_batches_tracked)
        # indexing copies: F.batch_norm updates these copies, which we write back below
        mean = bn.running_mean[idx] if track else None
        var = bn.running_var[idx] if track else None
        weight = bn.weight[idx] if bn.affine else None
        bias = bn.bias[idx] if bn.affine else None
        # sync BN (run_search(sync_bn=True)): statistics of these channels over all processes
        norm = sync_batch_norm if isinstance(bn, SyncBatchNorm3d) else F.batch_norm
        y = norm(y, mean, var, weight, bias, self.training or not track, momentum, bn.eps)
        same_format_grad(y, fmt)
        if update:
            with torch.no_grad():
                bn.running_mean.index_copy_(0, idx, mean)
                bn.running_var.index_copy_(0, idx, var)
        return y

    def _forward_cost(self, x: torch.Tensor) -> torch.Tensor:
        n, c_out = len(self.candidates), self.out_channels
        y = self.bn(self._grouped(x, [None] * n))  # (N, n·C_out, D', H', W')
        same_format_grad(y, memory_format(x))
        # y_c = Σ_i (γ_{i,c} x̂_{i,c} + β_{i,c})
        return sum_candidates(y, n, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, C_in, D, H, W)
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"SearchConv3d: expected input (N, {self.in_channels}, D, H, W), "
                             f"got {tuple(x.shape)}")
        if self._mode == "cost":
            y = self._forward_cost(x)
            self.last_counts = {name: self.out_channels for name in self.candidates}
        else:
            idx = self.sample() if self.training else self.selected()
            y = self._forward_subset(x, idx)
            self.last_counts = self.counts(idx)
        self.output_size = tuple(y.shape[2:])
        return y

    def cakes_macs(self, inputs: tuple, output: torch.Tensor) -> int:
        """MACs of the last forward in the current mode (all n·C_out filters in cost mode,
        the C_out sampled or selected ones in performance mode); used by :func:`profile`."""
        counts = self.last_counts or {name: self.out_channels for name in self.candidates}
        per_voxel = sum(c * self.in_channels * kernel_volume(name, self.kernel_size)
                        for name, c in counts.items())
        return output.shape[0] * math.prod(output.shape[2:]) * per_voxel

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"candidates={list(self.candidates)}, mode={self._mode!r}")
        return s + (f", stride={self.stride}" if self.stride != (1, 1, 1) else "")

    # -- construction from a model's layers -------------------------------------------------
    @classmethod
    def from_conv(cls, conv: nn.Module, candidates, mode: str = "performance",
                  bn: nn.BatchNorm3d | None = None, init: str = "sum", *,
                  name: str | None = None) -> SearchConv3d:
        """A SearchConv3d for ``conv`` (same C_in, C_out, k, stride, device, dtype).

        Args:
            conv: a searchable conv, checked exactly as :func:`cakes_lite.shrink` checks it
                (:func:`cakes_lite.convtypes.check_conv`).
            candidates: space name or list of sub-kernels.
            mode: ``"performance"`` or ``"cost"``.
            bn: the model's BatchNorm3d consuming ``conv``'s output, absorbed (see
                :func:`cakes_lite.supernet`).
            init: ``"sum"`` (each candidate's filters = the dense filters summed over its shrunk
                axes, as :meth:`CAKESConv3d.from_conv`) or ``"random"``.
            name: the layer's name for error messages.

        Raises:
            ValueError: a conv it cannot replace exactly (naming the layer and what is wrong),
                a BN of the wrong width, a bad init.
        """
        if init not in ("sum", "random"):
            raise ValueError(f"init: expected 'sum' or 'random', got {init!r}")
        g = check_conv(name, conv)
        if bn is not None and bn.num_features != g.out_channels:
            raise ValueError(f"bn: expected {g.out_channels} features for layer "
                             f"{name or type(conv).__name__!r}, got {bn.num_features}")
        layer = cls(g.in_channels, g.out_channels, candidates, g.kernel_size[0], g.stride, mode)
        layer = layer.to(device=g.weight.device, dtype=g.weight.dtype)
        n = len(layer.candidates)
        with torch.no_grad():
            if init == "sum":
                for sub, w in layer.weights.items():
                    w.copy_(subkernel_weight(g.weight, sub, "sum"))
            if bn is not None:
                layer.bn.eps, layer.bn.momentum = bn.eps, bn.momentum
                share = 1.0 / n if mode == "cost" else 1.0  # the n candidates are summed in cost
                if bn.affine:
                    layer.bn.weight.copy_(bn.weight.repeat(n) * share)
                    layer.bn.bias.copy_(bn.bias.repeat(n) * share)
                if bn.running_mean is not None:
                    # the conv's bias b is dropped (β takes its role); with running statistics
                    # BN(conv(x) + b) = γ (conv(x) - (μ - b)) / σ + β, so μ absorbs it
                    mean = bn.running_mean - g.bias if g.bias is not None else bn.running_mean
                    layer.bn.running_mean.copy_(mean.repeat(n))
                    layer.bn.running_var.copy_(bn.running_var.repeat(n))
        return layer
