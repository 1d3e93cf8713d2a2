"""Multi-view evaluation of video classifiers: several clips × crops of each video, their
logits averaged (the multi-clip / multi-crop testing of TSN, TSM and the video papers after).

:class:`ViewAverage` wraps a classifier so that it takes (N, V, C, T, H, W) batches — what
:class:`~cakes_lite.data.SomethingV1` with ``clips · crops > 1`` gives — and returns (N, K)
logits, so the ordinary :func:`~cakes_lite.train.evaluate` (top-1, top-5, DDP reduction)
works unchanged; :func:`evaluate_views` is that call.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from .loop import evaluate


class ViewAverage(nn.Module):
    """Average a classifier's logits over the views of each sample.

    Args:
        model: classifier (N, C, T, H, W) -> (N, K).
        chunk: views per forward pass (None: all N · V at once); bounds the memory.

    Shape:
        input (N, V, C, T, H, W) -> (N, K), the mean of the V views' logits; a plain
        (N, C, T, H, W) batch passes straight through the model.
    """

    def __init__(self, model: nn.Module, chunk: int | None = None):
        super().__init__()
        if chunk is not None and chunk < 1:
            raise ValueError(f"chunk: expected a positive int or None, got {chunk!r}")
        self.model, self.chunk = model, chunk

    @property
    def config(self) -> Any:
        """The wrapped model's config (so num_classes is found as for the model)."""
        return getattr(self.model, "config", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 6:
            return self.model(x)
        n, v = x.shape[:2]
        flat = x.flatten(0, 1)  # (N·V, C, T, H, W)
        if self.chunk is None:
            logits = self.model(flat)
        else:
            logits = torch.cat([self.model(part) for part in flat.split(self.chunk)])
        return logits.view(n, v, -1).mean(dim=1)  # (N, V, K) -> (N, K)


def evaluate_views(model: nn.Module, loader: Iterable, *, chunk: int | None = None,
                   **kwargs) -> dict[str, Any]:
    """:func:`~cakes_lite.train.evaluate` of ``ViewAverage(model, chunk)`` on a loader of
    (N, V, C, T, H, W) batches; returns ``{"loss", "n", "top1", "top5"}`` of the averaged
    logits (kwargs go to ``evaluate``: device, amp, progress, reduce …)."""
    return evaluate(ViewAverage(model, chunk), loader, "classification", **kwargs)
