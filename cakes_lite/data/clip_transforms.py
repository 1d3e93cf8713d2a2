"""Clip-level image transforms of TSN-style video training: every frame of a clip gets the same
crop and flip, so motion stays intact. Frames are PIL images; randomness comes from a numpy
Generator passed in, so a clip is a pure function of its seed.

Training (as TSN / TSM / CAKES train on Something-Something):

* :func:`multi_scale_crop_box` — a crop of side ``int(min(W, H) · s)`` for s in
  (1, .875, .75, .66), width and height scales at most ``max_distort`` steps apart, at one of
  13 fixed positions (corners, centre, edge centres, quarter points), then resized to
  ``size × size``;
* :func:`hflip` with :func:`swap_label` — a mirrored clip of "pushing something from left to
  right" shows "… right to left", so the label of a left/right class pair swaps.

Evaluation: :func:`resize_shorter` (256) then :func:`eval_crop_offsets` (one centre crop of
224, or 3 / 5 crops for multi-crop testing). :func:`to_tensor` stacks and normalises with the
ImageNet mean and std.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MULTI_SCALES = (1.0, 0.875, 0.75, 0.66)
EVAL_CROPS = (1, 3, 5)


def fixed_crop_offsets(image_w: int, image_h: int, crop_w: int, crop_h: int,
                       more: bool = True) -> list[tuple[int, int]]:
    """(left, top) of the fixed crop positions on a 4 × 4 grid of steps.

    Steps are ``(image − crop) // 4`` per axis. Five positions (4 corners, centre), and with
    ``more`` eight more: the 4 edge centres and the 4 quarter points.
    """
    ws, hs = (image_w - crop_w) // 4, (image_h - crop_h) // 4
    grid = [(0, 0), (4, 0), (0, 4), (4, 4), (2, 2)]
    if more:
        grid += [(0, 2), (4, 2), (2, 4), (2, 0), (1, 1), (3, 1), (1, 3), (3, 3)]
    return [(i * ws, j * hs) for i, j in grid]


def multi_scale_crop_box(image_w: int, image_h: int, size: int | tuple[int, int],
                         rng: np.random.Generator, scales: Sequence[float] = MULTI_SCALES,
                         max_distort: int = 1, fix_crop: bool = True,
                         more_fix_crop: bool = True) -> tuple[int, int, int, int]:
    """Sample the crop box of TSN's multi-scale crop.

    Crop sides are ``int(min(W, H) · s)`` per scale, snapped to the output size when within
    3 pixels of it; width scale i and height scale j are paired when ``|i − j| ≤ max_distort``
    (so aspect ratios stay near 1). The position is one of :func:`fixed_crop_offsets`
    (``fix_crop``) or uniform.

    Args:
        image_w, image_h: frame size. size: output side (or (W, H)) the crop is resized to.
        rng: numpy Generator.

    Returns:
        ``(left, top, crop_w, crop_h)``.
    """
    out_w, out_h = (size, size) if isinstance(size, int) else size
    base = min(image_w, image_h)
    sides = [int(base * s) for s in scales]
    crop_h = [out_h if abs(x - out_h) < 3 else x for x in sides]
    crop_w = [out_w if abs(x - out_w) < 3 else x for x in sides]
    pairs = [(w, h) for i, h in enumerate(crop_h) for j, w in enumerate(crop_w)
             if abs(i - j) <= max_distort]
    cw, ch = pairs[int(rng.integers(len(pairs)))]
    if fix_crop:
        offsets = fixed_crop_offsets(image_w, image_h, cw, ch, more_fix_crop)
        left, top = offsets[int(rng.integers(len(offsets)))]
    else:
        left = int(rng.integers(image_w - cw + 1))
        top = int(rng.integers(image_h - ch + 1))
    return left, top, cw, ch


def crop_resize(images: Sequence[Image.Image], box: tuple[int, int, int, int],
                size: int | tuple[int, int]) -> list[Image.Image]:
    """Crop every frame to ``box = (left, top, w, h)`` and resize (bilinear) to ``size``."""
    left, top, w, h = box
    out = (size, size) if isinstance(size, int) else tuple(size)
    crops = [im.crop((left, top, left + w, top + h)) for im in images]
    return crops if (w, h) == out else [im.resize(out, Image.BILINEAR) for im in crops]


def hflip(images: Sequence[Image.Image]) -> list[Image.Image]:
    """Mirror every frame left-right."""
    return [im.transpose(Image.FLIP_LEFT_RIGHT) for im in images]


def swap_label(label: int, pairs: Mapping[int, int]) -> int:
    """The label of the mirrored clip: its left/right partner if it has one, else itself."""
    return int(pairs.get(int(label), label))


def pair_map(pairs: Sequence[tuple[int, int]]) -> dict[int, int]:
    """``[(a, b), …]`` → ``{a: b, b: a, …}``; ValueError if a class is in two pairs."""
    out: dict[int, int] = {}
    for pair in pairs:
        a, b = (int(v) for v in pair)
        if a == b or a in out or b in out:
            raise ValueError(f"flip_pairs: expected disjoint pairs of two different classes, "
                             f"got {list(pairs)}")
        out[a], out[b] = b, a
    return out


def resize_shorter(images: Sequence[Image.Image], size: int) -> list[Image.Image]:
    """Resize (bilinear) so the shorter side is ``size``; the longer side is
    ``int(size · long / short)`` (torchvision's ``Resize(int)``)."""
    w, h = images[0].size
    if min(w, h) == size:
        return list(images)
    out = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
    return [im.resize(out, Image.BILINEAR) for im in images]


def eval_crop_offsets(image_w: int, image_h: int, crop: int, crops: int = 1
                      ) -> list[tuple[int, int]]:
    """(left, top) of the evaluation crops of side ``crop``.

    1: the centre (torchvision's ``CenterCrop``: ``round((W − crop) / 2)``); 3: left, centre,
    right along the longer side (centred across it; TSM's full-resolution 3 crops);
    5: four corners and centre (TSN's ``GroupOverSample`` without its flips).
    """
    if crops not in EVAL_CROPS:
        raise ValueError(f"crops: expected one of {EVAL_CROPS}, got {crops!r}")
    if crop > min(image_w, image_h):
        raise ValueError(f"crop: expected at most the frame's shorter side "
                         f"{min(image_w, image_h)}, got {crop}")
    if crops == 1:
        return [(int(round((image_w - crop) / 2.0)), int(round((image_h - crop) / 2.0)))]
    ws, hs = (image_w - crop) // 4, (image_h - crop) // 4
    if crops == 5:
        return fixed_crop_offsets(image_w, image_h, crop, crop, more=False)
    if image_w >= image_h:
        return [(0, 2 * hs), (2 * ws, 2 * hs), (4 * ws, 2 * hs)]
    return [(2 * ws, 0), (2 * ws, 2 * hs), (2 * ws, 4 * hs)]


def to_tensor(images: Sequence[Image.Image], mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> Tensor:
    """Stack RGB frames into a normalised clip.

    Returns:
        (3, T, H, W) float32: ``(x / 255 − mean) / std`` per channel.
    """
    arr = np.stack([np.asarray(im, dtype=np.uint8) for im in images])  # (T, H, W, 3) uint8
    clip = torch.from_numpy(arr).permute(3, 0, 1, 2).to(  # (3, T, H, W), one copy
        torch.float32, memory_format=torch.contiguous_format)
    # (x / 255 − mean) / std = x · 1 / (255 std) − mean / std, in place
    scale = 1.0 / (255.0 * torch.tensor(std, dtype=torch.float32).view(3, 1, 1, 1))
    shift = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1, 1) / torch.tensor(
        std, dtype=torch.float32).view(3, 1, 1, 1)
    return clip.mul_(scale).sub_(shift)
