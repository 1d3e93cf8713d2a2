"""Datasets for users' own videos: class folders (UCF101 / HMDB51) and frame folders (SSv1).

``VideoFolder``: ``root/<class name>/<video>.{mp4,avi,webm,…}``; classes are the sorted
sub-folder names (UCF101's classInd.txt order), optionally restricted to the videos of a UCF101
style list file (``trainlist01.txt``: ``ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1``).

``SomethingFrames``: Something-Something V1 style ``root/<video id>/00001.jpg …`` with a list
file of either ``<video id> <num_frames> <label index>`` or ``<video id> <label index>`` lines
(the TSN/TSM format), or ``<video id>;<label text>`` lines (the original SSv1 CSV, which needs
``classes``). Frames are decoded with PyAV (JPEG / PNG), so no extra imaging library is needed.

Both return ``(clip (3, T, H, W) float32 in [0, 1], label int)`` with T frames sampled uniformly.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .video_io import VIDEO_EXTENSIONS, _av, read_video, resize_frames, uniform_indices

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def read_image(path: str) -> np.ndarray:
    """Decode one image file with PyAV into (H, W, 3) uint8; ValueError naming the file."""
    av = _av()
    try:
        with av.open(path) as container:
            frame = next(container.decode(video=0))
            return frame.to_ndarray(format="rgb24")
    except (av.FFmpegError, OSError, ValueError, StopIteration, RuntimeError) as e:
        raise ValueError(f"read_image: could not decode {path!r} "
                         f"({type(e).__name__}: {e})") from None


class VideoFolder(Dataset):
    """Videos in class sub-folders (UCF101 / HMDB51 layout).

    Args:
        root: folder holding one sub-folder per class.
        frames: T frames sampled uniformly per video. size: see :func:`read_video`.
        list_file: optional UCF101-style split file; each line ``<class>/<file> [label]``
            (relative to ``root``); only those videos are used.
        classes: optional class names (fixes the label order); default the sorted sub-folders.
        extensions: video file extensions to collect.
        strict: passed to :func:`read_video` (reject truncated files).

    Raises:
        ValueError: no classes / videos found, or a list-file entry that does not exist.
    """

    def __init__(self, root: str | os.PathLike, frames: int = 8, size=32, *,
                 list_file: str | os.PathLike | None = None,
                 classes: Sequence[str] | None = None,
                 extensions: Sequence[str] = VIDEO_EXTENSIONS, strict: bool = True):
        self.root, self.frames, self.size, self.strict = os.fspath(root), frames, size, strict
        if not os.path.isdir(self.root):
            raise ValueError(f"VideoFolder: root {self.root!r} is not a folder")
        exts = tuple(e.lower() for e in extensions)
        if classes is None:
            classes = sorted(d for d in os.listdir(self.root)
                             if os.path.isdir(os.path.join(self.root, d)))
        self.classes = list(classes)
        index = {c: i for i, c in enumerate(self.classes)}
        if list_file is not None:
            self.samples = []
            for n, line in _read_lines(list_file):
                r = line.split()[0].replace("\\", "/")
                cls, path = r.split("/")[0], os.path.join(self.root, r)
                if cls not in index or not os.path.isfile(path):
                    raise ValueError(f"VideoFolder: {list_file}:{n}: {r!r} is not a video under a "
                                     f"class folder of {self.root!r}")
                self.samples.append((path, index[cls]))
        else:
            self.samples = [
                (os.path.join(self.root, c, f), index[c])
                for c in self.classes if os.path.isdir(os.path.join(self.root, c))
                for f in sorted(os.listdir(os.path.join(self.root, c)))
                if os.path.splitext(f)[1].lower() in exts
            ]
        if not self.classes or not self.samples:
            raise ValueError(f"VideoFolder: found no videos with extensions {exts} in class "
                             f"folders under {self.root!r}")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        path, label = self.samples[i]
        return read_video(path, self.frames, self.size, strict=self.strict), label


def _read_lines(path) -> list[tuple[int, str]]:
    with open(path, encoding="utf-8") as f:
        return [(n, ln.strip()) for n, ln in enumerate(f, 1) if ln.strip()]


class SomethingFrames(Dataset):
    """Something-Something style frame folders with a list file.

    Args:
        root: folder holding one sub-folder of frame images per video.
        list_file: ``<id> <num_frames> <label>``, ``<id> <label>`` or ``<id>;<label text>``
            lines.
        frames: T frames sampled uniformly from each folder's sorted images.
        size: see :func:`~cakes_lite.data.video_io.resize_frames`.
        classes: class names (a list, or a text file with one name per line, e.g. SSv1's
            ``something-something-v1-labels.csv``); needed for ``;`` lines, otherwise
            defaults to ``["0", …, str(max label)]``.

    Raises:
        ValueError: malformed lines, unknown labels, missing / empty / undecodable frame folders
            (checked when an item is read, naming the folder or image).
    """

    def __init__(self, root: str | os.PathLike, list_file: str | os.PathLike, frames: int = 8,
                 size=32, *, classes: Sequence[str] | str | os.PathLike | None = None):
        self.root, self.frames, self.size = os.fspath(root), frames, size
        if not os.path.isdir(self.root):
            raise ValueError(f"SomethingFrames: root {self.root!r} is not a folder")
        if isinstance(classes, (str, os.PathLike)):
            classes = [ln for _, ln in _read_lines(classes)]
        names = None if classes is None else list(classes)
        index = {c: i for i, c in enumerate(names or [])}
        self.samples = []
        for n, line in _read_lines(list_file):
            where = f"SomethingFrames: {os.fspath(list_file)}:{n}"
            if ";" in line:
                vid, text = line.split(";", 1)
                if text not in index:
                    raise ValueError(f"{where}: label {text!r} is not in classes (pass classes=)")
                label = index[text]
            else:
                parts = line.split()
                if len(parts) not in (2, 3) or not parts[-1].lstrip("-").isdigit():
                    raise ValueError(f"{where}: expected '<id> [num_frames] <label index>', "
                                     f"got {line!r}")
                vid, label = parts[0], int(parts[-1])
                if label < 0 or (names is not None and label >= len(names)):
                    raise ValueError(f"{where}: label {label} out of range for "
                                     f"{len(names) if names else 'non-negative'} classes")
            self.samples.append((os.path.join(self.root, vid.strip()), label))
        if not self.samples:
            raise ValueError(f"SomethingFrames: list file {os.fspath(list_file)!r} has no entries")
        self.classes = names or [str(i) for i in range(max(s[1] for s in self.samples) + 1)]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        folder, label = self.samples[i]
        if not os.path.isdir(folder):
            raise ValueError(f"SomethingFrames: frame folder {folder!r} does not exist")
        images = sorted(f for f in os.listdir(folder)
                        if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS)
        if not images:
            raise ValueError(f"SomethingFrames: frame folder {folder!r} holds no "
                             f"{IMAGE_EXTENSIONS} images")
        idx = uniform_indices(len(images), self.frames)
        loaded = {j: read_image(os.path.join(folder, images[j])) for j in set(idx.tolist())}
        shapes = {a.shape for a in loaded.values()}
        if len(shapes) > 1:
            raise ValueError(f"SomethingFrames: frames in {folder!r} differ in size: {shapes}")
        arr = np.stack([loaded[int(j)] for j in idx])  # (T, H, W, 3) uint8
        clip = torch.from_numpy(arr).permute(3, 0, 1, 2).float().div_(255.0)  # (3, T, H, W)
        return resize_frames(clip, self.size), label
