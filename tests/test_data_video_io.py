"""PyAV video I/O and the video / frame-folder datasets, on fixtures written by the tests."""

from __future__ import annotations

import os

import av
import numpy as np
import pytest
import torch

from cakes_lite.data import (SomethingFrames, VideoFolder, read_image, read_video,
                             uniform_indices, write_video)
from cakes_lite.data.video_io import has_codec


def ramp_clip(frames: int = 12, h: int = 32, w: int = 32) -> torch.Tensor:
    """(3, T, H, W): frame t is uniformly t / (T - 1) bright (red), so frame order is readable."""
    level = torch.linspace(0.1, 0.9, frames).view(1, frames, 1, 1)
    x = level.expand(3, frames, h, w).clone()
    x[1:] *= 0.3
    return x


def frame_levels(clip: torch.Tensor) -> torch.Tensor:
    return clip[0].mean((1, 2))  # (T,) red level per frame


@pytest.mark.parametrize("ext, codec", [(".mp4", "libx264"), (".avi", "mpeg4"),
                                        (".webm", "libvpx"), (".mkv", None)])
def test_write_read_round_trip(tmp_path, ext, codec):
    if codec and not has_codec(codec):
        pytest.skip(f"PyAV build lacks {codec}")
    clip = ramp_clip()
    path = write_video(tmp_path / f"clip{ext}", clip, fps=8)
    assert os.path.isfile(path) and not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]
    back = read_video(path, frames=None, size=None)
    assert back.shape == clip.shape and back.dtype == torch.float32
    assert (back - clip).abs().mean() < 0.05  # lossy codecs, but close
    # uniform sampling keeps the temporal order
    four = read_video(path, frames=4, size=None)
    expect = frame_levels(clip)[torch.from_numpy(uniform_indices(12, 4))]
    assert torch.allclose(frame_levels(four), expect, atol=0.05)


def test_mp4_is_h264_and_sizes_are_handled(tmp_path):
    assert has_codec("libx264"), "the app needs H.264 MP4 written by PyAV"
    path = write_video(tmp_path / "odd.mp4", ramp_clip(5, 31, 45), fps=4)
    with av.open(path) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert c.streams.video[0].format.name == "yuv420p"
    assert read_video(path, None, None).shape == (3, 5, 32, 46)  # padded to even sizes
    big = write_video(tmp_path / "big.mp4", ramp_clip(5), fps=4, scale=4)
    assert read_video(big, None, None).shape == (3, 5, 128, 128)
    # short side to 16, centre crop; explicit (H, W); more frames than the video repeats frames
    assert read_video(path, 8, 16).shape == (3, 8, 16, 16)
    assert read_video(path, 3, (10, 20)).shape == (3, 3, 10, 20)


@pytest.mark.parametrize("content", ["garbage", "empty", "truncated", "missing"])
def test_corrupt_video_gives_value_error_naming_the_file(tmp_path, content):
    path = tmp_path / f"bad_{content}.mp4"
    if content == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(4000))
    elif content == "empty":
        path.write_bytes(b"")
    elif content == "truncated":
        good = write_video(tmp_path / "good.mp4", ramp_clip(16, 64, 64), fps=8)
        data = open(good, "rb").read()
        path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=f"bad_{content}.mp4"):
        read_video(path)


def test_write_video_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        write_video(tmp_path / "a.mp4", torch.rand(8, 32, 32))
    with pytest.raises(ValueError, match="extension"):
        write_video(tmp_path / "a.gif", ramp_clip())


def make_video_folder(root, ext=".mp4"):
    for c, cls in enumerate(["b_jump", "a_run"]):
        os.makedirs(root / cls)
        for k in range(2):
            write_video(root / cls / f"v{k}{ext}", ramp_clip(6 + k, 24, 40) * (0.5 + 0.5 * c), 8)
    (root / "a_run" / "notes.txt").write_text("not a video")


def test_video_folder_ucf_layout_and_list_file(tmp_path):
    make_video_folder(tmp_path)
    ds = VideoFolder(tmp_path, frames=4, size=16)
    assert ds.classes == ["a_run", "b_jump"] and len(ds) == 4
    x, y = ds[0]
    assert x.shape == (3, 4, 16, 16) and y == 0
    assert sorted(label for _, label in ds.samples) == [0, 0, 1, 1]
    (tmp_path / "trainlist01.txt").write_text("b_jump/v1.mp4 2\na_run/v0.mp4 1\n")
    sub = VideoFolder(tmp_path, frames=4, size=16, list_file=tmp_path / "trainlist01.txt")
    assert [label for _, label in sub.samples] == [1, 0]
    (tmp_path / "bad.txt").write_text("a_run/v9.mp4 1\n")
    with pytest.raises(ValueError, match="bad.txt:1"):
        VideoFolder(tmp_path, list_file=tmp_path / "bad.txt")


def test_video_folder_corrupt_file_and_empty_root(tmp_path):
    make_video_folder(tmp_path)
    (tmp_path / "a_run" / "v2.mp4").write_bytes(b"\x00" * 100)
    ds = VideoFolder(tmp_path)
    with pytest.raises(ValueError, match="v2.mp4"):
        ds[2]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no videos"):
        VideoFolder(tmp_path / "empty")


def write_image(path, array: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 image with PyAV (PNG or JPEG by extension)."""
    codec = "png" if str(path).endswith(".png") else "mjpeg"
    with av.open(str(path), "w", format="image2") as c:
        s = c.add_stream(codec, rate=1)
        s.width, s.height = array.shape[1], array.shape[0]
        s.pix_fmt = "rgb24" if codec == "png" else "yuvj420p"
        frame = av.VideoFrame.from_ndarray(array, format="rgb24")
        c.mux(s.encode(frame if codec == "png" else frame.reformat(format="yuvj420p")))
        c.mux(s.encode())


def make_frames_root(root, ext=".png"):
    for vid, n in [("1001", 10), ("1002", 3)]:
        os.makedirs(root / vid)
        for t in range(1, n + 1):
            write_image(root / vid / f"{t:05d}{ext}", np.full((24, 32, 3), 20 * t, np.uint8))


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_something_frames(tmp_path, ext):
    make_frames_root(tmp_path, ext)
    (tmp_path / "train.txt").write_text("1001 10 4\n1002 3 1\n")
    ds = SomethingFrames(tmp_path, tmp_path / "train.txt", frames=4, size=16)
    assert len(ds) == 2 and ds.classes == ["0", "1", "2", "3", "4"]
    x, y = ds[0]
    assert x.shape == (3, 4, 16, 16) and y == 4
    # uniform sampling of 10 frames at 4 positions: frames 2, 4, 7, 9 (1-based) → levels 20·t
    expect = torch.tensor([40.0, 80.0, 140.0, 180.0]) / 255
    assert torch.allclose(x.mean((0, 2, 3)), expect, atol=0.03)
    assert ds[1][0].shape == (3, 4, 16, 16)  # 3 frames for 4 wanted: repeats


def test_something_frames_csv_labels_and_errors(tmp_path):
    make_frames_root(tmp_path)
    (tmp_path / "labels.csv").write_text("Holding something\nPushing something\n")
    (tmp_path / "train.csv").write_text("1001;Pushing something\n1003;Holding something\n")
    ds = SomethingFrames(tmp_path, tmp_path / "train.csv", frames=2, size=8,
                         classes=tmp_path / "labels.csv")
    assert ds.classes == ["Holding something", "Pushing something"] and ds[0][1] == 1
    with pytest.raises(ValueError, match="1003"):
        ds[1]  # listed, but no such frame folder
    (tmp_path / "bad.csv").write_text("1001;Dancing\n")
    with pytest.raises(ValueError, match="bad.csv:1"):
        SomethingFrames(tmp_path, tmp_path / "bad.csv", classes=tmp_path / "labels.csv")
    (tmp_path / "bad.txt").write_text("1001 ten frames\n")
    with pytest.raises(ValueError, match="bad.txt:1"):
        SomethingFrames(tmp_path, tmp_path / "bad.txt")
    (tmp_path / "1001" / "00003.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="00003.png"):
        read_image(str(tmp_path / "1001" / "00003.png"))
    (tmp_path / "ok.txt").write_text("1001 0\n")
    with pytest.raises(ValueError, match="00003.png"):
        SomethingFrames(tmp_path, tmp_path / "ok.txt", frames=10)[0]
