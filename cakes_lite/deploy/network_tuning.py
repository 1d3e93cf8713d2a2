"""Choosing each CAKES layer's plan inside the network it runs in (inference).

:mod:`cakes_lite.fast.autotune` times a layer's plans on their own, on an input that stays in
cache between repeats. Inside a network the layer reads what the previous layer just wrote and its
temporaries compete with the rest of the model for cache, so a plan that wins alone can lose in
place: in the bundled ``video_cakes_budget`` at batch 8 the tap-folded plan measured 10 % faster
than ``dense`` alone and made the whole model 4 % slower. :func:`tune_plans` therefore times plans
*inside whole forwards* and pins the winners (``layer.plan``), in one of two ways:

* ``"in_place"``: every forward runs a different candidate in every layer at once, and each layer
  is timed from its start to the start of the next CAKES layer (its *segment*: the layer and the
  plain layers after it, which read its output and feel its temporaries in the cache). All
  layers are measured in the same ``K × (warmup + repeats)`` forwards (K: the most candidates a
  layer has), and a segment is a short interval, so a slow round from another process spoils
  one sample, not the comparison;
* ``"network"``: the whole forward timed with each candidate of one class of layers, the others
  fixed, class after class (one pass of coordinate descent): ``classes × K × (warmup + repeats)``
  forwards, exact for effects beyond a segment.

``"auto"`` (the default) takes ``"network"`` where it costs at most ``budget_s`` seconds, else
``"in_place"``. Layers whose calls are identical (input shape and memory format, weight shapes,
stride, bias, dtype, device, candidates) form a *class*, tuned once: ``"in_place"`` pools their
samples and gives them one plan; ``"network"`` tunes each layer of a class on its own
(it can afford to).

The fallback is ``"dense"`` (the parent conv) where the layer allows it, else the static
``"mixed"``: a class keeps another plan only if it measured faster than the fallback by more than
``margin``. After ``"in_place"``, a *guard* times the whole forward with the chosen plans against
the forward with every layer at its fallback; if the chosen plans are not faster by ``margin``,
the changed classes are decided again in whole forwards, so a plan that wins in its segment
but loses in the whole network is still rejected: each class between its choice and the
fallback (winning by ``margin`` of its own segment) where that fits ``budget_s``, else keeping
only the classes with the k largest in-place gains, for a few k (:func:`_decide_again`).
Used by ``for_inference(model, example=x)``.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from ..ops import CAKESConv3d
from ..speed import CLOCKS, interleaved_samples
from .plan_classes import PlanClass, decide, pin, plan_classes

METHODS = ("auto", "in_place", "network")


def _clock(example: torch.Tensor) -> str:
    """The thread's CPU time on CPU with one intra-op thread (descheduled time does not count),
    else wall-clock time (as :func:`cakes_lite.fast.autotune.measure`)."""
    return "thread" if example.device.type == "cpu" and torch.get_num_threads() == 1 else "wall"


def time_in_place(model: nn.Module, example: torch.Tensor, classes: list[PlanClass],
                  repeats: int = 10, warmup: int = 1) -> list[dict[str, list[float]]]:
    """Per class, plan -> segment times (ms) measured inside whole forwards (module docstring).

    Forward k of a round runs candidate ``(k + i·(r + 1)) mod n`` in the i-th layer of a class
    with n candidates (r: the round), so every candidate runs at least once per round and
    neighbouring layers meet each other's plans in changing pairs.
    """
    members = [(c, cls, layer) for c, cls in enumerate(classes) for layer in cls.layers]
    width = max(len(cls.plans) for cls in classes)
    read = CLOCKS[_clock(example)]
    cuda = example.device.type == "cuda"
    events: list[tuple[float, int]] = []  # (clock at a layer's start, member index)

    def pre_hook(index: int):
        def hook(module, args) -> None:
            if cuda:
                torch.cuda.synchronize(example.device)
            events.append((read(), index))
        return hook

    samples: list[dict[str, list[float]]] = [{p: [] for p in cls.plans} for cls in classes]
    calls = [0]

    def step(k: int):
        def run() -> None:
            r = calls[0] // width  # the round this forward belongs to
            calls[0] += 1
            ran = []
            for i, (_, cls, layer) in enumerate(members):
                layer.plan = cls.plans[(k + i * (r + 1)) % len(cls.plans)]
                ran.append(layer.plan)
            events.clear()
            model(example)
            if cuda:
                torch.cuda.synchronize(example.device)
            end = read()
            if r < warmup:
                return
            for j, (start, i) in enumerate(events):
                stop = events[j + 1][0] if j + 1 < len(events) else end
                samples[members[i][0]][ran[i]].append((stop - start) * 1e3)
        return run

    hooks = [layer.register_forward_pre_hook(pre_hook(i))
             for i, (_, _, layer) in enumerate(members)]
    try:
        interleaved_samples({str(k): step(k) for k in range(width)}, repeats, warmup,
                            device=example.device)
    finally:
        for h in hooks:
            h.remove()
    return samples


def _network(model: nn.Module, example: torch.Tensor, classes: list[PlanClass],
             repeats: int, warmup: int, margin: float) -> None:
    """Coordinate descent with whole forwards: each class's candidates timed with all its
    layers switched together, the other layers fixed, class after class."""
    for cls in classes:
        def step(plan: str, cls: PlanClass = cls):
            def run() -> None:
                pin([cls], [plan])
                model(example)
            return run
        cls.times = interleaved_samples({p: step(p) for p in cls.plans}, repeats, warmup,
                                        clock=_clock(example), device=example.device)
        cls.chosen = decide(cls, {p: min(t) for p, t in cls.times.items()},
                             margin if cls.margin is None else cls.margin)
        pin([cls], [cls.chosen])


def _decide_again(model: nn.Module, example: torch.Tensor, changed: list[PlanClass],
                  seconds: float, repeats: int, margin: float, left_s: float) -> None:
    """After a failed guard: each changed class's choice against its fallback again, in whole
    forwards. A class must win by ``margin`` of its own segment (what in place measured), not of
    the whole forward, where one layer's gain is often under 2 %. Where timing every class on
    its own does not fit the ``left_s`` seconds left (a large input), the classes are ranked by
    their in-place gain and whole forwards compare keeping the best k of them (k = all, all but
    one, half, a quarter, …, none): a few forwards that drop the smallest gains first."""
    for cls in changed:
        segment = min(cls.times[cls.fallback]) if cls.times.get(cls.fallback) else 0.0
        cls.margin = margin * min(1.0, segment / (seconds * 1e3))
        cls.plans = [cls.chosen, cls.fallback]
    if len(changed) * 2 * (repeats + 1) * seconds <= left_s:
        _network(model, example, changed, repeats, 1, margin)
        return

    def gain(cls: PlanClass) -> float:
        return min(cls.times[cls.fallback]) - min(cls.times[cls.chosen])
    order = sorted(changed, key=gain, reverse=True)
    n = len(order)
    keep = sorted({n, n - 1, 0, *(n >> i for i in range(1, n.bit_length()))}, reverse=True)

    def step(k: int):
        def run() -> None:
            pin(order, [c.chosen if i < k else c.fallback for i, c in enumerate(order)])
            model(example)
        return run
    rounds = max(2, min(repeats, int(left_s / (len(keep) * seconds)) - 1))
    times = interleaved_samples({str(k): step(k) for k in keep}, rounds, 1,
                                clock=_clock(example), device=example.device)
    best = min(keep, key=lambda k: min(times[str(k)]))
    for i, cls in enumerate(order):
        cls.chosen = cls.chosen if i < best else cls.fallback
    pin(order, [cls.chosen for cls in order])


def _guard(model: nn.Module, example: torch.Tensor, classes: list[PlanClass],
           repeats: int, warmup: int, margin: float) -> bool:
    """Whole forwards: the chosen plans against every layer at its fallback; True if the
    chosen plans are faster by more than ``margin``."""
    chosen = [cls.chosen for cls in classes]
    fallback = [cls.fallback for cls in classes]

    def step(plans: list[str]):
        def run() -> None:
            pin(classes, plans)
            model(example)
        return run
    times = interleaved_samples({"chosen": step(chosen), "fallback": step(fallback)}, repeats,
                                warmup, clock=_clock(example), device=example.device)
    pin(classes, chosen)
    return min(times["chosen"]) < min(times["fallback"]) * (1 - margin)


def _forward_seconds(model: nn.Module, example: torch.Tensor) -> float:
    times = interleaved_samples({"forward": lambda: model(example)}, 1, 1,
                                device=example.device)
    return times["forward"][0] / 1e3


@torch.no_grad()
def tune_plans(model: nn.Module, example: torch.Tensor, repeats: int = 5,
               method: str = "auto", margin: float = 0.02, budget_s: float = 20.0,
               report: list | None = None) -> dict[str, str]:
    """Pin every CAKESConv3d's plan to the one that makes ``model(example)`` fastest.

    Candidates per layer: :func:`cakes_lite.fast.autotune.candidates` (``"dense"`` where the
    layer allows it). Timings are interleaved (:func:`cakes_lite.speed.interleaved_samples`),
    after one warm-up round, and each candidate's fastest sample counts (interference from other
    processes only adds time); on CPU with one thread the clock is the thread's CPU time.

    Args:
        model: an eval-mode network (e.g. from :func:`cakes_lite.deploy.inference.for_inference`);
            changed in place: each CAKESConv3d's ``plan`` is set.
        example: an input of the shape that will be served (plans depend on shapes).
        repeats: timed rounds per candidate (``"in_place"``: twice as many, fewer where
            ``budget_s`` says so, at least 2; its rounds are shared by all layers).
        method: ``"auto"``, ``"in_place"`` or ``"network"`` (module docstring).
        margin: a plan other than the fallback must be faster by this fraction of what was
            timed (the segment in place, the whole forward otherwise).
        budget_s: roughly the seconds tuning may take: ``"auto"`` times whole forwards per
            layer (``"network"``) only if that fits, and ``"in_place"`` runs as many rounds as
            fit beside its guard's whole forwards (at least 2 each, so a large input takes
            longer).
        report: if a list, the :class:`PlanClass` records (with their times) are appended.

    Returns:
        ``{layer name: plan}``, in module order.

    Raises:
        ValueError: a bad ``repeats``, ``method``, ``margin`` or ``budget_s``, or no
            CAKESConv3d in ``model``.
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats: expected a positive int, got {repeats!r}")
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    if not isinstance(margin, (int, float)) or not 0 <= margin < 1:
        raise ValueError(f"margin: expected a fraction in [0, 1), got {margin!r}")
    if not isinstance(budget_s, (int, float)) or budget_s < 0:
        raise ValueError(f"budget_s: expected seconds >= 0, got {budget_s!r}")
    if not any(isinstance(m, CAKESConv3d) for m in model.modules()):
        raise ValueError("model: expected a network with CAKESConv3d layers, found none")
    start = time.perf_counter()
    classes = plan_classes(model, example)  # every layer at its fallback from here on
    for cls in classes:
        if len(cls.plans) == 1:
            cls.chosen = cls.plans[0]
    tuned = [cls for cls in classes if len(cls.plans) > 1]
    rounds, guard_rounds = 2 * repeats, repeats
    if tuned and (method != "network"):
        seconds = max(_forward_seconds(model, example), 1e-9)  # a coarse clock may read 0
        forwards = sum(len(c.layers) * len(c.plans) for c in tuned) * (repeats + 1)
        if method == "auto":
            method = "network" if forwards * seconds <= budget_s else "in_place"
        # in place: as many rounds as the budget allows (at least 2) once the guard's forwards
        # are set aside (2 per round, one warm-up round), the guard no more rounds than that
        width = max(len(c.plans) for c in tuned)
        guard_rounds = max(2, min(repeats, rounds, int(budget_s / (4 * seconds)) - 1))
        left = budget_s - 2 * (guard_rounds + 1) * seconds
        rounds = max(2, min(rounds, int(left / (width * seconds)) - 1))
        guard_rounds = min(guard_rounds, rounds)
    if tuned and method == "network":  # exact: every layer on its own
        tuned = [PlanClass([n], [m], cls.plans, cls.fallback)
                 for cls in tuned for n, m in zip(cls.names, cls.layers)]
        classes = [cls for cls in classes if len(cls.plans) == 1] + tuned
        _network(model, example, tuned, repeats, 1, margin)
    elif tuned:
        samples = time_in_place(model, example, tuned, rounds)
        for cls, times in zip(tuned, samples):
            cls.times = times
            cls.chosen = decide(cls, {p: min(t) if t else float("inf")
                                       for p, t in times.items()}, margin)
        pin(tuned, [cls.chosen for cls in tuned])
        changed = [cls for cls in tuned if cls.chosen != cls.fallback]
        if changed and not _guard(model, example, tuned, guard_rounds, 1, margin):
            left = budget_s - (time.perf_counter() - start)
            _decide_again(model, example, changed, seconds, repeats, margin, left)
    chosen = {}
    for cls in classes:
        for name, layer in zip(cls.names, cls.layers):
            chosen[name] = layer.plan
            # drop the other plans' prepared weights (each a copy of the layer's weights)
            layer._prepared = {k: v for k, v in layer._prepared.items() if k == layer.plan}
    if report is not None:
        report.extend(classes)
    order = [n for n, m in model.named_modules() if n in chosen]
    return {n: chosen[n] for n in order}
