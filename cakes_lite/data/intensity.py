"""Intensity normalisation of medical volumes, by modality (as nnU-Net and the Decathlon's
entries do it, per case).

* CT (Hounsfield units mean the same in every scanner): clip to a window — a fixed one such as
  (-160, 240) for abdominal soft tissue, or the case's 0.5 … 99.5 percentiles — then z-score.
* MRI and everything else (arbitrary units): z-score per channel over the voxels that hold
  signal (non-zero; skull-stripped BraTS volumes are zero outside the brain), which stay the
  only non-zero ones; a channel without zeros uses all its voxels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

_QUANTILE_SAMPLES = 100_000  # torch.quantile's input size limit is 16M; a strided sample


def _zscore(x: Tensor, mask: Tensor | None = None) -> Tensor:
    values = x if mask is None else x[mask]
    if values.numel() < 2:
        return torch.zeros_like(x)
    # x' = (x − μ) / σ over the chosen voxels
    return (x - values.mean()) / values.std().clamp(min=1e-6)


def ct_normalize(x: Tensor, window: Sequence[float] | None = None,
                 percentiles: Sequence[float] = (0.5, 99.5)) -> Tensor:
    """Clip one CT channel to ``window`` (HU) — or to its own ``percentiles`` — then z-score.

    Args:
        x: (D, H, W) float (any shape).
        window: (low, high) in HU; None uses the percentiles of this volume.
        percentiles: (low, high) in percent, for ``window=None``.

    Returns:
        Float32 tensor of x's shape.
    """
    x = x.float()
    if window is not None:
        lo, hi = (float(v) for v in window)
        if not lo < hi:
            raise ValueError(f"ct_window: expected (low, high) with low < high, got {window!r}")
    else:
        flat = x.flatten()[:: max(1, x.numel() // _QUANTILE_SAMPLES)]
        q = torch.quantile(flat, torch.tensor([p / 100.0 for p in percentiles]))
        lo, hi = float(q[0]), float(q[1])
    return _zscore(x.clamp(lo, hi))


def mri_normalize(x: Tensor) -> Tensor:
    """z-score one MRI channel over its non-zero voxels; zero voxels stay zero (a channel
    without zeros is z-scored over all its voxels).

    Args:
        x: (D, H, W) float (any shape).

    Returns:
        Float32 tensor of x's shape.
    """
    x = x.float()
    mask = x != 0
    if bool(mask.all()):
        return _zscore(x)
    return torch.where(mask, _zscore(x, mask), torch.zeros((), dtype=x.dtype))


def channel_modalities(modality: dict | None, channels: int, where: str) -> list[str]:
    """The modality name of each of ``channels`` channels from a dataset.json ``modality``
    dict (``{"0": "FLAIR", …}``): one per channel, or one name for all; default "MRI".

    Raises:
        ValueError: the dict names neither one modality nor one per channel (naming ``where``).
    """
    if not modality:
        return ["MRI"] * channels
    names = [str(modality[k]) for k in sorted(modality, key=lambda k: int(k))]
    if len(names) == channels:
        return names
    if len(names) == 1:
        return names * channels
    raise ValueError(f"DecathlonTask: {where} has {channels} channel(s) but dataset.json "
                     f"'modality' lists {len(names)}: {names}")


def normalize_channels(image: Tensor, modalities: Sequence[str],
                       ct_window: Sequence[float] | None = None,
                       ct_percentiles: Sequence[float] = (0.5, 99.5)) -> Tensor:
    """Normalise each channel of (C, D, H, W) ``image`` by its modality: "CT" with
    :func:`ct_normalize`, anything else with :func:`mri_normalize`.

    Returns:
        (C, D, H, W) float32.
    """
    out = [ct_normalize(c, ct_window, ct_percentiles) if m.upper() == "CT" else mri_normalize(c)
           for c, m in zip(image, modalities)]
    return torch.stack(out).contiguous()
