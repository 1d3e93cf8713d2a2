"""The walkthrough notebooks in a real JupyterLab, driven in headless Debian chromium (playwright).

One JupyterLab server (127.0.0.1, a random token, ``CAKES_SMOKE=1``, live widgets) serves a temp
copy of ``notebooks/``; one browser page opens each notebook in turn and checks what a learner
sees:

* "Run All" finishes with no error output and no traceback on screen;
* every plotly figure in the notebook renders as a plot (an SVG ``.main-svg``), none as text;
* ipywidgets render as controls (sliders, dropdowns), and moving the first slider by keyboard
  redraws its output;
* no progress bar widget is left once the run is over (they turn into text);
* after saving, closing and reopening the notebook (its kernel still running): no "Error
  displaying widget: model not found", on screen or in the console; the controls are back; the
  figures show again (as the PNG jupyterlab-plotly saved, and one turns into the interactive plot
  under the mouse); the saved file refers to no widget model unless the notebook has controls,
  and passes tests/notebook_scan.py.

The server is tests/lab_server.py; all five notebooks share it and the browser (start-up is paid
once), each with its own kernel, shut down before the next notebook.

Cost: each notebook runs again, in a browser (minutes for the five on 2 cores; each prints its
time and where it went), so the module is marked ``slow`` as well as ``browser``:
``tests/test_notebooks.py`` runs the same cells headless, cheaper; ``make test`` runs both.

Skipped with a message where chromium, playwright or JupyterLab is missing (``make test``
installs chromium with ``scripts/install_browser.sh`` where it may use apt-get). A failing
notebook leaves a screenshot in the test's temp folder (its path is printed).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lab_server import running_lab
from notebook_scan import scan_file
from test_notebooks import NAMES, NOTEBOOKS

CHROMIUM = os.environ.get("CAKES_LITE_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--disable-extensions", "--disable-default-apps"]
RUN_TIMEOUT_S = 300      # one notebook's "Run All" in smoke mode (about 10-50 s on 2 cores)
REDRAW_TIMEOUT_S = 60    # a moved slider's output redrawn
CONTROLS = ".widget-slider, .widget-dropdown, .widget-toggle-buttons"

pytestmark = [
    pytest.mark.browser,
    # minutes on 2 cores (each notebook runs again, in a browser); tests/test_notebooks.py covers
    # the same cells headless and cheaper; `make test` runs both
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"no chromium at {CHROMIUM}: run `bash scripts/install_browser.sh` "
                              "(needs root + apt-get) to enable the real-browser notebook test"),
]

# -- JavaScript run in the page (JupyterLab exposes its app as window.jupyterapp) ---------------
STATE_JS = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  if (!w || !w.content || !w.content.model || !w.sessionContext) return null;
  const cells = w.content.model.cells;
  let pending = 0, plotly = 0; const errors = [];
  for (let i = 0; i < cells.length; i++) {
    const c = cells.get(i);
    if (c.type !== 'code') continue;
    if (c.executionCount === null || c.executionCount === undefined) pending++;
    for (const o of c.outputs.toJSON()) {
      if (o.output_type === 'error') errors.push(`cell ${i}: ${o.ename}: ${o.evalue}`);
      if (o.data && o.data['application/vnd.plotly.v1+json']) plotly++;
    }
  }
  const kernel = w.sessionContext.session && w.sessionContext.session.kernel;
  return {pending, errors, plotly, status: kernel ? kernel.status : 'none'};
}"""
SCREEN_JS = """() => {
  const node = window.jupyterapp.shell.currentWidget.content.node;
  const outside = e => !e.closest('.widget-output');
  const figures = Array.from(node.querySelectorAll('.jp-RenderedPlotly'));
  const stderr = node.querySelectorAll('[data-mime-type="application/vnd.jupyter.stderr"]');
  // a reopened notebook shows the PNG that jupyterlab-plotly saved with each figure and draws
  // the interactive plot when the mouse enters it
  const png = e => { const i = e.querySelector('img.plot-img');
    return !!i && i.style.display !== 'none' && i.src.startsWith('data:image/png'); };
  const top = figures.filter(outside);
  return {
    plots: top.filter(e => e.querySelector('.main-svg')).length,
    pngPlots: top.filter(e => !e.querySelector('.main-svg') && png(e)).length,
    widgetPlots: figures.filter(e => !outside(e) && e.querySelector('.main-svg')).length,
    controls: node.querySelectorAll(%r).length,
    progressBars: node.querySelectorAll('.widget-hprogress').length,
    widgetErrors: (node.textContent.match(/Error displaying widget[^\\n]{0,40}/g) || []),
    tracebacks: Array.from(stderr).filter(e => e.textContent.includes('Traceback')).length,
  };
}""" % CONTROLS
#: widget views in the notebook's outputs: drawn (a view or an error message) or still pending
VIEWS_JS = """() => {
  const drawn = [];
  for (const cell of window.jupyterapp.shell.currentWidget.content.widgets) {
    if (cell.model.type !== 'code') continue;
    const area = cell.outputArea;
    for (let j = 0; j < area.model.length; j++) {
      if (!area.model.get(j).data['application/vnd.jupyter.widget-view+json']) continue;
      const node = area.widgets[j] && area.widgets[j].node.querySelector('.jp-OutputArea-output');
      drawn.push(!!node && (node.childElementCount > 0 || node.textContent.length > 0));
    }
  }
  return drawn;
}"""
#: close every document without a save dialog, after shutting its kernel down
CLOSE_JS = """async () => {
  for (const w of Array.from(window.jupyterapp.shell.widgets('main'))) {
    if (w.sessionContext && w.sessionContext.session) await w.sessionContext.shutdown();
    if (w.context) w.context.model.dirty = false;
    w.dispose();
  }
}"""
OUTPUTS_JS = """() => Array.from(window.jupyterapp.shell.currentWidget.content.node
  .querySelectorAll('.widget-output')).map(e => e.textContent)"""


@dataclass
class Lab:
    """A running JupyterLab and the browser page showing it."""

    page: object
    folder: Path
    shots: Path
    console_errors: list[str] = field(default_factory=list)
    #: (phase, seconds) of the notebook under test, printed with its total
    phases: list[tuple[str, float]] = field(default_factory=list)
    _mark: float = 0.0

    def lap(self, phase: str) -> None:
        """Record the seconds since the previous lap under ``phase``."""
        now = time.perf_counter()
        self.phases.append((phase, now - self._mark))
        self._mark = now

    def command(self, name: str, args: dict | None = None) -> None:
        """Run a JupyterLab command and wait for it (e.g. "docmanager:save")."""
        self.page.evaluate("async ([name, args]) => { "
                           "await window.jupyterapp.commands.execute(name, args); }",
                           [name, args or {}])

    def wait(self, js: str, what: str, timeout_s: float, poll_s: float = 0.5):
        """Poll ``js`` (returns a truthy value when done) until ``timeout_s``."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            value = self.page.evaluate(js)
            if value:
                return value
            self.page.wait_for_timeout(int(poll_s * 1000))
        raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """One JupyterLab server and one chromium page for all notebooks (start-up is paid once)."""
    pytest.importorskip("jupyterlab", reason="JupyterLab is not installed")
    pytest.importorskip("ipywidgets", reason="ipywidgets is not installed")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="the playwright package is not installed")
    root = tmp_path_factory.mktemp("jupyterlab")
    folder = root / "notebooks"
    folder.mkdir()
    for name in NAMES:
        shutil.copy(NOTEBOOKS / name, folder / name)
    with running_lab(folder, root / "state") as (url, token), sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
            lab = Lab(page, folder, root)
            page.on("console", lambda m: lab.console_errors.append(m.text)
                    if m.type == "error" else None)
            page.goto(f"{url}/lab?token={token}", wait_until="domcontentloaded")
            page.wait_for_function("() => window.jupyterapp !== undefined", timeout=120_000)
            page.evaluate("async () => { await window.jupyterapp.started; "
                          "await window.jupyterapp.restored; }")
            yield lab
        finally:
            browser.close()


def _open(lab: Lab, name: str) -> None:
    lab.command("docmanager:open", {"path": name})
    lab.wait(f"""() => {{ const w = window.jupyterapp.shell.currentWidget;
        return w && w.context && w.context.path === {json.dumps(name)} && w.context.isReady
          && w.sessionContext.session && w.sessionContext.session.kernel
          && w.sessionContext.session.kernel.status === 'idle'; }}""",
             f"{name} to open with an idle kernel", 120)


def _run_all(lab: Lab, name: str) -> dict:
    lab.command("notebook:run-all-cells")
    end = time.monotonic() + RUN_TIMEOUT_S
    while True:
        state = lab.page.evaluate(STATE_JS)
        assert not state["errors"], f"{name}: cells raised in JupyterLab:\n" + "\n".join(
            state["errors"])
        if state["pending"] == 0 and state["status"] == "idle":
            return state
        assert time.monotonic() < end, f"{name}: Run All still running after {RUN_TIMEOUT_S} s"
        lab.page.wait_for_timeout(1000)


def _screen(lab: Lab, name: str, plotly: int, when: str, png: bool = False) -> dict:
    """Wait until every plotly output of the notebook is drawn (as an SVG plot, or as its saved
    PNG when ``png``), then read the screen."""
    drawn = "s.plots + s.pngPlots" if png else "s.plots"
    lab.wait(f"() => {{ const s = ({SCREEN_JS})(); return {drawn} >= {plotly} ? s : null; }}",
             f"{name}: {plotly} plotly figure(s) drawn {when}", 60)
    screen = lab.page.evaluate(SCREEN_JS)
    count = screen["plots"] + (screen["pngPlots"] if png else 0)
    assert count == plotly, f"{name}: {count} plots drawn, {plotly} in the cells ({when})"
    assert not screen["widgetErrors"], f"{name} {when}: {screen['widgetErrors']}"
    assert screen["tracebacks"] == 0, f"{name} {when}: a traceback is shown"
    return screen


def _move_first_slider(lab: Lab, name: str) -> None:
    """ArrowRight on the first slider's handle must change the output it drives."""
    before = lab.page.evaluate(OUTPUTS_JS)
    handle = lab.page.locator(".jp-Notebook .widget-slider .noUi-handle").first
    readout = lab.page.locator(".jp-Notebook .widget-slider .widget-readout").first
    value = readout.text_content()
    handle.scroll_into_view_if_needed()
    handle.focus()
    lab.page.keyboard.press("ArrowRight")
    lab.wait(f"""() => {{ const now = ({OUTPUTS_JS})(); const before = {json.dumps(before)};
        return now.length === before.length && now.some((t, i) => t !== before[i]); }}""",
             f"{name}: the output of the moved slider (was {value!r}) to redraw",
             REDRAW_TIMEOUT_S)
    assert readout.text_content() != value, f"{name}: the slider did not move"
    screen = lab.page.evaluate(SCREEN_JS)
    assert screen["tracebacks"] == 0, f"{name}: a traceback after moving the slider"


def _check(lab: Lab, name: str) -> None:
    has_widgets = "ipywidgets" in (NOTEBOOKS / name).read_text(encoding="utf-8")
    _open(lab, name)
    lab.lap("open")
    state = _run_all(lab, name)
    lab.lap("run all")
    screen = _screen(lab, name, state["plotly"], "after Run All")
    assert screen["progressBars"] == 0, f"{name}: progress bar widgets left after the run"
    if has_widgets:
        assert screen["controls"] > 0, f"{name}: its ipywidgets controls are not shown"
        _move_first_slider(lab, name)
    lab.lap("plots + slider")
    lab.command("docmanager:save")
    saved = json.loads((lab.folder / name).read_text(encoding="utf-8"))
    views = [o for c in saved["cells"] for o in c.get("outputs", [])
             if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    if not has_widgets:  # nothing in the file may point to a widget model
        assert not views, f"{name}: the saved file refers to {len(views)} widget model(s)"
    lab.command("application:close-all")
    lab.console_errors.clear()
    _open(lab, name)
    # the widget manager restores the live models from the (still running) kernel; every
    # widget view in the file is then drawn, as a control or as "Error displaying widget"
    lab.wait(f"() => {{ const v = ({VIEWS_JS})(); return v.length === {len(views)} "
             "&& v.every(Boolean); }", f"{name}: {len(views)} widget view(s) drawn", 60)
    lab.lap("save + reopen")
    reopened = _screen(lab, name, state["plotly"], "after reopening the saved notebook", png=True)
    if reopened["pngPlots"]:  # the mouse on a saved figure turns it into the interactive plot
        image = lab.page.locator(".jp-Notebook .jp-RenderedPlotly img.plot-img:visible")
        image = image.first.element_handle()  # this one, even once it is hidden
        image.scroll_into_view_if_needed()
        box = image.bounding_box()  # None: it already turned into the plot (the mouse was there)
        if box is not None:
            lab.page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2,
                                steps=3)
        lab.wait(f"() => ({SCREEN_JS})().plots > {reopened['plots']}",
                 f"{name}: a saved figure to turn interactive under the mouse", 30)
    if has_widgets:  # a restored view may draw its controls a moment after its frame
        lab.wait(f"() => ({SCREEN_JS})().controls >= {screen['controls']}",
                 f"{name}: the {screen['controls']} controls to be restored", 60)
    missing = [e for e in lab.console_errors if "model not found" in e]
    assert not missing, f"{name}: after reopening, the console says {missing[:3]}"
    lab.lap("reopened checks")
    findings = scan_file(lab.folder / name)
    assert not findings, f"{name}: the saved notebook has error-like outputs:\n" + "\n".join(
        map(str, findings))


@pytest.mark.parametrize("name", NAMES)
def test_notebook_in_jupyterlab(lab: Lab, name: str) -> None:
    start = lab._mark = time.perf_counter()
    lab.phases.clear()
    try:
        _check(lab, name)
    except BaseException:
        shot = lab.shots / f"{name}.png"
        lab.page.screenshot(path=str(shot), full_page=True)
        print(f"{name}: screenshot of the failure: {shot}", file=sys.stderr)
        raise
    finally:  # free the kernel's memory before the next notebook
        lab.page.evaluate(CLOSE_JS)
    print(f"{name}: {time.perf_counter() - start:.1f} s in JupyterLab ("
          + ", ".join(f"{phase} {s:.1f} s" for phase, s in lab.phases) + ")", file=sys.stderr)
