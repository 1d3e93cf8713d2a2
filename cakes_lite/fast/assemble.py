"""Assembling a CAKES layer's output from its grouped conv calls (used by ``plans.run``).

Each conv call of a plan is a *source* (N, D', H', W', M) in channels_last_3d memory; a *recipe*
of entries (source, source channel, count, output channel, D offset dt) says where its channels
go: dt = 0 copies, dt != 0 adds shifted along D, which is the sum over depth taps

    y_c[d] = Σ_{t=0}^{k_d-1} (W_c[t] ⊛_{HW} x)[d + t - k_d//2].          (1)
"""

from __future__ import annotations

import torch


class Assemble(torch.autograd.Function):
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
        for src, slo, cnt, olo, dt in recipe:  # copies (dt = 0) first
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


def assemble_traceable(recipe, out_channels: int, sources: list[torch.Tensor]) -> torch.Tensor:
    """What :class:`Assemble` computes, from out-of-place ops only (slices, zero-padded shifts,
    adds, one cat), for ``torch.export`` / ONNX / ``torch.compile`` graphs."""
    depth = sources[0].shape[1]
    pieces = []
    for src, slo, cnt, olo, dt in sorted((e for e in recipe if e[4] == 0), key=lambda e: e[3]):
        y = sources[src][..., slo : slo + cnt]
        for s2, sl2, c2, ol2, dt2 in recipe:
            if dt2 == 0 or ol2 != olo or abs(dt2) >= depth:
                continue
            z = sources[s2][..., sl2 : sl2 + c2]  # (N, D, H, W, cnt)
            zeros = z.new_zeros(z.shape[0], abs(dt2), *z.shape[2:])
            # eq. (1): y[d] += z[d + dt] where 0 <= d + dt < D, zero elsewhere
            z = torch.cat([z[:, dt2:], zeros], 1) if dt2 > 0 else torch.cat([zeros, z[:, :dt2]], 1)
            y = y + z
        pieces.append(y)
    return torch.cat(pieces, -1) if len(pieces) > 1 else pieces[0]
