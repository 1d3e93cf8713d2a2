"""Which BatchNorm consumes which conv's output: Conv–BN pairing by data flow, for supernet().

A BN is paired with (absorbed into) a searched conv only if it is called exactly once, on the
conv's output and nothing else, the conv is called exactly once and its output feeds nothing
but that BN, and it normalises C_out features. Three ways to see the data flow, best first:

1. ``torch.fx`` symbolic tracing (convs and BNs kept as leaves): the exact graph;
2. forward hooks on a dry run with an example input (eval mode, no grad): a BN is paired if its
   input is the very tensor the conv returned, not modified in place since (its version
   counter), and no other torch call reads that tensor (a ``TorchFunctionMode`` counts the
   reads outside the BN's forward, e.g. a residual ``x + identity``; metadata such as
   ``.shape`` does not count);
3. neither (the model does not trace and no example input): the BN registered right after the
   conv in the same parent; :class:`VerifyPairing` then checks that guess on the first forward
   and raises ValueError (pointing to ``example_input=``) if the data flow disagrees.
"""

from __future__ import annotations

from collections import Counter

import torch
import torch.fx as fx
from torch.overrides import TorchFunctionMode
from torch import nn

BN_TYPES = (nn.BatchNorm3d, nn.SyncBatchNorm)


def _bn_names(net: nn.Module) -> set[str]:
    return {n for n, m in net.named_modules() if type(m) in BN_TYPES}


class _Tracer(fx.Tracer):
    """Keep the convs and BNs as leaves (a Conv3d subclass outside torch.nn would be inlined)."""

    def __init__(self, leaves: set[str]):
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return qualname in self.leaves or super().is_leaf_module(m, qualname)


def pair_by_fx(net: nn.Module, convs: dict[str, int]) -> dict[str, str] | None:
    """``{conv: bn}`` from the fx graph, or None if ``net`` does not trace."""
    bns = _bn_names(net)
    try:
        graph = _Tracer(set(convs) | bns).trace(net)
    except Exception:  # any tracing failure: data-dependent control flow, unsupported ops, …
        return None
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")
    modules = dict(net.named_modules())
    pairs = {}
    for node in graph.nodes:
        if node.op != "call_module" or node.target not in convs or calls[node.target] != 1:
            continue
        users = list(node.users)
        if len(users) != 1:
            continue
        bn = users[0]
        if (bn.op == "call_module" and bn.target in bns and calls[bn.target] == 1
                and bn.args == (node,) and not bn.kwargs
                and modules[bn.target].num_features == convs[node.target]):
            pairs[node.target] = bn.target
    return pairs


def _as_args(example_input) -> tuple:
    if isinstance(example_input, torch.Tensor):
        return (example_input,)
    if isinstance(example_input, (tuple, list)) and example_input:
        return tuple(example_input)
    raise ValueError("example_input: expected an input tensor (or a tuple of the forward's "
                     f"arguments), got {type(example_input).__name__}")


# reading a tensor's metadata is not a use of its values
_METADATA = {"__get__", "dim", "ndimension", "size", "numel", "is_contiguous", "stride",
             "data_ptr", "element_size", "is_floating_point", "is_complex", "get_device"}


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            yield from _tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o)


class _Uses(TorchFunctionMode):
    """Counts, per producer, the torch calls that read its output outside a consumer's forward."""

    def __init__(self, produced: dict[int, tuple[str, int]]):
        super().__init__()
        self.produced, self.inside, self.uses = produced, 0, Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not self.inside and getattr(func, "__name__", "") not in _METADATA:
            for t in _tensors((args, kwargs)):
                if id(t) in self.produced:
                    self.uses[self.produced[id(t)][0]] += 1
        return func(*args, **kwargs)


def observe(net: nn.Module, producers, consumers, args: tuple, kwargs: dict | None = None):
    """One eval, no-grad forward of ``net(*args, **kwargs)`` (modes restored) watching the data
    flow.

    Returns:
        ``(fed, calls, uses)``: ``fed[consumer]`` lists, per call, the producer whose output
        (unmodified since) was its input, or None; ``calls[module]`` counts calls; ``uses[p]``
        counts the other torch calls that read producer ``p``'s output (residual adds, …).
    """
    modules = dict(net.named_modules())
    calls: Counter = Counter()
    produced: dict[int, tuple[str, int]] = {}  # id(output) -> (producer, version at return)
    keep: list[torch.Tensor] = []              # keeps the outputs alive: ids stay unique
    fed: dict[str, list] = {}
    mode = _Uses(produced)

    def on_output(name):
        def hook(m, i, o):
            calls[name] += 1
            if isinstance(o, torch.Tensor):
                produced[id(o)] = (name, o._version)
                keep.append(o)
        return hook

    def on_enter(name):
        def hook(m, i):
            calls[name] += 1
            mode.inside += 1
            x = i[0] if i else None
            src = produced.get(id(x)) if isinstance(x, torch.Tensor) else None
            fed.setdefault(name, []).append(
                src[0] if src is not None and x._version == src[1] else None)
        return hook

    def on_exit(m, i, o):
        if isinstance(o, torch.Tensor) and id(o) in produced:
            # an Identity (an absorbed BN) returns its input: give the rest of the dry run a
            # copy, as the BN would, so that only other reads of the conv's output count
            o = o.clone()
        mode.inside -= 1
        return o

    handles = [modules[n].register_forward_hook(on_output(n)) for n in producers]
    for n in consumers:
        handles += [modules[n].register_forward_pre_hook(on_enter(n)),
                    modules[n].register_forward_hook(on_exit)]
    modes = [(m, m.training) for m in net.modules()]
    net.eval()
    try:
        with torch.no_grad(), mode:
            net(*args, **(kwargs or {}))
    finally:
        for m, training in modes:
            m.training = training
        for h in handles:
            h.remove()
    return fed, calls, mode.uses


def pair_by_hooks(net: nn.Module, convs: dict[str, int], example_input) -> dict[str, str]:
    """``{conv: bn}`` seen on one eval forward of ``example_input`` (see :func:`observe`)."""
    modules = dict(net.named_modules())
    fed, calls, uses = observe(net, convs, _bn_names(net), _as_args(example_input))
    pairs = {}
    for bn, sources in fed.items():
        conv = sources[0]
        if (len(sources) == 1 and conv is not None and calls[conv] == 1 and calls[bn] == 1
                and not uses[conv] and modules[bn].num_features == convs[conv]):
            pairs[conv] = bn
    users = Counter(pairs.values())
    return {c: b for c, b in pairs.items() if users[b] == 1}


def pair_by_registration(net: nn.Module, convs: dict[str, int]) -> dict[str, str]:
    """``{conv: bn}``: the BN registered right after the conv in the same parent."""
    modules = dict(net.named_modules())
    pairs = {}
    for name in convs:
        parent_name, _, child = name.rpartition(".")
        parent = modules[parent_name] if parent_name else net
        names = list(parent._modules)
        i = names.index(child)
        if i + 1 < len(names):
            nxt = parent._modules[names[i + 1]]
            if type(nxt) in BN_TYPES and nxt.num_features == convs[name]:
                pairs[name] = f"{parent_name}.{names[i + 1]}" if parent_name else names[i + 1]
    return pairs


class VerifyPairing:
    """Root forward pre-hook: before the first forward, check a registration-order pairing by
    a dry run of the same input (:func:`observe`): each absorbed BN's Identity must receive
    exactly its conv's output, which nothing else reads, and no model BN may normalise a
    searched conv's output. Raises ValueError if not; removes itself once passed. Holds names
    only, so a deep-copied supernet checks its own modules."""

    def __init__(self, pairs: dict[str, str | None]):
        self.pairs = pairs

    def __call__(self, root: nn.Module, args: tuple, kwargs: dict) -> None:
        for key in [k for k, v in root._forward_pre_hooks.items() if v is self]:
            del root._forward_pre_hooks[key]  # also keeps the dry run below from recursing
        bns = _bn_names(root)
        absorbed = {c: b for c, b in self.pairs.items() if b}
        fed, calls, uses = observe(root, self.pairs, bns | set(absorbed.values()), args, kwargs)
        hint = ("; rebuild with cakes_lite.supernet(model, ..., example_input=x) to pair by "
                "data flow, or pass absorb_bn=False")
        for conv, bn in absorbed.items():
            if fed.get(bn) != [conv] or calls[conv] != 1 or uses[conv]:
                root.register_forward_pre_hook(self, with_kwargs=True)  # still unverified
                raise ValueError(
                    f"supernet: layer {conv!r} absorbed BN {bn!r} by registration order (the "
                    "model does not trace with torch.fx and no example_input was given), but "
                    f"{bn!r} is not the only consumer of {conv!r}'s output" + hint)
        for bn in sorted(bns):
            conv = next((s for s in fed.get(bn, []) if s is not None), None)
            if conv is not None:
                root.register_forward_pre_hook(self, with_kwargs=True)
                raise ValueError(f"supernet: BN {bn!r} normalises the output of searched layer "
                                 f"{conv!r}, which has its own BN (BN twice)" + hint)
