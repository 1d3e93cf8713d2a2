"""Fast forward of :class:`cakes_lite.CAKESConv3d` (private helpers; used by ``ops.py``).

Why: running one ``F.conv3d`` per sub-kernel group (as the official code does) wastes much of
the saved MACs on CPU: oneDNN pads every convolution's output channels to blocks of 16 (22
channels cost as much as 32, 5 as much as 16), and a k×1×1 ``conv3d`` is pathologically slow
(as slow as the full k×k×k conv at 5 channels).

How ("tap folding"): split every sub-kernel along D into its k_d taps,

    y_c[d] = Σ_{t=0}^{k_d-1} (W_c[t] ⊛_{HW} x)[d + t - k_d//2],          (1)

where each W_c[t] is a 2D (k_h × k_w) kernel. All taps of the groups that share a 2D kernel shape
run as ONE ``conv2d`` over the frames (D folded into the batch: a free view in channels_last_3d),
so the channel padding is paid once per family instead of once per group. Centre taps land
directly in the output; the other taps are shifted along D and added (the sum in (1)). A k×k×k
group may keep 16-multiples of its channels in a plain ``conv3d`` when a small cost model
(measured constants below) says so; k×1×1 / 1×1×1 groups run as a (k_d, 1) ``conv2d`` over
(N, C, D, H·W), a free view, with no adds. Temporal stride > 1: ``conv3d`` per group, except
for those. (One conv3d with the zero-embedded dense kernel would beat this for many tiny groups,
but would do MACs the layer does not have; not used.) Everything runs in channels_last_3d
memory; the output is assembled in one pass forward and backward (:class:`_Assemble`).
Measured by benchmarks/layer_speed.py; equality with the dense reference in tests/test_speed.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CL3D = torch.channels_last_3d
_BLOCK = 16  # oneDNN pads output channels to multiples of this
#: cost model in multiply-accumulates per output voxel, fitted on 1 thread (torch 2.13, AVX-512,
#: 2×64×8×28×28 and 1×32×32×32×32): a conv call costs C_in·pad16(oc)·|kernel| (×1.15 for conv2d)
#: + 75·pad16(oc) (writing) + 33·C_in (reading); a shifted add 180 per channel; assembling the
#: output from several calls costs the same whichever split is chosen.
_COST_2D, _PER_OC, _PER_CIN, _PER_ADD = 1.15, 75, 33, 180


def direct(x, weights, bias, stride):
    """Reference path: one ``conv3d`` per group (same padding), concatenated along channels."""
    outs, start = [], 0
    for w in weights:
        n = w.shape[0]
        b = None if bias is None else bias[start : start + n]
        outs.append(F.conv3d(x, w, b, stride, tuple(s // 2 for s in w.shape[2:])))
        start += n
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)


def _padded(n: int) -> int:
    return -(-n // _BLOCK) * _BLOCK


def _call_cost(c_in: int, oc: int, volume: int, conv2d: bool = False) -> float:
    """Modelled cost of one conv call with ``oc`` output channels and a kernel of ``volume``."""
    if oc == 0:
        return 0.0
    macs = c_in * _padded(oc) * volume * (_COST_2D if conv2d else 1.0)
    return macs + _PER_OC * _padded(oc) + _PER_CIN * c_in


def _direct_count(c_in: int, n_deep: int, kd: int, n_flat: int, area: int):
    """How many channels of a family's k_d > 1 group to run as conv3d (the rest, and the
    family's k_d = 1 group, are tap-folded into one conv2d), and the modelled cost."""
    best = None
    for m in sorted({*range(0, n_deep, _BLOCK), n_deep}):
        rest = n_deep - m
        cost = (_call_cost(c_in, m, kd * area) + _call_cost(c_in, kd * rest + n_flat, area, True)
                + _PER_ADD * (kd - 1) * rest)
        if best is None or cost < best[1]:
            best = (m, cost)
    return best


def _last(y: torch.Tensor) -> torch.Tensor:
    # (N, n, D, H, W) -> (N, D, H, W, n), a view for channels_last_3d memory
    return y.permute(0, 2, 3, 4, 1)


def _plan(weights, bias, stride):
    """Split the groups into calls: conv3d pieces, (k_d,1) conv2d pieces and folded taps.

    Returns (direct, columns, taps, biases): direct = [(group, channel slice)] for conv3d,
    columns = [group] for (k_d, 1) conv2d, taps = {(kh, kw): [(group, channel offset, D offset,
    weight (m, C, kh, kw), bias or None)]}, biases per group. Every call does only the
    sub-kernels' own multiply-accumulates (FlopCounterMode sees exactly the analytic MACs).
    """
    biases, start = [], 0
    for w in weights:
        biases.append(None if bias is None else bias[start : start + w.shape[0]])
        start += w.shape[0]
    c_in = weights[0].shape[1]
    direct_pieces, columns, taps = [], [], {}
    families: dict[tuple[int, int], list[int]] = {}
    for g, w in enumerate(weights):
        if w.shape[3] == w.shape[4] == 1:
            columns.append(g)
        elif stride[0] != 1:
            direct_pieces.append((g, slice(0, w.shape[0])))
        else:
            families.setdefault(tuple(w.shape[3:]), []).append(g)
    for (kh, kw), groups in families.items():
        deep = [g for g in groups if weights[g].shape[2] > 1]
        n_flat = sum(weights[g].shape[0] for g in groups if weights[g].shape[2] == 1)
        n_deep = sum(weights[g].shape[0] for g in deep)
        m = 0  # channels of the (at most one) k_d > 1 group run as conv3d
        if deep:
            m, _ = _direct_count(c_in, n_deep, weights[deep[0]].shape[2], n_flat, kh * kw)
        fam_taps = []
        for g in groups:
            w, b = weights[g], biases[g]
            kd, mg = w.shape[2], (m if g in deep else 0)
            if mg:
                direct_pieces.append((g, slice(0, mg)))
            for t in range(kd if mg < w.shape[0] else 0):
                bt = None if b is None or t != kd // 2 else b[mg:]
                fam_taps.append((g, mg, t - kd // 2, w[mg:, :, t], bt))
        if fam_taps:
            taps[(kh, kw)] = fam_taps
    return direct_pieces, columns, taps, biases


class _Assemble(torch.autograd.Function):
    """Output (N, D', H', W', C_out) from conv outputs ("sources"), by a recipe of entries
    (source, source channel, count, output channel, D offset dt): dt = 0 copies, dt != 0 adds
    shifted along D (eq. 1). Every output channel has one dt = 0 entry and every source channel
    one entry, so forward and backward are one pass each (autograd's slice/in-place backward
    would allocate and zero-fill a full-size gradient per slice)."""

    @staticmethod
    def forward(ctx, recipe, out_channels, *sources):
        ctx.recipe, ctx.shapes = recipe, [s.shape for s in sources]
        n, depth, h, w, _ = sources[0].shape
        out = sources[0].new_empty(n, depth, h, w, out_channels)
        for src, slo, cnt, olo, dt in sorted(recipe, key=lambda e: e[4] != 0):
            o, z = out[..., olo : olo + cnt], sources[src][..., slo : slo + cnt]
            if dt == 0:
                o.copy_(z)
            # eq. (1): y[d] += z_t[d + dt] for 0 <= d + dt < D
            elif 0 < dt < depth:
                o[:, : depth - dt] += z[:, dt:]
            elif -depth < dt < 0:
                o[:, -dt:] += z[:, : depth + dt]
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        depth = grad.shape[1]
        grads = [grad.new_empty(shape) for shape in ctx.shapes]
        for src, slo, cnt, olo, dt in ctx.recipe:
            g, o = grads[src][..., slo : slo + cnt], grad[..., olo : olo + cnt]
            if dt == 0:
                g.copy_(o)
            elif abs(dt) >= depth:
                g.zero_()
            elif dt > 0:
                g[:, dt:].copy_(o[:, : depth - dt])
                g[:, :dt].zero_()
            else:
                g[:, : depth + dt].copy_(o[:, -dt:])
                g[:, depth + dt :].zero_()
        return (None, None, *grads)


def fast(x: torch.Tensor, weights: list[torch.Tensor], bias, stride) -> torch.Tensor:
    """Fast forward (module docstring): same result as :func:`direct`, any stride.

    Args:
        x: (N, C_in, D, H, W).
        weights: per group, in output-channel order, (n_g, C_in, kd, kh, kw).
        bias: (C_out,) or None.
        stride: (s_d, s_h, s_w).

    Returns:
        (N, C_out, D', H', W') in channels_last_3d memory.
    """
    n_batch, c_in, depth, height, width = x.shape
    sd, sh, sw = stride
    x = x.contiguous(memory_format=CL3D)  # memory (N, D, H, W, C)
    d_out, h_out, w_out = [(s - 1) // st + 1 for s, st in zip(x.shape[2:], stride)]
    direct_pieces, columns, taps, biases = _plan(weights, bias, stride)
    starts = [0]
    for w in weights:
        starts.append(starts[-1] + w.shape[0])
    sources, recipe = [], []  # sources: (N, D', H', W', M); recipe: see _Assemble
    for g, sl in direct_pieces:
        w, b = weights[g], biases[g]
        pad = tuple(s // 2 for s in w.shape[2:])
        y = F.conv3d(x, w[sl], None if b is None else b[sl], stride, pad)
        recipe.append((len(sources), 0, y.shape[1], starts[g] + sl.start, 0))
        sources.append(_last(y))
    if columns:
        # (N, C, D, H, W) -> (N, C, D, H'·W'), a view in channels_last_3d when s_h = s_w = 1
        xs = _last(x[:, :, :, ::sh, ::sw]).reshape(n_batch, depth, h_out * w_out, c_in)
        xs = xs.permute(0, 3, 1, 2)
        for g in columns:
            kd = weights[g].shape[2]
            y = F.conv2d(xs, weights[g][..., 0], biases[g], (sd, 1), (kd // 2, 0))
            recipe.append((len(sources), 0, y.shape[1], starts[g], 0))
            # (N, n, D', H'·W') -> (N, D', H', W', n)
            sources.append(y.permute(0, 2, 3, 1).reshape(n_batch, d_out, h_out, w_out, -1))
    # fold D into the batch: (N, C, D, H, W) -> (N·D, C, H, W), a view in channels_last
    xf = x.transpose(1, 2).reshape(n_batch * depth, c_in, height, width)
    for (kh, kw), fam in taps.items():
        wf = torch.cat([tap[3] for tap in fam])  # (M, C, kh, kw)
        bf = None
        if bias is not None:
            bf = torch.cat([tap[4] if tap[4] is not None else tap[3].new_zeros(tap[3].shape[0])
                            for tap in fam])
        z = F.conv2d(xf, wf, bf, (sh, sw), (kh // 2, kw // 2))  # (N·D, M, H', W')
        pos = 0
        for g, off, dt, w2, _ in fam:
            recipe.append((len(sources), pos, w2.shape[0], starts[g] + off, dt))
            pos += w2.shape[0]
        sources.append(z.permute(0, 2, 3, 1).reshape(n_batch, depth, h_out, w_out, -1))
    if len(sources) == 1 and len(recipe) == 1:
        return sources[0].permute(0, 4, 1, 2, 3).contiguous(memory_format=CL3D)
    out = _Assemble.apply(recipe, starts[-1], *sources)  # (N, D', H', W', C_out)
    return out.permute(0, 4, 1, 2, 3)


def forward(x, weights, bias, stride, impl: str = "fast"):
    """``"fast"`` (:func:`fast`), ``"direct"`` (one conv3d per group, as the official code) or
    ``"direct_cl"`` (the same on channels_last_3d memory)."""
    if impl == "fast":
        return fast(x, weights, bias, stride)
    if impl == "direct_cl":
        x = x.contiguous(memory_format=CL3D)
    elif impl != "direct":
        raise ValueError(f"impl: expected 'fast', 'direct' or 'direct_cl', got {impl!r}")
    return direct(x, weights, bias, stride)
