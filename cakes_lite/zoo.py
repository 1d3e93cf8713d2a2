"""The model zoo format (read and write), and the reference layouts of the paper's authors.

A zoo folder (any folder; the app ships one in ``app/zoo/``; every function takes its ``root``)
holds, per model, ``<name>.safetensors`` (weights), ``<name>.layout.json`` (its kernel layout,
CAKES models only) and ``<name>.json`` (metadata: architecture, data, seed, metrics, MACs,
params, training recipe), plus ``index.json`` (model order and build summary). This module
writes them (:func:`save_model`, :func:`write_index`; every file atomically) and reads them
(:func:`read_index`, :func:`list_models`, :func:`read_meta`, :func:`load_layout`,
:func:`load_model`). The app's recipe that trains its models, ``app/zoo_build.py``, lives with
the app, not in the library.

The six ResNet-50 layouts released by the paper's authors and their cost
(:func:`official_layouts`, :func:`resnet50_macs`, :data:`OFFICIAL_TITLES`) live in
:mod:`cakes_lite.official` and are re-exported here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from ._helpers import atomic_write, atomic_write_text
from .cost import profile
from .layout import Layout
from .models import build_model, model_spec
from .official import OFFICIAL_TITLES, RESNET50_STAGES, official_layouts, resnet50_macs  # noqa: F401 - re-exported

# -- a zoo folder ------------------------------------------------------------------------------

def _root(root: str | Path) -> Path:
    if root is None or isinstance(root, bool):
        raise ValueError(f"root: expected the zoo folder (e.g. 'app/zoo'), got {root!r}")
    path = Path(root)
    if not (path / "index.json").is_file():
        raise FileNotFoundError(
            f"zoo: no index.json in {str(path)!r}; pass the folder that holds one, or build the "
            f"app's zoo with `python app/zoo_build.py --out {path}`"
        )
    return path


def meta_path(name: str, root: str | Path) -> Path:
    """Where model ``name``'s metadata JSON lies in zoo folder ``root`` (it need not exist)."""
    return Path(root) / f"{name}.json"


def read_index(root: str | Path) -> dict[str, Any]:
    """The zoo's ``index.json``: ``{"models": [names…], "build": {…}}``."""
    return json.loads((_root(root) / "index.json").read_text(encoding="utf-8"))


def list_models(root: str | Path, task: str | None = None) -> list[dict[str, Any]]:
    """Metadata of every model in the zoo (in index order), optionally only those of one task
    (``"classification"`` or ``"segmentation"``)."""
    path = _root(root)
    metas = [read_meta(name, path) for name in read_index(path)["models"]]
    return [m for m in metas if task is None or m["task"] == task]


def read_meta(name: str, root: str | Path) -> dict[str, Any]:
    """Metadata JSON of model ``name``."""
    path = meta_path(name, _root(root))
    if not path.is_file():
        raise ValueError(f"model: no zoo model named {name!r} (no {path.name})")
    return json.loads(path.read_text(encoding="utf-8"))


def load_layout(name: str, root: str | Path) -> Layout | None:
    """The layout of model ``name`` (``None`` for a model without one, e.g. full 3D)."""
    meta = read_meta(name, root)
    return Layout.from_json(_root(root) / meta["layout"]) if meta.get("layout") else None


def load_model(name: str, root: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild model ``name`` from its metadata and load its weights (eval mode, CPU).

    Returns:
        ``(model, meta)``; ``meta["input_shape"]`` is the (1, C, D, H, W) input it was built for.
    """
    path = _root(root)
    meta = read_meta(name, path)
    spec = meta["model"]
    model = build_model(spec["name"], **spec["config"])
    state = load_file(str(path / meta["weights"]))
    model.load_state_dict(state, strict=True)
    return model.eval(), meta


def save_model(name: str, model: nn.Module, root: str | Path, meta: dict[str, Any],
               layout: Layout | None = None) -> dict[str, Any]:
    """Write model ``name`` into zoo folder ``root``: ``<name>.safetensors``,
    ``<name>.layout.json`` (if ``layout``) and ``<name>.json`` (what :func:`load_model` reads).

    Args:
        name: the model's name in the zoo.
        model: a network :func:`cakes_lite.models.model_spec` can describe (so it can be rebuilt).
        root: the zoo folder (created if missing).
        meta: at least ``title``, ``task``, ``input_shape`` (1, C, D, H, W) and ``classes``; the
            architecture, weight and layout file names, MACs and params at ``input_shape`` are
            added here.
        layout: the model's kernel layout, if it has one.

    Returns:
        The metadata as written.
    """
    root = Path(root)
    model = model.eval()
    cost = profile(model, tuple(meta["input_shape"]))
    meta = {"name": name, **meta, "model": model_spec(model), "weights": f"{name}.safetensors",
            "layout": f"{name}.layout.json" if layout is not None else None,
            "macs": cost.macs, "params": cost.params}
    if layout is not None:
        layout.to_json(root / meta["layout"])
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write(root / meta["weights"], lambda tmp: save_file(
        state, tmp, metadata={"format": "cakes_lite.zoo", "name": name}))
    atomic_write_text(meta_path(name, root), json.dumps(meta, indent=1) + "\n")
    return meta


def write_index(root: str | Path, names: list[str], build: dict[str, Any]) -> None:
    """Write ``index.json``: the model order (what :func:`list_models` lists) and a summary of
    the build that made them."""
    atomic_write_text(Path(root) / "index.json",
                      json.dumps({"models": list(names), "build": build}, indent=1) + "\n")
