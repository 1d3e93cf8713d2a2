"""Why is the 2D baseline weak on something-something-lite? Controlled runs that answer it.

The compare benchmark's 2D network (``resnet3d_tiny(builder="2d")``: every 3×3×3 conv a 1×3×3
one) reaches ~20 % top-1 on the 13 classes, far below the ~42 % a frame-order-blind model was
expected to reach. Each *part* below isolates one explanation, on compare.py's video recipe (780
training / 260 held-out clips of 8×32×32, 5 epochs AdamW lr 3e-3, batch 26, 1 thread) unless the
part changes one knob:

    compare13   2d, 3d and 2d-allframes (the 2D net without temporal stride: it sees every
                frame) on all 13 classes, seeds 0-9: per-class accuracy and confusion
    epochs      2d for 40 epochs, 3d for 20 (seed 0): train vs held-out top-1 per epoch
    lr          2d at lr 1e-3 and 1e-2 (seeds 0-2)
    wide        2d with widths 27/54/108 (219 k params, as many as 3d's 226 k; seeds 0-2)
    static      the three static shapes alone (780 clips of 3 classes): 2d, 3d, 2d-allframes
                (seeds 0-2), and 2d / 3d with a stride-1 stem (full 32×32 resolution)
    pairs       two-class tasks: move_right vs move_down (the same frames, different motion)
                and grow vs shrink (a time-reversed pair): 2d, 2d-allframes, 3d (seeds 0-2)

plus the analytic ceiling of any bag-of-frames model (``frame_blind_ceiling``). Results:
``benchmarks/results/twod_diagnosis.json`` (rewritten after every run; reruns skip done runs).

    python benchmarks/twod_diagnosis.py --parts compare13 --threads 1
    python benchmarks/twod_diagnosis.py --summary      # print the tables from the JSON
    # parts in parallel single-thread processes, then merged (how the committed file was made):
    python benchmarks/twod_diagnosis.py --parts pairs --out /tmp/a.json   # …
    python benchmarks/twod_diagnosis.py --merge /tmp/a.json /tmp/b.json   # into --out
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

import torch  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import cakes_lite as cl  # noqa: E402
from cakes_lite._helpers import atomic_write_text  # noqa: E402
from cakes_lite.data import CLASSES, REVERSED_PAIRS, SomethingLite  # noqa: E402
from cakes_lite.data.frame_blind import class_groups, frame_blind_ceiling  # noqa: E402
from cakes_lite.models import resnet3d_tiny  # noqa: E402
from cakes_lite.train import fit  # noqa: E402
from cakes_lite.viz.training import class_accuracy, confusion_matrix, pair_confusion  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "twod_diagnosis.json"
STATIC = ("static_disk", "static_square", "static_cross")
ALL = list(range(10))
#: name -> resnet3d_tiny keyword arguments
NETS = {
    "2d": dict(builder="2d"),
    "3d": dict(builder="3d"),
    "2d-allframes": dict(builder="2d", temporal_stride=False),
    "2d-wide": dict(builder="2d", widths=(27, 54, 108)),
    "2d-stem1": dict(builder="2d", stem_stride=1),
    "3d-stem1": dict(builder="3d", stem_stride=1),
}
#: part -> list of (task classes, net, seeds, fit overrides, curves?)
PARTS = {
    "compare13": [(CLASSES, n, ALL, {}, False) for n in ("2d", "3d", "2d-allframes")],
    "epochs": [(CLASSES, "2d", [0], {"epochs": 40}, True),
               (CLASSES, "3d", [0], {"epochs": 20}, True)],
    "lr": [(CLASSES, "2d", [0, 1, 2], {"lr": lr}, False) for lr in (1e-3, 1e-2)],
    "wide": [(CLASSES, "2d-wide", [0, 1, 2], {}, False)],
    "static": [(STATIC, n, [0, 1, 2], {}, False) for n in ("2d", "3d", "2d-allframes")]
    + [(STATIC, n, [0, 1], {}, False) for n in ("2d-stem1", "3d-stem1")],
    "pairs": [(task, n, [0, 1, 2], {}, False)
              for task in (("move_right", "move_down"), ("grow", "shrink"))
              for n in ("2d", "2d-allframes", "3d")],
}
RECIPE = dict(train=780, val=260, frames=8, size=32, batch_size=26, epochs=5, lr=3e-3)


def task_data(classes, cache: dict) -> tuple:
    """(x, y, xv, yv) of a task: compare.py's clips for all 13 classes, else its own subset."""
    key = tuple(classes)
    if key not in cache:
        sets = [SomethingLite(RECIPE[s], s, RECIPE["frames"], RECIPE["size"],
                              classes=None if key == CLASSES else list(key), seed=0)
                for s in ("train", "val")]
        cache[key] = (*sets[0].tensors(), *sets[1].tensors())
    return cache[key]


def run(classes, net: str, seed: int, over: dict, curves: bool, cache: dict) -> dict:
    """Train one network from scratch (compare.py's recipe + ``over``) and score it."""
    x, y, xv, yv = task_data(classes, cache)
    torch.manual_seed(seed)
    model = resnet3d_tiny(len(classes), **NETS[net])
    cost = cl.profile(model, (1, 3, RECIPE["frames"], RECIPE["size"], RECIPE["size"]))
    loader = DataLoader(TensorDataset(x, y), RECIPE["batch_size"], shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    opts = {"epochs": RECIPE["epochs"], "lr": RECIPE["lr"], **over}
    c0 = time.process_time()
    result = fit(model, loader, [(xv, yv)] if curves else None, task="classification",
                 optimizer="adamw", weight_decay=0.05, warmup_epochs=0.5, seed=seed,
                 device="cpu", progress=False, **opts)
    cpu = time.process_time() - c0
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(xv[i:i + 64]).argmax(1) for i in range(0, len(xv), 64)])
    m = confusion_matrix(yv.numpy(), pred.numpy(), len(classes))
    h = result.history
    return {"task": list(classes), "net": net, "seed": seed, **{k: v for k, v in over.items()},
            "top1": float((pred == yv).float().mean()),
            "per_class": class_accuracy(m, classes), "confusion": m.tolist(),
            "pair_confusion": pair_confusion(m, classes, [p for p in REVERSED_PAIRS
                                                          if set(p) <= set(classes)]),
            "train_top1": [round(e["train_top1"], 4) for e in h],
            "val_top1": [round(e["val_top1"], 4) for e in h] if curves else None,
            "train_loss": float(h[-1]["train_loss"]), "params": int(cost.params),
            "macs": int(cost.macs), "train_cpu_seconds": round(cpu, 1)}


def key(r: dict) -> tuple:
    return (tuple(r["task"]), r["net"], r["seed"], r.get("epochs"), r.get("lr"))


def summary(doc: dict) -> list[str]:
    """One line per (task, net, knobs): mean ± std top-1 over seeds, group accuracies."""
    groups: dict[tuple, list[dict]] = {}
    for r in doc["runs"]:
        groups.setdefault(key(r)[:2] + key(r)[3:], []).append(r)
    lines = []
    for (task, net, epochs, lr), rs in groups.items():
        top = [r["top1"] for r in rs]
        sd = statistics.stdev(top) if len(top) > 1 else 0.0
        name = "all 13" if task == CLASSES else "/".join(task)
        knobs = "".join(f" {k}={v}" for k, v in (("epochs", epochs), ("lr", lr)) if v)
        line = (f"{name:26s} {net:13s}{knobs:12s} n={len(rs):2d} top-1 "
                f"{100 * statistics.fmean(top):5.1f} ± {100 * sd:4.1f} %  train "
                f"{100 * statistics.fmean(r['train_top1'][-1] for r in rs):5.1f} %")
        if task == CLASSES:
            acc = {g: statistics.fmean(statistics.fmean(r["per_class"][c] for c in cs)
                                       for r in rs) for g, cs in class_groups().items()}
            line += "  | " + "  ".join(f"{g} {100 * a:4.1f}" for g, a in acc.items())
            line += f"  | partner {100 * statistics.fmean(r['pair_confusion'] for r in rs):4.1f}"
        lines.append(line)
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS))
    p.add_argument("--threads", type=int, default=1, help="torch threads (compare.py used 1)")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--summary", action="store_true", help="only print the tables")
    p.add_argument("--merge", nargs="+", type=Path, default=(), metavar="JSON",
                   help="add the runs of these files (not already in --out) to --out, then stop")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    doc = json.loads(args.out.read_text()) if args.out.exists() else {
        "format": "cakes_lite.twod_diagnosis", "recipe": RECIPE, "runs": []}
    doc["ceiling"] = {"shape_seen": frame_blind_ceiling(shape_visible=True),
                      "shape_unseen": frame_blind_ceiling(shape_visible=False)}
    done = {key(r) for r in doc["runs"]}
    for path in args.merge:
        for r in json.loads(path.read_text())["runs"]:
            if key(r) not in done:
                doc["runs"].append(r)
                done.add(key(r))
    if not args.summary and not args.merge:
        cache: dict = {}
        for part in args.parts:
            for classes, net, seeds, over, curves in PARTS[part]:
                for seed in seeds:
                    probe = {"task": list(classes), "net": net, "seed": seed, **over}
                    if key(probe) in done:
                        continue
                    rec = run(classes, net, seed, over, curves, cache)
                    doc["runs"].append({"part": part, **rec})
                    done.add(key(rec))
                    atomic_write_text(args.out, json.dumps(doc, indent=1) + "\n")
                    print(f"{part:9s} {net:13s} seed {seed} {over or ''}: top-1 "
                          f"{rec['top1']:.3f} (train {rec['train_top1'][-1]:.3f}, "
                          f"{rec['train_cpu_seconds']:.0f} CPU-s)", flush=True)
    atomic_write_text(args.out, json.dumps(doc, indent=1) + "\n")
    for name, c in doc["ceiling"].items():
        print(f"bag-of-frames ceiling, {name}: {100 * c['top1']:.1f} %")
    print("\n".join(summary(doc)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
