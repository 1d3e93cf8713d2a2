"""The tables of docs/speed.md: ResNet-50 I3D at full width beside the zoo's tiny models
(``i3d_speed_<isa>_<N>thread.json`` from ``model_speed.py --i3d``,
``zoo_parity_<isa>_<N>thread.json`` from ``model_speed.py --only zoo-video --only zoo-volume
--parent-copy``), how each group of cells was measured, the zoo models against their parents as
loaded and as tuned, and the 3D parents' work per convolution call. Markdown only;
``docs_tables.py`` puts them into the documents. A cell that was not measured says so."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from cakes_lite.models import build_model, resnet50_i3d  # noqa: E402
from cakes_lite.official import official_layouts, resnet50_macs  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
ZOO = ROOT / "app" / "zoo"
I3D_TITLES = {"CAKES12D_P": "CAKES^P 1,2D", "CAKES12D_C": "CAKES^C 1,2D",
              "CAKES23D_P": "CAKES^P 2,3D", "CAKES23D_C": "CAKES^C 2,3D",
              "CAKES123D_P": "CAKES^P 1,2,3D", "CAKES123D_C": "CAKES^C 1,2,3D"}
#: the grid the speed page asks for; cells outside what was measured print "not measured"
I3D_SIZES, BATCHES = (112, 224), (1, 8)
ZOO_INPUTS = {"video": "3×8×32²", "volume": "1×64³"}
ZOO_WIDTH = {"video": "16–64 ch.", "volume": "8–64 ch."}
NO_RESULTS = "_(no result files yet)_\n"


def settings(prefix: str, results: Path | None = None) -> dict[str, dict]:
    """``{title: result}`` of the files ``<prefix>_<isa>_<N>thread.json``, 2 threads first;
    each file must say it was measured as its name claims (ValueError otherwise)."""
    out = {}
    found = sorted((results or RESULTS).glob(f"{prefix}_*thread.json"),
                   key=lambda p: (-int(re.search(r"(\d+)thread", p.name).group(1)), p.name))
    for path in found:
        isa, threads = re.fullmatch(rf"{prefix}_(\w+?)_(\d+)thread\.json", path.name).groups()
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc["isa"].lower() != isa or doc["threads"] != int(threads):
            raise ValueError(f"{path.name}: expected a run with ISA {isa}, {threads} threads, "
                             f"got {doc['isa']}, {doc['threads']}")
        out[f"{doc['isa'].replace('AVX512', 'AVX-512')}, {threads} thr."] = doc
    return out


def _cell(ratio: float | None, eff: float | None) -> str:
    return "not measured" if ratio is None else f"{ratio:.2f} ({eff:.2f})"


def _span(values, fmt: str = ".2f") -> str:
    """``0.97–1.02`` (one number where both ends print alike)."""
    lo, hi = f"{min(values):{fmt}}", f"{max(values):{fmt}}"
    return lo if lo == hi else f"{lo}–{hi}"


def _zoo_rows(doc: dict) -> dict[str, dict[str, dict[int, dict]]]:
    """model -> form (``eager``, ``infer``) -> batch -> its row of a model_speed.py result."""
    out: dict[str, dict[str, dict[int, dict]]] = {}
    for run in doc["runs"]:
        for row in run["rows"]:
            out.setdefault(row["model"], {}).setdefault(row["form"], {})[run["batch"]] = \
                {**row, "parent": run["parent"]}
    return out


def full_width(results: Path | None = None) -> str:
    """Time CAKES ÷ 3D (model efficiency) for ResNet-50 I3D with every official layout, the 3D
    network against a copy of itself (the noise band), then the zoo's tiny CAKES nets, in every
    setting measured (all through for_inference)."""
    i3d, zoo = settings("i3d_speed", results), settings("zoo_parity", results)
    titles = list(dict.fromkeys([*i3d, *zoo]))
    if not titles:
        return NO_RESULTS
    head = " | ".join(f"{t} b{b}" for t in titles for b in BATCHES)
    lines = [f"| network (width) | input per sample | MACs ÷ 3D | {head} |",
             "|---|---|---|" + "---|" * (len(BATCHES) * len(titles))]
    cells = {t: {(c["layout"], c["size"], c["batch"]): c for c in doc["cells"]}
             for t, doc in i3d.items()}
    sizes = sorted({*I3D_SIZES, *(c["size"] for doc in i3d.values() for c in doc["cells"])})
    for size in sizes:
        for layout, title in I3D_TITLES.items():
            row = []
            for t in titles:
                for b in BATCHES:
                    c = cells.get(t, {}).get((layout, size, b))
                    row.append(_cell(c and c["ratio"], c and c["eff"]))
            cost = resnet50_macs(official_layouts()[layout], frames=8, size=size)["network"]
            lines.append(f"| ResNet-50 I3D, {title} (64–512 ch.) | 3×8×{size}² | "
                         f"{cost['macs'] / cost['macs_3d']:.2f} | "
                         f"{' | '.join(row)} |")
        band = []
        for t in titles:
            for b in BATCHES:
                copies = [c["copy_ratio"] for (_, s, cb), c in cells.get(t, {}).items()
                          if s == size and cb == b and c.get("copy_ratio") is not None]
                band.append(_span(copies) if copies else "not measured")
        lines.append(f"| ResNet-50 I3D, 3D again (noise band over the cells) | 3×8×{size}² | "
                     f"1.00 | {' | '.join(band)} |")
    rows = {t: _zoo_rows(doc) for t, doc in zoo.items()}
    models = list(dict.fromkeys(m for r in rows.values() for m, forms in r.items()
                                if next(iter(forms["infer"].values()))["parent"] != m))
    for model in models:
        kind = "video" if model.startswith("video") else "volume"
        row, mac = [], None
        for t in titles:
            for b in BATCHES:
                r = rows.get(t, {}).get(model, {}).get("infer", {}).get(b)
                mac = r["mac_ratio"] if r else mac
                row.append(_cell(r and r["time_ratio"], r and r["eff"]))
        name = (f"zoo {model.removesuffix(' copy')} again (noise band)" if model.endswith(" copy")
                else f"zoo {model}")
        lines.append(f"| {name} ({ZOO_WIDTH[kind]}) | {ZOO_INPUTS[kind]} | {mac:.2f} | "
                     f"{' | '.join(row)} |")
    return "\n".join(lines) + "\n"


def full_width_runs(results: Path | None = None) -> str:
    """How each group of ResNet-50 I3D cells was measured: rounds, load, the seconds
    ``for_inference(model, example=x)`` took (the tuning), the 3D network's median time."""
    docs = settings("i3d_speed", results)
    if not docs:
        return NO_RESULTS
    lines = ["| setting | input | batch | cells | timed rounds | load (1-min avg) | "
             "for_inference(example=x) s | 3D ms (median) |", "|---|---|---|---|---|---|---|---|"]
    for title, doc in docs.items():
        groups: dict[tuple, list] = {}
        for c in doc["cells"]:
            groups.setdefault((c["size"], c["batch"]), []).append(c)
        for (size, batch), cs in sorted(groups.items()):
            loads = [x for c in cs for x in (c["load_before"][0], c["load_after"][0])]
            lines.append(f"| {title} | 3×8×{size}² | {batch} | {len(cs)} | "
                         f"{_span([c['rounds'] for c in cs], 'd')} | {_span(loads, '.1f')} | "
                         f"{_span([c['tune_seconds'] for c in cs], '.0f')} | "
                         f"{_span([c['ms_3d'] for c in cs], '.0f')} |")
    return "\n".join(lines) + "\n"


def zoo_parity(results: Path | None = None) -> str:
    """Each zoo CAKES model's time ÷ its parent's, as loaded (eager, both) and as tuned (both
    through for_inference), batch 1 / 8, with the parent-copy control (the noise band)."""
    docs = settings("zoo_parity", results)
    if not docs:
        return NO_RESULTS
    head = " | ".join(f"{t}: as loaded b1 / b8 | {t}: tuned b1 / b8" for t in docs)
    lines = [f"| model | MACs ÷ parent | {head} |", "|---|---|" + "---|" * (2 * len(docs))]
    rows = {t: _zoo_rows(doc) for t, doc in docs.items()}
    models = list(dict.fromkeys(m for r in rows.values() for m in r))
    for model in models:
        forms = next(r[model] for r in rows.values() if model in r)
        if forms["infer"][next(iter(forms["infer"]))]["parent"] == model:
            continue
        cells = []
        for t in docs:
            f = rows[t].get(model, {})
            for form, key in (("eager", "vs_eager_3d"), ("infer", "time_ratio")):
                b = f.get(form, {})
                cells.append(" / ".join(f"{b[k][key]:.2f}" if k in b else "–" for k in BATCHES))
        name = (f"{model.removesuffix(' copy')} again (noise band)" if model.endswith(" copy")
                else model)
        mac = next(iter(forms["infer"].values()))["mac_ratio"]
        lines.append(f"| {name} | {mac:.2f} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def _convs(model: nn.Module) -> int:
    """Convolution layers (each called once per forward in these networks)."""
    return sum(isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)) for m in model.modules())


def _zoo_parent(name: str) -> tuple[dict, int]:
    """A zoo model's metadata and its number of convolution layers (built on the meta device)."""
    meta = json.loads((ZOO / f"{name}.json").read_text(encoding="utf-8"))
    with torch.device("meta"):
        return meta, _convs(build_model(meta["model"]["name"], **meta["model"]["config"]))


def per_call(results: Path | None = None) -> str:
    """The 3D parents' arithmetic per convolution call and the rate they reach (MACs ÷ median
    time through for_inference): what a CAKES layer splits into smaller calls."""
    i3d, zoo = settings("i3d_speed", results), settings("zoo_parity", results)
    if not i3d and not zoo:
        return NO_RESULTS
    lines = ["| 3D network | setting | input | conv layers | MMACs per conv call (mean) | ms per "
             "forward | µs per conv call | GMAC/s |", "|---|---|---|---|---|---|---|---|"]

    def row(name, title, shape, convs, macs, ms):
        lines.append(f"| {name} | {title} | {shape} | {convs} | {macs / convs / 1e6:,.1f} | "
                     f"{ms:.3g} | {1e3 * ms / convs:,.0f} | {macs / ms / 1e6:.0f} |")

    with torch.device("meta"):  # shapes only: no memory, no initialisation
        convs = _convs(resnet50_i3d())
    for title, doc in i3d.items():
        groups: dict[tuple, list] = {}
        for c in doc["cells"]:
            groups.setdefault((c["size"], c["batch"]), []).append(c)
        for (size, batch), cs in sorted(groups.items()):
            ms = sorted(c["ms_3d"] for c in cs)[len(cs) // 2]
            row("ResNet-50 I3D", title, f"{batch}×3×8×{size}×{size}", convs, cs[0]["macs_3d"],
                ms)
    measured = set()
    for title, doc in zoo.items():
        for run in doc["runs"]:
            meta, n = _zoo_parent(run["parent"])
            ms = next(r["ms"] for r in run["rows"]
                      if r["model"] == run["parent"] and r["form"] == "infer")
            shape = "×".join(map(str, [run["batch"], *meta["input_shape"][1:]]))
            row(f"zoo {run['parent']}", title, shape, n, meta["macs"] * run["batch"], ms)
            measured.add(run["parent"])
    for parent in ("video_3d", "volume_3d"):
        if parent not in measured:  # the work per call is known without timing
            meta, n = _zoo_parent(parent)
            lines.append(f"| zoo {parent} | not measured | "
                         f"{'×'.join(map(str, meta['input_shape']))} | {n} | "
                         f"{meta['macs'] / n / 1e6:,.1f} | – | – | – |")
    return "\n".join(lines) + "\n"
