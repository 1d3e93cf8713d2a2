"""Every uploaded file is checked here before it is loaded (limits in :mod:`state`).

* layout JSON: file size first, then parsed;
* video: the stream header's frame size, then frames are *counted while decoding* (a raw H.264
  stream saved as .mp4 states no duration and no frame count), keeping none of them; a second
  pass keeps only the T frames the model samples — memory stays flat whatever the file claims;
* NIfTI: dimensions, voxel count and data type from the header, before any voxel is read.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import av
import nibabel as nib
import numpy as np
import torch

from cakes_lite.data.video_io import resize_frames, uniform_indices
from state import (MAX_FILE_VOXELS, MAX_JSON_BYTES, MAX_VIDEO_FRAMES, MAX_VIDEO_PIXELS,
                   MAX_VIDEO_SECONDS, NIFTI_TYPES, VIDEO_TYPES, fail, scrub)

MAX_DECODE_SECONDS = 60.0  # wall clock per decoding pass


def _size_ok(path: Path, limit: int, what: str) -> None:
    size = path.stat().st_size
    if size > limit:
        raise fail(f"{what} {path.name!r}: expected at most {limit:,} bytes, got {size:,}")


def read_json_text(upload: str) -> str:
    """The text of an uploaded JSON file, refused if too large or not UTF-8."""
    path = Path(upload)
    if path.suffix.lower() != ".json":
        raise fail(f"layout file: expected a .json file, got {path.name!r}")
    _size_ok(path, MAX_JSON_BYTES, "layout file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise fail(f"layout file {path.name!r}: expected UTF-8 JSON text, got binary data") \
            from None


# -- video -------------------------------------------------------------------------------------

def _open(path: Path):
    container = av.open(str(path))
    if not container.streams.video:
        container.close()
        raise fail(f"video {path.name!r}: the file has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


def count_frames(path: Path) -> int:
    """Frames in the first video stream, refused past the limits (nothing is kept)."""
    container, stream = _open(path)
    with container:
        w, h = stream.codec_context.width, stream.codec_context.height
        if w * h > MAX_VIDEO_PIXELS:
            raise fail(f"video {path.name!r}: expected frames of at most 1920×1080 pixels, "
                       f"got {w}×{h}")
        seconds = None
        if stream.duration is not None and stream.time_base is not None:
            seconds = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            seconds = container.duration / 1e6
        if seconds is not None and seconds > MAX_VIDEO_SECONDS:
            raise fail(f"video {path.name!r}: expected a clip of at most "
                       f"{MAX_VIDEO_SECONDS:.0f} s, got {seconds:.1f} s")
        if stream.frames and stream.frames > MAX_VIDEO_FRAMES:
            raise fail(f"video {path.name!r}: expected at most {MAX_VIDEO_FRAMES} frames, got "
                       f"{stream.frames}")
        n, t0 = 0, time.monotonic()
        for frame in container.decode(stream):
            n += 1
            if frame.width * frame.height > MAX_VIDEO_PIXELS:
                raise fail(f"video {path.name!r}: expected frames of at most 1920×1080 "
                           f"pixels, got {frame.width}×{frame.height}")
            if n > MAX_VIDEO_FRAMES:
                raise fail(f"video {path.name!r}: expected at most {MAX_VIDEO_FRAMES} frames "
                           f"(the file states no length; counted while decoding)")
            if time.monotonic() - t0 > MAX_DECODE_SECONDS:
                raise fail(f"video {path.name!r}: decoding took over {MAX_DECODE_SECONDS:.0f} s")
            del frame
    return n


def decode_video(upload: str | Path, frames: int, size: int):
    """A checked video -> (3, T, H, W) float32 clip in [0, 1], as ``read_video`` makes it
    (T frames sampled uniformly, short side resized to ``size``, centre crop)."""
    path = Path(upload)
    if not path.name.lower().endswith(VIDEO_TYPES):
        raise fail(f"video: expected a {'/'.join(t[1:] for t in VIDEO_TYPES)} file, "
                   f"got {path.name!r}")
    try:
        n = count_frames(path)
        if n == 0:
            raise fail(f"video {path.name!r}: contains no decodable video frames")
        wanted = {int(i) for i in uniform_indices(n, frames)}
        keep = {}
        container, stream = _open(path)
        with container:
            for i, frame in enumerate(container.decode(stream)):
                if i in wanted:
                    keep[i] = frame.to_ndarray(format="rgb24")  # (H, W, 3) uint8
                if i >= max(wanted):
                    break
    except (av.FFmpegError, OSError, EOFError, RuntimeError, ValueError) as e:
        raise fail(f"video {path.name!r}: could not decode it ({type(e).__name__}: "
                   f"{scrub(e)})") from None
    idx = uniform_indices(n, frames)
    if any(int(i) not in keep for i in idx):
        raise fail(f"video {path.name!r}: decoded {n} frames first, fewer the second time")
    arr = np.stack([keep[int(i)] for i in idx])  # (T, H, W, 3) uint8
    clip = torch.from_numpy(arr).permute(3, 0, 1, 2).float().div_(255.0)  # (3, T, H, W)
    return resize_frames(clip, size)


# -- NIfTI -------------------------------------------------------------------------------------

def read_nifti(upload: str | Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A checked NIfTI -> ((D, H, W) float32 array in RAS order, voxel size in mm).

    The header's dimensions, voxel count and data type are checked before any voxel is read.
    """
    path = Path(upload)
    if not path.name.lower().endswith(NIFTI_TYPES):
        raise fail(f"volume: expected a NIfTI file (.nii or .nii.gz), got {path.name!r}")
    try:
        img = nib.load(str(path))  # reads the header only; voxels stay on disk
        shape = tuple(int(s) for s in img.header.get_data_shape())
        dtype = np.dtype(img.header.get_data_dtype())
        zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    except Exception as e:  # noqa: BLE001 — nibabel raises many types for broken headers
        raise fail(f"volume {path.name!r}: could not read it as NIfTI "
                   f"({type(e).__name__}: {scrub(e) or 'bad header'})") from None
    voxels = math.prod(shape) if shape else 0
    if voxels > MAX_FILE_VOXELS or any(s > 1024 for s in shape):
        raise fail(f"volume {path.name!r}: expected at most {MAX_FILE_VOXELS:,} voxels "
                   f"(e.g. 256×256×256), the header declares {'×'.join(map(str, shape))} "
                   f"= {voxels:,} voxels")
    core = list(shape)
    while len(core) > 3 and core[-1] == 1:
        core.pop()  # (D, H, W, 1) -> (D, H, W)
    if len(core) != 3:
        raise fail(f"volume {path.name!r}: expected a 3D volume (D, H, W), got shape {shape}")
    if dtype.kind not in "biuf" or dtype.itemsize > 8:
        raise fail(f"volume {path.name!r}: expected integer or float voxels, got {dtype}")
    if min(core) < 1:
        raise fail(f"volume {path.name!r}: expected a non-empty volume, got shape {shape}")
    if not all(math.isfinite(z) and z > 0 for z in zooms):
        raise fail(f"volume {path.name!r}: expected positive voxel sizes in mm, got {zooms}")
    try:
        img = nib.as_closest_canonical(img)  # RAS voxel order, like MNI152
        data = np.asarray(img.dataobj, dtype=np.float32).reshape(core)
        zooms = tuple(float(z) for z in img.header.get_zooms()[:3])  # after reorientation
    except Exception as e:  # noqa: BLE001 — truncated or corrupt data
        raise fail(f"volume {path.name!r}: could not read its voxels "
                   f"({type(e).__name__}: {scrub(e) or 'corrupt data'})") from None
    if not np.isfinite(data).all():
        data = np.nan_to_num(data, copy=False)
    return data, zooms
