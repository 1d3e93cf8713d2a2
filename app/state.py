"""What every tab shares: the zoo folder, the upload limits, the model cache, error handling.

Handlers raise :class:`UserError` for bad input; :func:`guarded` turns it (and any other
exception) into words in the tab's status area and clears the tab's outputs, so an error stays
on screen until the next action instead of vanishing with a toast. Messages never show a
server path (:func:`scrub`).
"""

from __future__ import annotations

import functools
import os
import re
import statistics
import threading
from collections.abc import Callable
from pathlib import Path

import torch

from cakes_lite import zoo
from cakes_lite.speed import interleaved_samples

HERE = Path(__file__).resolve().parent
ZOO = Path(os.environ.get("CAKES_LITE_ZOO", HERE / "zoo"))  # override for tests / rebuilt zoos
EXAMPLES = HERE / "examples"

# -- limits: every upload is checked against these before it is loaded -----------------------
MAX_FILE_SIZE = "50mb"  # Gradio refuses larger uploads before they reach a handler
MAX_JSON_BYTES = 1_000_000  # layout JSON
VIDEO_TYPES = (".mp4", ".webm", ".avi", ".mov", ".mkv")
MAX_VIDEO_SECONDS = 30.0  # when the container states a duration
MAX_VIDEO_FRAMES = 900  # counted while decoding, whatever the container claims
MAX_VIDEO_PIXELS = 1920 * 1080  # per frame, from the stream header
NIFTI_TYPES = (".nii", ".nii.gz")
MAX_FILE_VOXELS = 256**3  # voxels the NIfTI header may declare (all dimensions multiplied)
MAX_MODEL_VOXELS = 1_200_000  # voxels the segmenter sees at 2 mm (≈ 106³; MNI152: 1.07 M)
MEMORY_BUDGET_MB = 500  # peak memory of one request above the idle app (measured by the tests)

LIMITS_TEXT = (
    f"Limits: uploads ≤ {MAX_FILE_SIZE[:-2]} MB; videos ≤ {MAX_VIDEO_FRAMES} frames "
    f"(≤ {MAX_VIDEO_SECONDS:.0f} s), ≤ 1920×1080; NIfTI ≤ {MAX_FILE_VOXELS:,} voxels in the "
    f"file and ≤ {MAX_MODEL_VOXELS:,} voxels (about 106³) at the model's 2 mm grid; layout "
    f"JSON ≤ {MAX_JSON_BYTES / 1e6:g} MB. Each request stays under about {MEMORY_BUDGET_MB} MB "
    "of memory; larger inputs are refused with a message before they are loaded.")


class UserError(Exception):
    """Bad input: the message says what was expected and what was given."""


def fail(message: str) -> UserError:
    """A user-facing error (shown in the tab's status area; the app keeps serving)."""
    return UserError(message)


_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[\\/][^\s'\"\\/:,()]+)+[\\/]?")


def scrub(text: str) -> str:
    """``text`` with every absolute path replaced by its last component (no server paths)."""
    return _PATH.sub(lambda m: Path(m.group(0).rstrip("/\\")).name or "…", str(text))


def ok(text: str) -> str:
    """Status line of a successful action."""
    return scrub(text)


def error_text(message: str) -> str:
    """Status line of a failed action (Markdown)."""
    return f"**⚠ Error:** {scrub(message)}"


def guarded(cleared: Callable[[], tuple]) -> Callable:
    """Decorator: on any exception return ``(*cleared(), error status)`` instead of raising.

    The wrapped handler returns its outputs with the status text last; ``cleared()`` gives the
    values that replace the other outputs after an error (stale results are removed).
    """
    def wrap(fn):
        @functools.wraps(fn)
        def run(*args):
            try:
                return fn(*args)
            except UserError as e:
                message = str(e)
            except MemoryError:
                message = (f"the request needed more memory than this app allows "
                           f"(about {MEMORY_BUDGET_MB} MB); try a smaller input")
            except Exception as e:  # noqa: BLE001 — anything else: say what, keep serving
                message = f"unexpected {type(e).__name__}: {e}"
            return (*cleared(), error_text(message))
        return run
    return wrap


# -- the model cache ---------------------------------------------------------------------------
_lock = threading.Lock()
_models: dict[str, tuple[torch.nn.Module, dict]] = {}


def model(name: str | None) -> tuple[torch.nn.Module, dict]:
    """A bundled model and its metadata, loaded once and shared (eval mode, ``no_grad`` use)."""
    if not name:
        raise fail("model: choose a bundled model")
    with _lock:
        if name not in _models:
            try:
                _models[name] = zoo.load_model(name, ZOO)
            except (ValueError, FileNotFoundError) as e:
                raise fail(f"model {name!r}: {e}") from None
        return _models[name]


def models_for(task: str) -> list[tuple[str, str]]:
    """(label, name) of the bundled models of a task, for a dropdown (label: title, name and
    the accuracy its build measured)."""
    out = []
    for m in zoo.list_models(ZOO, task):
        metrics = m.get("metrics", {})
        score = (f"test top-1 {metrics['top1']:.0%}" if "top1" in metrics else
                 f"Dice {metrics['dice_mean']:.2f}" if "dice_mean" in metrics else "")
        out.append((f"{m['title']} — {m['name']}" + (f" ({score})" if score else ""), m["name"]))
    return out


def default_model(task: str) -> str | None:
    """The first CAKES model (one with a layout) of ``task``, else the first model."""
    metas = zoo.list_models(ZOO, task)
    cakes = [m["name"] for m in metas if m.get("layout")]
    return (cakes or [m["name"] for m in metas] or [None])[0]


def baseline_for(task: str) -> str:
    """Name of the full 3D model of ``task`` in the zoo."""
    for m in zoo.list_models(ZOO, task):
        if m.get("layout") is None:
            return m["name"]
    raise fail(f"the zoo has no full 3D {task} model to compare with")


def expected_accuracy(meta: dict) -> str:
    """What the zoo's build measured for this model, in words."""
    m = meta.get("metrics", {})
    if "top1" in m:
        n = meta.get("data", {}).get("test", {}).get("clips")
        return (f"expected accuracy: {m['top1']:.0%} top-1 on {n or 'the'} held-out synthetic "
                f"test clips (chance {m.get('chance', 0):.0%})")
    if "dice_mean" in m:
        return f"expected mean Dice {m['dice_mean']:.2f} on the held-out slab"
    return "no recorded accuracy"


def timed(fn, repeats: int = 3) -> tuple[object, float]:
    """Run ``fn()`` ``repeats`` times; return its (last) result and the median time in ms."""
    out = []
    ms = interleaved_samples({"fn": lambda: out.append(fn())}, repeats, warmup=0)["fn"]
    return out[-1], statistics.median(ms)
