"""cakes_lite app: explore searched kernel layouts, run the bundled models, compare their speed.

Run ``python app/app.py`` (or ``make demo``): serves on http://127.0.0.1:7860. Host and port
follow Gradio's ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT``. No share link, no analytics,
uploads capped at ``state.MAX_FILE_SIZE`` and checked before they are loaded (``uploads``),
server-side rendering off, and only ``app/examples`` is served besides Gradio's own upload cache.
Everything runs offline on the CPU.

One module per tab (``tab_layout``, ``tab_video``, ``tab_volume``, ``tab_speed``), shared state
and limits in ``state``; this file only wires them together.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # app modules, then the cakes_lite checkout

import gradio as gr  # noqa: E402

import state  # noqa: E402
import tab_layout  # noqa: E402
import tab_speed  # noqa: E402
import tab_video  # noqa: E402
import tab_volume  # noqa: E402

INTRO = """# cakes_lite — channel-wise automatic kernel shrinking
CAKES (Yu et al., AAAI 2021) replaces each 3×3×3 convolution *channel by channel* with cheaper
sub-kernels (1×3×3 spatial, 3×1×1 temporal, …) and searches how many channels each gets.
Explore the searched layouts (ours and the paper authors' ResNet-50 ones), run the bundled tiny
models on a clip or a brain MRI, and time them against full 3D on this machine."""

CSS = ".gradio-container .js-plotly-plot, .gradio-container table {max-width: 100%;}"


def build_demo() -> gr.Blocks:
    """The Blocks app (not launched)."""
    with gr.Blocks(title="cakes_lite", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(INTRO)
        gr.Markdown(state.LIMITS_TEXT, elem_id="limits")
        with gr.Tab("Layout explorer"):
            explore, inputs, outputs = tab_layout.build()
        with gr.Tab("Video inference"):
            tab_video.build()
        with gr.Tab("Volume inference"):
            tab_volume.build()
        with gr.Tab("Speed"):
            tab_speed.build()
        demo.load(explore, inputs, outputs, api_name=False)
    return demo


def main() -> None:
    demo = build_demo()
    demo.queue(default_concurrency_limit=2, max_size=64)
    demo.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        share=False, ssr_mode=False, max_file_size=state.MAX_FILE_SIZE,
        allowed_paths=[str(state.EXAMPLES)], show_error=True, footer_links=["api"], css=CSS,
    )


if __name__ == "__main__":
    main()
