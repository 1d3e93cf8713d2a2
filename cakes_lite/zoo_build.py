"""Rebuild the app's model zoo on CPU: ``python -m cakes_lite zoo build`` (see :mod:`.zoo`).

Video (something-something-lite, 8×32×32 clips, all 13 classes): a full 3D ResNet baseline, a
CAKES^P and a CAKES^C layout searched over {3×3×3, 1×3×3, 3×1×1}, and a budgeted layout (half
the searched layers' 3D MACs, from the CAKES^P supernet); every CAKES net retrained from scratch
with its layout. Volume (MNI152 grey/white-matter tissue, 2 mm, 32³ patches): a full 3D U-Net and
a CAKES^C layout over all seven sub-kernels. Every run is seeded; the metrics of each model
(test top-1 / validation Dice) are stored next to it and reproduced by rebuilding within noise.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from .cost import profile
from .layout import Layout, atomic_write_text


@dataclass
class ZooRecipe:
    """What ``zoo build`` trains (defaults: the whole zoo in about 10 minutes on 2 CPU cores)."""

    seed: int = 0  # every model, search and data subset derives from it
    video_train: int = 520  # something-something-lite training clips (40 per class)
    video_test: int = 390  # held-out test clips (30 per class)
    video_epochs: int = 5  # retraining epochs of each video net
    video_search_epochs: int = 1  # supernet epochs of each video search
    video_budget: float = 0.4  # budgeted layout: this fraction of the searched layers' 3D MACs
    volume_space: str = "volume-2d"  # sub-kernels of the volume search (3 orientations of 2D)
    volume_patches: int = 64  # random 32³ training patches from the MNI152 training part
    volume_val_patches: int = 32  # validation patches (the template's held-out part)
    volume_epochs: int = 6  # retraining epochs of each U-Net
    volume_search_epochs: int = 2  # supernet epochs of the volume search
    batch_size: int = 32  # video clips per step; volumes use 4 patches per step
    lr: float = 3e-3  # AdamW peak learning rate of fit() (warm-up, cosine to 0)
    search_lr: float = 0.05  # SGD learning rate of run_search


def save_entry(root: str | Path, name: str, model: nn.Module, meta: dict[str, Any],
               layout: Layout | None = None) -> dict[str, Any]:
    """Write ``<name>.safetensors``, ``<name>.layout.json`` (if any) and ``<name>.json``.

    ``meta`` must hold ``title``, ``task``, ``input_shape`` and ``classes``; the architecture
    (``cakes_lite.models.model_spec``), MACs and params at ``input_shape`` are added here.

    Returns:
        The metadata as written.
    """
    from safetensors.torch import save_file

    from .models import model_spec

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
    tmp = root / f".{name}.safetensors.tmp"
    save_file(state, str(tmp), metadata={"format": "cakes_lite.zoo", "name": name})
    tmp.replace(root / meta["weights"])
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


def recipe_dict(recipe: ZooRecipe) -> dict[str, Any]:
    return dataclasses.asdict(recipe)


Progress = Callable[[str], Any]


def write_examples(root: str | Path, seed: int = 0, names=None) -> list[str]:
    """Example clips for the app (h264 mp4 written by PyAV, 4× upscaled): one clip per class
    in ``names``, from random keys no data split uses (so never seen in training)."""
    from .data import make_clips
    from .data.video_io import write_video

    if names is None:
        from .data import CLASSES as names  # one clip per class

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
    from .train import fit

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
    """Dice per foreground class over all voxels of the evaluation set, and their mean."""
    out = {}
    for c in range(1, len(classes)):
        a, b = pred == c, y == c
        denom = int(a.sum() + b.sum())
        out[f"dice_{classes[c]}"] = round(2 * int((a & b).sum()) / denom, 4) if denom else 1.0
    out["dice_mean"] = round(sum(out.values()) / max(len(out), 1), 4)
    return out


# -- the recipes ------------------------------------------------------------------------------

def _entry(root, name, title, model, layout, data, metrics, extra, recipe, seconds):
    meta = {"title": title, **extra, "data": data, "seed": recipe.seed, "metrics": metrics,
            "recipe": recipe_dict(recipe), "train_seconds": round(seconds, 1)}
    return save_entry(root, name, model, meta, layout)


#: every zoo model, in the app's order (``only=`` may pick a subset, e.g. one per process).
VIDEO_MODELS = ("video_3d", "video_cakes_p", "video_cakes_budget", "video_cakes_c")
VOLUME_MODELS = ("volume_3d", "volume_cakes_c")


def build_video(root: Path, recipe: ZooRecipe, progress: Progress | None = None,
                only=VIDEO_MODELS) -> list[str]:
    """Video classifiers: full 3D, CAKES^P, CAKES^C and a budgeted CAKES^P layout (those of
    them in ``only``; the same seeds give the same models whichever subset is built)."""
    from .data import REVERSED_PAIRS, SomethingLite
    from .models import resnet3d_tiny
    from .search import derive_layout, run_search

    train_set = SomethingLite(recipe.video_train, "train", seed=recipe.seed)
    test_set = SomethingLite(recipe.video_test, "test", seed=recipe.seed)
    x, y = train_set.tensors()
    xt, yt = test_set.tensors()
    classes = list(train_set.classes)
    pairs = [(classes.index(a), classes.index(b)) for a, b in REVERSED_PAIRS]
    data = {"dataset": "something-something-lite (cakes_lite.data.SomethingLite)",
            "train": {"split": "train", "clips": len(x)},
            "test": {"split": "test", "clips": len(xt)},
            "frames": 8, "size": 32, "seed": recipe.seed}
    extra = {"task": "classification", "input_shape": [1, 3, 8, 32, 32], "classes": classes}
    layouts: dict[str, tuple[str, Layout | None]] = {"video_3d": ("full 3D (I3D-style)", None)}
    search_info = {}
    need = {"performance": {"video_cakes_p", "video_cakes_budget"}, "cost": {"video_cakes_c"}}
    for mode, name in (("performance", "video_cakes_p"), ("cost", "video_cakes_c")):
        if not need[mode] & set(only):
            continue
        t0 = time.perf_counter()
        torch.manual_seed(recipe.seed)  # the supernet inherits this model's initial weights
        result = run_search(resnet3d_tiny(len(classes)),
                            loader(x, y, recipe.batch_size, recipe.seed + 1),
                            space="video-123d", mode=mode, epochs=recipe.video_search_epochs,
                            lr=recipe.search_lr, seed=recipe.seed, progress=False)
        search_info[name] = round(time.perf_counter() - t0, 1)
        tag = "P" if mode == "performance" else "C"
        layouts[name] = (f"CAKES^{tag} 1,2,3D (searched)", result.layout)
        if mode == "performance":
            budget = derive_layout(result.supernet, budget=recipe.video_budget,
                                   input_shape=(1, 3, 8, 32, 32))
            layouts["video_cakes_budget"] = (
                f"CAKES^P 1,2,3D at {recipe.video_budget:.0%} of 3D MACs (budgeted)", budget)
            search_info["video_cakes_budget"] = search_info[name]
        if progress:
            progress(f"search {name}: {search_info[name]} s")
    names = []
    for name, (title, layout) in layouts.items():
        if name not in only:
            continue
        t0 = time.perf_counter()
        torch.manual_seed(recipe.seed)
        model = resnet3d_tiny(len(classes), layout=layout)
        loss = train(model, loader(x, y, recipe.batch_size, recipe.seed + 2), recipe.video_epochs,
                     recipe.lr, recipe.seed, "classification", progress, name)
        metrics = {**accuracy_metrics(predict(model, xt), yt, pairs), "train_loss": loss,
                   "chance": round(1 / len(classes), 4)}
        seconds = time.perf_counter() - t0 + search_info.get(name, 0.0)
        _entry(root, name, title, model, layout, data, metrics,
               {**extra, "search_seconds": search_info.get(name)}, recipe, seconds)
        names.append(name)
        if progress:
            progress(f"{name}: {metrics}")
    return names


def build_volume(root: Path, recipe: ZooRecipe, progress: Progress | None = None,
                 only=VOLUME_MODELS) -> list[str]:
    """MNI152 tissue segmenters: full 3D U-Net and a CAKES^C layout over ``volume_space``."""
    from .data import TISSUE_CLASSES, MNI152Tissue
    from .models import unet3d_tiny
    from .search import run_search

    def patches(split, n, augment, seed):
        ds = MNI152Tissue(split=split, patch_size=32, num_patches=n, spacing=2.0,
                          augment=augment, seed=seed)
        items = [ds[i] for i in range(len(ds))]
        return torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])

    x, y = patches("train", recipe.volume_patches, True, recipe.seed)
    xv, yv = patches("val", recipe.volume_val_patches, False, recipe.seed + 1)
    classes = list(TISSUE_CLASSES)
    data = {"dataset": "MNI152 2009a template tissue maps (cakes_lite.data.MNI152Tissue)",
            "spacing": 2.0, "patch_size": 32, "train": {"split": "train",
                                                        "patches": len(x), "augment": True},
            "val": {"split": "val", "patches": len(xv)}, "seed": recipe.seed}
    extra = {"task": "segmentation", "input_shape": [1, 1, 64, 64, 64], "classes": classes}
    bs = max(1, recipe.batch_size // 8)
    if not set(only) & set(VOLUME_MODELS):
        return []
    t0 = time.perf_counter()
    torch.manual_seed(recipe.seed)  # the supernet inherits this model's initial weights
    result = run_search(unet3d_tiny(len(classes)), loader(x, y, bs, recipe.seed + 1),
                        space=recipe.volume_space, mode="cost",
                        epochs=recipe.volume_search_epochs, lr=recipe.search_lr, seed=recipe.seed,
                        progress=False)
    search_seconds = time.perf_counter() - t0
    if progress:
        progress(f"search volume_cakes_c: {search_seconds:.1f} s")
    layouts = {"volume_3d": ("full 3D U-Net", None, 0.0),
               "volume_cakes_c": (f"CAKES^C {recipe.volume_space} (searched)", result.layout,
                                  search_seconds)}
    names = []
    for name, (title, layout, extra_seconds) in layouts.items():
        if name not in only:
            continue
        t0 = time.perf_counter()
        torch.manual_seed(recipe.seed)
        model = unet3d_tiny(len(classes), layout=layout)
        loss = train(model, loader(x, y, bs, recipe.seed + 2), recipe.volume_epochs, recipe.lr,
                     recipe.seed, "segmentation", progress, name)
        metrics = {**dice_metrics(predict(model, xv, 8), yv, classes), "train_loss": loss}
        _entry(root, name, title, model, layout, data, metrics,
               {**extra, "search_seconds": round(extra_seconds, 1) or None}, recipe,
               time.perf_counter() - t0 + extra_seconds)
        names.append(name)
        if progress:
            progress(f"{name}: {metrics}")
    return names


def build_zoo(root: str | Path, recipe: ZooRecipe | None = None, *, examples: str | Path | None
              = None, only=None, progress: Progress | None = None) -> dict[str, Any]:
    """Retrain the zoo models on CPU and write them to ``root`` (and the example clips).

    Args:
        root: output folder (``app/zoo``).
        recipe: sizes, epochs, seed (:class:`ZooRecipe` defaults).
        examples: where to write the example clips (``app/examples``); None: skip.
        only: names from :data:`VIDEO_MODELS` / :data:`VOLUME_MODELS` to build (default all);
            partial builds (e.g. one per process) add their summary to ``build["parts"]``.
        progress: optional callback taking one line of text per step.

    Returns:
        The summary of this run (seconds, CPU seconds, environment, recipe, models).
    """
    recipe = recipe or ZooRecipe()
    root = Path(root)
    every = VIDEO_MODELS + VOLUME_MODELS
    only = tuple(every if only is None else only)
    if not set(only) <= set(every):
        raise ValueError(f"only: expected names from {list(every)}, got {list(only)}")
    t0, cpu0 = time.perf_counter(), time.process_time()
    with torch.random.fork_rng(devices=[]):
        names = build_video(root, recipe, progress, only) + \
            build_volume(root, recipe, progress, only)
    # wall time depends on other load on the machine; CPU time (all threads) much less so
    summary = {"command": "python -m cakes_lite zoo build", "models": names,
               "seconds": round(time.perf_counter() - t0, 1),
               "cpu_seconds": round(time.process_time() - cpu0, 1),
               "environment": environment(), "recipe": recipe_dict(recipe)}
    if examples is not None:
        summary["examples"] = write_examples(examples, recipe.seed)
    build = summary
    if set(only) != set(every):
        old = json.loads((root / "index.json").read_text()) if (root / "index.json").is_file() \
            else {}
        parts = [p for p in old.get("build", {}).get("parts", []) if p.get("recipe") ==
                 summary["recipe"] and not set(p["models"]) & set(names)]
        build = {"parts": parts + [summary], "recipe": summary["recipe"],
                 "environment": summary["environment"]}
    present = [n for n in every if (root / f"{n}.json").is_file()]
    write_index(root, present, build)
    return summary
