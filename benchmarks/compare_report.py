"""Summary, claim check, Pareto plot and table of ``benchmarks/compare.py`` results.

A result document is ``{"runs": [one record per (task, variant, seed)], ...}``; everything here
is derived from its runs, so ``compare.py --merge`` can rebuild it from several partial files.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from pathlib import Path

from cakes_lite._helpers import atomic_write_text
from cakes_lite.viz.training import pareto

VARIANTS = ("3d", "2d", "p3d", "r2plus1d", "csn", "cakes-uniform", "cakes-random", "cakes-P",
            "cakes-C", "cakes-C@P", "cakes-budget")
LABELS = {"3d": "full 3D", "2d": "2D", "p3d": "P3D", "r2plus1d": "R(2+1)D", "csn": "ip-CSN",
          "cakes-uniform": "CAKES uniform", "cakes-random": "CAKES random (MACs of ^P)",
          "cakes-P": "CAKES^P (searched)",
          "cakes-C": "CAKES^C (searched)", "cakes-C@P": "CAKES^C at ^P's MACs (target)",
          "cakes-budget": "CAKES^P budgeted"}


#: one colour per variant (Okabe-Ito + greys), in LABELS order
COLOURS = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#999999", "#F0E442", "#666666",
           "#0072B2", "#D55E00", "#882255", "#CC79A7")
#: two-sided 95 % quantiles of Student's t by degrees of freedom (scipy.stats.t.ppf(0.975, df))
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
        9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120,
        17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086, 25: 2.060, 30: 2.042}
#: the paired comparisons reported: (a, b) -> metric(a) − metric(b) by seed. CAKES^P against
#: the even split, random layouts of its MACs and full 3D; cost priority at CAKES^P's MACs
#: against CAKES^P, the random layouts and the even split (all at about the same MACs)
PAIRED = (("cakes-P", "cakes-uniform"), ("cakes-P", "cakes-random"), ("cakes-P", "3d"),
          ("cakes-C@P", "cakes-P"), ("cakes-C@P", "cakes-random"),
          ("cakes-C@P", "cakes-uniform"))


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(runs: list[dict]) -> dict[str, list[dict]]:
    """Per task and variant: mean ± std of the metric over seeds, mean MACs/params."""
    out: dict[str, list[dict]] = {}
    for task in ("video", "volume"):
        rows = []
        ref = [r["macs"] for r in runs if r["task"] == task and r["variant"] == "3d"]
        for v in VARIANTS:
            rs = [r for r in runs if r["task"] == task and r["variant"] == v]
            if not rs:
                continue
            mean, std = _mean_std([r["metric"] for r in rs])
            macs = statistics.fmean(r["macs"] for r in rs)
            row = {"variant": v, "label": LABELS[v], "n": len(rs), "metric_mean": mean,
                   "metric_std": std, "macs": macs,
                   "params": statistics.fmean(r["params"] for r in rs),
                   "macs_vs_3d": macs / ref[0] if ref else None,
                   "seconds": statistics.fmean(r["train_seconds"] + r["search_seconds"]
                                               for r in rs),
                   "train_cpu_seconds": statistics.fmean(r.get("train_cpu_seconds", math.nan)
                                                         for r in rs)}
            if task == "video":
                row["pairs_mean"] = statistics.fmean(r["top1_reversed_pairs"] for r in rs)
            rows.append(row)
        if rows:
            out[task] = rows
    return out


def t975(df: int) -> float:
    """95 % two-sided Student-t quantile (the next tabulated df down, conservative)."""
    return T975[max(k for k in T975 if k <= df)] if df >= 1 else math.nan


def paired(runs: list[dict], pairs=PAIRED) -> dict[str, dict]:
    """Per task and pair (a, b): metric(a) − metric(b) paired by seed, in points (× 100), with
    its mean, std and 95 % t-interval over the seeds both have (mean ± t_{0.975, n−1}·std/√n).
    Keys: ``"{task}/{a}-{b}"``."""
    out: dict[str, dict] = {}
    for task in ("video", "volume"):
        by = {(r["variant"], r["seed"]): r["metric"] for r in runs if r["task"] == task}
        for a, b in pairs:
            seeds = sorted(s for v, s in by if v == a and (b, s) in by)
            if not seeds:
                continue
            d = [100 * (by[a, s] - by[b, s]) for s in seeds]
            mean, std = _mean_std(d)
            half = t975(len(d) - 1) * std / math.sqrt(len(d)) if len(d) > 1 else math.nan
            out[f"{task}/{a}-{b}"] = {
                "a": a, "b": b, "n": len(d), "seeds": seeds, "diffs": [round(x, 2) for x in d],
                "mean": round(mean, 2), "std": round(std, 2),
                "ci95": [round(mean - half, 2), round(mean + half, 2)]}
    return out


def claims(summary: dict[str, list[dict]]) -> dict[str, dict]:
    """The issue's target, checked per task and searched variant (points = metric × 100):
    within 1 point of full 3D at ≤ 60 % of its MACs; ahead of 2D / P3D / R(2+1)D (``ahead_of``,
    with the margins and the rivals' MACs); ``ahead_at_matched_macs``: ahead of every one of
    them that costs at least 98 % of our MACs (a cheaper rival is not a matched comparison)."""
    out: dict[str, dict] = {}
    for task, rows in summary.items():
        by = {r["variant"]: r for r in rows}
        if "3d" not in by:
            continue
        for v in ("cakes-P", "cakes-C", "cakes-C@P", "cakes-budget"):
            if v not in by:
                continue
            r = by[v]
            gap = 100 * (by["3d"]["metric_mean"] - r["metric_mean"])
            rivals = [b for b in ("2d", "p3d", "r2plus1d") if b in by]
            ahead = {b: r["metric_mean"] > by[b]["metric_mean"] for b in rivals}
            matched = [b for b in rivals if by[b]["macs"] >= 0.98 * r["macs"]]
            out[f"{task}/{v}"] = {
                "points_below_3d": round(gap, 2), "macs_vs_3d": round(r["macs_vs_3d"], 4),
                "within_1_point_at_60pct_macs": bool(gap <= 1.0 and r["macs_vs_3d"] <= 0.6),
                "ahead_of": ahead, "ahead_of_all": bool(ahead) and all(ahead.values()),
                "margin_points": {b: round(100 * (r["metric_mean"] - by[b]["metric_mean"]), 2)
                                  for b in rivals},
                "rival_macs_vs_3d": {b: round(by[b]["macs_vs_3d"], 4) for b in rivals},
                "ahead_at_matched_macs": {b: ahead[b] for b in matched}}
    return out


def figure_html(summary: dict[str, list[dict]]) -> str:
    """Both tasks' Pareto plots (metric vs MACs, error bars = std over seeds) as one HTML."""
    parts = []
    for i, (task, rows) in enumerate(summary.items()):
        points = [{"name": r["label"], "macs": r["macs"], "score": r["metric_mean"],
                   "params": int(r["params"])} for r in rows]
        fig = pareto(points, y_title="top-1 (val)" if task == "video" else "mean Dice (val)",
                     title=f"{task}: {'top-1' if task == 'video' else 'mean foreground Dice'}"
                           " vs MACs per sample (mean ± std over seeds)", height=480)
        stds = {r["label"]: r["metric_std"] for r in rows}
        colours = dict(zip(LABELS.values(), COLOURS))  # the same colour per variant in both
        for trace in fig.data:
            if trace.name in stds:
                trace.error_y = {"type": "data", "array": [stds[trace.name]], "visible": True}
                trace.marker.color = colours[trace.name]
        fig.update_xaxes(range=[0, 1.1 * max(r["macs"] for r in rows) * 1e-6])  # MACs from 0
        parts.append(fig.to_html(full_html=False, include_plotlyjs="inline" if i == 0 else False))
    return ("<!doctype html><html><head><meta charset='utf-8'><title>cakes_lite compare</title>"
            "</head><body>" + "\n".join(parts) + "</body></html>\n")


def table(summary: dict[str, list[dict]]) -> str:
    """Markdown table of the summary (metric in %, MACs in millions per sample)."""
    lines = []
    for task, rows in summary.items():
        name = "top-1 % (reversed pairs)" if task == "video" else "mean Dice %"
        lines += [f"\n**{task}** ({rows[0]['n']} seed(s))\n",
                  f"| variant | {name} | MACs (M) | MACs vs 3D | params (k) | train CPU s |",
                  "|---|---|---|---|---|---|"]
        for r in rows:
            metric = f"{100 * r['metric_mean']:.1f} ± {100 * r['metric_std']:.1f}"
            if "pairs_mean" in r:
                metric += f" ({100 * r['pairs_mean']:.1f})"
            rel = f"{100 * r['macs_vs_3d']:.0f} %" if r["macs_vs_3d"] else "–"
            lines.append(f"| {r['label']} | {metric} | {r['macs'] / 1e6:.2f} | {rel} | "
                         f"{r['params'] / 1e3:.1f} | {r['train_cpu_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def paired_table(pairs: dict[str, dict]) -> str:
    """Markdown table of :func:`paired` (points; 95 % t-interval over the paired seeds)."""
    lines = ["| task | difference | mean ± std (points) | 95 % interval | seeds | per seed |",
             "|---|---|---|---|---|---|"]
    for key, p in pairs.items():
        task = key.partition("/")[0]
        a, b = p.get("a", "cakes-P"), p.get("b", key.partition("/")[2][len("cakes-P-"):])
        lines.append(f"| {task} | {LABELS.get(a, a)} − {LABELS.get(b, b)} | "
                     f"{p['mean']:+.1f} ± {p['std']:.1f} | "
                     f"{p['ci95'][0]:+.1f} … {p['ci95'][1]:+.1f} | {p['n']} | "
                     f"{', '.join(f'{d:+.1f}' for d in p['diffs'])} |")
    return "\n".join(lines) + "\n"


def load_avg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        return None


def write(path: Path, doc: dict) -> None:
    doc["summary"] = summarise(doc["runs"])
    doc["claims"] = claims(doc["summary"])
    doc["paired"] = paired(doc["runs"])
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")


def report(doc: dict, out: Path) -> None:
    """Write the JSON (summary, claims) and the HTML plot; print the table and the claims."""
    write(out, doc)
    html = out.with_suffix(".html")
    if doc["summary"]:
        atomic_write_text(html, figure_html(doc["summary"]))
    print(table(doc["summary"]))
    print(paired_table(doc["paired"]))
    for key, c in doc["claims"].items():
        print(f"{key}: {-c['points_below_3d']:+.2f} points vs full 3D at "
              f"{100 * c['macs_vs_3d']:.0f} % of its MACs (target: ≥ -1 at ≤ 60 %: "
              f"{c['within_1_point_at_60pct_macs']}); margin over {c['margin_points']}; "
              f"ahead at matched MACs: {c['ahead_at_matched_macs']}")
    for key, p in doc["paired"].items():
        print(f"{key}: {p['mean']:+.2f} points (95 % CI {p['ci95'][0]:+.2f} … "
              f"{p['ci95'][1]:+.2f}, {p['n']} paired seeds)")
    print(f"wall {doc['wall_seconds']:.0f} s, load {doc['load_start']} -> {doc['load_end']}; "
          f"results: {out}, plot: {html}")


def merge(files: list[Path], out: Path) -> dict:
    """One result document from several (e.g. the tasks run as parallel processes)."""
    docs = [json.loads(f.read_text()) for f in files]
    doc = {**docs[0], "config": {}, "runs": [], "merged_from": []}
    for f, d in zip(files, docs):
        doc["config"].update(d["config"])
        doc["runs"] += d["runs"]
        doc["merged_from"].append({"file": f.name, "tasks": list(d["config"]),
                                   "wall_seconds": d.get("wall_seconds"),
                                   "load_start": d.get("load_start"),
                                   "load_end": d.get("load_end"),
                                   "threads": d["environment"]["threads"]})
    doc["seeds"] = sorted({s for d in docs for s in d["seeds"]})
    doc["wall_seconds"] = max(d.get("wall_seconds") or 0.0 for d in docs)
    doc["load_end"] = docs[-1].get("load_end")
    return doc
