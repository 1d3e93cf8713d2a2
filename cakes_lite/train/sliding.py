"""Whole-volume evaluation of a segmenter trained on patches: sliding-window inference and
Dice per class.

The windows come from MONAI's ``sliding_window_inference`` (overlapping tiles of the
training patch size, blended with Gaussian weights, padding where the volume is smaller than a
window) — a well-tested implementation of a fiddly loop, so cakes_lite does not keep its own.
MONAI is imported when a function here is first called: it is an optional dependency (the
``data`` and ``test`` extras) that costs seconds to import.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from ..progress import progress_bar
from . import distributed as D
from .epoch import autocast
from .metrics import dice_from_counts, dice_per_class, label_counts, mean_foreground


def _sliding_window_inference():
    try:
        from monai.inferers import sliding_window_inference  # optional dependency, slow import
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("whole-volume evaluation needs MONAI: pip install monai") from e
    return sliding_window_inference


@torch.no_grad()
def predict_volume(model: nn.Module, image: torch.Tensor, roi_size: int | Sequence[int], *,
                   overlap: float = 0.5, sw_batch_size: int = 4, mode: str = "gaussian",
                   device: str | torch.device | None = None, amp: bool | str = True
                   ) -> torch.Tensor:
    """Logits of a whole volume from overlapping windows of ``roi_size``.

    Args:
        model: segmenter (N, C, d, h, w) -> (N, K, d, h, w); used as it is (call ``.eval()``).
        image: (C, D, H, W) or (1, C, D, H, W).
        roi_size: window size (the training patch size), int or (d, h, w).
        overlap: fraction of a window shared with its neighbour along each axis.
        sw_batch_size: windows per forward pass.
        mode: blending of overlapping windows, ``"gaussian"`` (centre-weighted) or
            ``"constant"`` (plain average).
        device: where the windows run (default: the model's device); the stitched output stays
            on the CPU, so a large volume needs only its windows in accelerator memory.
        amp: autocast on CUDA (see :func:`~cakes_lite.train.fit`).

    Returns:
        (K, D, H, W) float32 logits on the CPU.
    """
    if image.ndim == 4:
        image = image[None]
    if image.ndim != 5 or image.shape[0] != 1:
        raise ValueError(f"image: expected (C, D, H, W) or (1, C, D, H, W), got "
                         f"{tuple(image.shape)}")
    roi = (roi_size,) * 3 if isinstance(roi_size, int) else tuple(int(r) for r in roi_size)
    if len(roi) != 3 or min(roi) < 1:
        raise ValueError(f"roi_size: expected a positive int or 3 of them, got {roi_size!r}")
    device = torch.device(device) if device else next(model.parameters()).device
    infer = _sliding_window_inference()
    with autocast(device, amp):
        out = infer(image.float(), roi, sw_batch_size, model, overlap=overlap, mode=mode,
                    sw_device=device, device=torch.device("cpu"))
    return out[0].float()


def sliding_window_evaluate(model: nn.Module, cases: Iterable, roi_size: int | Sequence[int], *,
                            num_classes: int | None = None, overlap: float = 0.5,
                            sw_batch_size: int = 4, mode: str = "gaussian",
                            device: str | torch.device | None = None, amp: bool | str = True,
                            reduce: bool = False, progress: bool = False,
                            callback: Callable[[int, list[float]], Any] | None = None
                            ) -> dict[str, Any]:
    """Dice per class of whole volumes segmented with :func:`predict_volume`.

    Args:
        model: segmenter; put in eval mode for the call (its mode is restored after).
        cases: iterable of ``(image (C, D, H, W), label (D, H, W))`` — e.g. a
            :class:`~cakes_lite.data.DecathlonTask` with ``patch_size=None, augment=False``
            — or of batches ``(N, C, D, H, W), (N, D, H, W)`` from a DataLoader.
        roi_size, overlap, sw_batch_size, mode, device, amp: see :func:`predict_volume`.
        num_classes: K (default ``model.config.num_classes``, else the logits').
        reduce: sum the voxel counts over DDP ranks (each rank evaluated its own cases).
        progress: tqdm bar over the cases.
        callback: ``f(case_index, dice_of_that_case)`` after each case.

    Returns:
        ``{"dice": per class over all voxels of all cases (NaN where absent), "mean_dice":
        mean over classes 1 … K-1, "case_dice": per case and class, "case_mean_dice": the
        cases' mean foreground Dice averaged, "n": cases}``.
    """
    cfg = getattr(getattr(model, "module", model), "config", None)
    k = num_classes or getattr(cfg, "num_classes", None)
    was_training = model.training
    model.eval()
    counts, case_dice = None, []
    try:
        for image, label in progress_bar(_single_cases(cases), desc="volumes", leave=False,
                                         disable=not progress):
            logits = predict_volume(model, image, roi_size, overlap=overlap, mode=mode,
                                    sw_batch_size=sw_batch_size, device=device, amp=amp)
            k = k or logits.shape[0]
            pred = logits.argmax(dim=0)  # (D, H, W)
            if pred.shape != label.shape:
                raise ValueError(f"label: expected shape {tuple(pred.shape)} like the image, "
                                 f"got {tuple(label.shape)}")
            c = label_counts(pred, label, k)
            counts = c if counts is None else counts + c
            case_dice.append(dice_per_class(pred, label, k))
            if callback is not None:
                callback(len(case_dice) - 1, case_dice[-1])
    finally:
        model.train(was_training)
    if counts is None:
        raise ValueError("cases: expected at least one (image, label) volume, got none")
    if reduce and D.is_distributed():
        counts = D.all_reduce_sum(counts)
    dice = dice_from_counts(counts)
    means = [m for m in (mean_foreground(d) for d in case_dice) if not math.isnan(m)]
    return {"dice": dice, "mean_dice": mean_foreground(dice), "case_dice": case_dice,
            "case_mean_dice": sum(means) / len(means) if means else math.nan,
            "n": len(case_dice)}


def _single_cases(cases: Iterable):
    """Yield (image (C, D, H, W), label (D, H, W)) from single cases or batches of them."""
    for image, label in cases:
        if image.ndim == 5:
            yield from zip(image, label)
        else:
            yield image, label
