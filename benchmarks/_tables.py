"""The measured tables of the docs, each made from the result files it names (the markdown
only; ``docs_tables.py`` puts them into the documents)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
ZOO = ROOT / "app" / "zoo"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare_report import LABELS, paired, summarise  # noqa: E402

#: settings of the speed tables: result file -> column title; the file must say it was run so
LAYER_SETTINGS = {"layer_speed.json": "AVX-512, 2 threads",
                  "layer_speed_1thread.json": "AVX-512, 1 thread",
                  "layer_speed_avx2.json": "AVX2, 2 threads",
                  "layer_speed_1thread_avx2.json": "AVX2, 1 thread"}
MODEL_SETTINGS = {"model_speed_2thread.json": "AVX-512, 2 thr.",
                  "model_speed_1thread.json": "AVX-512, 1 thr.",
                  "model_speed_2thread_avx2.json": "AVX2, 2 thr."}
#: model_speed.py's inputs (C, D, H, W per sample) and names, as the tables show them
MODEL_LABELS = {
    "video_cakes_p": "video_cakes_p (1×3×8×32²)",
    "volume_cakes_c": "volume_cakes_c (1×1×64³)",
    "resnet3d_tiny cakes(video-123d even)":
        'resnet3d_tiny, builder "cakes" (video-123d even; 1×3×8×32²)',
    "unet3d_tiny cakes(volume-2d even)": 'unet3d_tiny, "cakes:volume-2d" (1×1×24³)',
}
PARENT_LABELS = {"resnet3d_tiny 3d": "resnet3d_tiny", "unet3d_tiny 3d": "unet3d_tiny"}


def load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text(encoding="utf-8"))


def _setting(doc: dict, name: str, title: str) -> dict:
    """``doc``, after checking that it was measured as ``title`` claims (ISA and threads)."""
    threads = 1 if "1 thr" in title else 2
    avx2 = title.startswith("AVX2")
    if doc["threads"] != threads or (doc.get("ATEN_CPU_CAPABILITY") == "avx2") != avx2:
        raise ValueError(f"{name}: expected a run with {title}, got threads={doc['threads']}, "
                         f"ATEN_CPU_CAPABILITY={doc.get('ATEN_CPU_CAPABILITY')!r}")
    return doc


def _rows(lines: list[str]) -> str:
    return "\n".join(lines) + "\n"


def _kernel(name: str) -> str:
    return name.replace("x", "×")


def _signed(value: float) -> str:
    """+0.3, −1.8: one decimal, a sign always, a typographic minus."""
    return f"{value:+.1f}".replace("-", "−")


def _ms(value: float) -> str:
    """Three significant digits without exponent: 1.07, 20.0, 254."""
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def layer_speed() -> str:
    """Efficiency forward / forward+backward of each layout in every setting."""
    docs = {n: _setting(load(n), n, t) for n, t in LAYER_SETTINGS.items()}
    cells: dict[tuple[str, str], dict[str, list[str]]] = {}
    macs, parts = {}, {}
    for name, doc in docs.items():
        for run in doc["runs"]:
            if run["device"] != "cpu":
                continue
            for row in run["rows"]:
                if row["layout"] == "r2plus1d":
                    continue
                key = (row["layout"], run["shape_name"])
                cells.setdefault(key, {}).setdefault(name, []).append(f"{row['ours_eff']:.2f}")
                macs[key] = row["mac_ratio"]
                if name == "layer_speed.json":
                    parts.setdefault(key, []).append(f"{row['parts_eff']:.2f}")
    head = " | ".join(LAYER_SETTINGS.values())
    lines = [f"| layout (input) | MACs | {head} | one call per group (AVX-512, 2 thr.) |",
             "|---|---|" + "---|" * (len(LAYER_SETTINGS) + 1)]
    for (layout, shape), per in cells.items():
        effs = " | ".join(" / ".join(per[n]) for n in LAYER_SETTINGS)
        lines.append(f"| {layout} ({shape}) | {macs[layout, shape]:.2f} | {effs} | "
                     f"{' / '.join(parts[layout, shape])} |")
    return _rows(lines)


def by_model(doc: dict, form: str) -> dict[str, dict[int, dict]]:
    """model -> batch -> row of ``form`` (``infer``, ``onnxrt``, ``eager``, ``export``)."""
    out: dict[str, dict[int, dict]] = {}
    for run in doc["runs"]:
        for row in run["rows"]:
            if row["form"] == form:
                out.setdefault(row["model"], {})[run["batch"]] = {**row, "parent": run["parent"]}
    return out


def model_speed() -> str:
    """Time CAKES / parent (both through for_inference) per setting at batch 1 / 8, the ONNX
    Runtime forms' ratio, and the range of model efficiencies over the PyTorch settings."""
    docs = {n: _setting(load(n), n, t) for n, t in MODEL_SETTINGS.items()}
    infer = {n: by_model(d, "infer") for n, d in docs.items()}
    onnx = by_model(docs["model_speed_2thread.json"], "onnxrt")
    head = " | ".join(f"{t} b1 / b8" for t in MODEL_SETTINGS.values())
    lines = [f"| model (input) | MACs | {head} | ONNX Runtime b1 / b8 | efficiency |",
             "|---|---|" + "---|" * (len(MODEL_SETTINGS) + 2)]
    first = infer["model_speed_2thread.json"]
    for model, by_batch in first.items():
        if by_batch[1]["parent"] == model:
            continue
        ratios = " | ".join(f"{infer[n][model][1]['time_ratio']:.2f} / "
                            f"{infer[n][model][8]['time_ratio']:.2f}" for n in MODEL_SETTINGS)
        effs = [infer[n][model][b]["eff"] for n in MODEL_SETTINGS for b in (1, 8)]
        lines.append(f"| {MODEL_LABELS.get(model, model)} | {by_batch[1]['mac_ratio']:.2f} | "
                     f"{ratios} | {onnx[model][1]['time_ratio']:.2f} / "
                     f"{onnx[model][8]['time_ratio']:.2f} | {min(effs):.2f}–{max(effs):.2f} |")
    return _rows(lines)


def model_parents() -> str:
    """The full-3D parents' own median times (ms) at 2 threads, AVX-512, in every form."""
    doc = _setting(load("model_speed_2thread.json"), "model_speed_2thread.json",
                   MODEL_SETTINGS["model_speed_2thread.json"])
    forms = {"infer": "for_inference", "eager": "as loaded", "export": "torch.export",
             "onnxrt": "ONNX Runtime"}
    rows = {f: by_model(doc, f) for f in forms}
    lines = ["| parent (ms, batch 1 / 8) | " + " | ".join(forms.values()) + " |",
             "|---|" + "---|" * len(forms)]
    for model, by_batch in rows["infer"].items():
        if by_batch[1]["parent"] != model:
            continue
        cells = " | ".join(f"{_ms(rows[f][model][1]['ms'])} / {_ms(rows[f][model][8]['ms'])}"
                           for f in forms)
        lines.append(f"| {PARENT_LABELS.get(model, model)} | {cells} |")
    return _rows(lines)


def search_cost() -> str:
    """A search step's time (median) relative to a plain training step, 2 threads and 1."""
    docs = {2: load("search_cost.json"), 1: load("search_cost_1thread.json")}
    for threads, doc in docs.items():
        if doc["threads"] != threads:
            raise ValueError(f"search_cost: expected a run with {threads} thread(s), "
                             f"got {doc['threads']}")
    lines = ["| step | forward MACs | time, 2 threads | time, 1 thread |", "|---|---|---|---|"]
    titles = {"plain": "plain training step (full 3D)", "performance": "CAKES^P search step",
              "cost": "CAKES^C search step"}
    for variant, title in titles.items():
        v2, v1 = docs[2]["variants"][variant], docs[1]["variants"][variant]
        lines.append(f"| {title} | {v2['macs_ratio']:.2f}× | {v2['ratio']:.2f}× | "
                     f"{v1['ratio']:.2f}× |")
    return _rows(lines)


def compare_table(task: str) -> str:
    """Mean ± std over seeds of every variant of ``task`` in compare.json."""
    rows = summarise(load("compare.json")["runs"])[task]
    name = "top-1 % (reversed pairs)" if task == "video" else "mean Dice %"
    lines = [f"| variant | {name} | MACs (M) | MACs vs 3D | params (k) | train CPU s |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        metric = f"{100 * r['metric_mean']:.1f} ± {100 * r['metric_std']:.1f}"
        if "pairs_mean" in r:
            metric += f" ({100 * r['pairs_mean']:.1f})"
        lines.append(f"| {r['label']} | {metric} | {r['macs'] / 1e6:.2f} | "
                     f"{100 * r['macs_vs_3d']:.0f} % | {r['params'] / 1e3:.1f} | "
                     f"{r['train_cpu_seconds']:.0f} |")
    return _rows(lines)


def _short(variant: str) -> str:
    return {"cakes-uniform": "CAKES uniform (even split)"}.get(variant, LABELS[variant])


def compare_paired() -> str:
    """Searched layouts minus the controls (even split, random layouts, full 3D, CAKES^P),
    paired by seed: the pairs compare_report.paired reports."""
    lines = ["| task | a | − b | seeds | mean a − b ± std (points) | 95 % interval |",
             "|---|---|---|---|---|---|"]
    for key, p in paired(load("compare.json")["runs"]).items():
        task = key.partition("/")[0]
        lines.append(f"| {task} | {_short(p['a'])} | {_short(p['b'])} | {p['n']} | "
                     f"{_signed(p['mean'])} ± {p['std']:.1f} | "
                     f"{_signed(p['ci95'][0])} … {_signed(p['ci95'][1])} |")
    return _rows(lines)


def compare_layouts() -> str:
    """Sub-kernel shares of the searched layouts (min–max over seeds): performance priority,
    cost priority with the paper's fixed L1, and cost priority aimed at CAKES^P's MACs."""
    doc = load("compare.json")
    ref = {t: [r["macs"] for r in doc["runs"] if r["task"] == t and r["variant"] == "3d"][0]
           for t in ("video", "volume")}
    lines = ["| task | variant | seeds | metric % | MACs vs 3D | share of the channels, % "
             "(min–max over seeds) |", "|---|---|---|---|---|---|"]
    cases = [("cakes-P", "CAKES^P"), ("cakes-C", "CAKES^C (paper's L1)"),
             ("cakes-C@P", "CAKES^C aimed at ^P's MACs")]
    for task in ("video", "volume"):
        for variant, title in cases:
            runs = [r for r in doc["runs"] if r["task"] == task and r["variant"] == variant]
            if not runs:
                continue
            row = next(r for r in summarise(runs)[task] if r["variant"] == variant)
            shares = ", ".join(
                f"{_kernel(k)} {100 * min(r['layout_shares'][k] for r in runs):.0f}–"
                f"{100 * max(r['layout_shares'][k] for r in runs):.0f}"
                for k in runs[0]["layout_shares"])
            lines.append(f"| {task} | {title} | {row['n']} | {100 * row['metric_mean']:.1f} ± "
                         f"{100 * row['metric_std']:.1f} | {100 * row['macs'] / ref[task]:.0f} % "
                         f"| {shares} |")
    return _rows(lines)


def zoo() -> str:
    """The app's bundled models with the metrics their build recorded."""
    lines = ["| model | what it is | evaluated on | metric | MACs | params |",
             "|---|---|---|---|---|---|"]
    for name in json.loads((ZOO / "index.json").read_text(encoding="utf-8"))["models"]:
        meta = json.loads((ZOO / f"{name}.json").read_text(encoding="utf-8"))
        m, data = meta["metrics"], meta["data"]
        if meta["task"] == "classification":
            test = data["test"]
            where = f"synthetic video, {test['split']} split ({test['clips']} clips)"
            metric = f"top-1 {m['top1']:.3f} (reversed pairs {m['top1_reversed_pairs']:.3f})"
        else:
            where = f"MNI152, held-out slab ({data['val']['split']} split)"
            metric = (f"mean Dice {m['dice_mean']:.3f} (grey {m['dice_grey matter']:.3f}, "
                      f"white {m['dice_white matter']:.3f})")
        lines.append(f"| {name} | {meta['title']} | {where} | {metric} | "
                     f"{meta['macs'] / 1e6:.1f} M | {meta['params'] / 1e3:.1f} k |")
    return _rows(lines)


