"""What a recipe costs on paper: GPU-hours from MACs × items × epochs at an assumed throughput.

An **estimate**, not a measurement (nothing here ran on a GPU):

    MACs of one forward pass  M   (counted by :func:`cakes_lite.profile` at the recipe's input)
    training                  3 M per item (the backward pass ≈ 2 forwards) × items × epochs
    validation after epochs   M per item × validation items × epochs (SSv1 training; not
                              for searches, which validate nothing, nor MSD, whose sliding-
                              window volumes depend on the task)
    GPU-hours                 2 × total MACs (FLOPs) / (T · 10¹²) / 3600

with T the *sustained* TFLOP/s one GPU reaches on these 3D convolutions — an assumption
(:data:`ASSUMED_TFLOPS`); scale the hours by ``ASSUMED_TFLOPS / T`` for yours. Real runs are
often slower still: SSv1 training decodes 8 JPEGs per clip on the CPUs, which must keep up.

Searches cost more per step than training the network they search: performance priority runs
one k×k×k conv per searched layer (the sampled filters embedded in full kernels), the network's
own cost; cost priority runs every candidate, so each searched layer costs
Σ candidate volumes / k³ of its 3D conv (1.44× for video-123d, 2.33× for volume-all).
"""

from __future__ import annotations

from typing import Any

import torch

from .convtypes import is_searchable
from .cost import profile
from .kernels import kernel_volume, resolve_space
from .models import build_model
from .recipes import Recipe

#: the videos of Something-Something V1's TRN list files (train_videofolder / val_videofolder)
SSV1_VIDEOS = {"train": 86_017, "val": 11_522}
#: the assumed sustained throughput of one GPU, in TFLOP/s (an assumption; see the docstring)
ASSUMED_TFLOPS = 50.0


def _model_and_input(recipe: Recipe) -> tuple[torch.nn.Module, tuple[int, ...]]:
    cfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in recipe.model.items()}
    name = cfg.pop("name")
    if recipe.dataset == "ssv1":
        d = recipe.data
        classes, shape = 174, (1, 3, d["frames"], d["size"], d["size"])
    else:  # a one-channel task with 3 classes (e.g. Task07 Pancreas: pancreas, tumour)
        classes, shape = 3, (1, 1, *recipe.data["patch_size"])
    with torch.device("meta"):
        model = build_model(name, num_classes=classes, in_channels=shape[1], **cfg)
    return model, shape


def forward_macs(recipe: Recipe) -> dict[str, int]:
    """``{"network": MACs of one forward pass of one item, "step": what one search or training
    forward pass costs (cost-priority supernets run every candidate)}``."""
    model, shape = _model_and_input(recipe)
    prof = profile(model, torch.zeros(shape, device="meta"))
    step = prof.macs
    if recipe.command == "search" and recipe.search["mode"] == "cost":
        searched = {n for n, m in model.named_modules() if is_searchable(m)}
        k = {n: m.kernel_size[0] for n, m in model.named_modules() if n in searched}
        space = resolve_space(recipe.search["space"])
        for row in prof.layers:
            if row.name in searched:
                factor = sum(kernel_volume(s, k[row.name]) for s in space) / k[row.name] ** 3
                step += round(row.macs * (factor - 1))
    return {"network": prof.macs, "step": step}


def estimate(recipe: Recipe, tflops: float = ASSUMED_TFLOPS,
             train_items: int | None = None, val_items: int | None = None) -> dict[str, Any]:
    """GPU-hours of ``recipe`` on paper (module docstring).

    Args:
        recipe: the recipe (its epochs, input size, model).
        tflops: assumed sustained TFLOP/s of one GPU.
        train_items, val_items: items per epoch (default: SSv1's videos, validation for
            training recipes only; MSD's ``data.patches_per_epoch`` and no validation).

    Returns:
        ``{"recipe", "forward_macs", "step_macs", "train_items", "val_items", "epochs",
        "total_macs", "tflops", "gpu_hours"}``.
    """
    if not tflops > 0:
        raise ValueError(f"tflops: expected a positive number, got {tflops!r}")
    macs = forward_macs(recipe)
    if recipe.dataset == "ssv1":
        train_items = SSV1_VIDEOS["train"] if train_items is None else train_items
        # run_search validates nothing; training validates after every epoch
        val_items = (SSV1_VIDEOS["val"] if recipe.command == "train" else 0) \
            if val_items is None else val_items
    else:
        train_items = recipe.data["patches_per_epoch"] if train_items is None else train_items
        val_items = 0 if val_items is None else val_items
    epochs = recipe.optim["epochs"]
    # training: forward + backward ≈ 3 forwards; validation: 1 forward of the plain network
    total = epochs * (3 * macs["step"] * train_items + macs["network"] * val_items)
    return {"recipe": recipe.name, "forward_macs": macs["network"], "step_macs": macs["step"],
            "train_items": train_items, "val_items": val_items, "epochs": epochs,
            "total_macs": total, "tflops": tflops,
            "gpu_hours": 2 * total / (tflops * 1e12) / 3600}
