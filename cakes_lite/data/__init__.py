"""Datasets: synthetic video, MNI152 tissue segmentation, and loaders for users' own data.

Everything works offline, nothing is downloaded at run time: the synthetic video is generated,
MNI152 comes from nilearn's wheel, and users' data is read with PyAV (video, frames), nibabel
(NIfTI), numpy (npz).

* :class:`SomethingLite` — something-something-lite clips with time-reversed class pairs;
  :mod:`.frame_blind` — the best top-1 a model blind to frame order can reach on them.
* :class:`MNI152Tissue`, :func:`load_mni152` — 4-class tissue segmentation patches / volume.
* :func:`read_video`, :func:`write_video` — PyAV I/O (H.264 MP4 playable in browsers).
* :class:`VideoFolder` (UCF101 / HMDB51), :class:`SomethingFrames` (SSv1 frame folders),
  :class:`DecathlonTask` (MSD task folders), :class:`MedMNIST3D` (.npz).
* :class:`SomethingV1` — Something-Something V1 as its authors' code reads it: TSN sampling,
  multi-scale crop, label-swapping flips, multi-view evaluation (:mod:`.tsn`,
  :mod:`.clip_transforms`); :mod:`.subset` — seeded class-balanced subsets;
  :mod:`.fixtures` — tiny SSv1 / Decathlon folders in the official layouts.
"""

from .folders import SomethingFrames, VideoFolder, read_image
from .medical import DecathlonTask, MedMNIST3D
from .mni152 import TISSUE_CLASSES, MNI152Tissue, load_mni152
# planted tasks (a layout known in advance, to score a search) are importable, not in __all__
from .planted import planted_clips, planted_model, planted_recovery  # noqa: F401
from .synthetic_video import CLASSES, REVERSED_PAIRS, SomethingLite, make_clips
from .transforms import CORRUPTIONS, augment_pair, corrupt
from .video_io import read_video, uniform_indices, write_video

__all__ = [
    "CLASSES", "CORRUPTIONS", "REVERSED_PAIRS", "SSV1_FLIP_PAIRS", "TISSUE_CLASSES",
    "DecathlonTask", "MNI152Tissue", "MedMNIST3D", "SomethingFrames", "SomethingLite",
    "SomethingV1", "VideoFolder", "augment_pair", "corrupt",
    "load_mni152", "make_clips", "read_image", "read_video", "uniform_indices", "write_video",
]


def __getattr__(name: str):
    # SomethingV1 decodes JPEGs with Pillow (the 'data' extra): its module is imported on first
    # use, so the synthetic datasets work without Pillow installed
    if name in ("SomethingV1", "SSV1_FLIP_PAIRS"):
        from . import something

        return getattr(something, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
