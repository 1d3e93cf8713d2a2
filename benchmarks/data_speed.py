"""How fast do the real-data pipelines feed a model on this machine?

* Something-Something V1 (:class:`cakes_lite.data.SomethingV1`): clips per second of the
  training pipeline (TSN sampling, JPEG decoding with Pillow, multi-scale crop to 224, flip,
  normalisation) and of the evaluation pipeline (resize 256, centre crop 224), through a
  DataLoader with 0, 1 and 2 worker processes.
* Medical Segmentation Decathlon (:class:`cakes_lite.data.DecathlonTask`): cases per second
  read from NIfTI, resampled and normalised (uncached), and patches per second of the cached
  patch loader (foreground oversampling, flips).

The data are synthetic fixtures in the official layouts, written to a temporary folder
(SSv1-sized JPEGs of 176 × 100; CT-like volumes of 160 × 160 × 48 voxels of 0.8 × 0.8 × 2.5 mm
resampled to 1 × 1 × 2 mm). Variants are interleaved round by round; medians are reported,
with ratios to the 0-worker loader. Results: ``benchmarks/results/data_speed.json``.

The main process runs with one torch thread (``--threads``): on this shared 2-core machine two
intra-op threads made the in-process loaders 2–4× slower (the Decathlon patch loader 30×),
their OpenMP threads waiting for each other while other processes held the cores. DataLoader
workers always use one thread.

    flock /tmp/cakes_heavy.lock python benchmarks/data_speed.py            # the numbers in results/
    python benchmarks/data_speed.py --rounds 3 --videos 24 --workers 0 2   # quicker
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _malloc import reexec_with_malloc_tunables  # noqa: E402

reexec_with_malloc_tunables()  # before torch: steady malloc behaviour for every timing

import torch  # noqa: E402
from _record import finish, machine_info  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from cakes_lite.data import DecathlonTask, SomethingV1  # noqa: E402
from cakes_lite.data.fixtures import make_decathlon_fixture, make_something_fixture  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "data_speed.json"


def clip_loaders(root: str, args) -> dict[str, DataLoader]:
    """One persistent loader per (mode, workers) variant."""
    loaders = {}
    for mode in ("train", "val"):
        ds = SomethingV1(root, mode, frames=args.frames, size=args.size)
        for w in args.workers:
            loaders[f"ssv1_{mode}_w{w}"] = DataLoader(
                ds, batch_size=args.batch, shuffle=mode == "train", num_workers=w,
                persistent_workers=w > 0, generator=torch.Generator().manual_seed(0))
    return loaders


def time_batches(loader: DataLoader, batches: int) -> float:
    """Items per second over ``batches`` batches of a fresh pass (after its first batch,
    so worker start-up and the prefetch ramp are not counted)."""
    batches = min(batches, len(loader) - 1)
    if batches < 1:
        raise SystemExit("data_speed: too few items for one timed batch; raise --videos")
    it = iter(loader)
    next(it)
    n, t0 = 0, time.perf_counter()
    for _ in range(batches):
        x, _ = next(it)
        n += x.shape[0]
    return n / (time.perf_counter() - t0)


def time_case_loads(task: str, spacing) -> float:
    """Cases per second read, resampled and normalised without a cache."""
    ds = DecathlonTask(task, "all", spacing=spacing, cache=False)
    t0 = time.perf_counter()
    for k in range(len(ds.cases)):
        ds.load_case(k)
    return len(ds.cases) / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians over them)")
    p.add_argument("--batches", type=int, default=6, help="timed batches per variant and round")
    p.add_argument("--batch", type=int, default=8, help="clips per batch")
    p.add_argument("--videos", type=int, default=48, help="fixture videos (training list)")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--cases", type=int, default=4, help="fixture Decathlon cases")
    p.add_argument("--patch", type=int, nargs=3, default=[96, 96, 32])
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads of the main process (see the module docstring)")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    t_start, load_before = time.perf_counter(), os.getloadavg()
    spacing = (1.0, 1.0, 2.0)
    with tempfile.TemporaryDirectory() as tmp:
        ssv1 = make_something_fixture(os.path.join(tmp, "ssv1"), class_ids=range(12),
                                      videos_per_class=max(1, args.videos // 12),
                                      val_per_class=max(1, args.videos // 12), frames=(30, 48))
        task = make_decathlon_fixture(os.path.join(tmp, "Task99"), cases=args.cases,
                                      shape=(160, 160, 48), zooms=(0.8, 0.8, 2.5),
                                      modality=("CT",))
        loaders = clip_loaders(ssv1, args)
        patches = DecathlonTask(task, "all", patch_size=args.patch, spacing=spacing,
                                num_patches=4 * args.batches, foreground=0.33)
        for k in range(len(patches.cases)):
            patches.load_case(k)  # cached: the patch loader's steady state
        patch_loader = DataLoader(patches, batch_size=2, shuffle=True, num_workers=0)
        for loader in loaders.values():  # warm-up: start the workers, touch every file once
            time_batches(loader, 1)
        samples: dict[str, list[float]] = {k: [] for k in [*loaders, "msd_cases_per_s",
                                                           "msd_patches_per_s"]}
        for _ in range(args.rounds):
            for name, loader in loaders.items():
                samples[name].append(time_batches(loader, args.batches))
            samples["msd_cases_per_s"].append(time_case_loads(task, spacing))
            samples["msd_patches_per_s"].append(time_batches(patch_loader, len(patch_loader) - 1))
        del loaders  # stops the persistent workers
    med = {k: statistics.median(v) for k, v in samples.items()}
    ratios = {k: med[k] / med[k.rsplit("_w", 1)[0] + "_w0"]
              for k in med if k.startswith("ssv1") and "_w0" not in k and
              k.rsplit("_w", 1)[0] + "_w0" in med}
    result = {
        "what": "clips/s of the SSv1 loader (train: TSN + multi-scale crop + flip; val: resize "
                "+ centre crop), Decathlon cases/s (read + resample + normalise) and cached "
                "patches/s; medians of interleaved rounds",
        "settings": {**vars(args), "frame_size": [176, 100], "volume": [160, 160, 48],
                     "zooms": [0.8, 0.8, 2.5], "spacing": list(spacing)},
        "machine": machine_info(), "load_before": load_before,
        "median": med, "ratio_to_0_workers": ratios, "samples": samples,
    }
    for k, v in med.items():
        print(f"{k:22s} {v:8.1f} /s" + (f"   ({ratios[k]:.2f}x of 0 workers)" if k in ratios
                                        else ""))
    finish(result, t_start, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
