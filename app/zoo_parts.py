"""Pieces of the zoo build (:mod:`zoo_build`): the build environment, the example clips, and the
small in-memory training / evaluation helpers the recipes use. The zoo's files are written by
the library (:func:`cakes_lite.zoo.save_model`, :func:`cakes_lite.zoo.write_index`)."""

from __future__ import annotations

import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cakes_lite.data import CLASSES, make_clips
from cakes_lite.data.video_io import write_video
from cakes_lite.train import fit
from cakes_lite.train.metrics import dice_per_class, mean_foreground


def environment() -> dict[str, Any]:
    """Versions and threads the zoo was built with (timings and last digits depend on them)."""
    return {"torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "machine": platform.machine()}


Progress = Callable[[str], Any]


def write_examples(root: str | Path, seed: int = 0, names=None) -> list[str]:
    """Example clips for the app (h264 mp4 written by PyAV, 4× upscaled): one clip per class
    in ``names`` (default: every class), from random keys no data split uses (so never seen in
    training)."""
    names = CLASSES if names is None else names
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
