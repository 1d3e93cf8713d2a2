"""``search --recipe NAME``: the paper's searches on real data, one process or many under
torchrun (:func:`~cakes_lite.run_search` trains the supernet with DistributedDataParallel, every
process holding the same γ); rank 0 writes the layout JSON (with the recipe and the devices in
its metadata) and, with ``--supernet FILE``, the trained supernet's weights and γ."""

from __future__ import annotations

import argparse
import json
import sys

import torch
from safetensors.torch import save_file

from .._helpers import atomic_write
from ..search import run_search
from ..search.target import check_target
from ..train import cleanup, init_distributed, is_main
from ..train.distributed import barrier
from . import recipe_data as R
from .recipe_args import resolve_recipe, resolve_subset


def check_search_settings(recipe) -> None:
    """Refuse, before any data is read, search settings cakes_lite does not run."""
    s = recipe.search
    if s["mode"] == "cost" and not s["reweight"]:
        raise ValueError("search.reweight: cakes_lite's cost priority always weights the L1 "
                         "step by sub-kernel cost (the authors' --reweight); got false")
    if s["mode"] == "performance" and s["reweight"] and s["sparsity"]:
        raise ValueError("search.reweight: performance priority's L1 step on γ is unweighted "
                         "in cakes_lite; got true with search.sparsity "
                         f"{s['sparsity']}")
    if s["target"] is not None:
        if s["mode"] != "cost":
            raise ValueError(f"search.target: needs search.mode 'cost', got {s['mode']!r}")
        try:
            check_target(s["target"])
        except ValueError as e:
            raise ValueError(f"search.{e}") from None


def search(args: argparse.Namespace) -> int:
    recipe = resolve_recipe(args, "search")
    check_search_settings(recipe)
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
    s, o = recipe.search, recipe.optim
    loader = R.CappedLoader(R.train_loader(train_ds, recipe, args.seed, args.num_workers),
                            o["max_steps_per_epoch"])
    epochs = o["epochs"]
    train_ds.set_epoch(0)

    def report(rec: dict) -> None:
        train_ds.set_epoch(rec["epoch"])  # fresh frames, crops, flips / patches next epoch
        if not is_main():
            return
        shares = rec["layout"].summary()["total"]["shares"]
        text = ", ".join(f"{k} {v:.0%}" for k, v in shares.items())
        print(f"epoch {rec['epoch']}/{epochs} loss {rec['loss']:.4f}  channels: {text}",
              flush=True)

    # the recipe's optimisation: lr scaled to the global batch, its warm-up and steps (or
    # cosine), clipping, weight decay; γ's warm-up, L1 strength (cost-weighted in cost
    # priority, the authors' --reweight) or a cost target; sync BN where the recipe says
    result = run_search(model, loader, space=s["space"], mode=s["mode"], epochs=epochs,
                        lr=R.scaled_lr(recipe), warmup_epochs=s["weight_warmup_epochs"],
                        sparsity=None if s["target"] is not None else s["sparsity"],
                        target=s["target"], budget=s["budget"], round_to=s["round_to"],
                        metric=args.metric, device=device, seed=args.seed,
                        weight_decay=o["weight_decay"], momentum=o.get("momentum", 0.9),
                        lr_schedule=R.lr_schedule(recipe), grad_clip=o["grad_clip"],
                        amp=not args.no_amp, sync_bn=o["sync_bn"],
                        channels_last=args.channels_last, callback=report,
                        progress=not args.no_progress and is_main())
    layout = result.layout
    layout.meta.update({
        "model": recipe.model["name"], "recipe": recipe.to_dict(), **where,
        "data": {"dataset": recipe.dataset, "root": args.data_root, "seed": data_seed,
                 "subset": list(subset) if isinstance(subset, tuple) else subset,
                 "train_items": len(train_ds), "classes": list(train_ds.classes)},
        "global_batch": o["batch_size"], "lr_scaled": R.scaled_lr(recipe),
        "search_settings": {k: v for k, v in result.settings.items() if k != "gamma_moved"},
        "command": "cakes_lite search " + " ".join(sys.argv[2:])})
    if is_main():
        if args.supernet:
            state = {k: v.detach().cpu().contiguous()
                     for k, v in result.supernet.state_dict().items()}
            atomic_write(args.supernet, lambda tmp: save_file(state, tmp), suffix=".safetensors")
        layout.to_json(args.out)
        print(json.dumps({"layout": args.out, "recipe": recipe.name, "layers": len(layout),
                          "world_size": where["world_size"],
                          "loss": result.history["loss"][-1],
                          "total_shares": layout.summary()["total"]["shares"]}))
    barrier()
    cleanup()
    return 0
