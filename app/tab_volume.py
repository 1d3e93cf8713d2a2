"""Volume inference tab: segment the MNI152 template or an uploaded (checked) NIfTI, then browse
slices with the overlay (the model runs once; the slider only redraws)."""

from __future__ import annotations

import math

import gradio as gr
import numpy as np
import torch
import torch.nn.functional as F

from cakes_lite.data import load_mni152
from cakes_lite.data.mni152 import mni152_split_bounds
from cakes_lite.train.metrics import dice_per_class
from cakes_lite.viz.volume import class_volume_figure, slice_figure
from state import (MAX_FILE_VOXELS, MAX_MODEL_VOXELS, default_model, expected_accuracy, fail,
                   guarded, model, models_for, ok, timed)
from uploads import read_nifti

MNI_EXAMPLE = "MNI152 2009 template (nilearn), 2 mm"
AXES = {"sagittal": 0, "coronal": 1, "axial": 2}


def prepare(volume: np.ndarray, zooms, spacing: float) -> torch.Tensor:
    """(D, H, W) array at voxel size ``zooms`` mm -> (1, 1, D', H', W') at ``spacing`` mm,
    intensities in [0, 1] like the training T1 (divided by the 99.5th percentile of the
    non-zero voxels, clipped). Like the template, the scan should be brain-extracted."""
    size = [max(1, round(n * z / spacing)) for n, z in zip(volume.shape, zooms)]
    if math.prod(size) > MAX_MODEL_VOXELS:
        raise fail(f"volume: expected at most {MAX_MODEL_VOXELS:,} voxels at {spacing:g} mm "
                   f"(about 106³), got {'×'.join(map(str, size))} = {math.prod(size):,}; crop "
                   f"it to the brain")
    if min(size) < 8:
        raise fail(f"volume: expected at least 8 voxels per axis at {spacing:g} mm, got {size}")
    x = torch.from_numpy(volume)[None, None]  # (D, H, W) -> (1, 1, D, H, W), no copy
    x = F.interpolate(x, size=size, mode="trilinear", align_corners=False).clamp_(min=0)
    inside = x[x > 0]
    if inside.numel() == 0:
        raise fail("volume: expected some positive intensities, got an empty (all-zero) image")
    scale = float(torch.quantile(inside[:: max(1, inside.numel() // 1_000_000)], 0.995))
    return (x / max(scale, 1e-6)).clamp(0, 1)


def _slider(n: int | None = None):
    if n is None:
        return gr.Slider(minimum=0, maximum=1, value=0, step=1, interactive=False)
    return gr.Slider(minimum=0, maximum=n - 1, value=n // 2, step=1, interactive=True)


@guarded(lambda: (None, None, None, _slider(), "axial"))
def segment(model_name: str | None, upload: str | None):
    """Run the segmenter once.

    Returns:
        (state for the slice viewer, slice figure, class-volume figure, slider update, axis,
        status note).
    """
    net, meta = model(model_name)
    spacing = float(meta["data"].get("spacing", 2.0))
    reference = None
    if upload:
        data, zooms = read_nifti(upload)
        x = prepare(data, zooms, spacing)
        del data  # the model runs on the resampled copy only (bounded memory)
        name = upload.replace("\\", "/").rsplit("/", 1)[-1]
    else:
        image, labels = load_mni152(spacing=spacing)  # (1, D, H, W), (D, H, W)
        x, reference, name = torch.as_tensor(image)[None], np.asarray(labels), MNI_EXAMPLE

    def run():
        with torch.no_grad():  # the U-Net pads to its total stride and crops back itself
            return net(x)[0].argmax(0)  # (classes, D, H, W) -> (D, H, W)

    pred, ms = timed(run, repeats=1)
    pred = pred.numpy().astype(np.uint8)
    image = x[0, 0].numpy()
    classes = meta["classes"]
    state = {"image": image, "pred": pred, "classes": classes, "spacing": spacing}
    note = (f"**{name}** — {'×'.join(map(str, image.shape))} voxels at {spacing:g} mm, model "
            f"`{model_name}` ({meta['title']}; {expected_accuracy(meta)}): {ms:.0f} ms on this "
            f"machine's CPU.")
    if reference is not None:
        ax, lo, hi = mni152_split_bounds(reference.shape, "val")  # the held-out slab
        sl = [slice(None)] * 3
        sl[ax] = slice(lo, hi)
        dice = dice_per_class(pred[tuple(sl)], reference[tuple(sl)], len(classes))[1:]
        note += (" Dice vs the template's tissue labels on the held-out slab (never trained "
                 "on): " + ", ".join(f"{c} {_fmt_dice(v)}" for c, v in zip(classes[1:], dice))
                 + ".")
    fig = slice_figure(image, pred, axis="axial", class_names=classes, ras=True)
    vols = class_volume_figure(pred, spacing, class_names=classes, reference=reference)
    return state, fig, vols, _slider(image.shape[2]), "axial", ok(note)


def _fmt_dice(v: float) -> str:
    """A Dice score for the note; "n/a" for a class absent from both maps (see dice_per_class)."""
    return "n/a" if math.isnan(v) else f"{v:.2f}"


@guarded(lambda: (None,))
def show_slice(state: dict | None, axis: str, index: float):
    """Redraw the overlay for another axis/slice without re-running the model."""
    if not state:  # nothing segmented (yet, or the last run failed): keep its message
        return None, gr.update()
    if axis not in AXES:
        raise fail(f"axis: expected one of {list(AXES)}, got {axis!r}")
    n = state["image"].shape[AXES[axis]]
    index = int(index or 0)
    if not 0 <= index < n:
        raise fail(f"slice: expected 0 to {n - 1} along {axis}, got {index}")
    return slice_figure(state["image"], state["pred"], axis=axis, index=index,
                        class_names=state["classes"], ras=True), ok(f"{axis} slice {index}")


@guarded(lambda: (_slider(), None))
def change_axis(state: dict | None, axis: str):
    if not state:
        return _slider(), None, gr.update()
    n = state["image"].shape[AXES[axis]]
    fig, _ = show_slice(state, axis, n // 2)
    return _slider(n), fig, ok(f"{axis} slice {n // 2}")


def build() -> None:
    """The tab's components and events (call inside ``gr.Blocks``)."""
    with gr.Row():
        smodel = gr.Dropdown(models_for("segmentation"), value=default_model("segmentation"),
                             label="model")
        nifti = gr.File(label=f"…or upload a brain-extracted T1 NIfTI (.nii / .nii.gz, ≤ "
                              f"{MAX_FILE_VOXELS:,} voxels); default: MNI152",
                        file_types=[".nii", ".gz"], height=120)
    run_button = gr.Button("Segment", variant="primary")
    status = gr.Markdown(elem_id="volume-note")
    state = gr.State(None)
    with gr.Row():
        axis = gr.Radio(list(AXES), value="axial",
                        label="slice orientation (volumes are read in RAS order)")
        index = gr.Slider(0, 1, value=0, step=1, interactive=False,
                          label="slice (voxel index; enabled after Segment)")
    with gr.Row():
        slice_plot = gr.Plot(label="slice with segmentation overlay (axes: voxel indices)")
        vol_plot = gr.Plot(label="per-class volume")
    run_button.click(segment, [smodel, nifti], [state, slice_plot, vol_plot, index, axis,
                                                status],
                     api_name="segment", concurrency_limit=1, concurrency_id="volume")
    axis.input(change_axis, [state, axis], [index, slice_plot, status], api_name=False)
    # .change, not .release: arrow keys and the number box redraw too (latest value wins)
    index.change(show_slice, [state, axis, index], [slice_plot, status], api_name="slice",
                 trigger_mode="always_last")
