"""Read and write short video clips with PyAV (no system ffmpeg needed).

``read_video`` decodes a file, samples ``frames`` frames uniformly (the centre of T equal
segments, as TSN/TSM do), resizes the short side to ``size`` and centre-crops. Undecodable,
truncated or empty files raise a ``ValueError`` that names the file instead of a decoder traceback.

``write_video`` writes H.264 MP4 (``libx264``; ``mpeg4`` if the PyAV build lacks it), VP8
WebM or MPEG-4 AVI by file extension, atomically, playable in browsers (yuv420p, faststart).
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .._helpers import atomic_write

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v")


def _av():
    try:
        import av  # optional dependency (the [data] extra): video files only
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("video I/O needs PyAV: pip install 'cakes_lite[data]'") from e
    return av


def has_codec(name: str) -> bool:
    """Whether this PyAV build can encode with codec ``name`` (e.g. "libx264")."""
    av = _av()
    try:
        av.codec.Codec(name, "w")
        return True
    except Exception:  # noqa: BLE001 - PyAV raises different errors across versions
        return False


def uniform_indices(num_available: int, frames: int) -> np.ndarray:
    """Indices of ``frames`` frames sampled uniformly: the centre of T equal segments.

    Short videos repeat frames (e.g. 3 available, 8 wanted → 0 0 0 1 1 2 2 2).
    """
    if num_available < 1 or frames < 1:
        raise ValueError(f"uniform_indices: expected >= 1 available and wanted frames, got "
                         f"{num_available} and {frames}")
    return ((np.arange(frames) + 0.5) * num_available / frames).astype(np.int64)


def resize_frames(x: Tensor, size) -> Tensor:
    """Resize the short side to ``size`` (int) and centre-crop a square, or resize to (H, W).

    Args:
        x: (3, T, H, W) float32. size: int or (H, W); None keeps the frames as they are.

    Returns:
        (3, T, size, size) or (3, T, H', W') float32.
    """
    if size is None:
        return x
    h, w = x.shape[-2:]
    if isinstance(size, int):
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        out = _interp(x, (nh, nw))
        top, left = (nh - size) // 2, (nw - size) // 2
        return out[..., top:top + size, left:left + size].contiguous()
    return _interp(x, tuple(int(s) for s in size))


def _interp(x: Tensor, hw: tuple[int, int]) -> Tensor:
    if tuple(x.shape[-2:]) == hw:
        return x
    frames = x.permute(1, 0, 2, 3)  # (T, 3, H, W): frames as a batch
    out = F.interpolate(frames, size=hw, mode="bilinear", antialias=True, align_corners=False)
    return out.permute(1, 0, 2, 3).clamp_(0, 1).contiguous()  # (3, T, H', W')


def read_video(path: str | os.PathLike, frames: int | None = 8, size=32, *,
               strict: bool = True) -> Tensor:
    """Decode a video file into a clip.

    Args:
        path: .mp4 / .avi / .webm / … file (anything FFmpeg in PyAV decodes).
        frames: T frames sampled uniformly over the whole video; None = all frames.
        size: short side resized to ``size`` then centre-cropped (int), or (H, W), or None.
        strict: reject files that fail part-way or decode to fewer than 3/4 of the frames
            their header promises; False keeps whatever frames decode.

    Returns:
        (3, T, H, W) float32 in [0, 1].

    Raises:
        ValueError: naming the file, when it has no video stream, no decodable frames, is
            corrupt, or (strict) is truncated.
    """
    av = _av()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"read_video: {path!r} is not a file")
    decoded, expected, error = [], 0, None
    try:
        with av.open(path) as container:
            if container.streams.video:
                stream = container.streams.video[0]
                expected = int(stream.frames or 0)
                if not expected and container.duration and stream.average_rate:
                    expected = round(container.duration / 1e6 * float(stream.average_rate))
                for frame in container.decode(stream):  # av.VideoFrame objects, still YUV
                    decoded.append(frame)
            else:
                error = "has no video stream"
    except (av.FFmpegError, OSError, EOFError, RuntimeError, ValueError) as e:
        error = f"could not be decoded ({type(e).__name__}: {e}); corrupt or not a video"
    if error is not None and decoded and not strict:
        error = None  # keep the frames decoded before the damage
    if error is None and not decoded:
        error = "contains no decodable video frames"
    if error is None and strict and len(decoded) < 0.75 * expected:
        error = (f"looks truncated: its header promises {expected} frames, only "
                 f"{len(decoded)} decoded (pass strict=False to accept it)")
    if error is not None:
        raise ValueError(f"read_video: {path!r} {error}")
    idx = uniform_indices(len(decoded), frames) if frames else np.arange(len(decoded))
    keep = {int(i): decoded[i].to_ndarray(format="rgb24") for i in set(idx.tolist())}
    arr = np.stack([keep[int(i)] for i in idx])  # (T, H, W, 3) uint8
    clip = torch.from_numpy(arr).permute(3, 0, 1, 2).float().div_(255.0)  # (3, T, H, W)
    return resize_frames(clip, size)


def _to_uint8_frames(clip) -> np.ndarray:
    """(3, T, H, W) float in [0, 1] (tensor or array) → (T, H, W, 3) uint8, even H and W."""
    x = torch.as_tensor(clip).detach().cpu()
    if x.ndim != 4 or x.shape[0] not in (1, 3):
        raise ValueError(f"write_video: clip expected shape (3, T, H, W) (or 1 channel), got "
                         f"{tuple(x.shape)}")
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    x = x.float().clamp(0, 1).expand(3, *x.shape[1:])
    x = x.permute(1, 2, 3, 0)  # (T, H, W, 3)
    ph, pw = x.shape[1] % 2, x.shape[2] % 2  # yuv420p needs even sizes: repeat the edge
    if ph or pw:
        x = F.pad(x.permute(0, 3, 1, 2), (0, pw, 0, ph), mode="replicate").permute(0, 2, 3, 1)
    return (x * 255.0 + 0.5).to(torch.uint8).numpy()


def write_video(path: str | os.PathLike, clip, fps: int = 8, *, codec: str | None = None,
                scale: int = 1, crf: int = 18) -> str:
    """Write a clip as a video file (atomically: temp file + rename).

    Args:
        path: output file; the extension picks the container (.mp4, .webm, .avi, .mkv, .mov).
        clip: (3, T, H, W) float in [0, 1] (or uint8), tensor or array. Odd sizes are padded.
        fps: frames per second.
        codec: None = libx264 for mp4/mkv/mov (mpeg4 if unavailable), libvpx for webm, mpeg4
            for avi; or any encoder name PyAV knows.
        scale: integer nearest-neighbour upscaling (tiny 32×32 clips are easier to watch).
        crf: quality for libx264 / libvpx (lower is better).

    Returns:
        The path written.
    """
    av = _av()
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in VIDEO_EXTENSIONS:
        raise ValueError(f"write_video: extension expected one of {VIDEO_EXTENSIONS}, got {path!r}")
    if not (isinstance(scale, int) and scale >= 1) or fps <= 0:
        raise ValueError(f"write_video: expected scale an int >= 1 and fps > 0, got {scale}, {fps}")
    x = torch.as_tensor(clip)
    if scale > 1 and x.ndim == 4:
        x = x.repeat_interleave(scale, -1).repeat_interleave(scale, -2)
    frames = _to_uint8_frames(x)
    if codec is None:
        codec = {".webm": "libvpx", ".avi": "mpeg4"}.get(ext, "libx264")
        if not has_codec(codec):
            codec = "mpeg4" if ext != ".webm" else "libvpx-vp9"
    options = {}
    if codec in ("libx264", "libvpx", "libvpx-vp9"):
        options = {"crf": str(crf)}
        if codec != "libx264":
            options["b"] = "1M"  # libvpx needs a bit-rate ceiling for crf mode
    fmt_opts = {"movflags": "+faststart"} if ext in (".mp4", ".mov", ".m4v") else {}

    def encode(tmp: str) -> None:
        with av.open(tmp, "w", options=fmt_opts) as out:
            stream = out.add_stream(codec, rate=int(fps), options=options)
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv420p"
            for arr in frames:
                out.mux(stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")))
            out.mux(stream.encode())  # flush the encoder

    atomic_write(path, encode, suffix=ext)
    return path
