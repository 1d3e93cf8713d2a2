"""Video and volume inference and the speed comparison, for the app's tabs.

Videos are decoded with PyAV (``cakes_lite.data.read_video``; no system ffmpeg needed), NIfTI
volumes read with nibabel and resampled to the segmenter's 2 mm grid. Bad input raises
``gradio.Error`` (via :func:`handlers.fail`) with a message saying what was expected.
"""

from __future__ import annotations

import math
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F

from cakes_lite.viz.video import clip_strip, topk
from cakes_lite.viz.volume import class_volume_figure, slice_figure
from handlers import EXAMPLES, MAX_VIDEO_FRAMES, MAX_VIDEO_SECONDS, VIDEO_TYPES, fail, model, timed

NIFTI_TYPES = (".nii", ".nii.gz")
MAX_VOXELS = 160**3  # after resampling to the model's grid
MNI_EXAMPLE = "MNI152 2009 template (nilearn), 2 mm"


def example_clips() -> list[str]:
    """File names of the bundled example clips."""
    return sorted(p.name for p in EXAMPLES.glob("*.mp4"))


def _probe_video(path: Path) -> None:
    """Refuse files that are not a short, decodable video (before decoding all of it)."""
    if not path.name.lower().endswith(VIDEO_TYPES):
        raise fail(f"video: expected a {'/'.join(t[1:] for t in VIDEO_TYPES)} file, "
                   f"got {path.name!r}")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise fail(f"video {path.name!r}: the file has no video stream")
            stream = container.streams.video[0]
            seconds = None
            if stream.duration is not None and stream.time_base is not None:
                seconds = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                seconds = container.duration / 1e6
            if seconds is not None and seconds > MAX_VIDEO_SECONDS:
                raise fail(f"video {path.name!r}: expected a clip of at most "
                           f"{MAX_VIDEO_SECONDS:.0f} s, got {seconds:.1f} s")
            if stream.frames and stream.frames > MAX_VIDEO_FRAMES:
                raise fail(f"video {path.name!r}: expected at most {MAX_VIDEO_FRAMES} frames, "
                           f"got {stream.frames}")
    except av.FFmpegError as e:
        raise fail(f"video {path.name!r}: could not decode it ({e})") from None


def classify(model_name: str, example: str | None, upload: str | None):
    """Video tab: frames strip, top-5 classes {name: probability}, a note with latency."""
    try:
        from cakes_lite.data import read_video
    except ImportError:  # older cakes_lite.data without the re-export
        from cakes_lite.data.video_io import read_video

    net, meta = model(model_name)
    if upload:
        path = Path(upload)
    elif example:
        path = EXAMPLES / Path(example).name
        if not path.is_file():
            raise fail(f"example: expected one of {example_clips()}, got {example!r}")
    else:
        raise fail("video: choose an example clip or upload a video")
    _probe_video(path)
    _, c, t, h, w = meta["input_shape"]
    try:
        clip = read_video(str(path), frames=t, size=h)  # (3, T, H, W) float32 in [0, 1]
    except (ValueError, av.FFmpegError, RuntimeError) as e:
        reason = str(e).replace(str(path), path.name)  # no server paths in messages
        raise fail(f"video {path.name!r}: could not decode it ({reason})") from None

    def run():
        with torch.no_grad():
            return net(clip[None]).softmax(1)[0]  # (1, classes) -> (classes,)

    probs, ms = timed(run)
    top = topk(probs, meta["classes"], k=5)
    best = next(iter(top))
    note = (f"**{best}** ({top[best]:.0%}) — model `{model_name}` ({meta['title']}), "
            f"{ms:.1f} ms per clip on this machine's CPU (median of 3, batch 1, input "
            f"{list(meta['input_shape'][1:])}), {meta['macs'] / 1e6:.1f} M MACs.")
    return clip_strip(clip, title=f"{path.name}: {t} frames at {h}×{w}"), top, note


def _prepare(volume: np.ndarray, zooms, spacing: float) -> torch.Tensor:
    """A (D, H, W) array at voxel size ``zooms`` mm -> (1, 1, D', H', W') at ``spacing`` mm,
    intensities in [0, 1] like the training T1 (divided by the 99.5th percentile of the
    non-zero voxels, clipped). Like the template, the scan should be brain-extracted."""
    x = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None, None]
    size = [max(1, round(n * z / spacing)) for n, z in zip(volume.shape, zooms)]
    if math.prod(size) > MAX_VOXELS:
        raise fail(f"volume: expected at most {MAX_VOXELS} voxels at {spacing} mm, got "
                   f"{size} ({math.prod(size)})")
    if min(size) < 8:
        raise fail(f"volume: expected at least 8 voxels per axis at {spacing} mm, got {size}")
    x = F.interpolate(x, size=size, mode="trilinear", align_corners=False)
    x = x.clamp(min=0)
    inside = x[x > 0]
    if inside.numel() == 0:
        raise fail("volume: expected some positive intensities, got an empty (all-zero) image")
    scale = float(torch.quantile(inside[:: max(1, inside.numel() // 1_000_000)], 0.995))
    return (x / max(scale, 1e-6)).clamp(0, 1)


def _read_nifti(path: Path) -> tuple[np.ndarray, tuple]:
    import nibabel as nib

    if not path.name.lower().endswith(NIFTI_TYPES):
        raise fail(f"volume: expected a NIfTI file (.nii or .nii.gz), got {path.name!r}")
    try:
        img = nib.as_closest_canonical(nib.load(str(path)))  # RAS voxel order, like MNI152
        data = np.asarray(img.dataobj, dtype=np.float32)
        zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    except Exception as e:  # nibabel raises many types for broken files
        raise fail(f"volume {path.name!r}: could not read it as NIfTI ({e})") from None
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]  # (D, H, W, 1) -> (D, H, W)
    if data.ndim != 3:
        raise fail(f"volume {path.name!r}: expected a 3D volume (D, H, W), got shape "
                   f"{tuple(data.shape)}")
    if not np.isfinite(data).all():
        data = np.nan_to_num(data)
    return data, zooms


def segment(model_name: str, source: str | None, upload: str | None):
    """Volume tab: run the segmenter on the MNI152 example or an uploaded NIfTI.

    Returns:
        (state dict for the slice viewer, slice figure, class-volume figure, note,
        slider maximum).
    """
    net, meta = model(model_name)
    spacing = float(meta["data"].get("spacing", 2.0))
    reference = None
    if upload:
        path = Path(upload)
        data, zooms = _read_nifti(path)
        x = _prepare(data, zooms, spacing)
        name = path.name
    else:
        from cakes_lite.data import load_mni152

        image, labels = load_mni152(spacing=spacing)  # (1, D, H, W), (D, H, W)
        x, reference, name = torch.as_tensor(image)[None], np.asarray(labels), MNI_EXAMPLE
    def run():
        with torch.no_grad():  # the U-Net pads to its total stride and crops back itself
            return net(x)[0].argmax(0)  # (classes, D, H, W) -> (D, H, W)

    pred, ms = timed(run, repeats=1)
    pred = pred.numpy()
    image = x[0, 0].numpy()
    classes = meta["classes"]
    state = {"image": image, "pred": pred, "classes": classes, "spacing": spacing}
    note = (f"**{name}** — {list(image.shape)} voxels at {spacing:g} mm, model `{model_name}` "
            f"({meta['title']}): {ms:.0f} ms on this machine's CPU.")
    if reference is not None:
        from cakes_lite.data.mni152 import mni152_split_bounds

        ax, lo, hi = mni152_split_bounds(reference.shape, "val")  # the held-out slab
        sl = [slice(None)] * 3
        sl[ax] = slice(lo, hi)
        dice = [_dice(pred[tuple(sl)], reference[tuple(sl)], c) for c in range(1, len(classes))]
        note += (" Dice vs the template's tissue labels on the held-out slab (never trained "
                 "on): " + ", ".join(f"{c} {v:.2f}" for c, v in zip(classes[1:], dice)) + ".")
    fig = slice_figure(image, pred, axis="axial", class_names=classes, ras=True)
    vols = class_volume_figure(pred, spacing, class_names=classes, reference=reference)
    return state, fig, vols, note, image.shape[2] - 1, image.shape[2] // 2


def _dice(pred: np.ndarray, ref: np.ndarray, c: int) -> float:
    a, b = pred == c, ref == c
    denom = a.sum() + b.sum()
    return float(2 * (a & b).sum() / denom) if denom else 1.0


def show_slice(state: dict | None, axis: str, index: float):
    """Slice viewer: redraw the overlay for another axis/slice without re-running the model."""
    if not state:
        raise fail("volume: run a segmentation first")
    return slice_figure(state["image"], state["pred"], axis=axis, index=int(index),
                        class_names=state["classes"], ras=True)


def speed(model_name: str, repeats: float):
    """Speed tab: interleaved median latency of a model vs the zoo's full 3D model (same task).

    Returns:
        (table rows, bar figure, note).
    """
    import gradio as gr
    import plotly.graph_objects as go

    from cakes_lite.speed import compare_latency
    from handlers import baseline_for

    repeats = int(repeats)
    if not 1 <= repeats <= 50:
        raise fail(f"repeats: expected 1 to 50, got {repeats}")
    net, meta = model(model_name)
    base_name = baseline_for(meta["task"])
    base, base_meta = model(base_name)
    x = torch.randn(tuple(meta["input_shape"]), generator=torch.Generator().manual_seed(0))
    cases = {model_name: (net, x)}
    if base_name != model_name:
        cases[base_name] = (base, x)
    times = compare_latency(cases, repeats=repeats, warmup=2)
    ref = times[base_name]
    rows = []
    for name, ms in times.items():
        m = meta if name == model_name else base_meta
        rows.append([name, m["title"], round(ms, 2), round(ms / ref, 3),
                     round(m["macs"] / 1e6, 2), round(m["macs"] / base_meta["macs"], 3)])
    headers = ["model", "kind", "median ms", "latency / 3D", "MMACs", "MACs / 3D"]
    fig = go.Figure(go.Bar(x=[r[0] for r in rows], y=[r[2] for r in rows],
                           marker_color=["#0072B2", "#D55E00"][: len(rows)],
                           text=[f"{r[2]:.1f} ms" for r in rows], textposition="auto"))
    fig.update_layout(height=320, yaxis_title="median latency (ms)",
                      margin=dict(l=60, r=20, t=30, b=40))
    note = (f"Input {list(meta['input_shape'])}, batch 1, {torch.get_num_threads()} CPU threads, "
            f"{repeats} interleaved rounds after 2 warm-up rounds; medians. CPU convolutions pad "
            f"channel groups to blocks of 16, so a MACs saving becomes a smaller time saving.")
    return gr.Dataframe(rows, headers=headers), fig, note
