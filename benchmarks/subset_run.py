"""The recipes' commands end to end on fixture data: CAKES vs 3D vs P3D on a small subset.

What a user with Something-Something V1 runs on a small subset of it, run here on **fixture
data**: something-something-lite clips (time-reversed class pairs and still shapes, rendered by
:class:`cakes_lite.data.SomethingLite`) written as JPEG frame folders in the official SSv1 layout
(:func:`cakes_lite.data.fixtures.make_something_lite_fixture`). The commands are the documented
ones, in one process on the CPU, with the ``--smoke`` recipes (ResNet-50 I3D of width 8, 4
frames of 64 px) lengthened to a few epochs over the whole fixture:

1. ``search --recipe ssv1-r50-search-p`` -> ``layout.json`` (CAKES^P, sub-kernels 3×3×3,
   1×3×3, 3×1×1);
2. ``train --recipe ssv1-r50`` three times: with that layout (CAKES), ``--builder 3d`` (I3D)
   and ``--builder p3d`` (P3D: every 3×3×3 split into 1×3×3 then 3×1×1);
3. ``eval --checkpoint … --format json`` of each: top-1 / top-5 on the fixture's validation clips.

The lite classes have no left/right mirror pairs of SSv1's kind, so the flip is off
(``data.flip=false``, ``data.flip_pairs=none``: a flip would swap move_left and move_right). The numbers say that the
commands run and what they produce at this size, not how the recipes do on Something-Something.
Results: ``benchmarks/results/subset_run.json``.

    flock /tmp/cakes_heavy.lock python benchmarks/subset_run.py        # as the numbers in results/
    python benchmarks/subset_run.py --per-class 4 --epochs 1           # a quick try
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from _record import finish, machine_info  # noqa: E402

from cakes_lite.cli import main  # noqa: E402
from cakes_lite.data.fixtures import make_something_lite_fixture  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "subset_run.json"
#: two time-reversed pairs (need temporal kernels) and two still shapes (need spatial ones)
CLASSES = ("move_left", "move_right", "grow", "shrink", "static_disk", "static_square")


def run(argv: list[str]) -> dict:
    """One CLI command in this process; its last stdout line as JSON."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    if code:
        raise SystemExit(f"{' '.join(argv)}: exit {code}")
    return json.loads(out.getvalue().strip().splitlines()[-1])


def main_(args) -> dict:
    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = make_something_lite_fixture(Path(tmp) / "ssv1", classes=CLASSES,
                                           train_per_class=args.per_class,
                                           val_per_class=args.val_per_class, frames=12)
        common = ["--smoke", "--data-root", data, "--subset", f"{len(CLASSES)}x1000",
                  "--set", "data.flip=false", "--set", "data.flip_pairs=none",
                  "--set", "optim.max_steps_per_epoch=0",
                  "--batch-size", str(args.batch), "--lr", str(args.lr), "--no-progress"]
        layout = str(Path(tmp) / "layout.json")
        t = time.perf_counter()
        search = run(["search", "--recipe", "ssv1-r50-search-p", *common,
                      "--epochs", str(args.search_epochs), "--out", layout])
        rows = {"search": {**search, "seconds": time.perf_counter() - t}}
        for name, extra in (("cakes_p", ["--layout", layout]), ("i3d", ["--builder", "3d"]),
                            ("p3d", ["--builder", "p3d"])):
            out = str(Path(tmp) / name)
            t = time.perf_counter()
            trained = run(["train", "--recipe", "ssv1-r50", *common, *extra,
                           "--epochs", str(args.epochs), "--out", out])
            seconds = time.perf_counter() - t
            scores = run(["eval", "--checkpoint", out, "--format", "json", "--no-progress"])
            rows[name] = {"macs": trained["macs"], "params": trained["params"],
                          "train_loss": trained.get("train_loss"),
                          "top1": scores["top1"], "top5": scores["top5"],
                          "val_items": scores["items"], "train_seconds": seconds}
            print(name, json.dumps(rows[name]), file=sys.stderr, flush=True)
    result = {"what": "fixture data (something-something-lite clips in the SSv1 layout), "
                      "not Something-Something", "classes": list(CLASSES),
              "train_per_class": args.per_class, "val_per_class": args.val_per_class,
              "epochs": args.epochs, "search_epochs": args.search_epochs, "batch": args.batch,
              "lr": args.lr, "rows": rows, "machine": machine_info()}
    finish(result, t0, args.out)
    return result


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-class", type=int, default=24, help="training clips per class")
    p.add_argument("--val-per-class", type=int, default=8, help="validation clips per class")
    p.add_argument("--epochs", type=int, default=8, help="training epochs of each network")
    p.add_argument("--search-epochs", type=int, default=2, help="search epochs")
    p.add_argument("--batch", type=int, default=8, help="global batch")
    p.add_argument("--lr", type=float, default=0.005, help="lr at that batch (unscaled)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--out", default=str(OUT), help="result JSON")
    res = main_(p.parse_args())
    print(json.dumps({k: v for k, v in res["rows"].items()}, indent=1))
