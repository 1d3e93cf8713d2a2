"""Does timing each CAKES layer in place choose what timing whole forwards chooses? And faster?

``tune_plans`` (cakes_lite/deploy/network_tuning.py) picks each CAKES layer's plan inside the
network either by whole forwards per layer (``"network"``: coordinate descent, exact, costly) or
by timing every layer's *segment* inside shared forwards (``"in_place"``: all layers at once).
For each model this script tunes an inference copy both ways and reports

* the tuning time of each method;
* per layer, both methods' choices and the gain each measured for a plan over the fallback
  (``dense``): the whole-forward gain (network) and the segment gain (in place), in ms;
* the tuned copies timed interleaved with the 3D parent, a second copy of the parent (the noise
  band: its ratio would be 1 without noise) and the copy with every layer at ``dense`` (the
  parent's convs): medians over ``--repeats`` rounds, ratios to the parent.

Models: the zoo's CAKES nets at their own input (``--zoo``) and ``resnet50_i3d`` with an
official layout (``--i3d CAKES123D_P --size 112``). Results merge into
``benchmarks/results/tuning_methods_<isa>_<threads>thread.json`` (one entry per model and batch),
so runs can be split and resumed.

    python benchmarks/tuning_methods.py --threads 1 --zoo video_cakes_p --batch 1
    python benchmarks/tuning_methods.py --threads 2 --i3d CAKES123D_P --size 112 --repeats 10
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _malloc import reexec_with_malloc_tunables  # noqa: E402

reexec_with_malloc_tunables()  # before torch: page faults make CPU timings bimodal otherwise

import torch  # noqa: E402

from cakes_lite import CAKESConv3d, zoo  # noqa: E402
from cakes_lite.deploy.inference import _replace_dense, for_inference  # noqa: E402
from cakes_lite.models import resnet50_i3d  # noqa: E402
from cakes_lite.official import official_layouts  # noqa: E402
from cakes_lite.speed import interleaved_samples  # noqa: E402

from _record import finish, machine_info  # noqa: E402

ZOO_PARENTS = {"video_cakes_p": "video_3d", "video_cakes_budget": "video_3d",
               "video_cakes_block16": "video_3d", "video_cakes_c": "video_3d",
               "volume_cakes_c": "volume_3d", "volume_cakes_block8": "volume_3d"}


def _models(args) -> tuple[str, torch.nn.Module, torch.nn.Module, tuple]:
    """(name, CAKES model, parent, input shape per sample) of the requested model."""
    if args.zoo:
        if args.zoo not in ZOO_PARENTS:
            raise SystemExit(f"--zoo: expected one of {sorted(ZOO_PARENTS)}, got {args.zoo!r}")
        model, meta = zoo.load_model(args.zoo, ROOT / "app" / "zoo")
        parent, _ = zoo.load_model(ZOO_PARENTS[args.zoo], ROOT / "app" / "zoo")
        return args.zoo, model, parent, tuple(meta["input_shape"][1:])
    if args.i3d not in official_layouts():
        raise SystemExit(f"--i3d: expected one of {sorted(official_layouts())}, got {args.i3d!r}")
    torch.manual_seed(0)
    model = resnet50_i3d(layout=args.i3d).eval()
    torch.manual_seed(0)
    parent = resnet50_i3d().eval()
    return (f"resnet50_i3d {args.i3d} 8x{args.size}2", model, parent,
            (3, 8, args.size, args.size))


def _tuned(model, x, method: str, repeats: int):
    """(inference copy tuned by ``method``, seconds, {layer: plan}, {layer: {plan: ms}})."""
    report: list = []
    t0 = time.perf_counter()
    fast = for_inference(model, example=x, tuning={"method": method, "repeats": repeats,
                                                    "report": report})
    seconds = time.perf_counter() - t0
    chosen, gains = {}, {}
    for cls in report:
        best = {p: min(t) for p, t in cls.times.items() if t}
        for name in cls.names:
            chosen[name.removeprefix("model.")] = cls.chosen
            if cls.fallback in best:  # ms saved against the fallback (negative: slower)
                gains[name.removeprefix("model.")] = {
                    p: best[cls.fallback] - t for p, t in best.items() if p != cls.fallback}
    return fast, seconds, chosen, gains


def _all_dense(model) -> torch.nn.Module:
    fast = for_inference(model)
    for m in fast.modules():
        if isinstance(m, CAKESConv3d):
            m.plan = "dense"
    _replace_dense(fast)
    return fast


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--zoo", help="a zoo CAKES model (its parent: the zoo's 3D net)")
    what.add_argument("--i3d", help="resnet50_i3d with this official layout")
    parser.add_argument("--size", type=int, default=112, help="--i3d: frame side (8 frames)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tune-repeats", type=int, default=5, help="tune_plans(repeats=)")
    parser.add_argument("--repeats", type=int, default=30, help="timed interleaved rounds")
    parser.add_argument("--out", help="JSON to merge into (default: benchmarks/results/"
                        "tuning_methods_<isa>_<threads>thread.json)")
    args = parser.parse_args(argv)
    for flag in ("size", "batch", "threads", "tune_repeats", "repeats"):
        if getattr(args, flag) < 1:
            raise SystemExit(f"--{flag.replace('_', '-')}: expected a positive int, got "
                             f"{getattr(args, flag)}")
    torch.set_num_threads(args.threads)
    isa = machine_info()["isa"].lower()
    out = Path(args.out or ROOT / "benchmarks" / "results"
               / f"tuning_methods_{isa}_{args.threads}thread.json")
    name, model, parent, chw = _models(args)
    torch.manual_seed(0)
    x = torch.randn(args.batch, *chw)
    t_start, load_before = time.perf_counter(), os.getloadavg()
    forms = {"parent": for_inference(parent), "parent copy": for_inference(parent),
             "all dense": _all_dense(model)}
    entry = {"model": name, "batch": args.batch, "input": list(x.shape), "methods": {}}
    for method in ("network", "in_place"):
        fast, seconds, chosen, gains = _tuned(model, x, method, args.tune_repeats)
        forms[method] = fast
        entry["methods"][method] = {"seconds": seconds, "chosen": chosen, "gains_ms": gains}
        print(f"{name} b{args.batch}: {method} tuned in {seconds:.1f} s", flush=True)
    with torch.no_grad():
        samples = interleaved_samples({k: (lambda f=f: f(x)) for k, f in forms.items()},
                                      args.repeats, 2)
    med = {k: statistics.median(v) for k, v in samples.items()}
    entry["median_ms"] = med
    entry["ratio"] = {k: v / med["parent"] for k, v in med.items()}
    net, inp = entry["methods"]["network"]["chosen"], entry["methods"]["in_place"]["chosen"]
    entry["agree"] = sum(net[k] == inp.get(k) for k in net)
    entry["layers"] = len(net)
    entry["load"] = [load_before, os.getloadavg()]
    for k, r in entry["ratio"].items():
        print(f"  {k:12s} {med[k]:9.2f} ms  {r:.3f}x parent")
    print(f"  choices agree on {entry['agree']} of {entry['layers']} layers")
    result = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {
        **machine_info(), "runs": []}
    if result.get("threads") != args.threads or result.get("isa") != machine_info()["isa"]:
        raise SystemExit(f"{out}: holds runs of another setting (threads {result.get('threads')}"
                         f", ISA {result.get('isa')}); pass --out")
    result["runs"] = [r for r in result["runs"]
                      if (r["model"], r["batch"]) != (name, args.batch)] + [entry]
    result["repeats"], result["tune_repeats"] = args.repeats, args.tune_repeats
    finish(result, t_start, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
