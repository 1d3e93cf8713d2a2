"""The forward plans of one CAKES layer: how :class:`cakes_lite.CAKESConv3d` (``ops.py``) and
:class:`cakes_lite.SearchConv3d` (``search/layer.py``) run their heterogeneous sub-kernel
convolutions. ``fast/autotune.py`` chooses among the plans per layer; the deploy wing uses
:func:`conv` (oneDNN for a single sample) and :func:`traced` too.

Why: running one ``F.conv3d`` per sub-kernel group (as the official code does) wastes much of
the saved MACs on CPU: oneDNN pads every convolution's output channels to blocks of 16 (22
channels cost as much as 32, 5 as much as 16), and a k×1×1 ``conv3d`` is pathologically slow
(as slow as the full k×k×k conv at 5 channels).

How ("tap folding"): split every sub-kernel along D into its k_d taps,

    y_c[d] = Σ_{t=0}^{k_d-1} (W_c[t] ⊛_{HW} x)[d + t - k_d//2],          (1)

where each W_c[t] is a 2D (k_h × k_w) kernel. All taps of the groups that share a 2D kernel shape
run as ONE ``conv2d`` over the frames (D folded into the batch: a free view in channels_last_3d),
so the channel padding is paid once per family instead of once per group. Centre taps land
directly in the output; the other taps are shifted along D and added (the sum in (1)).
k×1×1 / 1×1×1 groups run as a (k_d, 1) ``conv2d`` over (N, C, D, H·W) ("columns"), a free view.

A *plan* says which groups run how (:data:`PLANS`):

* ``"fold"``: every group with a 2D kernel part tap-folded as above, k×1×1 groups as columns;
* ``"mixed"``: as ``"fold"``, but 16-multiples of a family's k_d > 1 group may run as a plain
  ``conv3d`` where a small static cost model says so (the deterministic default);
* ``"conv3d"``: one ``conv3d`` per group (the official calls), assembled in channels_last_3d;
* ``"direct"``: the same calls on the input's own memory format, concatenated with ``torch.cat``
  (the official code's forward; its output keeps the input's memory format);
* ``"dense"``: one ``conv3d`` with the zero-embedded k×k×k kernel: the parent 3D layer's time
  and MACs; a candidate only where allowed (``allow_dense``, see cakes_lite/fast/autotune.py).

Temporal stride > 1: ``conv3d`` for every group but the columns, in every plan. Which plan is
fastest depends on the CPU/GPU, threads, dtype and shapes, so :mod:`cakes_lite.fast.autotune`
measures it once per shape and caches it (like ``torch.backends.cudnn.benchmark``). Everything
but ``"direct"`` runs in channels_last_3d memory; the output is assembled in one pass forward
and backward (cakes_lite/fast/assemble.py). Speed: benchmarks/layer_speed.py; equality with the
dense reference: tests/test_fast_plans.py and tests/test_ops.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .assemble import Assemble, assemble_traceable

CL3D = torch.channels_last_3d
PLANS = ("fold", "mixed", "conv3d", "direct", "dense")
_BLOCK = 16  # oneDNN pads output channels to multiples of this
#: static cost model of the "mixed" plan, in multiply-accumulates per output voxel (fitted on one
#: AVX-512 CPU, 1 thread): a call costs C_in·pad16(oc)·|kernel| (×1.15 for conv2d) + 75·pad16(oc)
#: + 33·C_in; a shifted add 180 per channel. Only a fallback: autotuning measures instead.
_COST_2D, _PER_OC, _PER_CIN, _PER_ADD = 1.15, 75, 33, 180

Weights = list[torch.Tensor]  # per group, in output-channel order: (n_g, C_in, kd, kh, kw)
Stride = tuple[int, int, int]


def direct(x: torch.Tensor, weights: Weights, bias: torch.Tensor | None,
           stride: Stride) -> torch.Tensor:
    """Reference path: one ``conv3d`` per group (same padding), concatenated along channels."""
    outs, start = [], 0
    for w in weights:
        n = w.shape[0]
        b = None if bias is None else bias[start : start + n]
        outs.append(F.conv3d(x, w, b, stride, tuple(s // 2 for s in w.shape[2:])))
        start += n
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)


def traced() -> bool:
    """True under jit tracing, torch.compile / export or a dispatch mode (FlopCounterMode, fake
    tensors): use only the public conv ops there."""
    return bool(torch.jit.is_tracing() or torch.compiler.is_compiling()
                or torch._C._len_torch_dispatch_stack() > 0
                or torch._C._is_torch_function_mode_enabled())


def conv(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, stride, padding,
         dilation=1, groups: int = 1) -> torch.Tensor:
    """``F.conv2d`` / ``F.conv3d``, except that a CPU float32 batch of ONE sample goes to oneDNN
    (``aten.mkldnn_convolution``) directly: for N = 1 and small inputs PyTorch's dispatcher picks
    its unvectorised im2col kernels (slow_conv3d, up to 40× slower for 3×3×3 on a 16×8×16×16
    input), which it only avoids for N > 1. Same values, gradients included."""
    if (x.shape[0] == 1 and x.device.type == "cpu" and x.dtype == torch.float32
            and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
            and not traced()):
        nd = x.dim() - 2
        tup = (lambda v: [v] * nd if isinstance(v, int) else list(v))
        return torch.ops.aten.mkldnn_convolution(x, w, b, tup(padding), tup(stride),
                                                 tup(dilation), groups)
    return (F.conv3d if x.dim() == 5 else F.conv2d)(x, w, b, stride, padding, dilation, groups)


def _padded(n: int) -> int:
    return -(-n // _BLOCK) * _BLOCK


def _call_cost(c_in: int, oc: int, volume: int, conv2d: bool = False) -> float:
    if oc == 0:
        return 0.0
    macs = c_in * _padded(oc) * volume * (_COST_2D if conv2d else 1.0)
    return macs + _PER_OC * _padded(oc) + _PER_CIN * c_in


def _direct_count(c_in: int, n_deep: int, kd: int, n_flat: int, area: int) -> int:
    """"mixed" plan: how many channels of a family's k_d > 1 group run as conv3d."""
    best = None
    for m in sorted({*range(0, n_deep, _BLOCK), n_deep}):
        rest = n_deep - m
        cost = (_call_cost(c_in, m, kd * area) + _call_cost(c_in, kd * rest + n_flat, area, True)
                + _PER_ADD * (kd - 1) * rest)
        if best is None or cost < best[1]:
            best = (m, cost)
    return best[0]


@dataclass
class Prepared:
    """A plan turned into calls on concrete weights (cacheable for inference).

    Attributes:
        plan: the plan's name.
        calls: ``("conv3d", w, b, padding)``, ``("columns", w (n, C, kd, 1), b, kd)`` or
            ``("taps", w (M, C, kh, kw), b, (kh, kw))``; each call is one source of the output.
        recipe: entries (source, source channel, count, output channel, D offset dt), sorted with
            the dt = 0 copies first (see cakes_lite/fast/assemble.py).
        out_channels: C_out.
        kinds: which mechanisms run: subset of {"conv3d", "columns", "taps", "shift"}.
        cl_calls: plan ``"direct"`` only: the same calls with channels_last_3d weights, used for
            a channels_last_3d input (oneDNN would otherwise reorder the weights on every call
            and, for a one-channel input, return NCDHW outputs that every later layer converts).
    """

    plan: str
    calls: list[tuple]
    recipe: tuple[tuple[int, int, int, int, int], ...]
    out_channels: int
    kinds: frozenset[str]
    cl_calls: list[tuple] | None = None


def dense_kernel(weights: Weights, k: int | None = None) -> torch.Tensor:
    """(C_out, C_in, k, k, k): every group's kernel embedded at the centre (default k: the
    largest group's size; :meth:`cakes_lite.CAKESConv3d.dense_weight` passes the layer's)."""
    k = k or max(max(w.shape[2:]) for w in weights)
    out = sum(w.shape[0] for w in weights)
    dense = weights[0].new_zeros(out, weights[0].shape[1], k, k, k)
    start = 0
    for w in weights:
        sl = [slice(k // 2 - s // 2, k // 2 + s // 2 + 1) for s in w.shape[2:]]
        dense[start : start + w.shape[0], :, sl[0], sl[1], sl[2]] = w
        start += w.shape[0]
    return dense


def prepare(weights: Weights, bias: torch.Tensor | None, stride: Stride,
            plan: str = "mixed") -> Prepared:
    """Split the groups into calls following ``plan`` (one of :data:`PLANS`).

    Every call of the plans other than ``"dense"`` does only the sub-kernels' own
    multiply-accumulates (FlopCounterMode sees exactly the analytic MACs).
    """
    if plan not in PLANS:
        raise ValueError(f"plan: expected one of {PLANS}, got {plan!r}")
    out_channels = sum(w.shape[0] for w in weights)
    if plan == "direct":  # the weights as they are: a channels-last weight would make oneDNN
        # return channels-last outputs for an NCDHW input
        prep = prepare(weights, bias, stride, "conv3d")
        calls = [(kind, w, b, arg) for (kind, _, b, arg), w in zip(prep.calls, weights)]
        return Prepared("direct", calls, prep.recipe, out_channels, prep.kinds, prep.calls)
    if plan == "dense":
        k = max(max(w.shape[2:]) for w in weights)
        calls = [("conv3d", _channels_last(dense_kernel(weights)), bias, (k // 2,) * 3)]
        return Prepared(plan, calls, ((0, 0, out_channels, 0, 0),), out_channels,
                        frozenset({"conv3d"}))
    starts, biases = [0], []
    for w in weights:
        biases.append(None if bias is None else bias[starts[-1] : starts[-1] + w.shape[0]])
        starts.append(starts[-1] + w.shape[0])
    c_in = weights[0].shape[1]
    calls: list[tuple] = []
    recipe: list[tuple[int, int, int, int, int]] = []
    families: dict[tuple[int, int], list[int]] = {}
    for g, w in enumerate(weights):
        if plan != "conv3d" and w.shape[3] == w.shape[4] == 1:
            recipe.append((len(calls), 0, w.shape[0], starts[g], 0))
            calls.append(("columns", w[..., 0], biases[g], w.shape[2]))
        elif plan == "conv3d" or stride[0] != 1:
            recipe.append((len(calls), 0, w.shape[0], starts[g], 0))
            calls.append(("conv3d", w, biases[g], tuple(s // 2 for s in w.shape[2:])))
        else:
            families.setdefault(tuple(w.shape[3:]), []).append(g)
    for (kh, kw), groups in families.items():
        deep = [g for g in groups if weights[g].shape[2] > 1]
        m = 0  # channels of the (at most one) k_d > 1 group run as conv3d
        if deep and plan == "mixed":
            n_flat = sum(weights[g].shape[0] for g in groups if weights[g].shape[2] == 1)
            n_deep = sum(weights[g].shape[0] for g in deep)
            m = _direct_count(c_in, n_deep, weights[deep[0]].shape[2], n_flat, kh * kw)
        taps, tap_bias, pos, src = [], [], 0, len(calls) + (1 if m else 0)
        for g in groups:
            w, b = weights[g], biases[g]
            kd, mg = w.shape[2], (m if g in deep else 0)
            if mg:
                recipe.append((len(calls), 0, mg, starts[g], 0))
                calls.append(("conv3d", w[:mg], None if b is None else b[:mg],
                               tuple(s // 2 for s in w.shape[2:])))
            for t in range(kd if mg < w.shape[0] else 0):
                n = w.shape[0] - mg
                taps.append(w[mg:, :, t])  # (n, C_in, kh, kw)
                if b is not None:  # the bias goes with the centre tap only
                    tap_bias.append(b[mg:] if t == kd // 2 else b.new_zeros(n))
                recipe.append((src, pos, n, starts[g] + mg, t - kd // 2))
                pos += n
        if taps:
            # (M, C_in, kh, kw): the family's taps, one conv2d
            calls.append(("taps", torch.cat(taps), torch.cat(tap_bias) if tap_bias else None,
                          (kh, kw)))
    kinds = {c[0] for c in calls} | ({"shift"} if any(e[4] for e in recipe) else set())
    recipe.sort(key=lambda e: e[4] != 0)
    # weights in the activations' channels-last memory: oneDNN reorders them on every call
    # otherwise (measured 1.2-1.5x the conv time for small layers)
    calls = [(kind, _channels_last(w), b, arg) for kind, w, b, arg in calls]
    return Prepared(plan, calls, tuple(recipe), out_channels, frozenset(kinds))


def _channels_last(w: torch.Tensor) -> torch.Tensor:
    fmt = CL3D if w.dim() == 5 else torch.channels_last
    w = w.contiguous(memory_format=fmt)
    if w.stride(1) != 1:  # one input channel: "contiguous" in both formats with NCDHW strides,
        # which make oneDNN pick a slower NCDHW kernel; restride to channels-last explicitly
        w = torch.empty_like(w, memory_format=fmt).copy_(w)
    return w


def _last(y: torch.Tensor) -> torch.Tensor:
    # (N, n, D, H, W) -> (N, D, H, W, n), a view for channels_last_3d memory
    return y.permute(0, 2, 3, 4, 1)


def run(x: torch.Tensor, prep: Prepared, stride: Stride) -> torch.Tensor:
    """Execute a :class:`Prepared` plan.

    Args:
        x: (N, C_in, D, H, W), any memory format (converted to channels_last_3d once).
        prep: from :func:`prepare` for these weights and ``stride``.
        stride: (s_d, s_h, s_w).

    Returns:
        (N, C_out, D', H', W') in channels_last_3d memory (plan "direct": the input's format).
    """
    if prep.plan == "direct":  # as the official code: any memory format, one cat
        last = prep.cl_calls is not None and x.is_contiguous(memory_format=CL3D)
        outs = [conv(x, w, b, stride, pad) for _, w, b, pad in (prep.cl_calls if last
                                                                 else prep.calls)]
        y = outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
        # a one-channel input is contiguous in both formats: keep channels_last_3d flowing
        return y.contiguous(memory_format=CL3D) if last else y
    n_batch, c_in, depth, height, width = x.shape
    sd, sh, sw = stride
    x = x.contiguous(memory_format=CL3D)  # memory (N, D, H, W, C); a no-op in a CL3D network
    d_out, h_out, w_out = [(s - 1) // st + 1 for s, st in zip(x.shape[2:], stride)]
    if len(prep.calls) == 1 and prep.calls[0][0] == "conv3d":
        _, w, b, pad = prep.calls[0]
        return conv(x, w, b, stride, pad).contiguous(memory_format=CL3D)
    sources = []  # (N, D', H', W', M) each
    xs = xf = None
    for kind, w, b, arg in prep.calls:
        if kind == "conv3d":
            sources.append(_last(conv(x, w, b, stride, arg)))
        elif kind == "columns":
            if xs is None:
                # (N, C, D, H, W) -> (N, C, D, H'·W'), a view in channels_last_3d at s_h = s_w = 1
                xs = _last(x[:, :, :, ::sh, ::sw]).reshape(n_batch, depth, h_out * w_out, c_in)
                xs = xs.permute(0, 3, 1, 2)
            y = conv(xs, w, b, (sd, 1), (arg // 2, 0))
            # (N, n, D', H'·W') -> (N, D', H', W', n)
            sources.append(y.permute(0, 2, 3, 1).reshape(n_batch, d_out, h_out, w_out, -1))
        else:
            if xf is None:
                # fold D into the batch: (N, C, D, H, W) -> (N·D, C, H, W), a channels_last view
                xf = x.transpose(1, 2).reshape(n_batch * depth, c_in, height, width)
            z = conv(xf, w, b, (sh, sw), (arg[0] // 2, arg[1] // 2))  # (N·D, M, H', W')
            sources.append(z.permute(0, 2, 3, 1).reshape(n_batch, depth, h_out, w_out, -1))
    if traced():
        out = assemble_traceable(prep.recipe, prep.out_channels, sources)
    else:
        out = Assemble.apply(prep.recipe, prep.out_channels, *sources)  # (N, D', H', W', C_out)
    return out.permute(0, 4, 1, 2, 3)


def fast(x: torch.Tensor, weights: Weights, bias: torch.Tensor | None, stride: Stride,
         plan: str = "mixed") -> torch.Tensor:
    """Same result as :func:`direct` through ``plan`` (module docstring), any stride.

    Args:
        x: (N, C_in, D, H, W).
        weights: per group, in output-channel order, (n_g, C_in, kd, kh, kw).
        bias: (C_out,) or None.
        stride: (s_d, s_h, s_w).
        plan: one of :data:`PLANS`.

    Returns:
        (N, C_out, D', H', W') in channels_last_3d memory.
    """
    return run(x, prepare(weights, bias, stride, plan), stride)


IMPLS = ("fast", "direct", "direct_cl")


def check_impl(impl: object) -> str:
    """Return ``impl`` if it is one of :data:`IMPLS`, else raise a ValueError naming it."""
    if not isinstance(impl, str) or impl not in IMPLS:
        raise ValueError(f"impl: expected 'fast', 'direct' or 'direct_cl', got {impl!r}")
    return impl


def forward(x: torch.Tensor, weights: Weights, bias: torch.Tensor | None, stride: Stride,
            impl: str = "fast") -> torch.Tensor:
    """``"fast"`` (:func:`fast`, the deterministic ``"mixed"`` plan), ``"direct"`` (one conv3d
    per group, as the official code) or ``"direct_cl"`` (the same on channels_last_3d memory)."""
    if check_impl(impl) == "fast":
        return fast(x, weights, bias, stride)
    if impl == "direct_cl":
        x = x.contiguous(memory_format=CL3D)
    return direct(x, weights, bias, stride)
