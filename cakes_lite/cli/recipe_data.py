"""What a recipe builds: its data sets and loaders (one shard per process under torchrun), its
network, its optimiser settings, and the record of where a run ran.

Imported by the commands only when they run (it imports torch; ``--help`` must not).
"""

from __future__ import annotations

import itertools
import os
import socket
import warnings
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..data import DecathlonTask
from ..models import build_model, inflate
from ..recipes import Recipe
from ..train import MultiStepWarmup, bn_bias_param_groups, default_param_groups, warmup_cosine
from ..train import distributed as D


def make_dataset(recipe: Recipe, root: str, split: str, subset: Any, seed: int, *,
                 evaluation: bool = False, views: tuple[int, int] = (1, 1)) -> Dataset:
    """The recipe's data set for ``split`` ("train" or "val").

    SSv1: :class:`~cakes_lite.data.SomethingV1` (TSN sampling, multi-scale crop and
    label-swapping flips for the training split; centre crops, ``views`` = (clips, crops)
    otherwise). MSD: :class:`~cakes_lite.data.DecathlonTask` patches (foreground oversampling,
    flips for the training split). ``evaluation``: evaluation transforms whatever the split
    (SSv1), whole resampled cases (MSD).
    """
    d = recipe.data
    if recipe.dataset == "ssv1":
        from ..data import SSV1_FLIP_PAIRS, SomethingV1  # Pillow: the optional 'data' extra

        if d["flip_pairs"] not in ("ssv1", "none"):
            raise ValueError(f"data.flip_pairs: expected 'ssv1' (SSv1's left/right classes) or "
                             f"'none', got {d['flip_pairs']!r}")
        pairs = SSV1_FLIP_PAIRS if d["flip_pairs"] == "ssv1" else ()
        return SomethingV1(root, split, frames=d["frames"], size=d["size"],
                           scale_size=d["scale_size"], scales=d["scales"], flip=d["flip"],
                           flip_pairs=pairs, clips=views[0], crops=views[1],
                           subset=tuple(subset) if subset else None, seed=seed,
                           train=False if evaluation else None)
    patch = None if evaluation else d["patch_size"]
    per_case = 4  # validation patches per case during training (whole volumes in `eval`)
    ds = DecathlonTask(root, split, patch_size=patch, spacing=d["spacing"],
                       val_fraction=d["val_fraction"], seed=seed, foreground=d["foreground"],
                       ct_window=d["ct_window"], flip_axes=d["flip_axes"],
                       augment=False if evaluation else None,
                       num_patches=d["patches_per_epoch"] if split == "train" else None,
                       subset=_case_subset(subset, root, split, d["val_fraction"], seed))
    if split != "train" and patch is not None:
        ds.num_patches = per_case * len(ds.cases)
    return ds


def _case_subset(subset: int | None, root: str, split: str, val_fraction: float,
                 seed: int) -> int | None:
    """``--subset`` counts training cases; validation keeps at most as many of its own."""
    if subset is None or split == "train":
        return subset
    n = len(DecathlonTask(root, split, val_fraction=val_fraction, seed=seed).cases)
    return min(subset, n) if n else None


def shape_of(recipe: Recipe, ds: Dataset) -> tuple[int, int]:
    """``(num_classes, in_channels)`` of ``ds``."""
    if recipe.dataset == "ssv1":
        return len(ds.classes), 3
    if not len(ds.cases):
        raise ValueError(f"--data-root: the {ds.split!r} split of {ds.meta_path!r} has no case")
    return len(ds.classes), int(ds.load_case(0)[0].shape[0])


def build(recipe: Recipe, num_classes: int, in_channels: int, *, layout: Any = None,
          builder: str | None = None) -> nn.Module:
    """The recipe's network (``builder`` overrides ``model.builder``; ``layout`` shrinks it)."""
    cfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in recipe.model.items()}
    name = cfg.pop("name")
    cfg["builder"] = builder or cfg["builder"]
    return build_model(name, num_classes=num_classes, in_channels=in_channels, layout=layout,
                       **cfg)


def cost_per_item(recipe: Recipe, num_classes: int, in_channels: int, *, layout: Any = None,
                  builder: str | None = None) -> dict[str, int]:
    """``{"macs", "params"}`` of the recipe's network for one clip / patch at the recipe's
    input size (counted on the meta device: nothing is computed)."""
    from ..cost import profile  # here: only the commands that report a cost need it

    with torch.device("meta"):
        model = build(recipe, num_classes, in_channels, layout=layout, builder=builder)
    d = recipe.data
    shape = ((1, in_channels, d["frames"], d["size"], d["size"]) if recipe.dataset == "ssv1"
             else (1, in_channels, *d["patch_size"]))
    prof = profile(model, torch.zeros(shape, device="meta"))
    return {"macs": prof.macs, "params": prof.params}


def inflate_from(model: nn.Module, path: str) -> list[str]:
    """Inflate ImageNet weights into ``model`` (ValueError naming the file if they do not fit);
    returns the warnings' messages (e.g. "fc skipped")."""
    if not os.path.isfile(path):
        raise ValueError(f"--pretrained2d: {path!r} is not a file")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            inflate(model, path)
        except ValueError as e:
            raise ValueError(f"--pretrained2d {path!r}: {e}") from None
        except Exception as e:  # noqa: BLE001 - torch.load / safetensors raise many types
            raise ValueError(f"--pretrained2d {path!r}: cannot read it ({type(e).__name__}: "
                             f"{e})") from None
    return [str(w.message) for w in caught]


def batch_per_process(recipe: Recipe) -> int:
    """The global batch split evenly over the processes (ValueError if it does not divide)."""
    batch, world = recipe.optim["batch_size"], D.world_size()
    if batch % world:
        raise ValueError(f"optim.batch_size: the global batch {batch} does not split evenly "
                         f"over {world} processes; pass --batch-size a multiple of {world}")
    return batch // world


def scaled_lr(recipe: Recipe) -> float:
    """lr · global batch / lr_batch (the linear scaling rule)."""
    o = recipe.optim
    return o["lr"] * o["batch_size"] / o["lr_batch"]


def train_loader(ds: Dataset, recipe: Recipe, seed: int, workers: int) -> DataLoader:
    """Shuffled batches of this process's shard. One and N processes see the same global
    batches: the DistributedSampler's permutation (seeded by ``seed`` and the epoch) dealt
    round-robin, so global batch k is the same clips whatever the process count."""
    sampler = DistributedSampler(ds, num_replicas=D.world_size(), rank=D.rank(), shuffle=True,
                                 seed=seed, drop_last=True)
    per_rank = batch_per_process(recipe)
    return DataLoader(ds, batch_size=per_rank, sampler=sampler, num_workers=workers,
                      drop_last=len(sampler) > per_rank, persistent_workers=workers > 0,
                      pin_memory=torch.cuda.is_available())


class CappedLoader:
    """A loader that yields at most ``max_steps`` batches per pass (all with 0), for the
    search's ``optim.max_steps_per_epoch``; ``len`` says how many it yields."""

    def __init__(self, loader: DataLoader, max_steps: int = 0):
        self.loader, self.max_steps = loader, max_steps
        self.sampler, self.dataset = loader.sampler, loader.dataset

    def __len__(self) -> int:
        n = len(self.loader)
        return min(n, self.max_steps) if self.max_steps else n

    def __iter__(self):
        return itertools.islice(iter(self.loader), len(self))


def eval_loader(ds: Dataset, batch: int, workers: int) -> DataLoader:
    return DataLoader(ds, batch_size=batch, num_workers=workers)


def optimiser_settings(recipe: Recipe, model: nn.Module) -> dict[str, Any]:
    """``fit`` keyword arguments of the recipe's optimisation (lr already scaled)."""
    o = recipe.optim
    groups = (bn_bias_param_groups(model, o["weight_decay"], o.get("bias_lr_mult", 1.0))
              if o["param_groups"] == "bn_bias" else
              default_param_groups(model, o["weight_decay"]))
    kwargs: dict[str, Any] = {
        "lr": scaled_lr(recipe), "optimizer": o["optimizer"], "param_groups": groups,
        "weight_decay": o["weight_decay"], "momentum": o.get("momentum", 0.9),
        "grad_clip": o["grad_clip"], "epochs": o["epochs"],
        "max_steps_per_epoch": o["max_steps_per_epoch"] or None}
    if o["optimizer"] == "sgd":
        kwargs["nesterov"] = o.get("nesterov", False)
    if o["schedule"] == "multistep":
        kwargs["lr_schedule"] = MultiStepWarmup(tuple(o["lr_steps"]), o["lr_gamma"],
                                                o["warmup_epochs"], o["warmup_start"])
    elif o["schedule"] == "cosine":
        kwargs["warmup_epochs"] = o["warmup_epochs"]
    else:
        raise ValueError(f"optim.schedule: expected 'multistep' or 'cosine', got "
                         f"{o['schedule']!r}")
    return kwargs


class WarmupCosine:
    """``f(step, steps_per_epoch)``: linear warm-up over ``warmup_epochs``, then cosine to 0 at
    ``epochs`` (:func:`~cakes_lite.train.warmup_cosine`, what ``fit`` runs by default)."""

    def __init__(self, epochs: int, warmup_epochs: float) -> None:
        self.epochs, self.warmup_epochs = epochs, warmup_epochs

    def __call__(self, step: int, steps_per_epoch: int) -> float:
        return warmup_cosine(step, self.epochs * steps_per_epoch,
                             round(self.warmup_epochs * steps_per_epoch))

    def __repr__(self) -> str:
        return f"WarmupCosine(epochs={self.epochs}, warmup_epochs={self.warmup_epochs})"


def lr_schedule(recipe: Recipe):
    """``f(step, steps_per_epoch) -> lr factor`` of the recipe (for the search; ``fit`` gets
    the same through :func:`optimiser_settings`)."""
    o = recipe.optim
    if o["schedule"] == "multistep":
        return MultiStepWarmup(tuple(o["lr_steps"]), o["lr_gamma"], o["warmup_epochs"],
                               o["warmup_start"])
    return WarmupCosine(o["epochs"], o["warmup_epochs"])


def where_it_ran(device: torch.device) -> dict[str, Any]:
    """``{"world_size", "nodes", "devices": [per rank: rank, node, host, device, name]}``,
    gathered from every process (a collective: call it on all ranks)."""
    name = (torch.cuda.get_device_name(device) if device.type == "cuda" else
            f"CPU ({torch.get_num_threads()} threads)")
    me = {"rank": D.rank(), "node": int(os.environ.get("GROUP_RANK", "0")),
          "host": socket.gethostname(), "device": str(device), "name": name}
    everyone = [me]
    if D.is_distributed():
        everyone = [None] * D.world_size()
        dist.all_gather_object(everyone, me)
    return {"world_size": D.world_size(), "nodes": len({d["node"] for d in everyone}),
            "devices": everyone}
