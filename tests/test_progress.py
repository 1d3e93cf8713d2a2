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
