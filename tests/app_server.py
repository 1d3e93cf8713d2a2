"""Start ``app/app.py`` in a subprocess on a free port for the app tests (not a test module)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app" / "app.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppURL(str):
    """The app's URL; ``.pid`` is the server process (for memory measurements)."""

    pid: int


@contextmanager
def running_app(timeout: float = 240.0):
    """Yield the URL (an :class:`AppURL`) of a freshly started app; stop it afterwards (by its
    own pid)."""
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False",
           "PYTHONPATH": str(ROOT)}
    env.pop("GRADIO_SERVER_NAME", None)
    cache = ROOT / ".pytest_cache"  # the app's log goes there when it exists
    log = open(cache / f"app_{port}.log", "w") if cache.is_dir() else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-u", str(APP)], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    url = AppURL(f"http://127.0.0.1:{port}/")
    url.pid = proc.pid
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"app exited with code {proc.returncode} before serving")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"app did not serve {url} within {timeout:.0f} s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if log is not subprocess.DEVNULL:
            log.close()
