"""cakes_lite.progress: widget bars normally, plain text under CAKES_WIDGETS=0."""

from __future__ import annotations

import io

import pytest
from tqdm.std import tqdm as text_tqdm

from cakes_lite import progress


class _FakeAuto(text_tqdm):
    """Stands in for tqdm.auto's class so the test sees which factory was used."""


@pytest.mark.parametrize("value, widget", [
    (None, True), ("1", True), ("yes", True),
    ("0", False), ("", False), (" OFF ", False), ("false", False),
])
def test_factory_follows_cakes_widgets(value, widget, monkeypatch):
    monkeypatch.setattr(progress, "auto_tqdm", _FakeAuto)
    if value is None:
        monkeypatch.delenv("CAKES_WIDGETS", raising=False)
    else:
        monkeypatch.setenv("CAKES_WIDGETS", value)
    assert progress.widgets_enabled() is widget
    bar = progress.progress_bar(total=3, file=io.StringIO())
    try:
        if widget:
            assert isinstance(bar, _FakeAuto)
        else:
            assert type(bar) is text_tqdm, f"expected the plain-text bar, got {type(bar)}"
            assert bar.mininterval == bar.delay == progress.TEXT_MININTERVAL_S
    finally:
        bar.close()


def test_plain_text_bar_writes_its_final_state_and_passes_arguments(monkeypatch):
    monkeypatch.setenv("CAKES_WIDGETS", "0")
    out = io.StringIO()
    items = list(progress.progress_bar(range(4), desc="timing rounds", file=out, mininterval=0,
                                       delay=0))
    assert items == [0, 1, 2, 3]  # wraps an iterable like tqdm
    text = out.getvalue()
    assert "timing rounds" in text and "100%" in text and "4/4" in text


def test_disable_is_honoured_in_text_mode(monkeypatch):
    monkeypatch.setenv("CAKES_WIDGETS", "0")
    out = io.StringIO()
    bar = progress.progress_bar(total=2, file=out, disable=True)
    bar.update(2)
    bar.close()
    assert out.getvalue() == ""


def test_quick_text_bar_prints_no_stuck_zero_percent_line(monkeypatch):
    """Default text mode: nothing before the delay (a quick loop prints nothing at all), so a
    rendered copy never shows a "0%" line."""
    monkeypatch.setenv("CAKES_WIDGETS", "0")
    out = io.StringIO()
    for _ in progress.progress_bar(range(3), desc="networks", file=out):
        pass
    assert out.getvalue() == ""


class _Handle:
    """Stands in for IPython's DisplayHandle: records what the output was replaced by."""

    def __init__(self, obj, display_id):
        self.obj, self.display_id, self.updates = obj, display_id, []

    def update(self, data, raw=False):
        self.updates.append((data, raw))


@pytest.fixture
def jupyter_widgets(monkeypatch):
    """progress_bar as inside a Jupyter kernel: tqdm.auto is the widget bar; displays recorded."""
    ipython_display = pytest.importorskip("IPython.display")
    pytest.importorskip("ipywidgets")
    from tqdm.notebook import tqdm as notebook_tqdm

    shown = []

    def display(obj, display_id=None):
        shown.append(_Handle(obj, display_id))
        return shown[-1]

    monkeypatch.setattr(ipython_display, "display", display)
    monkeypatch.setattr(progress, "auto_tqdm", notebook_tqdm)
    monkeypatch.delenv("CAKES_WIDGETS", raising=False)
    return shown


@pytest.mark.parametrize("leave, stop_at, expected", [
    (True, None, "3/3"),      # finished, kept: its final line
    (False, None, ""),        # finished, not kept: nothing
    (False, 1, "1/3"),        # stopped early (an error): the line where it stopped, kept
])
def test_widget_bar_is_replaced_by_text_when_it_closes(jupyter_widgets, leave, stop_at, expected):
    """A saved notebook must hold text where the bar was, and no widget model stays open (else
    JupyterLab shows "Error displaying widget: model not found" after reopening)."""
    bar = progress.progress_bar(total=3, desc="search", leave=leave)
    (handle,) = jupyter_widgets
    assert handle.obj is bar.container and handle.display_id is True
    assert handle.updates == []                     # the live widget, while it runs
    bar.update(3 if stop_at is None else stop_at)
    bar.close()
    ((data, raw),) = handle.updates
    assert raw and list(data) == ["text/plain"]
    text = data["text/plain"]
    assert (text == "") if expected == "" else (expected in text and "search" in text)
    assert all(w.comm is None for w in (bar.container, *bar.container.children))  # closed


def test_widget_bar_wraps_an_iterable_and_closes_itself(jupyter_widgets):
    assert list(progress.progress_bar(range(4), desc="epoch 1", leave=True)) == [0, 1, 2, 3]
    ((data, _),) = jupyter_widgets[0].updates
    assert "epoch 1" in data["text/plain"] and "4/4" in data["text/plain"]
