"""Users' 3D medical data: MedMNIST-3D files (and, from :mod:`.decathlon`, Medical
Segmentation Decathlon task folders: ``DecathlonTask``).

``MedMNIST3D``: a MedMNIST ``.npz`` (``{split}_images`` (N, D, H, W) uint8 and ``{split}_labels``
(N, 1) or (N, K)), read with ``allow_pickle=False``.

Malformed inputs raise ``ValueError`` naming the file and what was expected.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .decathlon import DecathlonTask  # noqa: F401 - its former home; kept importable here


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
