"""Execute every walkthrough notebook top to bottom in smoke mode (CAKES_SMOKE=1).

A notebook fails the test if any cell raises, if its executed copy shows an error-like output
(tests/notebook_scan.py: tracebacks, printed exceptions, warnings, widget errors), if it runs
longer than its budget, or if it was committed with outputs. The worked solutions of its checked
exercises (python blocks inside ``<details>`` in the exercise text) run after the last cell and
must pass their checks. Full-mode runs are not part of the
suite (docs/notebooks.md gives their measured run times and how to scan their executed copies).
"""

from __future__ import annotations

import os
import re
import shutil
import textwrap
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from notebook_scan import scan

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
NAMES = [
    "01_operations.ipynb",
    "02_search.ipynb",
    "03_video_training.ipynb",
    "04_volumetric_segmentation.ipynb",
    "05_shrink_your_model.ipynb",
]
#: each notebook should run in <= 60 s on 2 cores in smoke mode; the margin absorbs kernel start-up.
#: Override with CAKES_NOTEBOOK_BUDGET_S. The budget is only asserted when the machine is not
#: overloaded (load average <= 2 per core): on a busy shared machine wall time says little.
BUDGET_S = float(os.environ.get("CAKES_NOTEBOOK_BUDGET_S", "120"))
#: hard per-cell limit (a hung cell fails the test instead of blocking the suite)
CELL_TIMEOUT_S = 600


def _load(name: str) -> nbformat.NotebookNode:
    path = NOTEBOOKS / name
    assert path.exists(), f"missing notebook {path}"
    return nbformat.read(path, as_version=4)


@pytest.mark.parametrize("name", NAMES)
def test_committed_clean_with_parameters_cell(name: str) -> None:
    nb = _load(name)
    code = [c for c in nb.cells if c.cell_type == "code"]
    dirty = [i for i, c in enumerate(code) if c.outputs or c.execution_count is not None]
    assert not dirty, f"{name}: code cells {dirty} carry outputs; strip them before committing"
    # JupyterLab's "save widget state" writes every widget's state here (--clear-output keeps it)
    assert "widgets" not in nb.metadata, f"{name}: saved widget state in the notebook metadata"
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name}: expected one cell tagged 'parameters', got {len(tagged)}"
    assert "CAKES_SMOKE" in tagged[0].source, f"{name}: the parameters cell must read CAKES_SMOKE"
    assert nb.cells[0].cell_type == "markdown", f"{name}: should open with what you will learn"
    assert "What you will learn" in nb.cells[0].source, f"{name}: first cell lacks the goals"
    assert any(c.cell_type == "markdown" and "## Exercise" in c.source for c in nb.cells), \
        f"{name}: expected an '## Exercise' section"


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if "==" in line and not line.startswith("-"):
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def test_binder_pins_match_the_main_requirements() -> None:
    """mybinder installs binder/requirements.txt: same versions as ../requirements.txt, torch
    from the CPU wheel index (a CUDA torch does not fit a binder image)."""
    binder, main = _pins(ROOT / "binder" / "requirements.txt"), _pins(ROOT / "requirements.txt")
    assert binder["torch"].split("+")[0] == main["torch"] and binder["torch"].endswith("+cpu")
    assert "download.pytorch.org/whl/cpu" in (ROOT / "binder" / "requirements.txt").read_text()
    for name, version in binder.items():
        if name != "torch":
            assert main.get(name) == version, f"binder: {name}=={version}, main: {main.get(name)}"
    assert os.access(ROOT / "binder" / "postBuild", os.X_OK), "binder/postBuild must be executable"
    # binder/start wraps JupyterLab's start: it must be executable and hand over to its arguments
    start = ROOT / "binder" / "start"
    assert os.access(start, os.X_OK) and 'exec "$@"' in start.read_text(), "binder/start"


@pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")
def test_make_lab_adds_allow_root_only_as_root(tmp_path: Path) -> None:
    """JupyterLab exits when started as root without --allow-root (containers run as root);
    `make lab` passes it then, and only then (dry run: nothing is installed or started)."""
    out = subprocess.run(["make", "-n", "lab", f"VENV={tmp_path / 'venv'}"], cwd=ROOT, text=True,
                         capture_output=True, check=True).stdout
    (command,) = [line for line in out.splitlines() if "jupyter lab" in line]
    assert command.split()[0] == str(tmp_path / "venv" / "bin" / "jupyter")
    assert ("--allow-root" in command.split()) == (os.geteuid() == 0), command


_DETAILS = re.compile(r"<details>(.*?)</details>", re.DOTALL)
_FENCE = re.compile(r"^([ \t]*)```python\n(.*?)^\1```", re.DOTALL | re.MULTILINE)
_CHECK = re.compile(r"^(check_\w+)\((\w+)\)\s*$", re.MULTILINE)


def solutions_cell(nb: nbformat.NotebookNode) -> str | None:
    """A code cell that runs the notebook's worked solutions (python blocks inside ``<details>``
    in markdown) and asserts that each check whose argument a solution defines passes; None
    when the notebook has no worked solution in code."""
    code = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for block in _DETAILS.findall(cell.source):
                code += [textwrap.dedent(m.group(0)).strip().removeprefix("```python")
                         .removesuffix("```").strip() for m in _FENCE.finditer(block)]
    if not code:
        return None
    defined = "\n".join(code)
    calls = [f"assert {check}({arg}) is True, '{check}: the worked solution fails its check'"
             for c in nb.cells if c.cell_type == "code" for check, arg in _CHECK.findall(c.source)
             if re.search(rf"^(def {arg}\(|{arg}\s*=)", defined, re.MULTILINE)]
    return "# the worked solutions of the exercises, checked\n" + "\n\n".join(code + calls)


def test_solutions_cell_finds_blocks_and_checks() -> None:
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("1. x\n   <details><summary>s</summary>\n\n   ```python\n"
                                      "   answer = 3\n   ```\n   </details>\n"
                                      "```python\nnot_a_solution = 1\n```"),
        nbformat.v4.new_code_cell("answer = None\nother = None\ncheck_a(answer)\ncheck_b(other)")])
    cell = solutions_cell(nb)
    assert "answer = 3" in cell and "not_a_solution" not in cell
    assert "assert check_a(answer) is True" in cell and "check_b" not in cell
    assert solutions_cell(nbformat.v4.new_notebook()) is None


@pytest.mark.parametrize("name", NAMES)
def test_runs_in_smoke_mode(name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = _load(name)
    solutions = solutions_cell(nb)
    if solutions:  # after the learner's cells, with every answer left at None
        nb.cells.append(nbformat.v4.new_code_cell(solutions))
    # the kernel inherits this process's environment
    monkeypatch.setenv("CAKES_SMOKE", "1")
    monkeypatch.setenv("CAKES_WIDGETS", "0")  # headless: default widget states, text bars
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("CAKES_OUTPUT_DIR", str(tmp_path))  # notebooks write files here
    monkeypatch.setenv("TQDM_MININTERVAL", "5")
    client = NotebookClient(
        nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", allow_errors=False,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    start = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as e:  # show the failing cell, not nbclient's traceback
        pytest.fail(f"{name}: a cell failed in smoke mode:\n{str(e)[-3000:]}")
    elapsed = time.perf_counter() - start
    nbformat.write(nb, tmp_path / name)  # the executed copy, kept for reading a failure
    findings = scan(nb)
    assert not findings, (f"{name}: error-like outputs in smoke mode (executed copy: "
                          f"{tmp_path / name}):\n" + "\n".join(map(str, findings)))
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    print(f"{name}: {elapsed:.1f} s in smoke mode (load {load:.1f} per core)", file=sys.stderr)
    if load <= 2.0:
        assert elapsed < BUDGET_S, f"{name}: {elapsed:.0f} s in smoke mode, budget {BUDGET_S:.0f} s"
