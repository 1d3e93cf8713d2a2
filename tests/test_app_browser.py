"""A real browser (headless Debian chromium via playwright) loads the app, sees the layout plot,
runs video inference on the bundled example and sees the predicted label; an error (a broken
layout upload) stays on screen, in words, 15 s later.

Skipped with a message where chromium or playwright is missing (``make test`` installs chromium
with ``scripts/install_browser.sh`` where it may use apt-get).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import pytest

from app_server import ROOT, running_app

ZOO = Path(os.environ.get("CAKES_LITE_ZOO", ROOT / "app" / "zoo"))  # as the app reads it
CHROMIUM = os.environ.get("CAKES_LITE_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu",
        "--disable-dev-shm-usage", "--disable-extensions", "--no-first-run",
        "--disable-component-update", "--disable-default-apps", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"no chromium at {CHROMIUM}: run `bash scripts/install_browser.sh` "
                              "(needs root + apt-get) to enable the real-browser app test"),
    pytest.mark.skipif(not (ZOO / "index.json").is_file(),
                       reason="app/zoo is not built (python app/zoo_build.py)"),
]


@contextlib.contextmanager
def app_page():
    """The running app in headless chromium, once the layout explorer has drawn its plot."""
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="the playwright package is not installed")
    with running_app() as url, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(url, wait_until="domcontentloaded")
            # the layout explorer draws its plot on page load
            page.locator("#layout-bars .js-plotly-plot").first.wait_for(timeout=60_000)
            yield page
        finally:
            browser.close()


def test_browser_layout_plot_and_video_label(tmp_path):
    index = json.loads((ZOO / "index.json").read_text())
    classes = set()
    for name in index["models"]:
        meta = json.loads((ZOO / f"{name}.json").read_text())
        if meta["task"] == "classification":
            classes.update(meta["classes"])
    with app_page() as page:
        assert page.locator("#layout-bars .js-plotly-plot .bars").count() > 0
        page.get_by_role("tab", name="Video inference").click()
        page.get_by_role("button", name="Classify").click()
        note = page.locator("#video-note")
        note.get_by_text("ms per clip").wait_for(timeout=60_000)
        label = page.locator("#top5")
        label.wait_for(timeout=10_000)
        text = label.inner_text()
        assert any(c in text for c in classes), text
        assert any(c in note.inner_text() for c in classes)


def test_browser_error_stays_visible(tmp_path):
    bad = tmp_path / "broken_layout.json"
    bad.write_text("{not json")
    with app_page() as page:
        page.locator("#layout-upload input[type=file]").set_input_files(str(bad))
        note = page.locator("#layout-note")
        note.get_by_text("not valid JSON").wait_for(timeout=60_000)
        page.wait_for_timeout(15_000)  # a toast would be gone by now
        assert note.is_visible()
        text = note.inner_text()
        assert "Error" in text and "not valid JSON" in text and "broken_layout.json" in text
        assert "/tmp/" not in text
        # the previous layout's plot is cleared, not left under the error
        assert page.locator("#layout-bars .js-plotly-plot .bars").count() == 0
