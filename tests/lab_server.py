"""Start ``jupyter lab`` in a subprocess for the notebook browser test (not a test module).

The server listens on 127.0.0.1 only, on a free port, with a random token, serves one folder,
runs the notebooks in smoke mode with live widgets, and keeps every piece of Jupyter state
(settings, workspaces, kernels' runtime files, the notebook trust database) in a temp folder,
so nothing of the user's own Jupyter set-up leaks in or is changed.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from app_server import free_port

ROOT = Path(__file__).resolve().parents[1]
#: JupyterLab user settings for the run: no news/update checks (offline), every cell in the DOM
SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def lab_command(folder: Path, port: int, token: str) -> list[str]:
    """The ``jupyter lab`` command line: headless, loopback, the app exposed to the page."""
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
           f"--port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={folder}", "--LabApp.expose_app_in_browser=True",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # containers run the suite as root
    return cmd


@contextmanager
def running_lab(folder: Path, state: Path, timeout: float = 120.0):
    """Yield ``(url, token)`` of a JupyterLab serving ``folder`` (state under ``state``); stop it
    afterwards (by its own pid)."""
    env = dict(os.environ, CAKES_SMOKE="1", CAKES_OUTPUT_DIR=str(state / "outputs"),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               JUPYTERLAB_SETTINGS_DIR=str(state / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(state / "workspaces"),
               JUPYTER_CONFIG_DIR=str(state / "config"), JUPYTER_DATA_DIR=str(state / "data"),
               JUPYTER_RUNTIME_DIR=str(state / "runtime"), IPYTHONDIR=str(state / "ipython"))
    env.pop("CAKES_WIDGETS", None)  # live widgets, as a learner gets them
    for rel, value in SETTINGS.items():
        path = state / "settings" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    port, token = free_port(), secrets.token_hex(16)
    log_path = state / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(lab_command(folder, port, token), env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            url, end = f"http://127.0.0.1:{port}", time.monotonic() + timeout
            while True:
                try:
                    urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > end:
                        raise RuntimeError("jupyter lab did not start:\n"
                                           + log_path.read_text(errors="replace")[-3000:])
                    time.sleep(0.3)
            yield url, token
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
