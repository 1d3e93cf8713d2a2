"""What does a search step cost? Supernet training step time versus a plain training step.

Times one SGD training step (forward, cross-entropy, backward, optimizer step) of

* ``plain``        — the model with full k×k×k convolutions (the reference, 1.0×),
* ``performance``  — its performance-priority supernet (C_out of n·C_out candidates sampled
  per layer and step; target ≤ 1.3× the plain step),
* ``cost``         — its cost-priority supernet (all n·C_out candidates run and are summed per
  channel, plus the L1 step on γ; n× wider in the searched layers),

interleaved (one step of each per round, the order rotated per round; cakes_lite.speed's
timer) after warm-up, and reports medians, ratios to
plain, and the MACs of one forward pass of each (training-mode MACs for performance priority
are those of the sampled channels, on average the even split). Wall time and process CPU time
are both recorded: on a shared, oversubscribed machine the CPU-time ratio (with ``--threads 1``)
is the trustworthy one. Results: ``benchmarks/results/search_cost.json``.

    python benchmarks/search_cost.py --repeats 15 --threads 1    # the numbers in results/
    python benchmarks/search_cost.py [--repeats 20] [--batch 8] [--threads 2] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _malloc import reexec_with_malloc_tunables  # noqa: E402

reexec_with_malloc_tunables()  # before torch: page faults make CPU timings bimodal otherwise

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import cakes_lite as cl  # noqa: E402
from cakes_lite._helpers import atomic_write_text  # noqa: E402
from cakes_lite.models import resnet3d_tiny  # noqa: E402
from cakes_lite.speed import interleaved_samples  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "search_cost.json"


def build_model(num_classes: int = 10) -> tuple[nn.Module, str]:
    """resnet3d_tiny with full 3D convs (stem 16, stages 16/32/64) for 8×32×32 clips."""
    return resnet3d_tiny(num_classes=num_classes, builder="3d"), "resnet3d_tiny(builder='3d')"


def make_step(model: nn.Module, x, y, sparsity: float = 0.0):
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    model.train()

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if sparsity:
            cl.sparsity_step(model, sparsity)
        opt.step()

    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=20, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per variant first")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--space", default="video-123d")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base, model_name = build_model()
    shape = (args.batch, 3, args.frames, args.size, args.size)
    x = torch.randn(shape, device=args.device)
    y = torch.randint(0, 10, (args.batch,), device=args.device)
    models = {
        "plain": base,
        "performance": cl.supernet(base, args.space, "performance"),
        "cost": cl.supernet(base, args.space, "cost"),
    }
    macs = {}
    for name, m in models.items():
        m.to(args.device)
        macs[name] = cl.profile(m, (1, *shape[1:])).macs
    steps = {name: make_step(m, x, y, 1e-3 if name == "cost" else 0.0)
             for name, m in models.items()}
    # interleaved (rotating order), so drifts hit every variant alike; wall and CPU time of the
    # same steps
    samples = interleaved_samples(steps, args.repeats, args.warmup, clock=("wall", "process"),
                                  device=args.device)
    times = {name: [s[0] for s in v] for name, v in samples.items()}
    cpu = {name: [s[1] for s in v] for name, v in samples.items()}
    med = {name: statistics.median(t) for name, t in times.items()}
    med_cpu = {name: statistics.median(t) for name, t in cpu.items()}
    rows = {name: {"median_ms": med[name], "ratio": med[name] / med["plain"],
                   "cpu_median_ms": med_cpu[name],
                   "cpu_ratio": med_cpu[name] / med_cpu["plain"],
                   "macs_forward": macs[name], "macs_ratio": macs[name] / macs["plain"],
                   "times_ms": times[name]} for name in steps}
    print(f"{model_name}, input {shape}, space {args.space}, {args.device}, "
          f"{args.threads} threads, {args.repeats} interleaved steps each (median)")
    print(f"{'variant':<12} {'ms/step':>9} {'× plain':>8} {'CPU ms':>8} {'× plain':>8} "
          f"{'MACs × plain':>13}")
    for name, r in rows.items():
        print(f"{name:<12} {r['median_ms']:9.1f} {r['ratio']:8.2f} {r['cpu_median_ms']:8.1f} "
              f"{r['cpu_ratio']:8.2f} {r['macs_ratio']:13.2f}")
    result = {"model": model_name, "load_average": os.getloadavg(), "input_shape": list(shape),
              "space": args.space,
              "device": args.device, "threads": args.threads, "repeats": args.repeats,
              "torch": torch.__version__, "platform": platform.platform(),
              "cpu": platform.processor(), "target_performance_ratio": 1.3, "variants": rows}
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
