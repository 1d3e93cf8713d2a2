"""Video inference tab: classify a bundled example clip or an uploaded (checked) video."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import torch

from cakes_lite.viz.video import clip_strip, topk
from state import (EXAMPLES, MAX_VIDEO_FRAMES, MAX_VIDEO_SECONDS, VIDEO_TYPES, default_model,
                   expected_accuracy, fail, guarded, model, models_for, ok, timed)
from uploads import decode_video


def example_clips() -> list[str]:
    """File names of the bundled example clips (one per class, never seen in training)."""
    return sorted(p.name for p in EXAMPLES.glob("*.mp4"))


@guarded(lambda: (None, None))
def classify(model_name: str | None, example: str | None, upload: str | None):
    """Frames strip, top-5 classes {name: probability}, status note with latency."""
    net, meta = model(model_name)
    if upload:
        path = Path(upload)
    elif example:
        path = EXAMPLES / Path(example).name
        if not path.is_file():
            raise fail(f"example: expected one of {example_clips()}, got {example!r}")
    else:
        raise fail("video: choose an example clip or upload a video")
    _, c, t, h, w = meta["input_shape"]
    clip = decode_video(path, frames=t, size=h)  # (3, T, H, W) float32 in [0, 1]

    def run():
        with torch.no_grad():
            return net(clip[None]).softmax(1)[0]  # (1, classes) -> (classes,)

    probs, ms = timed(run)
    top = topk(probs, meta["classes"], k=5)
    best = next(iter(top))
    truth = path.stem if path.stem in meta["classes"] and not upload else None
    verdict = ("" if truth is None else
               " ✓ right" if best == truth else f" ✗ wrong (the clip shows *{truth}*)")
    note = (f"**{best}** ({top[best]:.0%}){verdict} — model `{model_name}` ({meta['title']}; "
            f"{expected_accuracy(meta)}). {ms:.1f} ms per clip on this machine's CPU (median "
            f"of 3, batch 1, input {list(meta['input_shape'][1:])}), "
            f"{meta['macs'] / 1e6:.1f} M MACs.")
    return clip_strip(clip, title=f"{path.name}: {t} frames at {h}×{w}"), top, ok(note)


def build() -> None:
    """The tab's components and events (call inside ``gr.Blocks``)."""
    clips = example_clips()
    with gr.Row():
        vmodel = gr.Dropdown(models_for("classification"),
                             value=default_model("classification"), label="model")
        example = gr.Dropdown(clips, value=clips[0] if clips else None,
                              label="example clip (used when nothing is uploaded)")
    # a File, not a Video: no browser playback of formats it cannot play (AVI), no re-encoding
    video = gr.File(label=f"…or upload a short video ({', '.join(VIDEO_TYPES)}; ≤ "
                          f"{MAX_VIDEO_FRAMES} frames, ≤ {MAX_VIDEO_SECONDS:.0f} s)",
                    file_types=list(VIDEO_TYPES), height=120)
    go_button = gr.Button("Classify", variant="primary")
    status = gr.Markdown(elem_id="video-note")
    with gr.Row():
        top5 = gr.Label(num_top_classes=5, label="top-5 classes", elem_id="top5")
        frames = gr.Plot(label="frames the model sees")
    go_button.click(classify, [vmodel, example, video], [frames, top5, status],
                    api_name="classify")
