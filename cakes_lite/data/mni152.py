"""MNI152 tissue segmentation: a real MRI volume that ships inside nilearn's wheel (offline).

nilearn/datasets/data holds the ICBM 2009a symmetric template at 1 mm (197×233×189, RAS): a
brain-extracted T1 (``mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz``) and grey- / white-matter
probability maps (``…_gm_…``, ``…_wm_…``), all uint8 0…255. There is **no mask file**; we derive
the brain mask as nilearn's ``load_mni152_brain_mask`` does (T1 scaled to 0…1 above 0.2) united
with ``gm + wm > 0.5``, then closed (dilate, erode: 3×3×3 max-pooling) to fill one-voxel gaps.

Labels (:data:`TISSUE_CLASSES`): 0 background (outside the mask), and inside the mask the
argmax of (csf_like = 1 − gm − wm, gm, wm) → 1 other brain (CSF, vessels …), 2 grey, 3 white.

Everything is resampled with ``torch.nn.functional.interpolate`` (trilinear, on the T1 and the
probability maps, *before* labelling) to ``spacing`` mm; the result is cached in memory.

Axes: arrays are (D, H, W) = nibabel voxel order (x: left→right, y: posterior→anterior,
z: inferior→superior). The template is left-right symmetric, so a left/right split would put
mirror copies of the same anatomy in train and val; we split along the anterior-posterior axis
(default, ``split_axis="ap"``) or superior-inferior (``"si"``): val is the most anterior
(superior) ``val_fraction`` of the slices, train the rest, and every patch lies entirely within
its own part (voxels of the other part are never seen). L-R flips are a safe augmentation.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from .transforms import augment_pair, check_corruptions

TISSUE_CLASSES = ("background", "other brain", "grey matter", "white matter")
_FILES = {k: f"mni_icbm152_{k}_tal_nlin_sym_09a_converted.nii.gz" for k in ("t1", "gm", "wm")}
SPLIT_AXES = {"ap": 1, "si": 2}


def nilearn_data_dir() -> str:
    """Folder of the MNI152 files inside the installed nilearn wheel."""
    try:
        import nilearn  # optional dependency (the [data] extra): ships the template
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("MNI152 data needs nilearn: pip install 'cakes_lite[data]'") from e
    return os.path.join(os.path.dirname(nilearn.__file__), "datasets", "data")


def _check_spacing(spacing) -> float:
    if not isinstance(spacing, (int, float)) or not 0.5 <= float(spacing) <= 8.0:
        raise ValueError(f"spacing: expected a number of mm in [0.5, 8], got {spacing!r}")
    return float(spacing)


@lru_cache(maxsize=1)
def _read_native() -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The three 1 mm uint8 volumes (about 26 MB) and their affine, read once."""
    import nibabel as nib  # optional dependency (the [data] extra)

    vols, affine = {}, None
    for key, name in _FILES.items():
        path = os.path.join(nilearn_data_dir(), name)
        if not os.path.exists(path):
            raise FileNotFoundError(f"MNI152 file {path} not found (nilearn {key} template)")
        img = nib.load(path)
        vols[key] = np.asarray(img.dataobj, dtype=np.uint8)
        affine = img.affine
    return vols, affine


@lru_cache(maxsize=4)
def _load(spacing: float) -> tuple[Tensor, Tensor, np.ndarray]:
    raw, affine = _read_native()
    vols = {k: torch.from_numpy(v.astype(np.float32) / 255.0) for k, v in raw.items()}
    vol = torch.stack([vols["t1"], vols["gm"], vols["wm"]])[None]  # (1, 3, X, Y, Z) at 1 mm
    zooms = np.abs(np.diag(affine)[:3])
    shape = [max(1, round(n * z / spacing)) for n, z in zip(vol.shape[2:], zooms)]
    if shape != list(vol.shape[2:]):
        vol = F.interpolate(vol, size=shape, mode="trilinear", align_corners=False)
    t1, gm, wm = vol[0]  # each (D, H, W)
    mask = ((t1 > 0.2) | (gm + wm > 0.5)).float()[None, None]
    # closing = erosion(dilation(mask)); erosion = 1 - dilation(1 - mask)
    mask = 1 - F.max_pool3d(1 - F.max_pool3d(mask, 3, 1, 1), 3, 1, 1)
    mask = mask[0, 0] > 0.5
    probs = torch.stack([(1 - gm - wm).clamp(min=0), gm, wm])  # (3, D, H, W)
    labels = torch.where(mask, probs.argmax(0) + 1, 0).to(torch.int64)
    image = (t1 * mask)[None].contiguous()  # (1, D, H, W), background exactly 0
    # voxel j of the new grid sits at old voxel (j + 0.5) * scale - 0.5 (align_corners=False)
    new_affine = affine.copy()
    scale = np.array(vols["t1"].shape) / np.array(shape)
    new_affine[:3, :3] = affine[:3, :3] * scale[None, :]
    new_affine[:3, 3] = affine[:3, :3] @ (0.5 * scale - 0.5) + affine[:3, 3]
    return image, labels, new_affine


def load_mni152(spacing: float = 2.0, *, return_affine: bool = False):
    """The whole MNI152 volume with tissue labels (cached; returns shared tensors, do not modify).

    Args:
        spacing: voxel size in mm (1.0 = native 197×233×189; 2.0 → 98×116×94).
        return_affine: also return the (4, 4) voxel-to-MNI-mm affine of the resampled grid.

    Returns:
        image (1, D, H, W) float32 T1 in [0, 1] (0 outside the brain mask), labels (D, H, W)
        int64 in {0, 1, 2, 3} (see :data:`TISSUE_CLASSES`)[, affine].
    """
    image, labels, affine = _load(_check_spacing(spacing))
    return (image, labels, affine.copy()) if return_affine else (image, labels)


def mni152_split_bounds(shape: tuple[int, ...], split: str, split_axis: str = "ap",
                        val_fraction: float = 0.3) -> tuple[int, int, int]:
    """(axis, start, stop): the slab of the volume that belongs to ``split``.

    Val is the last (most anterior / superior) ``val_fraction`` of the axis, train the rest;
    "all" is the whole volume.
    """
    if split_axis not in SPLIT_AXES:
        raise ValueError(f"split_axis: expected one of {tuple(SPLIT_AXES)} (never left-right, the "
                         f"template is symmetric), got {split_axis!r}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction: expected in (0, 1), got {val_fraction}")
    axis = SPLIT_AXES[split_axis]
    n = shape[axis]
    cut = int(round(n * (1 - val_fraction)))
    bounds = {"train": (0, cut), "val": (cut, n), "all": (0, n)}
    if split not in bounds:
        raise ValueError(f"split: expected 'train', 'val' or 'all', got {split!r}")
    return (axis, *bounds[split])


class MNI152Tissue(Dataset):
    """Random patches of the MNI152 tissue segmentation (see the module docstring).

    Args:
        split: "train" or "val" (disjoint slabs along ``split_axis``), or "all".
        patch_size: int or (D, H, W) patch size in voxels.
        num_patches: dataset length; patch i is a pure function of (seed, split, epoch, i).
        spacing: voxel size in mm (2.0 default: 98×116×94 volume, fast on CPU).
        augment: random L-R flips (+ ``corruptions``); None = only for split "train".
        seed: base seed. Call :meth:`set_epoch` to draw fresh patches each epoch.
        corruptions: names from :data:`~cakes_lite.data.transforms.CORRUPTIONS` applied (each
            with probability ``p_corrupt``) when augmenting; set ``augment=True`` on "val" to
            measure robustness to them.
        severity, p_corrupt: corruption strength and probability.
        split_axis: "ap" (anterior-posterior, default) or "si" (superior-inferior).
        val_fraction: fraction of the axis (anterior / superior end) used for "val".
        foreground: probability that a patch is centred on a brain voxel (else anywhere).

    Items are ``(image, label)``: image (1, D, H, W) float32, label (D, H, W) int64 in 0…3.
    """

    def __init__(self, split: str = "train", patch_size=32, num_patches: int = 64,
                 spacing: float = 2.0, augment: bool | None = None, seed: int = 0, *,
                 corruptions: Sequence[str] = (), severity: float = 1.0, p_corrupt: float = 0.5,
                 split_axis: str = "ap", val_fraction: float = 0.3, foreground: float = 0.9):
        ps = (patch_size,) * 3 if isinstance(patch_size, int) else tuple(patch_size)
        if len(ps) != 3 or min(ps) < 1:
            raise ValueError(f"patch_size: expected an int or 3 positive ints, got {patch_size!r}")
        if num_patches < 0:
            raise ValueError(f"num_patches: expected >= 0, got {num_patches}")
        self.corruptions = check_corruptions(corruptions)
        image, labels = load_mni152(spacing)
        self.axis, lo, hi = mni152_split_bounds(tuple(labels.shape), split, split_axis,
                                                val_fraction)
        self.split, self.patch_size, self.num_patches = split, ps, int(num_patches)
        self.spacing, self.seed, self.epoch = float(spacing), int(seed), 0
        self.augment = (split == "train") if augment is None else bool(augment)
        self.severity, self.p_corrupt, self.foreground = severity, p_corrupt, foreground
        keep = torch.zeros(labels.shape[self.axis], dtype=torch.bool)
        keep[lo:hi] = True
        shape = [1, 1, 1]
        shape[self.axis] = -1
        keep = keep.view(shape)  # broadcast over the two other axes
        # pad by the patch size so that any start in [0, n + p] is valid; the other split's slab
        # is zeroed (never seen), and starts are clamped into this split's slab when it fits
        pad = [q for p in reversed(ps) for q in (p, p)]
        self._image = F.pad(image * keep, pad)  # (1, D + 2p, H + 2p, W + 2p)
        self._labels = F.pad((labels * keep).to(torch.uint8), pad)  # uint8: 8× less memory
        self._bounds = (lo, hi)
        fg = torch.nonzero(labels * keep > 0)  # (M, 3) brain voxels of this split
        self._fg = fg.numpy()
        self._shape = tuple(labels.shape)

    def set_epoch(self, epoch: int) -> None:
        """Change the random patches (and augmentation) for a new epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_patches

    def _start(self, rng: np.random.Generator) -> list[int]:
        if len(self._fg) and rng.uniform() < self.foreground:
            centre = self._fg[rng.integers(len(self._fg))]
        else:
            centre = [rng.integers(n) for n in self._shape]
        start = []
        for ax, (c, p, n) in enumerate(zip(centre, self.patch_size, self._shape)):
            lo, hi = self._bounds if ax == self.axis else (0, n)
            s = int(c) - p // 2
            s = min(max(s, lo), hi - p) if hi - lo >= p else lo - (p - (hi - lo)) // 2
            start.append(s + p)  # + p: offset of the padding
        return start

    def _rng(self, i: int) -> np.random.Generator:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} patches")
        split_id = {"train": 0, "val": 1, "all": 2}[self.split]
        key = (self.seed, split_id, self.epoch, i % len(self))
        return np.random.default_rng(np.random.SeedSequence(key))

    def patch_origin(self, i: int) -> tuple[int, int, int]:
        """Start voxel (d, h, w) of patch i in the volume of :func:`load_mni152` (may be < 0
        or run past the end where the patch is padded)."""
        return tuple(s - p for s, p in zip(self._start(self._rng(i)), self.patch_size))

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        rng = self._rng(i)
        (a, b, c), (p, q, r) = self._start(rng), self.patch_size
        image = self._image[:, a:a + p, b:b + q, c:c + r]
        label = self._labels[a:a + p, b:b + q, c:c + r]
        if self.augment:  # L-R flips only (axis 0); the split is along another axis
            image, label = augment_pair(image, label, rng, flip_axes=(0,),
                                        corruptions=self.corruptions, severity=self.severity,
                                        p_corrupt=self.p_corrupt)
        return image.contiguous(), label.to(torch.int64)
