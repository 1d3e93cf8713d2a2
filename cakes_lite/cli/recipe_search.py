"""``search --recipe NAME``: the paper's searches on real data, one process or many under
torchrun; rank 0 writes the layout JSON (with the recipe and the devices in its metadata)."""

from __future__ import annotations

import argparse
import json
import sys

import torch

from ..search import run_search
from ..train import cleanup, init_distributed, is_main
from ..train.distributed import barrier
from . import recipe_data as R
from .recipe_args import resolve_recipe, resolve_subset


def search(args: argparse.Namespace) -> int:
    recipe = resolve_recipe(args, "search")
    subset = resolve_subset(args.subset, recipe.dataset, args.smoke)
    data_seed = args.data_seed if args.data_seed is not None else 0
    info = init_distributed()
    device = torch.device(args.device) if args.device else info.device
    R.batch_per_process(recipe)  # fail before reading any data if it does not divide
    train_ds = R.make_dataset(recipe, args.data_root, "train", subset, data_seed)
    num_classes, in_channels = R.shape_of(recipe, train_ds)
    torch.manual_seed(args.seed)
    model = R.build(recipe, num_classes, in_channels, builder="3d")
    where = R.where_it_ran(device)
    loader = R.train_loader(train_ds, recipe, args.seed, args.num_workers)
    s, o = recipe.search, recipe.optim
    epochs = o["epochs"]

    def report(rec: dict) -> None:
        if not is_main():
            return
        shares = rec["layout"].summary()["total"]["shares"]
        text = ", ".join(f"{k} {v:.0%}" for k, v in shares.items())
        print(f"epoch {rec['epoch']}/{epochs} loss {rec['loss']:.4f}  channels: {text}",
              flush=True)

    result = run_search(model, loader, space=s["space"], mode=s["mode"], epochs=epochs,
                        lr=R.scaled_lr(recipe), sparsity=s["sparsity"], budget=s["budget"],
                        round_to=s["round_to"], metric=args.metric, device=device,
                        seed=args.seed, warmup_epochs=s["weight_warmup_epochs"],
                        weight_decay=o["weight_decay"], momentum=o["momentum"],
                        callback=report, progress=not args.no_progress and is_main())
    layout = result.layout
    layout.meta.update({
        "model": recipe.model["name"], "recipe": recipe.to_dict(), **where,
        "data": {"dataset": recipe.dataset, "root": args.data_root, "seed": data_seed,
                 "subset": list(subset) if isinstance(subset, tuple) else subset,
                 "train_items": len(train_ds), "classes": list(train_ds.classes)},
        "global_batch": o["batch_size"], "lr_scaled": R.scaled_lr(recipe),
        "command": "cakes_lite search " + " ".join(sys.argv[2:])})
    if is_main():
        layout.to_json(args.out)
        print(json.dumps({"layout": args.out, "recipe": recipe.name, "layers": len(layout),
                          "world_size": where["world_size"],
                          "loss": result.history["loss"][-1],
                          "total_shares": layout.summary()["total"]["shares"]}))
    barrier()
    cleanup()
    return 0
