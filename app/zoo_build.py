"""Rebuild the app's model zoo on CPU, seeded: ``python app/zoo_build.py`` (from the checkout root;
``--help`` for options). Writes ``app/zoo`` (read with :mod:`cakes_lite.zoo`) and
``app/examples``.

Video (something-something-lite, 8×32×32 clips, all 13 classes): a full 3D ResNet baseline, a
CAKES^P and a CAKES^C layout searched over {3×3×3, 1×3×3, 3×1×1}, a budgeted layout (a fraction
of the searched layers' 3D MACs, from the CAKES^P supernet) and the same budget with every group
a multiple of 16 channels (``video_cakes_block16``: CPU convolution kernels compute output
channels in blocks of 16 (AVX-512) or 8 (AVX2), so a 5-channel group costs a whole block; see the
README's speed section); every CAKES net retrained from scratch with its layout. Volume (MNI152
grey/white-matter tissue, 2 mm, 32³ patches): a full 3D U-Net, a CAKES^C layout over the three
2D orientations and the same search's choice in groups of 8 channels (``volume_cakes_block8``).
Every run is seeded; the metrics of each model (test top-1 / validation Dice) are stored next to
it and reproduced by rebuilding within noise. This is a training *recipe* for the app's demo, so
it lives with the app, not in the library.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # zoo_parts, then the cakes_lite checkout

import torch  # noqa: E402

from cakes_lite.data import REVERSED_PAIRS, TISSUE_CLASSES, MNI152Tissue, SomethingLite  # noqa: E402
from cakes_lite.layout import Layout  # noqa: E402
from cakes_lite.models import resnet3d_tiny, unet3d_tiny  # noqa: E402
from cakes_lite.search import derive_layout, run_search  # noqa: E402
from cakes_lite.zoo import list_models, meta_path, read_index, save_model, write_index  # noqa: E402
from zoo_parts import (Progress, accuracy_metrics, dice_metrics, environment, loader,  # noqa: E402
                       predict, train, write_examples)

COMMAND = "python app/zoo_build.py"


@dataclass
class ZooRecipe:
    """What ``app/zoo_build.py`` trains (defaults: the whole zoo in ≤ 60 CPU-minutes).

    The video recipe was sized at reduced scale first (full 3D net, one thread): 1,040 clips ×
    15 epochs reach 0.78 test top-1 (over-fitted), 3,120 × 12 epochs 0.87, 6,240 × 9 of 15
    epochs 0.93 — so the zoo trains on 6,240 clips (480 per class).
    """

    seed: int = 0  # every model, search and data subset derives from it
    video_train: int = 6240  # something-something-lite training clips (480 per class)
    video_test: int = 390  # held-out test clips (30 per class)
    video_epochs: int = 15  # retraining epochs of each video net (12 left full 3D at 0.887–0.903)
    video_search_train: int = 2080  # the first clips of the training set, for the searches
    video_search_epochs: int = 2  # supernet epochs of each video search
    video_budget: float = 0.4  # budgeted layout: this fraction of the searched layers' 3D MACs
    video_block: int = 16  # video_cakes_block16: the budgeted layout in groups of this many
    volume_space: str = "volume-2d"  # sub-kernels of the volume search (3 orientations of 2D)
    volume_block: int = 8  # volume_cakes_block8: the CAKES^C selection in groups of this many
    volume_patches: int = 64  # random 32³ training patches from the MNI152 training part
    volume_val_patches: int = 32  # validation patches (the template's held-out part)
    volume_epochs: int = 6  # retraining epochs of each U-Net
    volume_search_epochs: int = 2  # supernet epochs of the volume search
    batch_size: int = 32  # video clips per step; volumes use 4 patches per step
    lr: float = 3e-3  # AdamW peak learning rate of fit() (warm-up, cosine to 0)
    search_lr: float = 0.05  # SGD learning rate of run_search


def recipe_dict(recipe: ZooRecipe) -> dict[str, Any]:
    return dataclasses.asdict(recipe)


# -- the recipes ------------------------------------------------------------------------------

def _entry(root, name, title, model, layout, data, metrics, extra, recipe, seconds):
    meta = {"title": title, **extra, "data": data, "seed": recipe.seed, "metrics": metrics,
            "recipe": recipe_dict(recipe), "train_seconds": round(seconds, 1)}
    return save_model(name, model, root, meta, layout)


#: every zoo model, in the app's order (``only=`` may pick a subset, e.g. one per process).
VIDEO_MODELS = ("video_3d", "video_cakes_p", "video_cakes_budget", "video_cakes_block16",
                "video_cakes_c")
VOLUME_MODELS = ("volume_3d", "volume_cakes_c", "volume_cakes_block8")


def build_video(root: Path, recipe: ZooRecipe, progress: Progress | None = None,
                only=VIDEO_MODELS) -> list[str]:
    """Video classifiers: full 3D, CAKES^P, CAKES^C and a budgeted CAKES^P layout (those of
    them in ``only``; the same seeds give the same models whichever subset is built)."""
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
    need = {"performance": {"video_cakes_p", "video_cakes_budget", "video_cakes_block16"},
            "cost": {"video_cakes_c"}}
    for mode, name in (("performance", "video_cakes_p"), ("cost", "video_cakes_c")):
        if not need[mode] & set(only):
            continue
        t0 = time.perf_counter()
        torch.manual_seed(recipe.seed)  # the supernet inherits this model's initial weights
        result = run_search(resnet3d_tiny(len(classes)),
                            loader(x[:recipe.video_search_train],
                                   y[:recipe.video_search_train], recipe.batch_size,
                                   recipe.seed + 1),
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
            block = derive_layout(result.supernet, budget=recipe.video_budget,
                                  round_to=recipe.video_block, input_shape=(1, 3, 8, 32, 32))
            layouts["video_cakes_block16"] = (
                f"CAKES^P 1,2,3D at {recipe.video_budget:.0%} of 3D MACs, groups of "
                f"{recipe.video_block} channels (CPU-friendly)", block)
            search_info["video_cakes_block16"] = search_info[name]
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
    """MNI152 tissue segmenters: full 3D U-Net, a CAKES^C layout over ``volume_space`` and the
    same search's selection in groups of ``volume_block`` channels."""
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
                                  search_seconds),
               "volume_cakes_block8": (
                   f"CAKES^C {recipe.volume_space}, groups of {recipe.volume_block} channels "
                   "(CPU-friendly)", derive_layout(result.supernet, round_to=recipe.volume_block),
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
    summary = {"command": COMMAND, "models": names,
               "seconds": round(time.perf_counter() - t0, 1),
               "cpu_seconds": round(time.process_time() - cpu0, 1),
               "environment": environment(), "recipe": recipe_dict(recipe)}
    if examples is not None:
        summary["examples"] = write_examples(examples, recipe.seed)
    build = summary
    if set(only) != set(every):
        try:
            old = read_index(root)
        except FileNotFoundError:  # the first part of a build
            old = {}
        parts = [p for p in old.get("build", {}).get("parts", []) if p.get("recipe") ==
                 summary["recipe"] and not set(p["models"]) & set(names)]
        build = {"parts": parts + [summary], "recipe": summary["recipe"],
                 "environment": summary["environment"]}
    present = [n for n in every if meta_path(n, root).is_file()]
    write_index(root, present, build)
    return summary


def main(argv: list[str] | None = None) -> int:
    """``python app/zoo_build.py [--out app/zoo] [--examples app/examples] [--seed 0] …``"""
    parser = argparse.ArgumentParser(
        prog=COMMAND, description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", default=str(HERE / "zoo"), help="output folder of the models")
    parser.add_argument("--examples", default=str(HERE / "examples"),
                        help="folder for the example clips ('' to skip)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data, searches, training")
    parser.add_argument("--epochs-scale", type=float, default=1.0,
                        help="multiply every epoch count (e.g. 0.5 for a quicker, worse zoo)")
    parser.add_argument("--only", default="", help="comma-separated model names to build "
                        f"(default all of {', '.join(VIDEO_MODELS + VOLUME_MODELS)})")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    if args.epochs_scale <= 0:
        parser.error(f"--epochs-scale: expected a positive number, got {args.epochs_scale}")
    recipe = ZooRecipe(seed=args.seed)
    scaled = {f.name: max(1, round(getattr(recipe, f.name) * args.epochs_scale))
              for f in dataclasses.fields(recipe) if f.name.endswith("epochs")}
    recipe = dataclasses.replace(recipe, **scaled)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    only = [n.strip() for n in args.only.split(",") if n.strip()] or None
    try:
        build = build_zoo(args.out, recipe, examples=args.examples or None, only=only,
                          progress=None if args.quiet else say)
    except ValueError as e:
        parser.error(str(e))
    print(json.dumps(build, indent=1))
    for meta in list_models(args.out):
        print(f"{meta['name']:22s} {json.dumps(meta['metrics'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
