"""A Medical Segmentation Decathlon task folder, as the Decathlon ships it.

``root`` (e.g. ``Task01_BrainTumour``) holds ``dataset.json`` — ``training`` =
[{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}, …], ``labels`` =
{"0": "background", …}, ``modality`` = {"0": "CT"} or {"0": "FLAIR", "1": "T1w", …} — and the
NIfTI files. A case is read with nibabel, reoriented to RAS, resampled to ``spacing`` mm (from
the header's voxel sizes; trilinear for images, nearest for labels) and normalised per channel
by modality (:mod:`.intensity`: CT windowed then z-scored, MRI z-scored over its non-zero
voxels). Multi-channel images ((X, Y, Z, C), e.g. BraTS' 4 MRI sequences) become (C, D, H, W).

Training items are random patches; a fixed fraction of them (``foreground``) is centred on a
voxel of a foreground class chosen uniformly among those present (so small classes are seen),
the rest anywhere; then random flips. Whole cases (``patch_size=None``) are for evaluation
with sliding windows (:func:`cakes_lite.train.sliding_window_evaluate`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from .intensity import channel_modalities, normalize_channels
from .subset import choose_cases
from .transforms import augment_pair

_FG_SAMPLES = 10_000  # foreground voxels kept per class and case for centring patches


def _triple(value, name: str) -> tuple | None:
    if value is None:
        return None
    t = (value,) * 3 if isinstance(value, (int, float)) else tuple(value)
    if len(t) != 3 or min(t) <= 0:
        raise ValueError(f"{name}: expected a positive number or 3 of them, got {value!r}")
    return t


def _read_meta(root: str) -> tuple[str, dict, list[tuple[str, str]], dict[int, str]]:
    meta_path = os.path.join(root, "dataset.json")
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"DecathlonTask: cannot read {meta_path!r} ({e})") from None
    missing = [k for k in ("training", "labels") if k not in meta]
    if missing:
        raise ValueError(f"DecathlonTask: {meta_path!r} lacks keys {missing}; expected "
                         "'training' (list of image/label paths) and 'labels' (index: name)")
    try:
        labels = {int(k): str(v) for k, v in meta["labels"].items()}
        pairs = [(os.path.normpath(os.path.join(root, c["image"])),
                  os.path.normpath(os.path.join(root, c["label"]))) for c in meta["training"]]
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"DecathlonTask: {meta_path!r}: 'labels' must map integers to names "
                         "and each 'training' entry needs 'image' and 'label' "
                         f"({type(e).__name__}: {e})") from None
    for image_path, label_path in pairs:
        for p in (image_path, label_path):
            if not os.path.isfile(p):
                raise ValueError(f"DecathlonTask: {meta_path!r} lists {p!r}, which is missing")
    return meta_path, meta, pairs, labels


def read_case(image_path: str, label_path: str, labels: dict[int, str]
              ) -> tuple[Tensor, Tensor, tuple[float, float, float]]:
    """One case in RAS orientation, as stored: image (C, X, Y, Z) float32, label (X, Y, Z)
    int64 and the voxel size (mm). ValueError naming the files when they cannot be read, when
    the label map's shape differs from the image's, or when it holds values not in ``labels``."""
    import nibabel as nib  # optional dependency (the 'data' extra)

    try:
        img = nib.as_closest_canonical(nib.load(image_path))
        lab = nib.as_closest_canonical(nib.load(label_path))
        x = np.asarray(img.dataobj, dtype=np.float32)
        y = np.asarray(lab.dataobj)
    except Exception as e:  # noqa: BLE001 - nibabel raises many types for bad files
        raise ValueError(f"DecathlonTask: could not read {image_path!r} / {label_path!r} "
                         f"({type(e).__name__}: {e})") from None
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or y.ndim != 3 or x.shape[:3] != y.shape:
        raise ValueError(f"DecathlonTask: image {image_path!r} has shape {x.shape} but label "
                         f"{label_path!r} has shape {y.shape}; expected (X, Y, Z[, C]) and "
                         "(X, Y, Z) with the same X, Y, Z")
    values = set(np.unique(y).astype(int).tolist())
    if not values <= set(labels):
        raise ValueError(f"DecathlonTask: label {label_path!r} holds values {sorted(values)}, "
                         f"dataset.json labels are {sorted(labels)}")
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    image = torch.from_numpy(np.ascontiguousarray(x.transpose(3, 0, 1, 2)))  # (C, X, Y, Z)
    return image, torch.from_numpy(y.astype(np.int64)), zooms


def resample(image: Tensor, label: Tensor, zooms: Sequence[float],
             spacing: Sequence[float]) -> tuple[Tensor, Tensor]:
    """Resample (C, D, H, W) ``image`` (trilinear) and (D, H, W) ``label`` (nearest) from voxel
    size ``zooms`` to ``spacing`` (mm): each axis gets ``max(1, round(n · zoom / spacing))``
    voxels."""
    size = [max(1, round(n * z / s)) for n, z, s in zip(label.shape, zooms, spacing)]
    if size == list(label.shape):
        return image, label
    image = F.interpolate(image[None], size=size, mode="trilinear", align_corners=False)[0]
    label = F.interpolate(label[None, None].float(), size=size, mode="nearest-exact")[0, 0]
    return image, label.long()


class DecathlonTask(Dataset):
    """A Medical Segmentation Decathlon task folder (see the module docstring).

    Args:
        root: the task folder holding ``dataset.json``.
        split: "train", "val" (a seeded ``val_fraction`` of the cases) or "all".
        patch_size: int or (D, H, W): random patches; None returns whole (resampled) cases.
        num_patches: dataset length when patching (default 4 per case).
        spacing: target voxel size in mm (number or 3 numbers); None keeps the native grid.
        val_fraction, seed: case-level split (and patch sampling) seeds.
        augment: random flips along ``flip_axes``; None = only for split "train".
        flip_axes: axes of the RAS volume to flip (default left-right only: flipping the
            anterior-posterior axis would swap labels such as Hippocampus anterior/posterior).
        foreground: the fraction of patches centred on a foreground voxel (patch i is one
            when ``floor((i + 1) · f) > floor(i · f)``, so exactly this share of every run
            of indices).
        cache: keep loaded cases in memory.
        ct_window: (low, high) HU window for CT channels; None clips each CT case to its
            ``ct_percentiles``.
        subset: keep a seeded choice of this many cases of the split.

    Items are ``(image (C, D, H, W) float32, label (D, H, W) int64)``; ``.classes`` lists the
    label names in index order, ``.cases`` the (image, label) paths of this split,
    ``.modalities`` the modality of each channel.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", patch_size=None,
                 num_patches: int | None = None, spacing=None, val_fraction: float = 0.2,
                 seed: int = 0, *, augment: bool | None = None, flip_axes: Sequence[int] = (0,),
                 foreground: float = 0.67, cache: bool = True,
                 ct_window: Sequence[float] | None = None,
                 ct_percentiles: Sequence[float] = (0.5, 99.5), subset: int | None = None):
        self.root = os.fspath(root)
        if split not in ("train", "val", "all"):
            raise ValueError(f"split: expected 'train', 'val' or 'all', got {split!r}")
        if not 0.0 <= foreground <= 1.0:
            raise ValueError(f"foreground: expected a fraction in [0, 1], got {foreground!r}")
        self.meta_path, meta, pairs, labels = _read_meta(self.root)
        order = np.random.default_rng(seed).permutation(len(pairs))
        n_val = int(np.ceil(val_fraction * len(pairs))) if len(pairs) > 1 else 0
        chosen = sorted({"val": order[:n_val], "train": order[n_val:], "all": order}[split])
        if subset is not None:
            chosen = [chosen[j] for j in choose_cases(len(chosen), subset, seed)]
        self.cases = [pairs[i] for i in chosen]
        self.classes = [labels[k] for k in sorted(labels)]
        self._labels, self._modality = labels, meta.get("modality")
        self.split, self.seed = split, int(seed)
        self.spacing = _triple(spacing, "spacing")
        self.patch_size = _triple(patch_size, "patch_size")
        self.num_patches = (4 * len(self.cases) if num_patches is None else int(num_patches))
        self.augment = (split == "train") if augment is None else bool(augment)
        self.foreground, self.epoch, self.flip_axes = foreground, 0, tuple(flip_axes)
        self.ct_window = None if ct_window is None else tuple(ct_window)
        self.ct_percentiles = tuple(ct_percentiles)
        self.modalities: list[str] | None = None  # known after the first case is read
        self._cache: dict[int, tuple[Tensor, Tensor]] | None = {} if cache else None
        self._fg: dict[int, dict[int, Tensor]] = {}

    def set_epoch(self, epoch: int) -> None:
        """Change the random patches (and augmentation) for a new epoch."""
        self.epoch = int(epoch)

    def load_case(self, k: int) -> tuple[Tensor, Tensor]:
        """Whole case k of this split: (C, D, H, W) float32 (resampled, normalised) and
        (D, H, W) int64."""
        if self._cache is not None and k in self._cache:
            return self._cache[k]
        image_path, label_path = self.cases[k]
        image, label, zooms = read_case(image_path, label_path, self._labels)
        if self.spacing is not None:
            image, label = resample(image, label, zooms, self.spacing)
        self.modalities = channel_modalities(self._modality, image.shape[0], repr(image_path))
        image = normalize_channels(image, self.modalities, self.ct_window, self.ct_percentiles)
        if self._cache is not None:
            self._cache[k] = (image, label)
        return image, label

    def __len__(self) -> int:
        return len(self.cases) if self.patch_size is None else self.num_patches

    def _rng(self, i: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence((self.seed, self.epoch, i)))

    def is_foreground_patch(self, i: int) -> bool:
        """Whether patch i is centred on a foreground voxel (when its case has one)."""
        f = self.foreground
        return math.floor((i + 1) * f + 1e-9) > math.floor(i * f + 1e-9)

    def patch_centre(self, i: int, rng: np.random.Generator | None = None) -> list[int]:
        """The (D, H, W) voxel patch ``i`` is centred on this epoch."""
        rng = self._rng(i) if rng is None else rng
        k = i % len(self.cases)
        shape = self.load_case(k)[1].shape
        fg = self._foreground_voxels(k)
        if fg and self.is_foreground_patch(i):
            classes = sorted(fg)
            coords = fg[classes[int(rng.integers(len(classes)))]]  # a class, then a voxel
            return coords[int(rng.integers(len(coords)))].tolist()
        return [int(rng.integers(n)) for n in shape]

    def _foreground_voxels(self, k: int) -> dict[int, Tensor]:
        if k not in self._fg:
            label = self.load_case(k)[1]
            rng = np.random.default_rng(np.random.SeedSequence((self.seed, k, 0xF6)))
            found = {}
            for c in torch.unique(label).tolist():
                if c > 0:
                    coords = torch.nonzero(label == c)  # (n, 3)
                    if len(coords) > _FG_SAMPLES:
                        coords = coords[torch.from_numpy(
                            np.sort(rng.choice(len(coords), _FG_SAMPLES, replace=False)))]
                    found[int(c)] = coords
            self._fg[k] = found
        return self._fg[k]

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        rng = self._rng(i)
        if self.patch_size is None:
            image, label = self.load_case(i)
        else:
            centre = self.patch_centre(i, rng)
            image, label = self._cut(*self.load_case(i % len(self.cases)), centre)
        if self.augment:
            image, label = augment_pair(image, label, rng, flip_axes=self.flip_axes)
        return image, label

    def _cut(self, image: Tensor, label: Tensor, centre: list[int]) -> tuple[Tensor, Tensor]:
        p = [int(s) for s in self.patch_size]
        # pad (image with its minimum, label with 0) where the patch sticks out of the volume
        start = [min(max(c - q // 2, 0), max(n - q, 0)) for c, q, n in zip(centre, p, label.shape)]
        sl = tuple(slice(s, s + q) for s, q in zip(start, p))
        img, lab = image[(slice(None), *sl)], label[sl]
        pad = [v for a in reversed(range(3)) for v in (0, p[a] - lab.shape[a])]
        if any(pad):
            img = F.pad(img, pad, value=float(image.min()))
            lab = F.pad(lab, pad, value=0)
        return img.contiguous(), lab.contiguous()
