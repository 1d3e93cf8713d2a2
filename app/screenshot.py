"""Save screenshots of the running app for the README: ``python app/screenshot.py [URL]``.

Needs Debian chromium (``bash scripts/install_browser.sh``) and the playwright package. Starts
the app itself on a free port unless a URL is given. Writes ``docs/app.png`` (layout explorer)
and ``docs/app_video.png`` (video inference on the first example clip).
"""

from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]  # app_server, then the cakes_lite checkout

from app_server import running_app  # noqa: E402 (tests/app_server.py, on the path just above)
from cakes_lite._helpers import atomic_write  # noqa: E402

ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu",
        "--disable-dev-shm-usage", "--disable-extensions", "--no-first-run"]


def shoot(url: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        page.goto(url, wait_until="domcontentloaded")
        page.locator("#layout-bars .js-plotly-plot").first.wait_for(timeout=120_000)
        page.wait_for_timeout(1500)
        atomic_write(out / "app.png", lambda tmp: page.screenshot(path=tmp, type="png"),
                     suffix=".png")
        page.get_by_role("tab", name="Video inference").click()
        page.get_by_role("button", name="Classify").click()
        page.locator("#video-note").get_by_text("ms per clip").wait_for(timeout=120_000)
        page.wait_for_timeout(1500)
        atomic_write(out / "app_video.png", lambda tmp: page.screenshot(
            path=tmp, type="png", full_page=True), suffix=".png")
        browser.close()


def main() -> None:
    out = ROOT / "docs"
    if len(sys.argv) > 1:
        shoot(sys.argv[1], out)
        return
    with running_app() as url:
        shoot(url, out)


if __name__ == "__main__":
    main()
