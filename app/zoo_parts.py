"""Pieces of the zoo build (:mod:`zoo_build`): writing a zoo entry and the index, the example
clips, and the small in-memory training / evaluation helpers the recipes use."""

from __future__ import annotations

import json
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cakes_lite.cost import profile
from cakes_lite._helpers import atomic_write, atomic_write_text
from cakes_lite.layout import Layout
from cakes_lite.train.metrics import dice_per_class, mean_foreground


def save_entry(root: str | Path, name: str, model: nn.Module, meta: dict[str, Any],
               layout: Layout | None = None) -> dict[str, Any]:
    """Write ``<name>.safetensors``, ``<name>.layout.json`` (if any) and ``<name>.json``.

    ``meta`` must hold ``title``, ``task``, ``input_shape`` and ``classes``; the architecture
    (``cakes_lite.models.model_spec``), MACs and params at ``input_shape`` are added here.

    Returns:
        The metadata as written.
    """
    from safetensors.torch import save_file

    from cakes_lite.models import model_spec

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
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
    atomic_write_text(root / f"{name}.json", json.dumps(meta, indent=1) + "\n")
    return meta


def write_index(root: str | Path, names: list[str], build: dict[str, Any]) -> None:
    """Write ``index.json``: the model order for the app and a summary of the build."""
    atomic_write_text(Path(root) / "index.json",
                      json.dumps({"models": names, "build": build}, indent=1) + "\n")


def environment() -> dict[str, Any]:
    """Versions and threads the zoo was built with (timings and last digits depend on them)."""
    return {"torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "machine": platform.machine()}


Progress = Callable[[str], Any]


def write_examples(root: str | Path, seed: int = 0, names=None) -> list[str]:
    """Example clips for the app (h264 mp4 written by PyAV, 4× upscaled): one clip per class
    in ``names``, from random keys no data split uses (so never seen in training)."""
    from cakes_lite.data import make_clips
    from cakes_lite.data.video_io import write_video

    if names is None:
        from cakes_lite.data import CLASSES as names  # one clip per class

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    clips = make_clips(list(names), [(seed, 9, i) for i in range(len(names))], frames=8, size=32)
    files = []
    for name, clip in zip(names, clips):
        write_video(root / f"{name}.mp4", clip, fps=4, scale=4, crf=12)
        files.append(f"{name}.mp4")
    return files


# -- training (in-memory tensors: the zoo's data sets are a few hundred samples) -------------

def loader(x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int) -> DataLoader:
    """Shuffled mini-batches of in-memory tensors (``fit`` re-seeds the order every epoch)."""
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True,
                      generator=torch.Generator().manual_seed(seed))


def train(model: nn.Module, batches: DataLoader, epochs: int, lr: float, seed: int, task: str,
          progress: Progress | None = None, what: str = "") -> float:
    """``cakes_lite.train.fit`` with AdamW and a short warm-up; returns the last train loss."""
    from cakes_lite.train import fit

    def report(record: dict) -> None:
        if progress:
            progress(f"{what} epoch {record['epoch']}/{epochs}: loss {record['train_loss']:.3f}")

    result = fit(model, batches, task=task, epochs=epochs, lr=lr, optimizer="adamw",
                 weight_decay=0.05, warmup_epochs=0.5, seed=seed, device="cpu",
                 callback=report, progress=False)
    return round(float(result.last["train_loss"]), 4)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Arg-max predictions of ``model`` (eval mode) over ``x`` in chunks."""
    model.eval()
    return torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


def accuracy_metrics(pred: torch.Tensor, y: torch.Tensor, pairs) -> dict[str, float]:
    """Top-1 accuracy, and accuracy on the clips of time-reversed classes only."""
    in_pairs = torch.tensor([int(c) in {a for p in pairs for a in p} for c in y])
    return {"top1": round(float((pred == y).float().mean()), 4),
            "top1_reversed_pairs": round(float((pred == y)[in_pairs].float().mean()), 4)}


def dice_metrics(pred: torch.Tensor, y: torch.Tensor, classes) -> dict[str, float]:
    """Dice per foreground class over all voxels of the evaluation set, and their mean
    (:func:`cakes_lite.train.metrics.dice_per_class`: NaN for a class absent from both)."""
    dice = dice_per_class(pred, y, len(classes))
    out = {f"dice_{classes[c]}": round(dice[c], 4) for c in range(1, len(classes))}
    out["dice_mean"] = round(mean_foreground(dice), 4)
    return out
