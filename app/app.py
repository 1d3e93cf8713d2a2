"""cakes_lite app: explore searched kernel layouts, run the bundled models, compare their speed.

Run ``python app/app.py`` (or ``make demo``): serves on http://127.0.0.1:7860. Host and port
follow Gradio's ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT``. No share link, no analytics,
uploads capped at ``MAX_FILE_SIZE``, server-side rendering off, and only ``app/examples`` is
served besides Gradio's own upload cache. Everything runs offline on the CPU.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # app modules, then the cakes_lite checkout

import gradio as gr  # noqa: E402

import handlers  # noqa: E402
import inference  # noqa: E402

MAX_FILE_SIZE = "50mb"
INTRO = """# cakes_lite — channel-wise automatic kernel shrinking
CAKES (Yu et al., AAAI 2021) replaces each 3×3×3 convolution *channel by channel* with cheaper
sub-kernels (1×3×3 spatial, 3×1×1 temporal, …) and searches how many channels each gets.
Explore the searched layouts (ours and the paper authors' ResNet-50 ones), run the bundled tiny
models on a clip or a brain MRI, and time them against full 3D on this machine."""


def build_demo() -> gr.Blocks:
    """The Blocks app (not launched)."""
    layouts = handlers.layout_choices()
    first = layouts[0][1] if layouts else None
    official = [v for _, v in layouts if v.startswith("official:")]
    video_models = handlers.models_for("classification")
    volume_models = handlers.models_for("segmentation")
    clips = inference.example_clips()
    with gr.Blocks(title="cakes_lite", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(INTRO)
        with gr.Tab("Layout explorer"):
            with gr.Row():
                choice = gr.Dropdown(layouts, value=first, label="bundled layout", scale=3)
                upload = gr.File(label="…or upload a layout JSON", file_types=[".json"],
                                 scale=2, height=120)
                normalize = gr.Checkbox(False, label="shares instead of channel counts")
            show = gr.Button("Show layout", variant="primary")
            note = gr.Markdown(elem_id="layout-note")
            bars = gr.Plot(label="channels per sub-kernel, per layer", elem_id="layout-bars")
            grid = gr.Plot(label="per-channel sub-kernel")
            costs = gr.Dataframe(label="cost vs full 3D", interactive=False)
            gr.Markdown("### Compare two layouts")
            with gr.Row():
                a = gr.Dropdown(layouts, value=official[0] if official else first, label="A")
                b = gr.Dropdown(layouts, value=official[1] if len(official) > 1 else first,
                                label="B")
                compare = gr.Button("Compare")
            cmp_plot = gr.Plot(label="side by side")
            cmp_costs = gr.Dataframe(label="costs (each vs its full 3D network)",
                                     interactive=False)
            outs = [bars, grid, costs, note]
            show.click(handlers.explore, [choice, upload, normalize], outs, api_name="explore")
            demo.load(handlers.explore, [choice, upload, normalize], outs, api_name=False)
            compare.click(handlers.compare, [a, b, normalize], [cmp_plot, cmp_costs],
                          api_name="compare")

        with gr.Tab("Video inference"):
            with gr.Row():
                vmodel = gr.Dropdown(video_models, value=handlers.default_model("classification"),
                                     label="model")
                example = gr.Dropdown(clips, value=clips[0] if clips else None,
                                      label="example clip (used when nothing is uploaded)")
            video = gr.Video(label=f"…or upload a short video ({', '.join(handlers.VIDEO_TYPES)}"
                                   f", ≤ {handlers.MAX_VIDEO_SECONDS:.0f} s)",
                             sources=["upload"], include_audio=True, height=240)
            classify = gr.Button("Classify", variant="primary")
            vnote = gr.Markdown(elem_id="video-note")
            with gr.Row():
                top5 = gr.Label(num_top_classes=5, label="top-5 classes", elem_id="top5")
                frames = gr.Plot(label="frames the model sees")
            classify.click(inference.classify, [vmodel, example, video], [frames, top5, vnote],
                           api_name="classify")

        with gr.Tab("Volume inference"):
            with gr.Row():
                smodel = gr.Dropdown(volume_models, value=handlers.default_model("segmentation"),
                                     label="model")
                nifti = gr.File(label="…or upload a NIfTI (.nii / .nii.gz); default: MNI152",
                                file_types=[".nii", ".gz"], height=120)
            run_seg = gr.Button("Segment", variant="primary")
            snote = gr.Markdown()
            state = gr.State(None)
            with gr.Row():
                axis = gr.Radio(["axial", "coronal", "sagittal"], value="axial",
                                label="slice orientation (volumes are read in RAS order)")
                index = gr.Slider(0, 100, value=50, step=1, label="slice")
            with gr.Row():
                slice_plot = gr.Plot(label="slice with segmentation overlay")
                vol_plot = gr.Plot(label="per-class volume")
            run_seg.click(_segment, [smodel, nifti], [state, slice_plot, vol_plot, snote, index,
                                                      axis], api_name="segment")
            axis.change(_axis, [state, axis], [index, slice_plot], api_name=False)
            index.release(inference.show_slice, [state, axis, index], slice_plot,
                          api_name="slice")

        with gr.Tab("Speed"):
            with gr.Row():
                pmodel = gr.Dropdown(video_models + volume_models,
                                     value=handlers.default_model("classification"),
                                     label="model (timed against the full 3D one of its task)")
                repeats = gr.Slider(1, 50, value=10, step=1, label="timed rounds")
                measure = gr.Button("Measure", variant="primary")
            pnote = gr.Markdown()
            with gr.Row():
                ptable = gr.Dataframe(label="latency on this machine", interactive=False)
                pplot = gr.Plot(label="median latency")
            measure.click(inference.speed, [pmodel, repeats], [ptable, pplot, pnote],
                          api_name="speed", concurrency_limit=1, concurrency_id="speed")
    return demo


def _segment(model_name, upload):
    state, fig, vols, note, last, mid = inference.segment(model_name, None, upload)
    return state, fig, vols, note, gr.Slider(minimum=0, maximum=last, value=mid), "axial"


def _axis(state, axis):
    if not state:
        return gr.Slider(), None
    n = state["image"].shape[{"sagittal": 0, "coronal": 1, "axial": 2}[axis]]
    return (gr.Slider(minimum=0, maximum=n - 1, value=n // 2),
            inference.show_slice(state, axis, n // 2))


def main() -> None:
    demo = build_demo()
    demo.queue(default_concurrency_limit=2, max_size=64)
    demo.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        share=False, ssr_mode=False, max_file_size=MAX_FILE_SIZE,
        allowed_paths=[str(handlers.EXAMPLES)], show_error=True,
        footer_links=["api"],
    )


if __name__ == "__main__":
    main()
