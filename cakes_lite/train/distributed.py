"""Helpers for ``torchrun`` / DistributedDataParallel (GPU with NCCL, CPU with gloo).

``fit()`` uses them automatically when a process group is initialised: it wraps the model in
DDP, gives the training loader a :class:`~torch.utils.data.DistributedSampler`, shards the
validation loader without padding, all-reduces metric sums and writes checkpoints on rank 0.

Run e.g. ``torchrun --standalone --nproc_per_node=2 -m cakes_lite train …``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Sampler


@dataclass
class DistInfo:
    """Where this process sits: rank, world size, local rank and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on rank 0 (or without DDP): the process that writes files and reports."""
    return rank() == 0


def init_distributed(backend: str | None = None) -> DistInfo:
    """Initialise the process group from torchrun's environment (``WORLD_SIZE`` > 1).

    Args:
        backend: ``"nccl"`` / ``"gloo"``; default NCCL with CUDA, gloo without.

    Returns:
        :class:`DistInfo`; rank 0 of 1 on CPU/the default GPU when not launched by torchrun.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    if size > 1 and not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if cuda else "gloo"))
    return DistInfo(rank(), world_size(), local, device)


def cleanup() -> None:
    """Destroy the process group if one is initialised."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class ShardSampler(Sampler[int]):
    """Rank r of W gets indices r, r + W, r + 2W … — no padding, so metrics summed over ranks
    count every sample exactly once (for evaluation)."""

    def __init__(self, n: int, rank: int, world_size: int):
        self.n, self.rank, self.world = n, rank, world_size

    def __iter__(self):
        return iter(range(self.rank, self.n, self.world))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world))


def _rebuild(loader: DataLoader, sampler: Sampler) -> DataLoader:
    if loader.batch_size is None:
        raise ValueError("loader: DDP needs a DataLoader built with batch_size (not a custom "
                         "batch_sampler)")
    return DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=sampler,
                      num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                      pin_memory=loader.pin_memory, drop_last=loader.drop_last,
                      worker_init_fn=loader.worker_init_fn, generator=loader.generator,
                      persistent_workers=loader.persistent_workers if loader.num_workers else False)


def distributed_train_loader(loader: DataLoader, seed: int) -> DataLoader:
    """The same loader with a DistributedSampler (shuffled iff ``loader`` shuffles). Call
    ``loader.sampler.set_epoch(epoch)`` each epoch (``fit`` does, through ``seed_epoch``):
    without it every epoch repeats the same shuffle."""
    if isinstance(loader.sampler, DistributedSampler):
        return loader
    shuffle = isinstance(loader.sampler, RandomSampler)
    return _rebuild(loader, DistributedSampler(loader.dataset, shuffle=shuffle, seed=seed))


def sharded_eval_loader(loader: DataLoader) -> DataLoader:
    """The same loader reading only this rank's share (:class:`ShardSampler`)."""
    if isinstance(loader.sampler, (ShardSampler, DistributedSampler)):
        return loader
    return _rebuild(loader, ShardSampler(len(loader.dataset), rank(), world_size()))


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over ranks (a no-op without DDP); returns a new tensor."""
    if not is_distributed():
        return t
    backend = dist.get_backend()
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else "cpu"
    out = t.detach().to(device).clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.to(t.device)


def broadcast_buffers(model: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s buffers (BatchNorm running statistics) to all ranks."""
    if is_distributed():
        for b in getattr(model, "module", model).buffers():
            dist.broadcast(b.data, src)


def barrier() -> None:
    if is_distributed():
        dist.barrier()
