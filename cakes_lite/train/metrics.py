"""Metrics and losses: top-1 / top-5 accuracy, per-class Dice (dataset-level), soft Dice loss.

:func:`dice_per_class` is the one Dice (absent class: NaN, left out of means).

Metrics are accumulated as sums (:class:`Meter`) so they can be added over batches and
all-reduced over DDP ranks before the final division.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def top1_correct(logits: torch.Tensor, targets: torch.Tensor) -> int:
    """Number of samples whose arg-max class equals the target. logits (N, C), targets (N,)."""
    return int((logits.argmax(dim=1) == targets).sum())


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, k: int = 5) -> int:
    """Number of samples whose target is among the k highest logits (all of them when there
    are at most k classes). logits (N, C), targets (N,)."""
    if k < 1:
        raise ValueError(f"k: expected a positive int, got {k!r}")
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices  # (N, k)
    return int((top == targets.view(-1, 1)).any(dim=1).sum())


def dice_counts(logits: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per-class (intersection, predicted, target) voxel counts of a batch.

    Args:
        logits: (N, C, D, H, W).
        targets: (N, D, H, W) integer labels in [0, C).

    Returns:
        (3, C) float64 tensor: |P ∩ G|, |P|, |G| per class c.
    """
    return label_counts(logits.argmax(dim=1), targets, num_classes)


def label_counts(pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray,
                 num_classes: int) -> torch.Tensor:
    """Per-class (intersection, predicted, target) voxel counts of two label maps.

    Args:
        pred: integer labels in [0, C), any shape (a tensor or a NumPy array).
        target: integer labels in [0, C), the same number of elements as ``pred``.
        num_classes: C.

    Returns:
        (3, C) float64 tensor: |P ∩ G|, |P|, |G| per class c.
    """
    pred = torch.as_tensor(pred).flatten().long()  # (N·D·H·W,)
    gt = torch.as_tensor(target).flatten().long().to(pred.device)
    if gt.numel() != pred.numel():
        raise ValueError(f"target: expected {pred.numel()} labels like pred, got {gt.numel()}")
    inter = torch.bincount(gt[pred == gt], minlength=num_classes)[:num_classes]
    p = torch.bincount(pred, minlength=num_classes)[:num_classes]
    g = torch.bincount(gt, minlength=num_classes)[:num_classes]
    return torch.stack([inter, p, g]).cpu().double()  # .cpu() first: MPS has no float64


def dice_from_counts(counts: torch.Tensor) -> list[float]:
    """Dice_c = 2 |P_c ∩ G_c| / (|P_c| + |G_c|) per class; NaN where a class is absent from
    both prediction and ground truth (see :func:`dice_per_class`). counts: (3, C) from
    :func:`dice_counts` or :func:`label_counts` (summed)."""
    inter, p, g = counts
    denom = p + g
    return [float(2 * i / d) if d > 0 else math.nan for i, d in zip(inter, denom)]


def dice_per_class(pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray,
                   num_classes: int) -> list[float]:
    """Dice of every class between two label maps, over all their voxels (dataset-level when
    the maps hold a whole evaluation set). The one Dice of cakes_lite: training metrics, the zoo
    build and the app all compute it this way.

    Dice_c = 2 |P_c ∩ G_c| / (|P_c| + |G_c|).

    **Absent class.** A class empty in both ``pred`` and ``target`` gives NaN, not 1.0: its Dice
    is 0/0, undefined, and there is nothing to get right or wrong. Scoring it 1.0 would reward a
    model for a class the data never showed and pull means towards 1; NaN keeps it visible as
    "not measured" and :func:`mean_foreground` leaves it out of the mean (NaN when no foreground
    class is present at all). Display it as "n/a".

    Args:
        pred: integer labels in [0, C), any shape (a tensor or a NumPy array).
        target: integer labels in [0, C), the same number of elements.
        num_classes: C (background is class 0).

    Returns:
        C floats in [0, 1], NaN for absent classes; ``mean_foreground(result)`` is the mean
        foreground Dice.
    """
    return dice_from_counts(label_counts(pred, target, num_classes))


def mean_foreground(dice: list[float]) -> float:
    """Mean of the Dice scores of classes 1 … C-1 (background excluded), ignoring NaNs."""
    vals = [d for d in dice[1:] if not math.isnan(d)]
    return sum(vals) / len(vals) if vals else math.nan


def soft_dice_loss(logits: torch.Tensor, targets: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - mean over foreground classes of the soft Dice of the softmax probabilities.

    loss = 1 - (1/(C-1)) Σ_{c≥1} (2 Σ p_c g_c + ε) / (Σ p_c + Σ g_c + ε)
    logits (N, C, D, H, W), targets (N, D, H, W).
    """
    c = logits.shape[1]
    prob = logits.float().softmax(dim=1)
    # one-hot (N, D, H, W, C) -> (N, C, D, H, W)
    onehot = F.one_hot(targets.long(), c).movedim(-1, 1).to(prob.dtype)
    dims = (0, 2, 3, 4)
    inter = (prob * onehot).sum(dims)
    denom = prob.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + eps) / (denom + eps)
    return 1 - dice[1:].mean() if c > 1 else 1 - dice.mean()


def default_loss(task: str):
    """Cross-entropy for classification; cross-entropy + soft Dice for segmentation."""
    if task == "classification":
        return F.cross_entropy
    if task == "segmentation":
        return lambda logits, y: F.cross_entropy(logits, y) + soft_dice_loss(logits, y)
    raise ValueError(f"task: expected 'classification' or 'segmentation', got {task!r}")


class Meter:
    """Running sums for one pass over a loader: loss·n, n, top-1 and top-5 correct (cls) or
    Dice counts (seg)."""

    def __init__(self, task: str, num_classes: int | None = None):
        self.task, self.num_classes = task, num_classes
        self.loss_sum, self.n, self.correct, self.correct5 = 0.0, 0, 0, 0
        self.counts: torch.Tensor | None = None
        if task == "segmentation" and num_classes:  # same size on every DDP rank
            self.counts = torch.zeros(3, num_classes, dtype=torch.float64)

    def update(self, loss: float, logits: torch.Tensor, targets: torch.Tensor) -> None:
        n = targets.shape[0]
        self.loss_sum += float(loss) * n
        self.n += n
        if self.task == "classification":
            self.correct += top1_correct(logits, targets)
            self.correct5 += topk_correct(logits, targets, 5)
        else:
            c = self.num_classes or logits.shape[1]
            counts = dice_counts(logits, targets, c)
            self.counts = counts if self.counts is None else self.counts + counts

    def as_tensor(self) -> torch.Tensor:
        """Flat float64 vector (for all-reduce): [loss_sum, n, correct, correct5]
        (classification) or [loss_sum, n, correct, Dice counts…] (segmentation)."""
        if self.task == "classification":
            extra = torch.tensor([float(self.correct5)])
        else:
            extra = self.counts.flatten() if self.counts is not None else torch.zeros(0)
        base = torch.tensor([self.loss_sum, self.n, self.correct], dtype=torch.float64)
        return torch.cat([base, extra.double()])

    def load_tensor(self, t: torch.Tensor) -> None:
        self.loss_sum, self.n, self.correct = float(t[0]), int(t[1]), int(t[2])
        if self.task == "classification":
            self.correct5 = int(t[3]) if t.numel() > 3 else 0  # older checkpoints: no top-5
        elif t.numel() > 3:  # Dice counts (also when num_classes was learnt from the logits)
            self.counts = t[3:].view(3, -1).clone()

    def result(self, prefix: str = "") -> dict:
        """``{loss, n, top1, top5}`` or ``{loss, n, dice (per class), mean_dice}``."""
        n = max(self.n, 1)
        out = {f"{prefix}loss": self.loss_sum / n, f"{prefix}n": self.n}
        if self.task == "classification":
            out[f"{prefix}top1"] = self.correct / n
            out[f"{prefix}top5"] = self.correct5 / n
        elif self.counts is not None:
            dice = dice_from_counts(self.counts)
            out[f"{prefix}dice"] = dice
            out[f"{prefix}mean_dice"] = mean_foreground(dice)
        return out
