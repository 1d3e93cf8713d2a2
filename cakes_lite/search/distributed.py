""":func:`~cakes_lite.run_search` under ``torchrun``: what keeps the processes' searches one.

Inside a process group ``run_search`` trains the supernet with DistributedDataParallel: each
process reads its own shard of the data (a ``DistributedSampler``, re-shuffled every epoch
here; a plain ``DataLoader`` gets one, :func:`shard`), DDP averages the gradients of the weights *and* of the importances γ over all processes,
so every process takes the same optimiser step and holds the same γ; the L1 step on γ, the
cost-target controller and the layout derived from γ then agree without further talk. Two
things would not agree by themselves:

* the channels a performance-priority step samples: every process seeds the same generator, but
  anything else that draws from it (data augmentation in the main process, say) could make the
  draws drift apart, so the sampled candidates are broadcast from rank 0 (:func:`agree`: C_out
  integers per searched layer per step);
* BatchNorm statistics: each process normalises with its own share of the batch unless
  ``sync_bn=True`` converts every BatchNorm (the supernet layers' included) to
  :class:`~cakes_lite.train.sync_bn.SyncBatchNorm3d`, which uses the whole global batch's.

With sync BN, no dropout and the global batch dealt round-robin, N processes compute what one
process computes on the whole batch, up to the order of float sums.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from ..train import distributed as D
from ..train.sync_bn import convert_sync_batchnorm


def agree(idx: torch.Tensor) -> torch.Tensor:
    """Rank 0's ``idx`` on every process (in place; unchanged without a process group)."""
    if D.is_distributed():
        dist.broadcast(idx, 0)
    return idx


def wrap(net: nn.Module, device: torch.device, sync_bn: bool) -> nn.Module:
    """What runs forward: ``net`` itself, or its DDP wrapper inside a process group.
    ``sync_bn`` converts ``net``'s BatchNorms (in place) first."""
    if sync_bn:
        convert_sync_batchnorm(net)
    if not D.is_distributed():
        return net
    one_gpu = device.type == "cuda" and device.index is not None
    return DistributedDataParallel(net, device_ids=[device.index] if one_gpu else None)


def shard(loader: object, seed: int) -> object:
    """Inside a process group, a plain ``DataLoader`` re-built with a ``DistributedSampler``
    (each process its share, as ``fit`` does); anything else as it is (a loader already
    sharded, or batches the caller split by rank)."""
    if D.is_distributed() and isinstance(loader, DataLoader):
        return D.distributed_train_loader(loader, seed)
    return loader


def new_epoch(loader: object, epoch: int) -> None:
    """A ``DistributedSampler`` deals another shuffle only through ``set_epoch`` (0-based)."""
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)


def epoch_sums(right: int, seen: int, labels: torch.Tensor | None
               ) -> tuple[int, int, torch.Tensor | None]:
    """The epoch's accuracy counts and label histogram summed over the processes."""
    if not D.is_distributed():
        return right, seen, labels
    counts = D.all_reduce_sum(torch.tensor([right, seen], dtype=torch.float64))
    if labels is not None:
        labels = D.all_reduce_sum(labels)
    return int(counts[0]), int(counts[1]), labels
