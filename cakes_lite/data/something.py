"""Something-Something V1 as its authors' training code reads it (TSN-style frame folders).

The folder ``root`` holds::

    category.txt                       one class name per line (line n is label n - 1)
    train_videofolder.txt              "<video id> <num_frames> <label>" per line
    val_videofolder.txt
    20bn-something-something-v1/<video id>/00001.jpg, 00002.jpg, …

Training clips: TSN sampling (a random frame per segment, :mod:`.tsn`), TSN's multi-scale crop
to ``size`` and a horizontal flip that swaps the labels of left/right class pairs
(:mod:`.clip_transforms`). Evaluation clips: the centre frame of each segment, the shorter side
resized to ``scale_size`` and a ``size`` centre crop — or several clips × crops
(``(views, 3, T, size, size)``, for :class:`~cakes_lite.train.ViewAverage`). JPEGs are decoded
with Pillow, so decoding runs in the DataLoader's workers. Every clip is a pure function of
``(seed, epoch, index)``: the same with any number of workers.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from . import clip_transforms as ct
from .subset import balanced_indices, choose_classes
from .tsn import tsn_clip_indices, tsn_train_indices

# The official left/right pairs of Something-Something V1 (0-based category.txt lines):
# "Pulling / Pushing something from left to right ↔ right to left", "Turning the camera left
# ↔ right while filming something".
SSV1_FLIP_PAIRS = ((86, 87), (93, 94), (166, 167))
SSV1_FRAMES_DIR = "20bn-something-something-v1"


def _lines(path: str) -> list[tuple[int, str]]:
    try:
        with open(path, encoding="utf-8") as f:
            return [(n, ln.rstrip("\r\n")) for n, ln in enumerate(f, 1)]
    except OSError as e:
        raise ValueError(f"SomethingV1: cannot read {path!r} ({e.strerror or e})") from None


def read_categories(path: str) -> list[str]:
    """Class names of ``category.txt`` (trailing blank lines ignored; a blank name inside is
    a ValueError naming the line)."""
    lines = _lines(path)
    while lines and not lines[-1][1].strip():
        lines.pop()
    for n, name in lines:
        if not name.strip():
            raise ValueError(f"SomethingV1: {path}:{n}: empty class name")
    if not lines:
        raise ValueError(f"SomethingV1: {path!r} lists no classes")
    return [name.strip() for _, name in lines]


def _mirrored(a: str, b: str) -> bool:
    swap = {"left": "right", "right": "left"}
    return re.sub(r"(?i)left|right", lambda m: swap[m.group(0).lower()], a).lower() == b.lower()


class SomethingV1(Dataset):
    """Something-Something V1 frame folders with the official list files (module docstring).

    Args:
        root: the dataset folder (``category.txt``, list files, frame folders).
        split: ``"train"`` or ``"val"`` (``{split}_videofolder.txt``).
        frames: T, frames per clip (the TSN segments).
        size: output side (224 for the paper, 64 for smoke runs).
        scale_size: evaluation: shorter side before the centre crop (default
            ``round(size · 256 / 224)``).
        train: random sampling, multi-scale crop and flip (default: ``split == "train"``).
        scales, max_distort, more_fix_crop: TSN's multi-scale crop settings.
        flip_pairs: left/right class pairs whose labels swap when a clip is mirrored (the
            official SSv1 list by default, checked against the class names; ``()`` for a
            dataset without such pairs).
        flip: mirror half of the training clips (default True).
        clips, crops: evaluation views per video (crops 1, 3 or 5); more than one view gives
            items of shape (clips · crops, 3, T, size, size).
        subset: ``(classes, clips_per_class)``: a seeded, class-balanced subset; labels are
            renumbered 0 … classes − 1 (``.class_ids`` holds the original ids).
        seed: seeds the subset and every clip's randomness.
        mean, std: normalisation (ImageNet's by default).
        list_file, frames_dir, template: other layouts (defaults: the official ones).
        check_folders: check at construction that every listed frame folder holds its first
            frame (one ``stat`` per video).

    Items are ``(clip (3, T, size, size) float32, label int)``. ``.classes`` are the names,
    ``.samples`` the ``(folder, num_frames, label, list line)`` records, ``.flip_pairs`` the
    ``{label: label of the mirrored clip}`` map (in this dataset's numbering).

    Raises:
        ValueError: a malformed list line, a label outside ``category.txt``, a missing or empty
            frame folder (naming the list file and line); a missing or unreadable JPEG when an
            item is read (naming the image and the list line).
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", *, frames: int = 8,
                 size: int = 224, scale_size: int | None = None, train: bool | None = None,
                 scales: Sequence[float] = ct.MULTI_SCALES, max_distort: int = 1,
                 more_fix_crop: bool = True,
                 flip_pairs: Sequence[tuple[int, int]] = SSV1_FLIP_PAIRS, flip: bool = True,
                 clips: int = 1, crops: int = 1, subset: tuple[int, int] | None = None,
                 seed: int = 0, mean: Sequence[float] = ct.IMAGENET_MEAN,
                 std: Sequence[float] = ct.IMAGENET_STD, list_file: str | None = None,
                 frames_dir: str = SSV1_FRAMES_DIR, template: str = "{:05d}.jpg",
                 check_folders: bool = True):
        self.root = os.fspath(root)
        if not os.path.isdir(self.root):
            raise ValueError(f"SomethingV1: root {self.root!r} is not a folder")
        if split not in ("train", "val"):
            raise ValueError(f"split: expected 'train' or 'val', got {split!r}")
        for name, v, low in (("frames", frames, 1), ("size", size, 8), ("clips", clips, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{name}: expected an int >= {low}, got {v!r}")
        self.train = split == "train" if train is None else bool(train)
        if self.train and clips * crops > 1:
            raise ValueError(f"clips, crops: several views are for evaluation; got clips={clips}"
                             f", crops={crops} with train=True")
        ct.eval_crop_offsets(size, size, size, crops)  # validates crops
        self.split, self.frames, self.size, self.seed, self.epoch = split, frames, size, seed, 0
        self.scale_size = int(scale_size or round(size * 256 / 224))
        if self.scale_size < size:
            raise ValueError(f"scale_size: expected at least size={size}, got {scale_size}")
        self.scales, self.max_distort, self.more_fix_crop = tuple(scales), max_distort, more_fix_crop
        self.flip, self.clips, self.crops = bool(flip), clips, crops
        self.mean, self.std, self.template = tuple(mean), tuple(std), template
        self.categories = read_categories(os.path.join(self.root, "category.txt"))
        self.list_file = os.fspath(list_file or os.path.join(self.root,
                                                             f"{split}_videofolder.txt"))
        self.samples = self._parse_list(os.path.join(self.root, frames_dir), check_folders)
        pairs = ct.pair_map(flip_pairs)
        self._check_pairs(pairs)
        self.class_ids = list(range(len(self.categories)))
        if subset is not None:
            self._take_subset(subset, pairs)
            new = {c: i for i, c in enumerate(self.class_ids)}
            pairs = {new[a]: new[b] for a, b in pairs.items() if a in new}
        self.flip_pairs = pairs
        self.classes = [self.categories[c] for c in self.class_ids]

    def _parse_list(self, frames_root: str, check: bool) -> list[tuple[str, int, int, int]]:
        samples = []
        for n, line in _lines(self.list_file):
            if not line.strip():
                continue
            where = f"SomethingV1: {self.list_file}:{n}"
            parts = line.split()
            if len(parts) != 3 or not (parts[1].isdigit() and parts[2].lstrip("-").isdigit()):
                raise ValueError(f"{where}: expected '<video id> <num_frames> <label>', got "
                                 f"{line.strip()!r}")
            vid, count, label = parts[0], int(parts[1]), int(parts[2])
            if not 0 <= label < len(self.categories):
                raise ValueError(f"{where}: label {label} is outside the "
                                 f"{len(self.categories)} classes of category.txt")
            if count < 1:
                raise ValueError(f"{where}: video {vid!r} has {count} frames; expected >= 1")
            folder = os.path.join(frames_root, vid)
            if check and not os.path.isdir(folder):
                raise ValueError(f"{where}: frame folder {folder!r} is missing")
            if check and not os.path.isfile(os.path.join(folder, self.template.format(1))):
                raise ValueError(f"{where}: frame folder {folder!r} is empty (no "
                                 f"{self.template.format(1)})")
            samples.append((folder, count, label, n))
        if not samples:
            raise ValueError(f"SomethingV1: {self.list_file!r} lists no videos")
        return samples

    def _check_pairs(self, pairs: dict[int, int]) -> None:
        for a, b in pairs.items():
            if max(a, b) >= len(self.categories):
                raise ValueError(f"flip_pairs: class {max(a, b)} is outside the "
                                 f"{len(self.categories)} classes of category.txt; pass "
                                 "flip_pairs= for this dataset (() for none)")
            if a < b and not _mirrored(self.categories[a], self.categories[b]):
                raise ValueError(
                    f"flip_pairs: classes {a} {self.categories[a]!r} and {b} "
                    f"{self.categories[b]!r} of category.txt are not left/right mirror images;"
                    " pass flip_pairs= for this dataset (() for none)")

    def _take_subset(self, subset, pairs: dict[int, int]) -> None:
        if not (isinstance(subset, (tuple, list)) and len(subset) == 2):
            raise ValueError(f"subset: expected (classes, clips_per_class), got {subset!r}")
        # classes are drawn from those of the training list, so both splits get the same
        train_list = os.path.join(self.root, "train_videofolder.txt")
        present = ({s[2] for s in self.samples} if self.split == "train" else
                   {int(parts[2]) for parts in (ln.split() for _, ln in _lines(train_list))
                    if len(parts) == 3 and parts[2].isdigit()})
        self.class_ids = choose_classes(present, subset[0], self.seed, pairs)
        keep = balanced_indices([s[2] for s in self.samples], self.class_ids, subset[1],
                                self.seed)
        new = {c: i for i, c in enumerate(self.class_ids)}
        self.samples = [(f, c, new[y], n) for f, c, y, n in (self.samples[i] for i in keep)]
        if not self.samples:
            raise ValueError(f"subset: no clip of the chosen classes in {self.list_file!r}")

    @property
    def views(self) -> int:
        """Views per item: clips × crops at evaluation, 1 for training."""
        return 1 if self.train else self.clips * self.crops

    def set_epoch(self, epoch: int) -> None:
        """New random frames, crops and flips for a new epoch (called by ``fit``)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.samples)

    def _rng(self, i: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence((self.seed, self.epoch, i)))

    def frame_numbers(self, i: int, clip: int = 0) -> np.ndarray:
        """The 1-based frame numbers item ``i`` reads (this epoch's, for training)."""
        _, count, _, _ = self.samples[i]
        if self.train:
            return tsn_train_indices(count, self.frames, self._rng(i))
        return tsn_clip_indices(count, self.frames, clip, self.clips)

    def _load(self, i: int, numbers) -> dict[int, Image.Image]:
        folder, _, _, n = self.samples[i]
        images, sizes = {}, set()
        for k in sorted(set(int(v) for v in numbers)):
            path = os.path.join(folder, self.template.format(k))
            try:
                with Image.open(path) as im:
                    images[k] = im.convert("RGB")
            except FileNotFoundError:
                raise ValueError(f"SomethingV1: frame {path!r} is missing (listed at "
                                 f"{self.list_file}:{n})") from None
            except (OSError, ValueError, SyntaxError) as e:
                raise ValueError(f"SomethingV1: cannot read {path!r} (listed at "
                                 f"{self.list_file}:{n}): {type(e).__name__}: {e}") from None
            sizes.add(images[k].size)
        if len(sizes) > 1:
            raise ValueError(f"SomethingV1: frames in {folder!r} differ in size: {sorted(sizes)}")
        return images

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} videos")
        label = self.samples[i][2]
        if self.train:
            rng = self._rng(i)  # draws in order: frames, crop, flip
            numbers = tsn_train_indices(self.samples[i][1], self.frames, rng)
            loaded = self._load(i, numbers)
            images = [loaded[int(k)] for k in numbers]
            box = ct.multi_scale_crop_box(*images[0].size, self.size, rng, self.scales,
                                          self.max_distort, True, self.more_fix_crop)
            images = ct.crop_resize(images, box, self.size)
            if self.flip and rng.random() < 0.5:
                images, label = ct.hflip(images), ct.swap_label(label, self.flip_pairs)
            return ct.to_tensor(images, self.mean, self.std), label
        per_clip = [self.frame_numbers(i, c) for c in range(self.clips)]
        loaded = self._load(i, np.concatenate(per_clip))
        scaled = dict(zip(loaded, ct.resize_shorter(list(loaded.values()), self.scale_size)))
        w, h = next(iter(scaled.values())).size
        views = [ct.to_tensor(ct.crop_resize([scaled[int(k)] for k in numbers],
                                             (left, top, self.size, self.size), self.size),
                              self.mean, self.std)
                 for numbers in per_clip
                 for left, top in ct.eval_crop_offsets(w, h, self.size, self.crops)]
        if len(views) == 1:
            return views[0], label
        return torch.stack(views), label  # (views, 3, T, size, size)
