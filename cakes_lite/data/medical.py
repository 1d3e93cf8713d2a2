"""Users' 3D medical data: Medical Segmentation Decathlon task folders and MedMNIST-3D files.

``DecathlonTask``: a task folder (e.g. ``Task02_Heart``) with ``dataset.json`` (keys
``training`` = [{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}, …] and
``labels`` = {"0": "background", …}) and NIfTI files read with nibabel, reoriented to RAS,
resampled to ``spacing`` mm (trilinear for images, nearest for labels), intensity-normalised
(clip to the 0.5–99.5 percentiles, then z-score per channel) and cut into random patches (or
returned whole). Cases are split into train / val by a seeded shuffle.

``MedMNIST3D``: a MedMNIST ``.npz`` (``{split}_images`` (N, D, H, W) uint8 and ``{split}_labels``
(N, 1) or (N, K)), read with ``allow_pickle=False``.

Malformed inputs raise ``ValueError`` naming the file and what was expected.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from .transforms import augment_pair


def _triple(value, name: str) -> tuple | None:
    if value is None:
        return None
    t = (value,) * 3 if isinstance(value, (int, float)) else tuple(value)
    if len(t) != 3 or min(t) <= 0:
        raise ValueError(f"{name}: expected a positive number or 3 of them, got {value!r}")
    return t


def _load_case(image_path: str, label_path: str, spacing, labels: dict) -> tuple[Tensor, Tensor]:
    import nibabel as nib  # optional dependency (the [data] extra): NIfTI cases only

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
    image = torch.from_numpy(np.ascontiguousarray(x.transpose(3, 0, 1, 2)))  # (C, X, Y, Z)
    label = torch.from_numpy(y.astype(np.int64))
    if spacing is not None:
        zooms = np.array(img.header.get_zooms()[:3], dtype=np.float64)
        size = [max(1, round(n * z / s)) for n, z, s in zip(label.shape, zooms, spacing)]
        if size != list(label.shape):
            image = F.interpolate(image[None], size=size, mode="trilinear", align_corners=False)[0]
            label = F.interpolate(label[None, None].float(), size=size,
                                  mode="nearest-exact")[0, 0].long()
    sample = image.flatten(1)[:, :: max(1, image[0].numel() // 100_000)]  # quantile size limit
    lo, hi = torch.quantile(sample, 0.005, dim=1), torch.quantile(sample, 0.995, dim=1)
    image = torch.maximum(torch.minimum(image, hi.view(-1, 1, 1, 1)), lo.view(-1, 1, 1, 1))
    mean, std = image.mean(dim=(1, 2, 3), keepdim=True), image.std(dim=(1, 2, 3), keepdim=True)
    return ((image - mean) / std.clamp(min=1e-6)).contiguous(), label


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
        foreground: probability that a patch is centred on a labelled (> 0) voxel.
        cache: keep loaded cases in memory.

    Items are ``(image (C, D, H, W) float32, label (D, H, W) int64)``; ``.classes`` lists the
    label names in index order, ``.cases`` the (image, label) paths of this split.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", patch_size=None,
                 num_patches: int | None = None, spacing=None, val_fraction: float = 0.2,
                 seed: int = 0, *, augment: bool | None = None, flip_axes: Sequence[int] = (0,),
                 foreground: float = 0.67, cache: bool = True):
        self.root = os.fspath(root)
        meta_path = os.path.join(self.root, "dataset.json")
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
            pairs = [(os.path.normpath(os.path.join(self.root, c["image"])),
                      os.path.normpath(os.path.join(self.root, c["label"])))
                     for c in meta["training"]]
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise ValueError(f"DecathlonTask: {meta_path!r}: 'labels' must map integers to names "
                             "and each 'training' entry needs 'image' and 'label' "
                             f"({type(e).__name__}: {e})") from None
        if split not in ("train", "val", "all"):
            raise ValueError(f"split: expected 'train', 'val' or 'all', got {split!r}")
        for image_path, label_path in pairs:
            for p in (image_path, label_path):
                if not os.path.isfile(p):
                    raise ValueError(f"DecathlonTask: {meta_path!r} lists {p!r}, which is missing")
        order = np.random.default_rng(seed).permutation(len(pairs))
        n_val = int(np.ceil(val_fraction * len(pairs))) if len(pairs) > 1 else 0
        chosen = {"val": order[:n_val], "train": order[n_val:], "all": order}[split]
        self.cases = [pairs[i] for i in sorted(chosen)]
        self.classes = [labels[k] for k in sorted(labels)]
        self._labels = labels
        self.split, self.seed = split, int(seed)
        self.spacing = _triple(spacing, "spacing")
        self.patch_size = _triple(patch_size, "patch_size")
        self.num_patches = (4 * len(self.cases) if num_patches is None else int(num_patches))
        self.augment = (split == "train") if augment is None else bool(augment)
        self.foreground, self.epoch, self.flip_axes = foreground, 0, tuple(flip_axes)
        self._cache: dict[int, tuple[Tensor, Tensor]] | None = {} if cache else None

    def set_epoch(self, epoch: int) -> None:
        """Change the random patches (and augmentation) for a new epoch."""
        self.epoch = int(epoch)

    def load_case(self, k: int) -> tuple[Tensor, Tensor]:
        """Whole case k of this split: (C, D, H, W) float32 (normalised), (D, H, W) int64."""
        if self._cache is not None and k in self._cache:
            return self._cache[k]
        case = _load_case(*self.cases[k], self.spacing, self._labels)
        if self._cache is not None:
            self._cache[k] = case
        return case

    def __len__(self) -> int:
        return len(self.cases) if self.patch_size is None else self.num_patches

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        rng = np.random.default_rng(np.random.SeedSequence((self.seed, self.epoch, i)))
        if self.patch_size is None:
            image, label = self.load_case(i)
        else:
            image, label = self._patch(*self.load_case(i % len(self.cases)), rng)
        if self.augment:
            image, label = augment_pair(image, label, rng, flip_axes=self.flip_axes)
        return image, label

    def _patch(self, image: Tensor, label: Tensor, rng) -> tuple[Tensor, Tensor]:
        p = [int(s) for s in self.patch_size]
        fg = torch.nonzero(label > 0)
        if len(fg) and rng.uniform() < self.foreground:
            centre = fg[rng.integers(len(fg))].tolist()
        else:
            centre = [int(rng.integers(n)) for n in label.shape]
        # pad (image with its minimum, label with 0) where the patch sticks out of the volume
        start = [min(max(c - q // 2, 0), max(n - q, 0)) for c, q, n in zip(centre, p, label.shape)]
        sl = tuple(slice(s, s + q) for s, q in zip(start, p))
        img, lab = image[(slice(None), *sl)], label[sl]
        pad = [v for a in reversed(range(3)) for v in (0, p[a] - lab.shape[a])]
        if any(pad):
            img = F.pad(img, pad, value=float(image.min()))
            lab = F.pad(lab, pad, value=0)
        return img.contiguous(), lab.contiguous()


class MedMNIST3D(Dataset):
    """A MedMNIST-3D ``.npz`` file (OrganMNIST3D, NoduleMNIST3D, …; 28³ or 64³).

    Args:
        path: the .npz file. split: "train", "val" or "test".
        classes: optional class names (MedMNIST's INFO); default ``["0", …]``.

    Items are ``(image (1, D, H, W) float32 in [0, 1], label)``: an int for single-label files,
    a (K,) float32 vector for multi-label ones (labels of shape (N, K), K > 1).
    """

    def __init__(self, path: str | os.PathLike, split: str = "train", *,
                 classes: Sequence[str] | None = None):
        self.path = os.fspath(path)
        if split not in ("train", "val", "test"):
            raise ValueError(f"split: expected 'train', 'val' or 'test', got {split!r}")
        keys = (f"{split}_images", f"{split}_labels")
        try:
            data = np.load(self.path, allow_pickle=False)
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise ValueError("a single .npy array, not an .npz archive")
            with data:
                found = list(data.keys())
                arrays = [data[k] for k in keys if k in found]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise ValueError(f"MedMNIST3D: cannot read {self.path!r} as a MedMNIST .npz "
                             f"({type(e).__name__}: {e})") from None
        if len(arrays) != 2:
            raise ValueError(f"MedMNIST3D: {self.path!r} lacks {list(keys)}; found keys {found}")
        images, labels = arrays
        if images.ndim not in (4, 5) or len(images) != len(labels) or labels.ndim not in (1, 2):
            raise ValueError(f"MedMNIST3D: {self.path!r}: expected {keys[0]} (N, D, H, W[, C]) and "
                             f"{keys[1]} (N[, K]) with the same N, got {images.shape} and "
                             f"{labels.shape}")
        x = torch.from_numpy(np.ascontiguousarray(images))
        x = x[:, None] if x.ndim == 4 else x.permute(0, 4, 1, 2, 3)  # (N, C, D, H, W)
        self.images = x
        self.multilabel = labels.ndim == 2 and labels.shape[1] > 1
        self.labels = torch.from_numpy(labels.reshape(len(labels), -1).astype(np.int64))
        if not self.multilabel:
            self.labels = self.labels[:, 0]
        k = labels.shape[1] if self.multilabel else int(self.labels.max()) + 1 if len(labels) else 0
        self.classes = list(classes) if classes is not None else [str(i) for i in range(k)]
        self.split = split

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        x = self.images[i]
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        y = self.labels[i]
        return x, (y.float() if self.multilabel else int(y))
