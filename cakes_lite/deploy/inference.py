"""Inference-only rewrites that keep outputs equal (up to float rounding) and cut time.

* :func:`fold_batchnorm`: every ``Conv → BatchNorm`` pair (conv output read by the BN only)
  becomes one conv with scaled weights and a bias,

      BN(W ⊛ x + b) = (γ/σ)·W ⊛ x + (γ/σ)·(b − μ) + β,   σ = sqrt(running_var + eps),

  for ``nn.Conv1d/2d/3d`` and :class:`cakes_lite.CAKESConv3d` (each output channel has its own
  sub-kernel, so scaling its filter is exact). Pairs are found by data flow with ``torch.fx``;
  a module whose forward does not trace (e.g. shape-dependent Python) is handled child by child.
* :func:`for_inference`: an eval-mode copy with BN folded and everything in
  ``torch.channels_last_3d`` memory from the input on (5D weights too), so no layer converts
  memory formats (CAKESConv3d computes and returns channels_last_3d anyway); plain Conv3d layers
  go through :func:`cakes_lite.fast.plans.conv` (oneDNN for a single sample too), as CAKESConv3d's
  own calls do - applied to a 3D parent as well, it keeps comparisons fair; a
  ``ConvTranspose3d`` whose kernel equals its stride (U-Net up-sampling) becomes one matrix
  product (``_UpConv3d``). Given ``example=x``, it also times each CAKES layer's plans inside
  the whole network (:mod:`cakes_lite.deploy.network_tuning`), pins the winners, and turns
  layers pinned to ``"dense"`` into the plain conv they run.

The caller's model is never changed. Speed: ``benchmarks/model_speed.py``.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import fx, nn

from ..fast import plans
from ..ops import CAKESConv3d
from .network_tuning import tune_plans

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, CAKESConv3d)
_BNS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class _Tracer(fx.Tracer):
    """torch.fx tracer that keeps CAKESConv3d (shape checks in its forward) as one call."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, CAKESConv3d) or super().is_leaf_module(m, qualname)


@torch.no_grad()
def _fold(conv: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> None:
    """Fold ``bn`` (eval statistics) into ``conv`` in place (adds a bias if it has none)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else \
        torch.rsqrt(bn.running_var + bn.eps)
    shift = -bn.running_mean * scale + (bn.bias if bn.affine else 0)
    if conv.bias is not None:
        shift = shift + conv.bias * scale
    if isinstance(conv, CAKESConv3d):
        start = 0
        for w in conv.weights.values():  # (n_g, C_in, kd, kh, kw): rows start … start + n_g
            w.mul_(scale[start : start + w.shape[0]].view(-1, 1, 1, 1, 1).to(w.dtype))
            start += w.shape[0]
    else:
        conv.weight.mul_(scale.view(-1, *[1] * (conv.weight.dim() - 1)).to(conv.weight.dtype))
    conv.bias = nn.Parameter(shift.to(bn.running_mean.dtype))


def _foldable(conv: object, bn: object) -> bool:
    return (isinstance(conv, _CONVS) and isinstance(bn, _BNS) and bn.running_mean is not None
            and bn.track_running_stats and getattr(conv, "out_channels", -1) == bn.num_features)


def _fold_graph(module: nn.Module) -> nn.Module | None:
    """Fold the pairs of one traceable module; None if its forward does not trace."""
    try:
        graph = _Tracer().trace(module)
    except Exception:  # noqa: BLE001 - any tracing failure: fall back to the children
        return None
    gm = fx.GraphModule(module, graph)
    modules = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or len(node.args) != 1 or node.kwargs:
            continue
        prev = node.args[0]
        if not isinstance(prev, fx.Node) or prev.op != "call_module" or len(prev.users) != 1:
            continue
        conv, bn = modules[prev.target], modules[node.target]
        if _foldable(conv, bn):
            _fold(conv, bn)
            node.replace_all_uses_with(prev)
            gm.graph.erase_node(node)
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm


def _fold_tree(module: nn.Module) -> nn.Module:
    if isinstance(module, CAKESConv3d) or next(module.children(), None) is None:
        return module  # a single layer: nothing to pair inside
    folded = _fold_graph(module)
    if folded is not None:
        return folded
    for name, child in module.named_children():
        setattr(module, name, _fold_tree(child))
    return module


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with every Conv → BatchNorm pair folded into the conv.

    Args:
        model: any module; BNs must have running statistics (``track_running_stats=True``).

    Returns:
        A new module (a ``torch.fx.GraphModule`` where the forward traces) computing the same
        function in eval mode; for inference only (the folded BN no longer trains).
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: expected an nn.Module, got {type(model).__name__}")
    return _fold_tree(copy.deepcopy(model).eval())


class ChannelsLast3d(nn.Module):
    """Runs ``model`` on ``x.contiguous(memory_format=torch.channels_last_3d)`` (5D inputs)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, C, D, H, W) in any memory format -> the same values in (N, D, H, W, C) memory
        if x.dim() == 5:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        return self.model(x)


class _Conv3d(nn.Module):
    """An ``nn.Conv3d`` run through :func:`cakes_lite.fast.plans.conv` (oneDNN also for a batch of
    one sample on CPU, where PyTorch picks a slow im2col kernel), output in channels_last_3d
    memory (a conv with one input channel would otherwise return NCDHW, which every later layer
    inherits)."""

    def __init__(self, conv: nn.Conv3d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        y = plans.conv(x, c.weight, c.bias, c.stride, c.padding, c.dilation, c.groups)
        return y.contiguous(memory_format=torch.channels_last_3d)

    def cakes_macs(self, inputs: tuple, out: torch.Tensor) -> int:
        """For :func:`cakes_lite.profile` (the wrapped conv's own forward never runs)."""
        c = self.conv
        return out.numel() * (c.in_channels // c.groups) * math.prod(c.kernel_size)


class _UpConv3d(nn.Module):
    """An ``nn.ConvTranspose3d`` whose kernel equals its stride (no padding, dilation or groups:
    the 2×2×2 / stride-2 up-sampling of U-Nets) as ONE matrix product: every input voxel
    writes its own k_d×k_h×k_w output block,

        y[n, o, d·k_d + a, h·k_h + b, w·k_w + c] = Σ_i x[n, i, d, h, w] · W[i, o, a, b, c] + b_o,

    so in channels_last_3d memory it is (N·D·H·W, C_in) @ (C_in, C_out·k_d·k_h·k_w) and one
    copy that interleaves the blocks. PyTorch's CPU kernel for it (``slow_conv_transpose3d``,
    picked for a batch of one sample) took ~15 % of a small U-Net's inference time, and it
    returns NCDHW memory, which costs another full copy."""

    def __init__(self, conv: nn.ConvTranspose3d) -> None:
        super().__init__()
        self.conv = conv

    def cakes_macs(self, inputs: tuple, out: torch.Tensor) -> int:
        """For :func:`cakes_lite.profile`: each input voxel writes C_out · |kernel| outputs."""
        c = self.conv
        return inputs[0].numel() * c.out_channels * math.prod(c.kernel_size)

    @staticmethod
    def applies(conv: nn.Module) -> bool:
        return (type(conv).forward is nn.ConvTranspose3d.forward
                and isinstance(conv, nn.ConvTranspose3d) and conv.groups == 1
                and tuple(conv.kernel_size) == tuple(conv.stride)
                and tuple(conv.padding) == (0, 0, 0) and tuple(conv.output_padding) == (0, 0, 0)
                and tuple(conv.dilation) == (1, 1, 1) and conv.padding_mode == "zeros")

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        c = self.conv
        if output_size is not None or x.dim() != 5 or x.device.type != "cpu" or \
                plans.traced():
            return c(x, output_size) if output_size is not None else \
                c(x).contiguous(memory_format=torch.channels_last_3d)
        n, c_in, d, h, w = x.shape
        kd, kh, kw = c.kernel_size
        c_out = c.out_channels
        # (N, C_in, D, H, W) -> (N·D·H·W, C_in): a view in channels_last_3d memory
        rows = x.permute(0, 2, 3, 4, 1).reshape(-1, c_in)
        # weight (C_in, C_out, kd, kh, kw) -> (C_in, kd·kh·kw·C_out), C_out innermost
        weight = c.weight.permute(0, 2, 3, 4, 1).reshape(c_in, -1)
        y = rows @ weight if c.bias is None else \
            torch.addmm(c.bias.repeat(kd * kh * kw), rows, weight)
        # (N, D, H, W, kd, kh, kw, C_out) -> (N, D, kd, H, kh, W, kw, C_out): interleave
        y = y.view(n, d, h, w, kd, kh, kw, c_out).permute(0, 1, 4, 2, 5, 3, 6, 7)
        out = torch.empty((n, c_out, d * kd, h * kh, w * kw), dtype=y.dtype, device=y.device,
                          memory_format=torch.channels_last_3d)
        out.permute(0, 2, 3, 4, 1).view(n, d, kd, h, kh, w, kw, c_out).copy_(y)
        return out


def _wrap_convs(module: nn.Module) -> None:
    for name, child in module.named_children():
        plain = (type(child).forward is nn.Conv3d.forward and isinstance(child, nn.Conv3d)
                 and child.padding_mode == "zeros" and not isinstance(child.padding, str))
        if plain:
            setattr(module, name, _Conv3d(child))
        elif _UpConv3d.applies(child):
            setattr(module, name, _UpConv3d(child))
        elif isinstance(child, nn.ConvTranspose3d):  # N = 1 returns NCDHW
            setattr(module, name, nn.Sequential(child, ChannelsLast3d(nn.Identity())))
        else:
            _wrap_convs(child)


def for_inference(model: nn.Module, fold_bn: bool = True, channels_last: bool = True,
                  allow_dense: bool = True, example: torch.Tensor | None = None,
                  tuning: dict | None = None) -> nn.Module:
    """An eval-mode copy of ``model`` tuned for inference (see the module docstring).

    Args:
        model: any module (a plain 3D network or a shrunk CAKES one).
        fold_bn: fold Conv → BatchNorm pairs (:func:`fold_batchnorm`).
        channels_last: keep activations and 5D weights in ``torch.channels_last_3d``.
        allow_dense: let each CAKESConv3d's autotuning also time the ``"dense"`` plan (one conv
            with the zero-embedded k×k×k kernel: the parent layer's MACs) and use it where it is
            faster, so no layer is slower than its 3D parent; the layer's ``last_plan`` says
            ``"dense"`` then. False: every layer does only its own MACs.
        example: an input of the shape you will serve: each CAKESConv3d's plan is then chosen
            by timing the whole network (:func:`cakes_lite.deploy.network_tuning.tune_plans`;
            a plan that wins alone can lose inside the network) and pinned: whole forwards
            per layer where that is cheap, else every layer timed in place at once (a
            ResNet-50 I3D in seconds). None: plans measured per layer on first use.
        tuning: keyword arguments for :func:`cakes_lite.deploy.network_tuning.tune_plans`
            (``method``, ``repeats``, ``margin``, ``budget_s``, ``report``).

    Returns:
        A new module; call it under ``torch.inference_mode()`` (or ``no_grad``) for best speed.

    Example::

        fast = cl.for_inference(model)
        with torch.inference_mode():
            logits = fast(clips)  # (N, C, T, H, W) -> same as model.eval()(clips)
    """
    out = fold_batchnorm(model) if fold_bn else copy.deepcopy(model).eval()
    for m in out.modules():
        if isinstance(m, CAKESConv3d):
            m.allow_dense = allow_dense
    if channels_last:
        _wrap_convs(out)
        out = ChannelsLast3d(out.to(memory_format=torch.channels_last_3d))
    out = out.eval()
    if example is not None and any(isinstance(m, CAKESConv3d) for m in out.modules()):
        tune_plans(out, example, **(tuning or {}))
        _replace_dense(out)
    return out


def _replace_dense(module: nn.Module) -> None:
    """CAKESConv3d layers pinned to the ``"dense"`` plan become plain convs of their
    zero-embedded kernel (the same call): the layer's per-call plan checks cost ~7 µs, 4 % of a
    small video network at batch 1. The conv keeps ``last_plan = "dense"`` and the ``split``."""
    for name, child in module.named_children():
        if isinstance(child, CAKESConv3d) and child.plan == "dense":
            k, w = child.kernel_size, next(iter(child.weights.values()))
            conv = nn.Conv3d(child.in_channels, child.out_channels, k, child.stride, k // 2,
                             bias=child.bias is not None, device=w.device, dtype=w.dtype)
            with torch.no_grad():
                conv.weight.copy_(child.dense_weight())
                if child.bias is not None:
                    conv.bias.copy_(child.bias)
            wrapped = _Conv3d(conv.to(memory_format=torch.channels_last_3d).eval())
            wrapped.last_plan, wrapped.split = "dense", dict(child.split)
            setattr(module, name, wrapped)
        else:
            _replace_dense(child)
