"""Is a CAKES network faster than its full-3D parent, end to end? Whole-model speed benchmark.

For each family (the bundled zoo's video and volume models, resnet3d_tiny and unet3d_tiny at
their notebook input sizes) and batch size, every model runs forward (``torch.no_grad``, eval
mode) interleaved with its 3D parent, in two forms:

* ``eager``: the model as loaded / built (``model.eval()``), NCDHW input;
* ``infer``: :func:`cakes_lite.deploy.inference.for_inference` with ``example=`` the benchmark input
  (BatchNorm folded into the convs, channels_last_3d from the input on, each CAKES layer's plan
  chosen by timing the whole network, layers pinned to ``dense`` run as plain convs) - applied
  to the 3D parent too, so the comparison is fair.

Per model it prints the MAC ratio and time ratio versus the parent in the same form, and

    eff = (t_3d / t) / (MACs_3d / MACs)      (1 = time saved exactly as MACs saved)

from medians of warmed-up, interleaved runs. ``--export`` adds torch.export and ONNX Runtime forms
(benchmarks/_export_cases.py). Records machine, ISA, threads and load average; results:
``benchmarks/results/model_speed_<N>thread.json`` (N = threads) unless ``--out`` says otherwise.

    python benchmarks/model_speed.py [--repeats 15] [--batch 1 --batch 8] [--threads 2]
        [--device cpu|cuda] [--only zoo-video] [--export] [--parent-copy]

``--parent-copy`` also times a second inference copy of each parent: its ratio to the parent
would be 1 without noise, so its spread is the noise band of the run.

**The paper's network** (``--i3d``): ``resnet50_i3d`` (random weights) with each of the
authors' six layouts against the full 3D network, 8 frames of ``--size``² at each ``--batch``,
both through ``for_inference`` (the CAKES one tuned in the network on the benchmark input).
One cell (side, batch, layout) at a time, each merged into
``benchmarks/results/i3d_speed_<isa>_<threads>thread.json`` (or ``--out``) as soon as it is
measured; cells already there are skipped (``--force`` redoes them), so a grid runs as
resumable invocations; ``--parent-copy`` runs a second 3D network in the same rounds (its
``copy_ratio``: the noise band of that cell):

    flock /tmp/cakes_heavy.lock python benchmarks/model_speed.py --i3d --size 112 --batch 1 \
        --threads 2 [--layout CAKES123D_P] [--repeats 20] [--budget-s 120] [--parent-copy]

**The zoo models against their parents** (docs/speed.md): the zoo families with the parent copy,
written where the speed page's tables read them:

    python benchmarks/model_speed.py --only zoo-video --only zoo-volume --parent-copy \
        --threads 2 --out benchmarks/results/zoo_parity_<isa>_2thread.json
"""

from __future__ import annotations

import argparse
import copy
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

from cakes_lite import profile, zoo  # noqa: E402
from cakes_lite.deploy.inference import for_inference  # noqa: E402
from cakes_lite.models import resnet3d_tiny, unet3d_tiny  # noqa: E402
from cakes_lite.speed import latency_samples  # noqa: E402

from _export_cases import exported_forms  # noqa: E402
from _i3d_speed import check_cells, run_cells  # noqa: E402
from _record import finish, machine_info  # noqa: E402
from cakes_lite.official import official_layouts  # noqa: E402


def _zoo(names):
    return lambda: {n: zoo.load_model(n, ROOT / "app" / "zoo")[0] for n in names}


#: family -> (builder of {name: model}, parent name, input (C, D, H, W)); parent listed first
FAMILIES = {
    "zoo-video": (_zoo(["video_3d", "video_cakes_p", "video_cakes_budget", "video_cakes_block16",
                        "video_cakes_c"]),
                  "video_3d", (3, 8, 32, 32)),
    "zoo-volume": (_zoo(["volume_3d", "volume_cakes_c", "volume_cakes_block8"]), "volume_3d",
                   (1, 64, 64, 64)),
    "resnet3d_tiny": (lambda: {"resnet3d_tiny 3d": resnet3d_tiny(num_classes=13),
                               "resnet3d_tiny cakes(video-123d even)":
                                   resnet3d_tiny(num_classes=13, builder="cakes")},
                      "resnet3d_tiny 3d", (3, 8, 32, 32)),
    "unet3d_tiny": (lambda: {"unet3d_tiny 3d": unet3d_tiny(),
                             "unet3d_tiny cakes(volume-2d even)":
                                 unet3d_tiny(builder="cakes:volume-2d")},
                    "unet3d_tiny 3d", (1, 24, 24, 24)),
}


def _cases(family: str, batch: int, device: str, export: bool, parent_copy: bool):
    """name -> (module, input, MACs, model name, form) for one family at one batch size."""
    build, parent, chw = FAMILIES[family]
    torch.manual_seed(0)
    x = torch.randn(batch, *chw, device=device)
    cases = {}
    for name, model in build().items():
        model = model.to(device).eval()
        macs = profile(model, x).macs
        forms = {"eager": model, "infer": for_inference(model, example=x)}
        if export:
            forms.update(exported_forms(model, x))
        for form, m in forms.items():
            cases[f"{name} | {form}"] = (m, x, macs, name, form)
        if parent_copy and name == parent:
            for form in ("eager", "infer"):
                cases[f"{name} copy | {form}"] = (
                    copy.deepcopy(model) if form == "eager" else for_inference(model), x, macs,
                    f"{name} copy", form)
    return cases, parent


def _rows(cases, medians, parent):
    rows = []
    for key, (_, _, macs, name, form) in cases.items():
        ref = f"{parent} | {form}" if f"{parent} | {form}" in cases else f"{parent} | eager"
        t, t3, m3 = medians[key], medians[ref], cases[ref][2]
        rows.append({"model": name, "form": form, "ms": t, "mac_ratio": macs / m3,
                     "time_ratio": t / t3, "eff": (t3 / t) / (m3 / macs),
                     "vs_eager_3d": t / medians[f"{parent} | eager"],
                     "vs_eager_self": t / medians[f"{name} | eager"]})
    return rows


def _print(title, rows):
    print(f"\n{title}")
    print(f"{'model':40s} {'form':6s} {'ms':>8s} {'MACs':>5s} {'t/t3d':>6s} {'eff':>5s} "
          f"{'vs eager 3d':>11s} {'vs own eager':>12s}")
    for r in rows:
        print(f"{r['model']:40s} {r['form']:6s} {r['ms']:8.2f} {r['mac_ratio']:5.2f} "
              f"{r['time_ratio']:6.2f} {r['eff']:5.2f} {r['vs_eager_3d']:11.2f} "
              f"{r['vs_eager_self']:12.2f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed interleaved rounds")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, action="append", help="default: 1 and 8")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--only", action="append", choices=list(FAMILIES))
    parser.add_argument("--clock", choices=["wall", "thread"], default="wall",
                        help="thread: CPU time of the timing thread (with --threads 1 only), "
                             "robust to other processes on a loaded machine")
    parser.add_argument("--export", action="store_true", help="also torch.export and ONNX")
    parser.add_argument("--out", help="JSON results (default: benchmarks/results/"
                        "model_speed_<threads>thread.json)")
    parser.add_argument("--parent-copy", action="store_true",
                        help="also time a second copy of each parent (the noise band)")
    i3d = parser.add_argument_group("the paper's network (--i3d)")
    i3d.add_argument("--i3d", action="store_true", help="resnet50_i3d cells, resumable")
    i3d.add_argument("--size", type=int, action="append", help="frame side (default 112)")
    i3d.add_argument("--layout", action="append", help="official layout (default: all six)")
    i3d.add_argument("--budget-s", type=float, default=120.0,
                     help="timing seconds per cell: rounds = budget / round time, 3 to --repeats")
    i3d.add_argument("--tune-budget-s", type=float, default=20.0,
                     help="tune_plans(budget_s=) for the CAKES network")
    i3d.add_argument("--force", action="store_true", help="measure cells already in the file")
    args = parser.parse_args(argv)
    if args.i3d:
        return _i3d(args)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available on this machine")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.out is None:
        args.out = str(ROOT / "benchmarks" / "results"
                       / f"model_speed_{torch.get_num_threads()}thread.json")
    if args.clock == "thread" and (torch.get_num_threads() != 1 or args.device != "cpu"):
        raise SystemExit("--clock thread: needs --threads 1 and --device cpu")
    result = {**machine_info(), "device": args.device, "repeats": args.repeats,
              "clock": args.clock,
              "load_before": os.getloadavg(), "runs": []}
    t_start = time.perf_counter()
    for family in args.only or list(FAMILIES):
        for batch in args.batch or [1, 8]:
            cases, parent = _cases(family, batch, args.device, args.export, args.parent_copy)
            samples = latency_samples({k: (c[0], c[1]) for k, c in cases.items()},
                                      args.repeats, args.warmup, clock=args.clock)
            medians = {k: statistics.median(v) for k, v in samples.items()}
            rows = _rows(cases, medians, parent)
            title = f"{args.device} {family} batch {batch} input {tuple(cases[next(iter(cases))][1].shape)}"
            _print(title, rows)
            plans = {}
            for k, c in cases.items():
                for name, m in getattr(c[0], "named_modules", lambda: [])():
                    if getattr(m, "last_plan", None):
                        plans.setdefault(c[3], {})[name] = m.last_plan
            result["runs"].append({"family": family, "batch": batch, "parent": parent,
                                   "load": os.getloadavg(), "rows": rows, "plans": plans})
    finish(result, t_start, args.out)
    print(f"\n{result['seconds']:.0f} s; load {result['load_before']} -> {result['load_after']}; "
          f"{result['threads']} threads, ISA {result['isa']}; results -> {args.out}")
    return 0


def _i3d(args) -> int:
    """The resnet50_i3d grid, cell by cell (module docstring); bad values exit 2, one line."""
    sizes, batches = args.size or [112], args.batch or [1]
    layouts = args.layout or list(official_layouts())
    try:
        check_cells(sizes, batches, layouts)
        if args.repeats < 3 or args.budget_s <= 0 or args.tune_budget_s < 0:
            raise ValueError(f"--repeats/--budget-s/--tune-budget-s: expected >= 3, > 0 and "
                             f">= 0, got {args.repeats}, {args.budget_s}, {args.tune_budget_s}")
        if args.device != "cpu":
            raise ValueError(f"--device: --i3d measures the CPU only, got {args.device!r}")
    except ValueError as err:
        print(f"model_speed.py: {err}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    out = run_cells(ROOT, sizes, batches, layouts, args.repeats, args.budget_s,
                    args.tune_budget_s, args.force, echo=lambda line: print(line, flush=True),
                    parent_copy=args.parent_copy, out=args.out)
    print(f"results -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
