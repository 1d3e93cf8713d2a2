"""Checkpoints as safetensors + JSON, written atomically; no pickle anywhere.

A checkpoint directory holds

- ``checkpoint.json`` — format/version, epoch, global step, batches done of an unfinished epoch
  (mid-epoch checkpoints), the model's ``{name, config}`` (so
  ``build_model(name, **config)`` rebuilds it), the layout of any layers shrunk after building,
  optimizer param groups and non-tensor state, GradScaler state, Python/NumPy RNG states, the
  training history and free-form metadata;
- ``model-eNNNN.safetensors`` — the model's ``state_dict``;
- ``state-eNNNN[bMMMMMM].safetensors`` — optimizer tensors (``optim/<param index>/<key>``), torch
  RNG states (``rng/torch``, ``rng/cuda/<i>``, the data loader's generators ``rng/gen/<i>``) and
  extra tensors (``extra/<name>``, e.g. a mid-epoch metric sum).

Each file is written to a temporary name and renamed; ``checkpoint.json`` is replaced last and
names the tensor files it belongs to, so a crash at any point leaves the previous checkpoint
whole. Older tensor files are removed afterwards.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .._helpers import atomic_write, atomic_write_text
from ..layout import Layout, shrink
from ..models import build_model, model_spec
from ..ops import CAKESConv3d

FORMAT = "cakes_lite.checkpoint"
VERSION = 1
JSON_NAME = "checkpoint.json"


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model (weights loaded) and the JSON record (``info``)."""

    model: nn.Module
    info: dict[str, Any] = field(default_factory=dict)
    state: dict[str, torch.Tensor] = field(default_factory=dict)  # the state file's tensors

    @property
    def epoch(self) -> int:
        """Completed epochs."""
        return int(self.info.get("epoch", 0))

    @property
    def batch(self) -> int:
        """Batches done of epoch ``epoch + 1`` (0: saved at an epoch boundary)."""
        return int(self.info.get("batch", 0))

    @property
    def extra(self) -> dict[str, torch.Tensor]:
        """The ``extra=`` tensors given to :func:`save_checkpoint`."""
        return {k[len("extra/"):]: v for k, v in self.state.items() if k.startswith("extra/")}

    def restore_rng(self, generators: Sequence[torch.Generator] = ()) -> None:
        """Set the torch / CUDA / Python / NumPy RNGs and ``generators`` (in the order given
        to :func:`save_checkpoint`) to their saved states."""
        _restore_rng(self.info, self.state, generators)

    @property
    def history(self) -> list[dict]:
        return list(self.info.get("history", []))


def _json_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path if path.suffix == ".json" else path / JSON_NAME


def _atomic_save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    plain = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(plain, tmp))


def _plain(value: Any, where: str) -> Any:
    """A JSON-safe copy of ``value`` (tuples -> lists, 0-d tensors -> numbers)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v, where) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v, where) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(f"checkpoint: cannot store {where} value of type {type(value).__name__} "
                     f"as JSON")


def describe_model(model: nn.Module) -> tuple[dict | None, dict | None, str | None]:
    """``(spec, layout, why)``: the ``{name, config}`` that rebuilds ``model``, the layout of
    layers shrunk after building (``{name: split}`` or None), or ``(None, None, reason)`` when
    the model cannot be rebuilt from a config (a custom network, a supernet …)."""
    try:
        spec = model_spec(model)
    except ValueError as e:
        return None, None, str(e)
    ref = build_model(spec["name"], **spec["config"])
    ref_modules = dict(ref.named_modules())
    layout = {name: dict(m.split) for name, m in model.named_modules()
              if isinstance(m, CAKESConv3d) and type(ref_modules.get(name)) is nn.Conv3d}
    if layout:
        ref = shrink(ref, layout, inplace=True)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    if shapes != {k: v.shape for k, v in ref.state_dict().items()}:
        return None, None, (f"the {type(model).__name__} has layers its config does not "
                            "describe (e.g. a supernet's SearchConv3d)")
    return spec, layout or None, None


def save_checkpoint(directory: str | os.PathLike, model: nn.Module, *,
                    optimizer: torch.optim.Optimizer | None = None, epoch: int = 0, step: int = 0,
                    history: list[dict] | None = None, meta: dict[str, Any] | None = None,
                    scaler: Any = None, batch: int = 0,
                    generators: Sequence[torch.Generator] = (),
                    extra: dict[str, torch.Tensor] | None = None) -> Path:
    """Write a checkpoint of ``model`` (and optionally the optimizer) into ``directory``.

    Args:
        directory: checkpoint folder (created if missing).
        model: the network (a DDP wrapper is unwrapped).
        optimizer: its state goes to safetensors (tensors) + JSON (the rest).
        epoch: completed epochs.
        step: completed optimiser steps.
        history: per-epoch records (JSON-able dicts).
        meta: free-form JSON-able metadata (task, data config, fit arguments …).
        scaler: a ``torch.amp.GradScaler`` whose state is stored too.
        batch: batches done of epoch ``epoch + 1`` (a mid-epoch checkpoint); 0 at a boundary.
        generators: ``torch.Generator`` s (e.g. the data loader's) whose states are stored;
            :meth:`Checkpoint.restore_rng` restores them in the same order.
        extra: more tensors to store (``Checkpoint.extra`` on load).

    Returns:
        The path of ``checkpoint.json``.
    """
    model = getattr(model, "module", model)
    directory = Path(directory)
    # the RNG states first: what follows must not be able to change what is stored
    np_state, py_state = np.random.get_state(), random.getstate()
    tensors: dict[str, torch.Tensor] = {"rng/torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = s
    with torch.random.fork_rng(devices=[]):  # building the reference model draws random init
        spec, layout, why = describe_model(model)  # spec None: load_checkpoint needs model=
    tag = f"e{epoch:04d}" + (f"b{batch:06d}" if batch else "")
    weights_name, state_name = f"model-{tag}.safetensors", f"state-{tag}.safetensors"
    _atomic_save_tensors(model.state_dict(), directory / weights_name)

    for i, gen in enumerate(generators):
        tensors[f"rng/gen/{i}"] = gen.get_state()
    for name, value in (extra or {}).items():
        tensors[f"extra/{name}"] = value
    optim_json = None
    if optimizer is not None:
        sd = optimizer.state_dict()
        state_meta: dict[str, dict[str, Any]] = {}
        for idx, entry in sd["state"].items():
            for key, value in entry.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optim/{idx}/{key}"] = value
                else:
                    state_meta.setdefault(str(idx), {})[key] = _plain(value, "optimizer state")
        optim_json = {"class": type(optimizer).__name__,
                      "param_groups": _plain(sd["param_groups"], "optimizer param group"),
                      "state": state_meta}
    _atomic_save_tensors(tensors, directory / state_name)

    info = {
        "format": FORMAT, "version": VERSION, "epoch": int(epoch), "step": int(step),
        "batch": int(batch), "generators": len(generators),
        "model": spec, "model_error": why, "layout": Layout(layout).to_dict() if layout else None,
        "weights": weights_name, "state": state_name, "optimizer": optim_json,
        "scaler": _plain(scaler.state_dict(), "scaler") if scaler is not None else None,
        "rng": {"python": [py_state[0], list(py_state[1]), py_state[2]],
                "numpy": [np_state[0], np_state[1].tolist(), *map(_plain_np, np_state[2:])]},
        "history": _plain(history or [], "history"), "meta": _plain(meta or {}, "meta"),
    }
    path = directory / JSON_NAME
    atomic_write_text(path, json.dumps(info, indent=1) + "\n")
    for old in directory.glob("*-e[0-9][0-9][0-9][0-9]*.safetensors"):
        if old.name not in (weights_name, state_name):
            old.unlink(missing_ok=True)
    return path


def _plain_np(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def read_checkpoint_info(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON record of a checkpoint (directory or its ``checkpoint.json``).

    Raises:
        FileNotFoundError: no checkpoint there.
        ValueError: not a cakes_lite checkpoint or a newer version.
    """
    p = _json_path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint: no {JSON_NAME} in {str(p.parent)!r}")
    try:
        info = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"checkpoint {str(p)!r}: not valid JSON ({e})") from None
    if info.get("format") != FORMAT:
        raise ValueError(f"checkpoint {str(p)!r}: expected format {FORMAT!r}, "
                         f"got {info.get('format')!r}")
    if int(info.get("version", 0)) > VERSION:
        raise ValueError(f"checkpoint {str(p)!r}: version {info['version']} is newer than "
                         f"supported ({VERSION})")
    return info


def load_checkpoint(path: str | os.PathLike, model: nn.Module | None = None, *,
                    optimizer: torch.optim.Optimizer | None = None, scaler: Any = None,
                    restore_rng: bool = False, map_location: str | torch.device = "cpu",
                    strict: bool = True, generators: Sequence[torch.Generator] = ()
                    ) -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: checkpoint directory (or its ``checkpoint.json``).
        model: load the weights into this model; ``None`` rebuilds it from the stored
            ``{name, config}`` with :func:`cakes_lite.models.build_model` and re-applies the
            stored layout.
        optimizer: if given, its state is restored (same param groups as when saved).
        scaler: if given, the GradScaler state is restored.
        restore_rng: also restore the torch / CUDA / Python / NumPy RNG states and those of
            ``generators`` (or later, with :meth:`Checkpoint.restore_rng`).
        map_location: device for the loaded tensors.
        strict: passed to ``load_state_dict``.

    Returns:
        :class:`Checkpoint` with ``.model`` (on ``map_location``), ``.info`` (the JSON) and
        ``.state`` (optimizer / RNG / extra tensors, on the CPU).
    """
    info = read_checkpoint_info(path)
    directory = _json_path(path).parent
    if model is None:
        if not info.get("model"):
            raise ValueError(f"checkpoint {str(directory)!r}: stores no model config "
                             f"({info.get('model_error')}); pass model= to load its weights")
        model = build_model(info["model"]["name"], **info["model"]["config"])
        if info.get("layout"):
            model = shrink(model, Layout.from_dict(info["layout"]), inplace=True)
    target = getattr(model, "module", model)
    device = torch.device(map_location)
    target.load_state_dict(load_file(directory / info["weights"], device=str(device)),
                           strict=strict)
    target.to(device)
    tensors = load_file(directory / info["state"], device="cpu")
    if optimizer is not None:
        if not info.get("optimizer"):
            raise ValueError(f"checkpoint {str(directory)!r}: holds no optimizer state")
        opt = info["optimizer"]
        state: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            if key.startswith("optim/"):
                _, idx, name = key.split("/", 2)
                state.setdefault(int(idx), {})[name] = value
        for idx, entries in opt["state"].items():
            state.setdefault(int(idx), {}).update(entries)
        groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()}
                  for g in opt["param_groups"]]
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    if scaler is not None and info.get("scaler"):
        scaler.load_state_dict(info["scaler"])
    ck = Checkpoint(model=model, info=info, state=tensors)
    if restore_rng:
        ck.restore_rng(generators)
    return ck


def _restore_rng(info: dict, tensors: dict[str, torch.Tensor],
                 generators: Sequence[torch.Generator]) -> None:
    saved = sorted((k for k in tensors if k.startswith("rng/gen/")),
                   key=lambda k: int(k.rsplit("/", 1)[1]))
    if len(generators) != len(saved):
        raise ValueError(f"generators: the checkpoint stores {len(saved)} generator state(s), "
                         f"got {len(generators)} generator(s)")
    torch.set_rng_state(tensors["rng/torch"])
    cuda = [tensors[f"rng/cuda/{i}"] for i in range(sum(k.startswith("rng/cuda/")
                                                         for k in tensors))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    for gen, key in zip(generators, saved):
        gen.set_state(tensors[key])
    py = info["rng"]["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npst = info["rng"]["numpy"]
    np.random.set_state((npst[0], np.array(npst[1], dtype=np.uint32), *npst[2:]))
