"""Is a training step faster in channels_last_3d memory? ``fit(channels_last=True)`` against the
default NCDHW memory, one AdamW step (forward, backward, update) of resnet3d_tiny with each
builder on a batch of something-something-lite-sized clips, the two forms interleaved in the
same rounds; prints median ms per step and the ratio (channels_last ÷ NCDHW; below 1 it is
faster). Then the same for a search step (``run_search(channels_last=True)``): one SGD step
of resnet3d_tiny's video-123d supernet in performance and in cost priority. The values
computed are the same up to float rounding (tests/test_train.py and tests/test_search_run.py
check whole runs).

    python benchmarks/train_speed.py [--batch 26] [--repeats 15] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _malloc import reexec_with_malloc_tunables  # noqa: E402

reexec_with_malloc_tunables()  # before torch: page faults make CPU timings bimodal otherwise

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from cakes_lite.models import resnet3d_tiny  # noqa: E402
from cakes_lite.search import supernet  # noqa: E402
from cakes_lite.speed import interleaved_samples  # noqa: E402

CL = torch.channels_last_3d


def step_fn(builder: str, x: torch.Tensor, y: torch.Tensor, channels_last: bool):
    """One training step of a fresh resnet3d_tiny (seed 0) in the given memory format;
    ``builder`` "search-performance" / "search-cost": its supernet, one SGD step."""
    torch.manual_seed(0)
    if builder.startswith("search-"):
        net = supernet(resnet3d_tiny(num_classes=13), "video-123d", builder[len("search-"):])
    else:
        net = resnet3d_tiny(num_classes=13, builder=builder)
    if channels_last:
        net, x = net.to(memory_format=CL), x.contiguous(memory_format=CL)
    opt = (torch.optim.SGD(net.parameters(), 0.1, momentum=0.9) if builder.startswith("search-")
           else torch.optim.AdamW(net.parameters(), 3e-3))

    def step() -> None:
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=26)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, 8, 32, 32, generator=g)
    y = torch.randint(0, 13, (args.batch,), generator=g)
    print(f"batch {args.batch} of 3×8×32² clips, {torch.get_num_threads()} threads, "
          f"{args.repeats} rounds")
    for builder in ("3d", "2d", "r2plus1d", "cakes", "search-performance", "search-cost"):
        steps = {f"{form}": step_fn(builder, x, y, form == "channels_last")
                 for form in ("ncdhw", "channels_last")}
        t = {k: statistics.median(v) for k, v in
             interleaved_samples(steps, args.repeats, 2).items()}
        print(f"resnet3d_tiny {builder:18s} NCDHW {t['ncdhw']:7.1f} ms  channels_last "
              f"{t['channels_last']:7.1f} ms  ratio {t['channels_last'] / t['ncdhw']:.2f}")


if __name__ == "__main__":
    main()
