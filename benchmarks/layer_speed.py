"""Does CAKESConv3d turn saved MACs into saved time? Layer-level speed benchmark.

For each layout, compares forward and forward+backward latency of CAKESConv3d (``impl="fast"``)
and of the naive implementation (one Conv3d per group + torch.cat, as the official code does,
``impl="direct"``) with the full k×k×k Conv3d and R(2+1)D at a video-like (2×64×8×28×28) and a
volume-like (1×32×32×32×32) input. Per layout it prints the MAC ratio and time ratio versus the
full 3D conv and the efficiency

    eff = (t_3d / t_layer) / (macs_3d / macs_layer)      (1 = time saved exactly as MACs saved)

from medians of interleaved, warmed-up runs, on CPU always and on CUDA when available. All layers
get the same contiguous NCDHW input; "eff_cl" compares instead with the full conv run on a
channels_last_3d input (its fastest CPU form) and ours on the same channels_last_3d input, as in
a network kept in channels_last_3d (CAKESConv3d returns that memory format). "t" columns are
time ratios versus the full 3D conv. Results: benchmarks/results/layer_speed.json.

The "plan" column is the plan each CAKES layer's autotuning chose (cakes_lite/fast/autotune.py;
chosen in the first warm-up round, separately for forward and forward+backward).

"eff_parts": what one vendor conv call per group gives at best: each group alone (its own
CAKESConv3d on the channels_last_3d input, its fastest plan), timed in the same interleaved
rounds, the times summed (no assembly, no concatenation), against the channels_last 3D conv like
"eff_cl". It bounds the official code's approach; the tap-folded plans can beat it by merging
groups into shared calls. Where it is far below a target, the per-shape speed of the vendor
kernels is the limit (on oneDNN a 1×3×3 conv with 16 output channels does ~0.7 of the 3×3×3
conv's MACs per second, a 3×1×1 one ~0.6 even as a (3, 1) conv2d, ~0.1 as a conv3d).

    python benchmarks/layer_speed.py [--repeats 15] [--device cpu|cuda] [--no-backward]
        [--threads 2] [--clock wall|thread]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _malloc import GLIBC_TUNABLES, reexec_with_malloc_tunables  # noqa: E402

reexec_with_malloc_tunables()  # before torch: page faults make CPU timings bimodal otherwise

import torch  # noqa: E402

from cakes_lite import CAKESConv3d, profile  # noqa: E402
from cakes_lite.fast import autotune  # noqa: E402
from cakes_lite.baselines import r2plus1d  # noqa: E402
from cakes_lite.speed import GLIBC_TUNABLES as _TUNABLES  # noqa: E402
from cakes_lite.speed import latency_samples  # noqa: E402

from _record import finish, machine_info  # noqa: E402

assert _TUNABLES == GLIBC_TUNABLES

#: (name, input shape (N, C, D, H, W), {layout name: split})
SUITE = [
    ("video", (2, 64, 8, 28, 28), {
        "even 22/21/21": {"kxkxk": 22, "1xkxk": 21, "kx1x1": 21},
        "16/16/32": {"kxkxk": 16, "1xkxk": 16, "kx1x1": 32},
        "2D-heavy 8/48/8": {"kxkxk": 8, "1xkxk": 48, "kx1x1": 8},
        "3D-heavy 40/16/8": {"kxkxk": 40, "1xkxk": 16, "kx1x1": 8},
        "odd 13/27/24": {"kxkxk": 13, "1xkxk": 27, "kx1x1": 24},
    }),
    ("volume", (1, 32, 32, 32, 32), {
        "volume-all even": {"kxkxk": 5, "1xkxk": 5, "kx1xk": 5, "kxkx1": 5, "kx1x1": 4,
                            "1xkx1": 4, "1x1xk": 4},
        "volume-2d even": {"1xkxk": 11, "kx1xk": 11, "kxkx1": 10},
        "volume 3D-heavy": {"kxkxk": 16, "1xkxk": 6, "kx1xk": 5, "kxkx1": 5},
    }),
]


def _cases(shape, layouts, device):
    """All variants of one input shape (interleaved together): name -> (module, input, macs)."""
    torch.manual_seed(0)
    c = shape[1]
    x = torch.randn(shape, device=device)
    x_cl = x.contiguous(memory_format=torch.channels_last_3d)
    full = torch.nn.Conv3d(c, c, 3, padding=1, bias=False)
    mods = {"3d": (full, x), "3d channels_last": (full, x_cl), "r2plus1d": (r2plus1d(c, c), x)}
    for name, split in layouts.items():
        ours = CAKESConv3d(c, split)
        naive = CAKESConv3d(c, split)
        naive.impl = "direct"
        mods[f"{name} | ours"] = (ours, x)
        mods[f"{name} | ours channels_last"] = (ours, x_cl)
        mods[f"{name} | naive"] = (naive, x)
        for sub, n in split.items():  # each group alone: the ceiling of per-group calls
            if n:
                mods[f"{name} | part {sub}"] = (CAKESConv3d(c, {sub: n}), x_cl)
    out = {}
    for name, (m, inp) in mods.items():
        m = m.to(device)
        out[name] = (m, inp, profile(m, tuple(shape)).macs)
    return out


def _table(cases, medians):
    """Rows: layout, MACs ratio, time ratios and efficiencies (ours and naive) vs the 3D conv."""
    m3, t3, t3cl = cases["3d"][2], medians["3d"], medians["3d channels_last"]
    rows = []
    layouts = [n.split(" | ")[0] for n in cases if n.endswith(" | ours")]
    for name in ["r2plus1d", *layouts]:
        row = {"layout": name, "mac_ratio": cases.get(name, cases.get(f"{name} | ours"))[2] / m3}
        for impl in ("ours", "naive") if name != "r2plus1d" else ("ours",):
            key = name if name == "r2plus1d" else f"{name} | {impl}"
            t = medians[key]
            row[f"{impl}_ms"] = t
            row[f"{impl}_time_ratio"] = t / t3
            row[f"{impl}_eff"] = (t3 / t) / (1 / row["mac_ratio"])
        if name != "r2plus1d":
            # the whole network in channels_last_3d: both layers get (and give) that memory
            t = medians[f"{name} | ours channels_last"]
            row["ours_cl_ms"] = t
            row["ours_cl_eff"] = (t3cl / t) / (1 / row["mac_ratio"])
            row["plan"] = cases[f"{name} | ours"][0].last_plan
            t = sum(v for k, v in medians.items() if k.startswith(f"{name} | part "))
            row["parts_ms"] = t
            row["parts_eff"] = (t3cl / t) / (1 / row["mac_ratio"])
        rows.append(row)
    return rows


def _print(title, t3, t3cl, rows):
    print(f"\n{title}: full 3D conv {t3:.2f} ms (channels_last input {t3cl:.2f} ms)")
    print(f"{'layout':18s} {'MACs':>5s} | {'ours t':>6s} {'eff':>5s} | {'naive t':>7s} "
          f"{'eff':>5s} | {'eff_cl':>6s} {'eff_parts':>9s} plan")
    for r in rows:
        naive = (f"{r['naive_time_ratio']:7.2f} {r['naive_eff']:5.2f}" if "naive_eff" in r
                 else f"{'':7s} {'':5s}")
        eff_cl = (f"{r['ours_cl_eff']:6.2f} {r['parts_eff']:9.2f}" if "ours_cl_eff" in r
                  else f"{'':6s} {'':9s}")
        print(f"{r['layout']:18s} {r['mac_ratio']:5.2f} | {r['ours_time_ratio']:6.2f} "
              f"{r['ours_eff']:5.2f} | {naive} | {eff_cl} {r.get('plan') or ''}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed interleaved rounds")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", action="append", help="cpu and/or cuda (default: all)")
    parser.add_argument("--no-backward", action="store_true", help="forward only")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--clock", choices=["wall", "thread"], default="wall",
                        help="thread: CPU time of the timing thread (with --threads 1 on CPU), "
                             "robust to other processes on a loaded machine")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/layer_speed.json"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.device or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if "cuda" in devices and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available on this machine")
    if args.clock == "thread" and (torch.get_num_threads() != 1 or devices != ["cpu"]):
        raise SystemExit("--clock thread: needs --threads 1 and --device cpu")
    modes = ["forward"] + ([] if args.no_backward else ["forward+backward"])
    # measure training plans too (the library measures inference calls only by default, so
    # that seeded training stays bit-reproducible): this benchmark asks what is achievable
    autotune.set_autotune(True, training=True)
    result = {**machine_info(), "repeats": args.repeats, "clock": args.clock,
              "load_before": os.getloadavg(), "runs": []}
    t_start = time.perf_counter()
    for device in devices:
        for shape_name, shape, layouts in SUITE:
            cases = _cases(shape, layouts, device)
            for mode in modes:
                samples = latency_samples({k: (m, x) for k, (m, x, _) in cases.items()},
                                          args.repeats, args.warmup, mode != "forward",
                                          clock=args.clock)
                medians = {k: statistics.median(v) for k, v in samples.items()}
                rows = _table(cases, medians)
                title = f"{device} {shape_name} {tuple(shape)} {mode}"
                _print(title, medians["3d"], medians["3d channels_last"], rows)
                result["runs"].append({
                    "device": device, "shape_name": shape_name, "input_shape": list(shape),
                    "mode": mode, "t3d_ms": medians["3d"],
                    "t3d_channels_last_ms": medians["3d channels_last"], "rows": rows,
                })
    finish(result, t_start, args.out)
    print(f"\n{result['seconds']:.0f} s; eff = (t_3d/t)/(MACs_3d/MACs), 1 = time saved as MACs "
          f"saved; results -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
