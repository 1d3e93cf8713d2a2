"""The paper's claim in small: accuracy vs MACs of CAKES and the baselines.

On something-something-lite (``resnet3d_tiny``, top-1) and MNI152 tissue segmentation
(``unet3d_tiny``, mean foreground Dice) trains the *same* network with every k×k×k conv as

    3d, 2d, p3d, r2plus1d, csn          the baseline builders (cakes_lite.baselines; the 2D
                                        net strides time like the others, so its classifier
                                        sees frames 0 and 4 only — why it stays near 20 %:
                                        benchmarks/twod_diagnosis.py)
    cakes-uniform                       Layout.uniform(model, space) + shrink (the even split)
    cakes-random                        a random layout with the searched-layer MACs of that
                                        seed's CAKES^P layout (random |γ|, budgeted derivation)
    cakes-P, cakes-C                    run_search(mode="performance" / "cost"), retrained
                                        from scratch with the derived layout
    cakes-C@P                           run_search(mode="cost", target=the searched-layer MACs
                                        fraction of that seed's CAKES^P layout): cost priority
                                        at CAKES^P's cost, so the two compare at equal MACs
    cakes-budget                        derive_layout(CAKES^P supernet, budget = the MACs the
                                        budget reference (p3d) spends in the searched layers)

for several seeds (each seed: its own init, data order and search; the data subsets are
fixed), then reports mean ± std, paired differences (CAKES^P vs the even split, random
layouts and full 3D; CAKES^C@P vs CAKES^P, random and the even split; 95 % t-intervals over
seeds), MACs and params (cakes_lite.profile, per
sample) and a Pareto plot. Video is scored on 260 held-out clips, volumes on the whole
held-out (anterior) slab of the template. Results are rewritten after every run (``--resume`` continues an interrupted
one): ``benchmarks/results/compare.json`` (committed), ``compare.html`` (plot, not committed).

    python benchmarks/compare.py            # full run: 10 seeds, both tasks
    python benchmarks/compare.py --quick    # CI smoke run: one step per variant, 1 seed
    # the full run as parallel single-thread processes (what made compare.json's video rows:
    # seeds 0-2, 3-5, 6-7, 8-9, two processes at a time), then merged:
    python benchmarks/compare.py --tasks video --seeds 0 1 2 --threads 1 --out /tmp/v0.json  # …
    python benchmarks/compare.py --merge /tmp/v*.json … --out benchmarks/results/compare.json
    # CAKES^C with a 10× weaker L1 (a probe, not the default):
    python benchmarks/compare.py --variants cakes-C --seeds 0 1 2 3 4 --cost-sparsity 1e-3 …

Cost: the video task (10 seeds, cakes-C@P included) is about 107 CPU-minutes of process time
(1 thread per process), the volume task about 13; see docs/results.md for the wall times.
Each record keeps ``train_cpu_seconds`` (and ``search_cpu_seconds``) for that reason.

Why the budget reference is P3D and not R(2+1)D: R(2+1)D chooses its middle width so that it
has the *params* of the 3D conv (Tran et al. 2018, eq. 1), so its MACs are ≥ the full 3D
conv's (more under spatial stride); a CAKES layout "with the MACs of R(2+1)D" would be all
k×k×k. ``--budget-ref r2plus1d`` still tries it (and stops with the reason if unreachable).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]  # cakes_lite, compare_report

import torch  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

import cakes_lite as cl  # noqa: E402
from cakes_lite.data import MNI152Tissue, SomethingLite, load_mni152  # noqa: E402
from cakes_lite.data.mni152 import mni152_split_bounds  # noqa: E402
from cakes_lite.layout import is_searchable  # noqa: E402
from cakes_lite.models import resnet3d_tiny, unet3d_tiny  # noqa: E402
from cakes_lite.search import BudgetWarning  # noqa: E402
from cakes_lite.train import evaluate, fit  # noqa: E402
from cakes_lite.train.metrics import default_loss  # noqa: E402
from compare_report import VARIANTS, load_avg, merge, report, write  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
BUILDER_VARIANTS = ("3d", "2d", "p3d", "r2plus1d", "csn")
#: the order runs are made in (the searched variants early, so a cut-short run has them)
RUN_ORDER = ("3d", "cakes-P", "cakes-uniform", "cakes-random", "cakes-C", "cakes-C@P",
             "cakes-budget", "2d", "p3d", "r2plus1d", "csn")
#: the variants whose layout comes from a search (re-run whenever the search changes)
SEARCHED = ("cakes-P", "cakes-random", "cakes-C", "cakes-C@P", "cakes-budget")


@dataclass
class TaskConfig:
    """One task of the comparison (defaults: the full run; ``QUICK`` shrinks them)."""

    task: str  # "video" (classification) or "volume" (segmentation)
    train: int  # training clips / random patches per epoch
    val: int  # validation clips (video); volume: 0 = the whole held-out slab
    epochs: int  # retraining epochs of every network
    batch_size: int  # samples per step
    lr: float  # AdamW peak lr (warm-up 0.5 epoch, cosine to 0)
    search_epochs: int  # supernet epochs of each run_search
    search_lr: float  # SGD lr of run_search
    space: str  # CAKES search space
    size: int = 32  # video frame size / volume patch size
    frames: int = 8  # video clip length
    spacing: float = 2.0  # volume voxel size (mm)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-sample input for MACs/params (batch 1)."""
        if self.task == "video":
            return (1, 3, self.frames, self.size, self.size)
        return (1, 1, self.size, self.size, self.size)


FULL = {
    # search length: 2 epochs at lr 0.05 left the video supernet at chance (8.7 % train top-1,
    # |γ| moved ≤ 0.03); 10 epochs at lr 0.1 reach 65 % (CAKES^P) / 84 % (CAKES^C) with |γ|
    # moving up to 0.4 (see "What we do differently" in the docs); 8 is what the time allows
    "video": TaskConfig("video", train=780, val=260, epochs=5, batch_size=26, lr=3e-3,
                        search_epochs=8, search_lr=0.1, space="video-123d"),
    "volume": TaskConfig("volume", train=64, val=0, epochs=6, batch_size=2, lr=3e-3,
                         search_epochs=4, search_lr=0.05, space="volume-all", size=24,
                         spacing=3.0),
}
QUICK = {  # one step per epoch: exercises every code path, learns nothing
    "video": replace(FULL["video"], train=13, val=13, epochs=1, batch_size=13, search_epochs=1,
                     size=16, frames=4),
    "volume": replace(FULL["volume"], train=2, epochs=1, batch_size=2, search_epochs=1,
                      size=16, spacing=4.0),
}


# -- data --------------------------------------------------------------------------------------

class TaskData:
    """Training loader factory and held-out evaluation set of one task (built once)."""

    def __init__(self, cfg: TaskConfig):
        self.cfg = cfg
        if cfg.task == "video":
            train = SomethingLite(cfg.train, "train", cfg.frames, cfg.size, seed=0)
            val = SomethingLite(cfg.val, "val", cfg.frames, cfg.size, seed=0)
            self.x, self.y = train.tensors()
            self.xv, self.yv = val.tensors()
            self.num_classes = len(train.classes)
            self.pairs = {c for pair in train.reversed_pairs for c in pair}
        else:
            self.train_set = MNI152Tissue("train", cfg.size, cfg.train, cfg.spacing, seed=0)
            image, labels = load_mni152(cfg.spacing)
            axis, lo, hi = mni152_split_bounds(tuple(labels.shape), "val")
            # the whole held-out (anterior) slab as one volume: (1, 1, D, h, W), (1, D, h, W)
            self.xv = image.narrow(axis + 1, lo, hi - lo)[None].contiguous()
            self.yv = labels.narrow(axis, lo, hi - lo)[None].contiguous()
            self.num_classes = 4

    def loader(self, seed: int) -> DataLoader:
        """Shuffled training batches (``fit`` re-seeds the order and patches every epoch)."""
        gen = torch.Generator().manual_seed(seed)
        if self.cfg.task == "video":
            return DataLoader(TensorDataset(self.x, self.y), self.cfg.batch_size, shuffle=True,
                              generator=gen)
        return DataLoader(self.train_set, self.cfg.batch_size, shuffle=True, generator=gen)

    @torch.no_grad()
    def score(self, model: torch.nn.Module) -> dict[str, float]:
        """Video: top-1 (and on the time-reversed-pair classes); volume: Dice on the slab."""
        model.eval()
        if self.cfg.task == "volume":
            r = evaluate(model, [(self.xv, self.yv)], "segmentation", num_classes=4)
            return {"metric": r["mean_dice"], "dice": r["dice"]}
        pred = torch.cat([model(self.xv[i:i + 64]).argmax(1) for i in range(0, len(self.xv), 64)])
        ok = pred == self.yv
        in_pairs = torch.tensor([int(c) in self.pairs for c in self.yv])
        return {"metric": float(ok.float().mean()),
                "top1_reversed_pairs": float(ok[in_pairs].float().mean())}


# -- models ------------------------------------------------------------------------------------

def base_model(cfg: TaskConfig, builder: str = "3d") -> torch.nn.Module:
    if cfg.task == "video":
        return resnet3d_tiny(13, builder=builder)
    return unet3d_tiny(4, builder=builder)


def searched_names(cfg: TaskConfig) -> list[str]:
    """The k×k×k Conv3d layers that every variant replaces (the searched layers)."""
    return [n for n, m in base_model(cfg).named_modules() if n and is_searchable(m)]


def searched_macs(model: torch.nn.Module, cfg: TaskConfig, names: list[str]) -> int:
    """MACs per sample spent in (what replaced) the searched layers."""
    rows = cl.profile(model, cfg.input_shape).layers
    return sum(r.macs for r in rows if any(r.name == n or r.name.startswith(n + ".")
                                           for n in names))


class Searches:
    """run_search results per (mode, seed, target), computed on first use."""

    def __init__(self, cfg: TaskConfig, data: TaskData, budget_ref: str,
                 cost_sparsity: float | None = None):
        self.cfg, self.data, self.budget_ref = cfg, data, budget_ref
        self.cost_sparsity = cost_sparsity  # None: run_search's default
        self.cache: dict[tuple, tuple[cl.SearchResult, float, float]] = {}

    def get(self, mode: str, seed: int, target: float | None = None
            ) -> tuple[cl.SearchResult, float, float]:
        """The search and its wall and CPU seconds."""
        key = (mode, seed, target)
        if key not in self.cache:
            task = "classification" if self.cfg.task == "video" else "segmentation"
            t0, c0 = time.perf_counter(), time.process_time()
            with warnings.catch_warnings():  # recorded below (settings, warning)
                warnings.simplefilter("ignore")
                result = cl.run_search(
                    base_model(self.cfg), self.data.loader(seed + 1000), space=self.cfg.space,
                    mode=mode, epochs=self.cfg.search_epochs, lr=self.cfg.search_lr,
                    sparsity=self.cost_sparsity if mode == "cost" and target is None else None,
                    target=target, loss_fn=default_loss(task), seed=seed, progress=False)
            self.cache[key] = (result, time.perf_counter() - t0, time.process_time() - c0)
        return self.cache[key]

    def layout(self, variant: str, seed: int) -> tuple[cl.Layout, float, dict]:
        if variant == "cakes-uniform":
            return cl.Layout.uniform(base_model(self.cfg), self.cfg.space), 0.0, {}
        if variant == "cakes-random":
            names = searched_names(self.cfg)
            found = self.get("performance", seed)[0].layout
            target = searched_macs(cl.shrink(base_model(self.cfg), found), self.cfg, names)
            layout, asked, note = random_layout(self.cfg, target, seed)
            return layout, 0.0, {"budget_macs": target, "budget_asked": asked, **note}
        target = None
        if variant == "cakes-C@P":  # cost priority aimed at this seed's CAKES^P cost
            target = self.get("performance", seed)[0].layout.meta["cost_fraction"]
        mode = "performance" if variant in ("cakes-P", "cakes-budget") else "cost"
        result, seconds, cpu = self.get(mode, seed, target)
        info = {"search_cpu_seconds": round(cpu, 2), "search": search_record(result)}
        if variant != "cakes-budget":
            return result.layout, seconds, info
        names = searched_names(self.cfg)
        target = searched_macs(base_model(self.cfg, self.budget_ref), self.cfg, names)
        full = searched_macs(base_model(self.cfg), self.cfg, names)
        layout, asked, note = budgeted_layout(result.supernet, target, self.cfg.input_shape)
        return layout, seconds, {**info, "budget_ref": self.budget_ref, "budget_macs": target,
                                 "budget_asked": asked, "budget_fraction": target / full,
                                 **note}


def search_record(result: cl.SearchResult) -> dict:
    """What a search ran and what it says about itself (kept with every searched variant)."""
    keep = ("warmup_epochs", "gamma_frozen_steps", "l1_steps", "sparsity", "target",
            "cost_fraction", "target_met")
    return {**{k: result.settings[k] for k in keep},
            "final_accuracy": result.history["accuracy"][-1],
            "max_gamma_moved": max(result.settings["gamma_moved"].values()),
            "warning": result.warning}


def budgeted_layout(supernet: torch.nn.Module, target: float, input_shape
                    ) -> tuple[cl.Layout, float, dict]:
    """derive_layout at ``target`` MACs (its closest layout, with the warning kept, where no
    layout is within its 2 % tolerance)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BudgetWarning)
        layout = cl.derive_layout(supernet, budget=target, input_shape=input_shape)
    missed = [str(w.message) for w in caught if issubclass(w.category, BudgetWarning)]
    return layout, target, ({"budget_warning": missed[0]} if missed else {})


def random_layout(cfg: TaskConfig, target: float, seed: int) -> tuple[cl.Layout, float, dict]:
    """A random layout spending ``target`` MACs in the searched layers: the budgeted
    derivation of a supernet whose importances are i.i.d. uniform (its own RNG stream)."""
    net = cl.supernet(base_model(cfg), cfg.space, "performance")
    gen = torch.Generator().manual_seed(10_000 + seed)
    with torch.no_grad():
        for _, layer in cl.search.search_layers(net):
            layer.bn.weight.copy_(torch.rand(layer.bn.weight.shape, generator=gen))
    return budgeted_layout(net.eval(), target, cfg.input_shape)


# -- one run -----------------------------------------------------------------------------------

def run_one(cfg: TaskConfig, data: TaskData, searches: Searches, variant: str,
            seed: int) -> dict:
    """Build, train from scratch and score one (variant, seed); returns its JSON record."""
    extra: dict = {}
    search_seconds = 0.0
    torch.manual_seed(seed)
    if variant in BUILDER_VARIANTS:
        model = base_model(cfg, variant)
    else:
        layout, search_seconds, extra = searches.layout(variant, seed)
        torch.manual_seed(seed)
        model = cl.shrink(base_model(cfg), layout, init="random")
        extra["layout_shares"] = layout.summary()["total"]["shares"]
        extra["layout"] = {k: dict(v) for k, v in layout.items()}
    names = searched_names(cfg)
    cost = cl.profile(model, cfg.input_shape)
    t0, c0 = time.perf_counter(), time.process_time()
    result = fit(model, data.loader(seed), task="classification" if cfg.task == "video"
                 else "segmentation", epochs=cfg.epochs, lr=cfg.lr, optimizer="adamw",
                 weight_decay=0.05, warmup_epochs=0.5, num_classes=data.num_classes,
                 seed=seed, device="cpu", progress=False)
    train_seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    score = data.score(result.model)
    return {"task": cfg.task, "variant": variant, "seed": seed, **score,
            "macs": int(cost.macs), "params": int(cost.params),
            "searched_macs": int(searched_macs(model, cfg, names)),
            "train_loss": float(result.last["train_loss"]),
            "train_seconds": round(train_seconds, 2), "train_cpu_seconds": round(cpu_seconds, 2),
            "search_seconds": round(search_seconds, 2),
            **extra}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CI smoke run: tiny subsets, 1 epoch")
    p.add_argument("--tasks", nargs="+", default=["video", "volume"], choices=["video", "volume"])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="seeds to run (default 0-9; quick: 0)")
    p.add_argument("--budget-ref", default="p3d", choices=["p3d", "2d", "r2plus1d"],
                   help="baseline whose searched-layer MACs the budgeted layout must match")
    p.add_argument("--volume-space", default=None, help="override the volume search space")
    p.add_argument("--cost-sparsity", type=float, default=None,
                   help="L1 strength of the CAKES^C search (default: run_search's)")
    p.add_argument("--set", action="append", default=[], metavar="TASK.FIELD=VALUE",
                   help="override a TaskConfig field, e.g. --set volume.epochs=5 (repeatable)")
    p.add_argument("--merge", nargs="+", type=Path, default=None, metavar="JSON",
                   help="only merge the runs of these result files into --out (+ plot, table)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--out", type=Path, default=None,
                   help="results JSON (default benchmarks/results/compare[_quick].json)")
    p.add_argument("--resume", action="store_true", help="skip runs already in --out")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    presets = QUICK if args.quick else FULL
    cfgs = {t: presets[t] for t in args.tasks}
    if args.volume_space and "volume" in cfgs:
        cfgs["volume"] = replace(cfgs["volume"], space=args.volume_space)
    for item in args.set:
        key, _, value = item.partition("=")
        task, _, name = key.partition(".")
        if task not in cfgs or name not in TaskConfig.__dataclass_fields__ or not value:
            p.error(f"--set: expected TASK.FIELD=VALUE with TASK in {list(cfgs)} and FIELD in "
                    f"{list(TaskConfig.__dataclass_fields__)}, got {item!r}")
        kind = type(getattr(cfgs[task], name))
        cfgs[task] = replace(cfgs[task], **{name: kind(value)})
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else list(range(10)))
    out = args.out or RESULTS / ("compare_quick.json" if args.quick else "compare.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.merge:
        report(merge(args.merge, out), out)
        return 0
    doc = {"format": "cakes_lite.compare", "version": 1, "mode": "quick" if args.quick else "full",
           "config": {t: asdict(c) for t, c in cfgs.items()}, "seeds": seeds,
           "budget_ref": args.budget_ref, "cost_sparsity": args.cost_sparsity,
           "metric": {"video": "top-1 on the val split", "volume": "mean foreground Dice, val slab"},
           "environment": {"torch": torch.__version__, "python": platform.python_version(),
                           "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                           "machine": platform.machine()},
           "load_start": load_avg(), "runs": []}
    if args.resume and out.exists():
        old = json.loads(out.read_text())
        if (old.get("config") == doc["config"] and old.get("budget_ref") == args.budget_ref
                and old.get("cost_sparsity") == args.cost_sparsity):
            doc["runs"] = old["runs"]
            doc["wall_prev"] = old.get("wall_seconds", 0.0)
    done = {(r["task"], r["variant"], r["seed"]) for r in doc["runs"]}
    todo = [(s, t, v) for s in seeds for t in cfgs for v in RUN_ORDER
            if v in args.variants and (t, v, s) not in done]
    t_start = time.perf_counter()
    data: dict[str, TaskData] = {}
    searches: dict[str, Searches] = {}
    bar = tqdm(todo, desc="compare", disable=args.no_progress)
    for seed, task, variant in bar:
        bar.set_postfix(task=task, variant=variant, seed=seed)
        if task not in data:
            data[task] = TaskData(cfgs[task])
            searches[task] = Searches(cfgs[task], data[task], args.budget_ref,
                                      args.cost_sparsity)
        rec = run_one(cfgs[task], data[task], searches[task], variant, seed)
        doc["runs"].append(rec)
        doc["wall_seconds"] = round(time.perf_counter() - t_start + doc.get("wall_prev", 0), 1)
        doc["load_end"] = load_avg()
        write(out, doc)
        seconds = rec["train_seconds"] + rec["search_seconds"]
        tqdm.write(f"{task:6s} {variant:13s} seed {seed}: metric {rec['metric']:.4f}  "
                   f"{rec['macs'] / 1e6:7.2f} M MACs  {seconds:6.1f} s")
    bar.close()
    doc["wall_seconds"] = round(time.perf_counter() - t_start + doc.get("wall_prev", 0), 1)
    doc["load_end"] = load_avg()
    report(doc, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
