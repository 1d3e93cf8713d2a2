"""Tiny stand-ins of real datasets in their official layouts, for tests, benchmarks and smoke
runs: a Something-Something V1 folder of JPEG frames and a Medical Segmentation Decathlon task
of NIfTI volumes. Seeded; nothing is downloaded.

The frames are built so a test can read back what was sampled: in frame k (1-based) the red
channel is ``8 · k`` everywhere, green rises from left to right (a mirrored frame has it
falling) and blue holds the class id.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image

from .something import SSV1_FRAMES_DIR

_PAIR_NAMES = {
    86: "Pulling something from left to right", 87: "Pulling something from right to left",
    93: "Pushing something from left to right", 94: "Pushing something from right to left",
    166: "Turning the camera left while filming something",
    167: "Turning the camera right while filming something",
}


def ssv1_like_categories(num_classes: int = 174) -> list[str]:
    """Class names: SSv1's real names at its left/right pairs, placeholders elsewhere."""
    return [_PAIR_NAMES.get(c, f"Doing thing number {c} to something")
            for c in range(num_classes)]


def make_something_fixture(root: str | os.PathLike, *, class_ids: Sequence[int] = (0, 1, 86, 87),
                           videos_per_class: int = 2, frames: tuple[int, int] = (9, 14),
                           width: int = 176, height: int = 100, val_per_class: int = 1,
                           noise: float = 4.0, quality: int = 90, seed: int = 0) -> str:
    """Write an SSv1-layout folder (``category.txt``, ``train_videofolder.txt``,
    ``val_videofolder.txt``, ``20bn-something-something-v1/<id>/00001.jpg …``).

    Args:
        root: the folder to fill (created).
        class_ids: classes that get videos (of the 174 of :func:`ssv1_like_categories`).
        videos_per_class, val_per_class: training / validation videos per class.
        frames: (min, max) frames per video, drawn per video.
        width, height: frame size (SSv1's JPEGs are about 176 × 100).
        noise: std of the Gaussian noise added to each frame (makes JPEGs realistic in size).
        quality: JPEG quality. seed: seeds everything.

    Returns:
        ``root`` as a string.
    """
    root = os.fspath(root)
    rng = np.random.default_rng(seed)
    frames_root = os.path.join(root, SSV1_FRAMES_DIR)
    os.makedirs(frames_root, exist_ok=True)
    with open(os.path.join(root, "category.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(ssv1_like_categories()) + "\n")
    ramp = np.broadcast_to(np.linspace(0, 255, width, dtype=np.float32), (height, width))
    lists: dict[str, list[str]] = {"train": [], "val": []}
    vid = 100
    for c in class_ids:
        for split, count in (("train", videos_per_class), ("val", val_per_class)):
            for _ in range(count):
                vid += 1
                n = int(rng.integers(frames[0], frames[1] + 1))
                folder = os.path.join(frames_root, str(vid))
                os.makedirs(folder, exist_ok=True)
                for k in range(1, n + 1):
                    img = np.stack([np.full((height, width), 8.0 * k, np.float32), ramp,
                                    np.full((height, width), float(c), np.float32)], axis=-1)
                    img += rng.normal(0.0, noise, img.shape).astype(np.float32)
                    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
                        os.path.join(folder, f"{k:05d}.jpg"), quality=quality)
                lists[split].append(f"{vid} {n} {c}")
    for split, lines in lists.items():
        with open(os.path.join(root, f"{split}_videofolder.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    return root


def make_something_lite_fixture(root: str | os.PathLike, *,
                                classes: Sequence[str] | None = None, train_per_class: int = 8,
                                val_per_class: int = 4, frames: int = 12,
                                size: tuple[int, int] = (64, 88), quality: int = 90,
                                seed: int = 0) -> str:
    """Write something-something-lite clips (:class:`~cakes_lite.data.SomethingLite`) as an
    SSv1-layout folder of JPEG frames: ``category.txt`` holds the lite class names (so the SSv1
    left/right flip pairs do not apply: train with ``data.flip`` off), ``*_videofolder.txt``
    list ``<id> <frames> <label>``; videos are numbered from 1 (training) and 100001 (validation).

    Args:
        root: the folder to fill (created).
        classes: lite class names; None: all 13.
        train_per_class, val_per_class: clips per class in each split (lite's train / val
            streams: the splits share no clip).
        frames: frames per video. size: (height, width) of a frame.
        quality: JPEG quality. seed: the lite data's seed.

    Returns:
        ``root`` as a string.
    """
    from .synthetic_video import SomethingLite  # here: the lite renderer is only needed now

    root = os.fspath(root)
    frames_root = os.path.join(root, SSV1_FRAMES_DIR)
    os.makedirs(frames_root, exist_ok=True)
    names = list(classes) if classes is not None else None
    for split, per_class, first in (("train", train_per_class, 1), ("val", val_per_class, 100001)):
        lite = SomethingLite(per_class * len(names or range(13)), split, frames=frames,
                             size=size, classes=names, seed=seed)
        lines = []
        for i in range(len(lite)):
            clip, label = lite.clips([i])  # (1, 3, T, H, W) in [0, 1]
            folder = os.path.join(frames_root, str(first + i))
            os.makedirs(folder, exist_ok=True)
            # (3, T, H, W) -> T frames of (H, W, 3) bytes
            pixels = (clip[0].permute(1, 2, 3, 0).numpy() * 255).round().astype(np.uint8)
            for k, frame in enumerate(pixels, 1):
                Image.fromarray(frame).save(os.path.join(folder, f"{k:05d}.jpg"), quality=quality)
            lines.append(f"{first + i} {frames} {int(label[0])}")
        with open(os.path.join(root, f"{split}_videofolder.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    with open(os.path.join(root, "category.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(lite.classes) + "\n")
    return root


def write_nifti(path: str | os.PathLike, array: np.ndarray,
                zooms: Sequence[float] = (1.0, 1.0, 1.0)) -> None:
    """Save ``array`` as NIfTI with a diagonal affine of voxel size ``zooms`` (mm)."""
    import nibabel as nib  # optional dependency (the 'data' extra)

    nib.save(nib.Nifti1Image(array, np.diag([*map(float, zooms), 1.0])), os.fspath(path))


def make_decathlon_fixture(root: str | os.PathLike, *, cases: int = 4,
                           shape: tuple[int, int, int] = (20, 16, 12),
                           zooms: tuple[float, float, float] = (1.0, 1.0, 2.0),
                           modality: Sequence[str] = ("MRI",), seed: int = 0) -> str:
    """Write a Decathlon task folder: ``dataset.json``, ``imagesTr/``, ``labelsTr/``.

    Each case: a box of class 1 with a smaller box of class 2 inside, at a case-dependent
    place; image channel m is noise + (40 + 10 m) × label (CT channels are shifted into
    Hounsfield-like values around -100 … 1000). One channel per ``modality`` entry, stored
    as (X, Y, Z) or (X, Y, Z, C) like the Decathlon's BraTS.

    Returns:
        ``root`` as a string.
    """
    root = os.fspath(root)
    for sub in ("imagesTr", "labelsTr"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    rng = np.random.default_rng(seed)
    training = []
    for k in range(cases):
        label = np.zeros(shape, np.uint8)
        lo = [int(rng.integers(1, max(2, s // 3))) for s in shape]
        hi = [min(s - 1, a + max(3, s // 2)) for a, s in zip(lo, shape)]
        label[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = 1
        mid = [(a + b) // 2 for a, b in zip(lo, hi)]
        label[mid[0] - 1:mid[0] + 1, mid[1] - 1:mid[1] + 1, mid[2] - 1:mid[2] + 1] = 2
        chans = []
        for m, name in enumerate(modality):
            x = rng.normal(0, 1, shape).astype(np.float32) + (40 + 10 * m) * label
            chans.append(x * 10 - 100 if name.upper() == "CT" else x + 5)
        image = chans[0] if len(chans) == 1 else np.stack(chans, axis=-1)
        name = f"case_{k:03d}.nii.gz"
        write_nifti(os.path.join(root, "imagesTr", name), image, zooms)
        write_nifti(os.path.join(root, "labelsTr", name), label, zooms)
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    meta = {"name": "Fixture", "tensorImageSize": "4D" if len(modality) > 1 else "3D",
            "modality": {str(m): name for m, name in enumerate(modality)},
            "labels": {"0": "background", "1": "organ", "2": "lesion"},
            "numTraining": cases, "numTest": 0, "training": training, "test": []}
    with open(os.path.join(root, "dataset.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
    return root


__all__ = ["make_decathlon_fixture", "make_something_fixture", "make_something_lite_fixture",
           "ssv1_like_categories", "write_nifti"]
