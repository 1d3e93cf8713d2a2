"""``benchmarks/compare.py --quick`` runs end to end and writes a well-formed result.

The quick mode trains every variant for one step on each task (it learns nothing); what this
checks is the plumbing the full comparison relies on: every variant builds, trains, is scored
and profiled; searched layouts are cheaper than full 3D; the budgeted layout meets its MACs
target; the JSON summary/claims and the plotly HTML are written.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "compare.py"
VARIANTS = ("3d", "2d", "p3d", "r2plus1d", "csn", "cakes-uniform", "cakes-random", "cakes-P",
            "cakes-C", "cakes-C@P", "cakes-budget")


@pytest.fixture(scope="module")
def quick_result(tmp_path_factory) -> tuple[dict, Path, str]:
    out = tmp_path_factory.mktemp("compare") / "compare_quick.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # one thread: the quick run is tiny, and a second thread only spins on a busy CI machine
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--no-progress", "--threads",
                           "1", "--out", str(out)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), out, proc.stdout


def test_every_variant_has_a_finite_metric_and_cost(quick_result):
    doc, _, _ = quick_result
    assert doc["format"] == "cakes_lite.compare" and doc["mode"] == "quick"
    assert doc["cost_sparsity"] is None  # run_search's default L1 for CAKES^C
    runs = {(r["task"], r["variant"]): r for r in doc["runs"]}
    assert set(runs) == {(t, v) for t in ("video", "volume") for v in VARIANTS}
    for (task, variant), r in runs.items():
        assert math.isfinite(r["metric"]) and 0.0 <= r["metric"] <= 1.0, (task, variant)
        assert isinstance(r["macs"], int) and r["macs"] > 0, (task, variant)
        assert isinstance(r["params"], int) and r["params"] > 0, (task, variant)
        assert 0 < r["searched_macs"] <= r["macs"], (task, variant)


@pytest.mark.parametrize("task", ["video", "volume"])
def test_cakes_costs_and_layouts(quick_result, task):
    doc, _, _ = quick_result
    runs = {r["variant"]: r for r in doc["runs"] if r["task"] == task}
    full = runs["3d"]["searched_macs"]
    for v in ("cakes-uniform", "cakes-random", "cakes-P", "cakes-C", "cakes-C@P", "cakes-budget"):
        assert runs[v]["searched_macs"] < full, v  # any shrunk layout is cheaper than 3D
        shares = runs[v]["layout_shares"]
        assert math.isclose(sum(shares.values()), 1.0, rel_tol=1e-9), v
    # the random layout spends the MACs of the same seed's CAKES^P layout (derive_layout's 2 %)
    rnd = runs["cakes-random"]
    assert rnd["budget_macs"] == runs["cakes-P"]["searched_macs"]
    assert rnd["searched_macs"] == pytest.approx(rnd["budget_macs"],
                                                 rel=0.02 if "budget_warning" not in rnd else 1)
    # cost priority aimed at CAKES^P's cost: the target is that search's cost fraction, and the
    # record keeps what the search ran (one step: no warm-up, the target may be missed)
    aimed = runs["cakes-C@P"]["search"]
    assert aimed["target"] == pytest.approx(runs["cakes-P"]["search"]["cost_fraction"])
    assert isinstance(aimed["target_met"], bool) and aimed["l1_steps"] >= 1
    assert runs["cakes-C"]["search"]["target"] is None
    assert runs["cakes-C"]["search"]["sparsity"] == 1e-2
    budget = runs["cakes-budget"]
    # the budgeted layout spends the reference baseline's searched-layer MACs: derive_layout
    # meets it within 2 % (or says how far its closest layout is)
    assert budget["budget_ref"] == doc["budget_ref"] == "p3d"
    assert budget["budget_macs"] == runs["p3d"]["searched_macs"] == budget["budget_asked"]
    if "budget_warning" not in budget:
        assert budget["searched_macs"] == pytest.approx(budget["budget_macs"], rel=0.02)


def test_summary_claims_plot_and_table(quick_result):
    doc, out, stdout = quick_result
    for task in ("video", "volume"):
        rows = {r["variant"]: r for r in doc["summary"][task]}
        assert set(rows) == set(VARIANTS)
        assert rows["3d"]["macs_vs_3d"] == pytest.approx(1.0)
        assert all(r["n"] == 1 and r["metric_std"] == 0.0 for r in rows.values())
        for v in ("cakes-P", "cakes-C", "cakes-C@P", "cakes-budget"):
            claim = doc["claims"][f"{task}/{v}"]
            assert set(claim["ahead_of"]) == {"2d", "p3d", "r2plus1d"}
            assert claim["macs_vs_3d"] == pytest.approx(rows[v]["macs_vs_3d"], abs=1e-4)
    html = out.with_suffix(".html").read_text()
    assert "plotly" in html.lower() and "CAKES^C (searched)" in html
    assert "| full 3D |" in stdout and "| CAKES^P budgeted |" in stdout
    assert "| video | CAKES^P (searched) − CAKES random (MACs of ^P) |" in stdout
    assert "| volume | CAKES^C at ^P's MACs (target) − CAKES^P (searched) |" in stdout
    # paired differences (one seed: no interval yet)
    for task in ("video", "volume"):
        for a, b in (("cakes-P", "cakes-uniform"), ("cakes-P", "cakes-random"), ("cakes-P", "3d"),
                     ("cakes-C@P", "cakes-P"), ("cakes-C@P", "cakes-random"),
                     ("cakes-C@P", "cakes-uniform")):
            p = doc["paired"][f"{task}/{a}-{b}"]
            assert p["n"] == 1 and p["seeds"] == [0] and len(p["diffs"]) == 1


def test_paired_differences_and_t_interval():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from compare_report import paired, t975

    runs = [{"task": "video", "variant": v, "seed": s, "metric": m}
            for v, ms in (("cakes-P", (0.70, 0.72, 0.74, 0.71)), ("3d", (0.69, 0.70, 0.71)))
            for s, m in enumerate(ms)]
    p = paired(runs, (("cakes-P", "3d"), ("cakes-P", "cakes-uniform")))
    assert set(p) == {"video/cakes-P-3d"}  # no uniform runs: no entry; seed 3 has no pair
    d = p["video/cakes-P-3d"]
    assert d["seeds"] == [0, 1, 2] and d["diffs"] == pytest.approx([1.0, 2.0, 3.0])
    assert d["mean"] == pytest.approx(2.0) and d["std"] == pytest.approx(1.0)
    half = 4.303 * 1.0 / math.sqrt(3)  # t_{0.975, 2} · s / √n
    assert d["ci95"] == pytest.approx([2.0 - half, 2.0 + half], abs=0.01)
    assert t975(4) == 2.776 and t975(40) == 2.042
