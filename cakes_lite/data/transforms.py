"""Volume augmentation and corruptions for 3D segmentation patches (seeded, pure torch).

Corruptions mimic what differs between MRI scanners and protocols; use them as training
augmentation or apply them to validation data to measure robustness:

* ``noise``: additive Gaussian noise, std 0.05 × severity (images are scaled to about [0, 1]).
* ``bias``: smooth multiplicative bias field exp(p(x, y, z)), p a random quadratic polynomial of
  the normalised coordinates with coefficients of size 0.3 × severity.
* ``gamma``: x → x^γ on [0, 1] (after min-max scaling), log γ ~ U(−0.4, 0.4) × severity.
* ``contrast``: (x − mean) · c + mean, log c ~ U(−0.3, 0.3) × severity.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

CORRUPTIONS = ("noise", "bias", "gamma", "contrast")


def check_corruptions(corruptions: Sequence[str]) -> tuple[str, ...]:
    """Validate corruption names (a string is taken as one name)."""
    names = (corruptions,) if isinstance(corruptions, str) else tuple(corruptions)
    bad = [c for c in names if c not in CORRUPTIONS]
    if bad:
        raise ValueError(f"corruptions: expected names from {CORRUPTIONS}, got {bad}")
    return names


def _coords(shape: Sequence[int]) -> Tensor:
    """(3, D, H, W) coordinates in [-1, 1] along each axis."""
    axes = [torch.linspace(-1, 1, n) for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"))


def corrupt(image: Tensor, kind: str, rng: np.random.Generator, severity: float = 1.0) -> Tensor:
    """Apply one corruption to an image.

    Args:
        image: (C, D, H, W) float tensor, intensities roughly in [0, 1].
        kind: one of :data:`CORRUPTIONS`.
        rng: numpy Generator (all randomness comes from it, so results are reproducible).
        severity: scales the strength; 0 leaves the image unchanged.

    Returns:
        A new (C, D, H, W) float32 tensor.
    """
    check_corruptions([kind])
    x = image.float()
    if kind == "noise":
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        return x + 0.05 * severity * torch.randn(x.shape, generator=gen)
    if kind == "bias":
        c = _coords(x.shape[1:])  # (3, D, H, W)
        a = torch.as_tensor(rng.uniform(-0.3, 0.3, size=9) * severity, dtype=torch.float32)
        # p(x, y, z) = Σ a_i x_i + Σ a_ij x_i x_j (linear + quadratic terms, no constant)
        poly = (a[:3, None, None, None] * c).sum(0)
        poly = poly + a[3] * c[0] * c[1] + a[4] * c[1] * c[2] + a[5] * c[0] * c[2]
        poly = poly + (a[6:, None, None, None] * c * c).sum(0)
        return x * torch.exp(poly)[None]
    if kind == "gamma":
        lo, hi = x.min(), x.max()
        span = (hi - lo).clamp(min=1e-6)
        gamma = float(np.exp(rng.uniform(-0.4, 0.4) * severity))
        return ((x - lo) / span).clamp(0, 1) ** gamma * span + lo
    c = float(np.exp(rng.uniform(-0.3, 0.3) * severity))
    mean = x.mean()
    return (x - mean) * c + mean


def augment_pair(image: Tensor, label: Tensor, rng: np.random.Generator, *,
                 flip_axes: Sequence[int] = (0,), corruptions: Sequence[str] = (),
                 severity: float = 1.0, p_corrupt: float = 0.5) -> tuple[Tensor, Tensor]:
    """Random flips (image and label together) and random corruptions (image only).

    Args:
        image: (C, D, H, W) float. label: (D, H, W) int.
        rng: numpy Generator.
        flip_axes: spatial axes (0 = D, 1 = H, 2 = W) each flipped with probability 1/2.
        corruptions: names from :data:`CORRUPTIONS`, each applied with probability
            ``p_corrupt`` in the given order.
        severity: passed to :func:`corrupt`.

    Returns:
        (image, label) with the same shapes.
    """
    for ax in flip_axes:
        if ax not in (0, 1, 2):
            raise ValueError(f"flip_axes: expected spatial axes among (0, 1, 2), got {flip_axes}")
        if rng.uniform() < 0.5:
            image, label = image.flip(ax + 1), label.flip(ax)
    for kind in check_corruptions(corruptions):
        if rng.uniform() < p_corrupt:
            image = corrupt(image, kind, rng, severity)
    return image.contiguous(), label.contiguous()
