"""The speed page's tables and the ResNet-50 I3D benchmark's argument checks.

``benchmarks/_tables_speed.py`` turns the result files into docs/speed.md's tables: a cell the
files do not hold must print "not measured" (never a number from another cell), each cell's
parent copy gives the noise band, and a file whose content contradicts its name is refused.
``model_speed.py --i3d`` refuses bad values with one line and exit 2, before timing anything.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
tables = importlib.import_module("_tables_speed")
i3d_speed = importlib.import_module("_i3d_speed")


def _cell(layout: str, size: int, batch: int, ratio: float, copy: float) -> dict:
    return {"layout": layout, "size": size, "batch": batch, "ratio": ratio, "eff": 0.5 / ratio,
            "mac_ratio": 0.5, "copy_ratio": copy, "rounds": 7, "tune_seconds": 12.0,
            "ms_3d": 250.0, "macs_3d": 5.3e9, "load_before": [1.0, 1.0, 1.0], "load_after": [1.2, 1.0, 1.0]}


def _write(folder: Path, name: str, isa: str, threads: int, cells: list[dict]) -> None:
    doc = {"isa": isa, "threads": threads, "cells": cells}
    (folder / name).write_text(json.dumps(doc), encoding="utf-8")


def test_unmeasured_cells_say_so_and_the_noise_band_spans_the_copies(tmp_path):
    _write(tmp_path, "i3d_speed_avx2_2thread.json", "AVX2", 2,
           [_cell("CAKES123D_P", 112, 1, 0.8, 0.98), _cell("CAKES12D_C", 112, 1, 0.6, 1.03)])
    _write(tmp_path, "i3d_speed_avx2_1thread.json", "AVX2", 1,
           [_cell("CAKES123D_P", 112, 1, 0.9, 1.01)])
    rows = {line.split(" | ")[0] + " " + line.split(" | ")[1]: line.split(" | ")[3:]
            for line in tables.full_width(tmp_path).splitlines()[2:]}
    head = tables.full_width(tmp_path).splitlines()[0]
    assert "AVX2, 2 thr. b1 | AVX2, 2 thr. b8 | AVX2, 1 thr. b1 | AVX2, 1 thr. b8" in head
    p123 = rows["| ResNet-50 I3D, CAKES^P 1,2,3D (64–512 ch.) 3×8×112²"]
    assert p123 == ["0.80 (0.62)", "not measured", "0.90 (0.56)", "not measured |"]
    c12 = rows["| ResNet-50 I3D, CAKES^C 1,2D (64–512 ch.) 3×8×112²"]
    assert c12 == ["0.60 (0.83)", "not measured", "not measured", "not measured |"]
    band = rows["| ResNet-50 I3D, 3D again (noise band over the cells) 3×8×112²"]
    assert band == ["0.98–1.03", "not measured", "1.01", "not measured |"]
    assert all(c.startswith("not measured") for c in
               rows["| ResNet-50 I3D, CAKES^P 1,2,3D (64–512 ch.) 3×8×224²"])
    runs = tables.full_width_runs(tmp_path).splitlines()
    assert runs[2] == "| AVX2, 2 thr. | 3×8×112² | 1 | 2 | 7 | 1.0–1.2 | 12 | 250 |"

    # ResNet-50 I3D has 53 convolutions: 100 MMACs and 4.7 ms each, 21 GMAC/s at 250 ms
    assert tables.per_call(tmp_path).splitlines()[2] == (
        "| ResNet-50 I3D | AVX2, 2 thr. | 1×3×8×112×112 | 53 | 100.0 | 250 | 4,717 | 21 |")


def test_a_file_measured_otherwise_than_its_name_says_is_refused(tmp_path):
    _write(tmp_path, "i3d_speed_avx512_2thread.json", "AVX2", 2, [])
    with pytest.raises(ValueError, match="expected a run with ISA avx512, 2 threads, got AVX2"):
        tables.full_width(tmp_path)


def test_no_result_files_gives_a_placeholder_not_an_empty_table(tmp_path):
    assert tables.full_width(tmp_path) == tables.NO_RESULTS
    assert tables.zoo_parity(tmp_path) == tables.NO_RESULTS


@pytest.mark.parametrize("sizes, batches, layouts, expected", [
    ([112], [1], ["CAKES99D"], "--layout: expected one of"),
    ([16], [1], ["CAKES123D_P"], "--size: expected a frame side >= 32, got 16"),
    ([112], [0], ["CAKES123D_P"], "--batch: expected a positive int, got 0"),
])
def test_i3d_cells_are_checked_before_anything_is_built(sizes, batches, layouts, expected):
    with pytest.raises(ValueError, match=expected):
        i3d_speed.check_cells(sizes, batches, layouts)


def test_i3d_cli_refuses_a_bad_layout_in_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "model_speed.py"), "--i3d",
                           "--layout", "CAKES99D", "--out", str(tmp_path / "cells.json")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "--layout: expected one of" in proc.stderr, \
        proc.stderr
    assert not (tmp_path / "cells.json").exists()
