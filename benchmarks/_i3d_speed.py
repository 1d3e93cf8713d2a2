"""The paper's network at full width: ``resnet50_i3d`` with each official layout against the full
3D network, one *cell* (input side, batch, layout) per call, merged into a result file so that
a grid too big for one sitting runs as separate, resumable invocations (``model_speed.py
--i3d``). Import after torch."""

from __future__ import annotations

import json
import os
import statistics
import time
from collections import Counter
from pathlib import Path

import torch

from cakes_lite.deploy.inference import for_inference
from cakes_lite.models import resnet50_i3d
from cakes_lite.official import official_layouts, resnet50_macs
from cakes_lite.speed import interleaved_samples

from _record import finish, machine_info


def result_path(root: Path, threads: int) -> Path:
    """``benchmarks/results/i3d_speed_<isa>_<threads>thread.json`` (isa as torch dispatches)."""
    isa = machine_info()["isa"].lower()
    return root / "benchmarks" / "results" / f"i3d_speed_{isa}_{threads}thread.json"


def check_cells(sizes: list[int], batches: list[int], layouts: list[str]) -> None:
    """ValueError naming the first bad side, batch or layout name."""
    official = list(official_layouts())
    for layout in layouts:
        if layout not in official:
            raise ValueError(f"--layout: expected one of {official}, got {layout!r}")
    for size in sizes:
        if size < 32:  # the network divides H and W by 32
            raise ValueError(f"--size: expected a frame side >= 32, got {size}")
    for batch in batches:
        if batch < 1:
            raise ValueError(f"--batch: expected a positive int, got {batch}")


def measure_cell(size: int, batch: int, layout: str, repeats: int, budget_s: float,
                 tune_budget_s: float, parent_copy: bool = False) -> dict:
    """One cell: both networks through ``for_inference`` (the CAKES one tuned in the network on
    the benchmark input), then timed interleaved: one warm-up round, then as many rounds as
    ``budget_s`` allows (at least 3, at most ``repeats``); medians. ``parent_copy``: a second,
    separately built 3D network runs in the same rounds; its time ÷ the 3D time
    (``copy_ratio``) would be 1 without noise."""
    torch.manual_seed(0)
    x = torch.randn(batch, 3, 8, size, size)
    torch.manual_seed(0)
    parent = for_inference(resnet50_i3d().eval())
    torch.manual_seed(0)
    model = resnet50_i3d(layout=layout).eval()
    report: list = []
    t0 = time.perf_counter()
    fast = for_inference(model, example=x, tuning={"budget_s": tune_budget_s, "report": report})
    tune_seconds = time.perf_counter() - t0
    steps = {"3d": lambda: parent(x), "cakes": lambda: fast(x)}
    if parent_copy:
        torch.manual_seed(0)
        twin = for_inference(resnet50_i3d().eval())
        steps["3d copy"] = lambda: twin(x)
    with torch.no_grad():
        first = interleaved_samples(steps, 1, 1)  # warm-up round, then one to size the run
        per_round = sum(t[0] for t in first.values()) / 1e3
        rounds = max(3, min(repeats, int(budget_s / per_round)))
        samples = interleaved_samples(steps, rounds - 1, 0)
    times = {k: first[k] + samples[k] for k in steps}
    med = {k: statistics.median(v) for k, v in times.items()}
    cost = resnet50_macs(official_layouts()[layout], frames=8, size=size)["network"]
    plans = Counter(cls.chosen for cls in report for _ in cls.names)
    ratio, mac_ratio = med["cakes"] / med["3d"], cost["macs"] / cost["macs_3d"]
    return {"size": size, "batch": batch, "layout": layout, "rounds": rounds,
            "ms_3d": med["3d"], "ms": med["cakes"], "ratio": ratio, "mac_ratio": mac_ratio,
            "eff": (1 / ratio) / (1 / mac_ratio), "tune_seconds": tune_seconds,
            "copy_ratio": med["3d copy"] / med["3d"] if parent_copy else None,
            "plans": dict(plans), "macs_3d": cost["macs_3d"] * batch,
            # how the tuning went: per class of identical layers, its candidates, the choice
            # and how many samples decided (two plans left: decided again by whole forwards)
            "classes": [{"layers": cls.names, "plans": cls.plans, "chosen": cls.chosen,
                         "samples": {k: len(v) for k, v in cls.times.items()}}
                        for cls in report],
            "samples_ms": times}


def run_cells(root: Path, sizes, batches, layouts, repeats: int, budget_s: float,
              tune_budget_s: float, force: bool, echo=print, parent_copy: bool = False,
              out: Path | None = None) -> Path:
    """Measure every missing (size, batch, layout) cell, merging each into the result file
    (``out``, default :func:`result_path`) as soon as it is done (a killed run loses one cell
    at most)."""
    out = Path(out) if out else result_path(root, torch.get_num_threads())
    for size in sizes:
        for batch in batches:
            for layout in layouts:
                doc = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {
                    **machine_info(), "cells": []}
                if any((c["size"], c["batch"], c["layout"]) == (size, batch, layout)
                       for c in doc["cells"]) and not force:
                    echo(f"{size}² b{batch} {layout}: measured already (--force to redo)")
                    continue
                t_start, load = time.perf_counter(), os.getloadavg()
                cell = measure_cell(size, batch, layout, repeats, budget_s, tune_budget_s,
                                    parent_copy)
                cell.update(load_before=load, load_after=os.getloadavg(),
                            seconds=time.perf_counter() - t_start,
                            env={k: os.environ.get(k) for k in
                                 ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")},
                            threads=torch.get_num_threads())
                doc["cells"] = [c for c in doc["cells"] if (c["size"], c["batch"], c["layout"])
                                != (size, batch, layout)] + [cell]
                finish(doc, t_start, out)
                copy = ("" if cell["copy_ratio"] is None
                        else f", 3D copy {cell['copy_ratio']:.3f}×")
                echo(f"{size}² b{batch} {layout}: {cell['ratio']:.3f}× the 3D time for "
                     f"{cell['mac_ratio']:.3f}× the MACs (eff {cell['eff']:.2f}); "
                     f"{cell['rounds']} rounds, 3D {cell['ms_3d']:.0f} ms, tuned in "
                     f"{cell['tune_seconds']:.1f} s, load {load[0]:.1f}{copy}; "
                     f"{dict(cell['plans'])}")
    return out
