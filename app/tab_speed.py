"""Speed tab: a zoo model and the full 3D model of its task, timed interleaved on the same input,
at a batch size and thread count the user picks (both shown), with an honest reading; below it
the paper's ResNet-50 I3D against an official layout (``speed_i3d``), where CAKES does save
time, so the two sit side by side."""

from __future__ import annotations

import math
import os

import gradio as gr
import plotly.graph_objects as go
import torch

import speed_i3d
from cakes_lite.deploy.inference import for_inference
from cakes_lite.speed import compare_latency
from state import (MAX_MODEL_VOXELS, baseline_for, default_model, fail, guarded, model,
                   models_for, ok)

HEADERS = ["model", "median ms", "time ÷ 3D", "MMACs", "MACs ÷ 3D"]
MAX_BATCH = 8
MAX_THREADS = max(1, os.cpu_count() or 1)


def reading(ratio: float, macs_ratio: float, batch: int, threads: int, shape) -> str:
    """One honest sentence on why CAKES is (or is not) faster at this size."""
    at = f"at batch {batch} with {threads} thread{'s' * (threads > 1)}, input {list(shape)}"
    if ratio < 0.95:
        return (f"CAKES is faster {at} ({ratio:.2f}× the 3D time for {macs_ratio:.2f}× the "
                f"MACs): here the arithmetic saved outweighs the extra work of running one "
                f"convolution per sub-kernel group and joining the groups.")
    why = ("These small zoo networks (16–64 channels, 8×32×32 clips or 64³ patches) spend much "
           "of each layer's time on fixed costs, not arithmetic: a CAKES layer runs one "
           "convolution per sub-kernel group, and CPU convolution kernels compute output "
           "channels in blocks of 16 (AVX-512) or 8 (AVX2), so a group of 5 channels costs like "
           "16; the inference form then runs such a layer as its parent's dense conv. Layouts "
           "whose groups are whole blocks (video_cakes_block16, volume_cakes_block8) turn the "
           "saved MACs into saved time; so do wider layers, larger inputs and batches.")
    verdict = ("slower" if ratio > 1.05 else "about as fast")
    return (f"CAKES is {verdict} {at} ({ratio:.2f}× the 3D time) although it needs only "
            f"{macs_ratio:.2f}× the MACs. {why} `benchmarks/model_speed.py` and "
            f"`benchmarks/layer_speed.py` measure where the crossover lies on a machine.")


FORMS = {"inference": "inference form (cakes_lite.for_inference: BatchNorm folded, "
                      "channels_last_3d, plans measured)",
         "eager": "as loaded (eager PyTorch)"}
_INFERENCE: dict[str, torch.nn.Module] = {}  # model name -> its for_inference copy


def _form(name: str, net: torch.nn.Module, form: str) -> torch.nn.Module:
    if form == "eager":
        return net
    if name not in _INFERENCE:
        _INFERENCE[name] = for_inference(net)
    return _INFERENCE[name]


@guarded(lambda: (gr.Dataframe(value=[], headers=HEADERS), None))
def speed(model_name: str | None, batch: float, threads: float, repeats: float,
          form: str = "inference"):
    """Interleaved median latency of a model vs the zoo's full 3D model of the same task, both
    in the same ``form`` (a key of :data:`FORMS`).

    Returns:
        (table, bar figure, status note).
    """
    if form not in FORMS:
        raise fail(f"form: expected one of {list(FORMS)}, got {form!r}")

    batch, threads, repeats = int(batch or 0), int(threads or 0), int(repeats or 0)
    if not 1 <= repeats <= 50:
        raise fail(f"timed rounds: expected 1 to 50, got {repeats}")
    if not 1 <= batch <= MAX_BATCH:
        raise fail(f"batch: expected 1 to {MAX_BATCH}, got {batch}")
    if not 1 <= threads <= MAX_THREADS:
        raise fail(f"threads: expected 1 to {MAX_THREADS} (this machine's cores), got {threads}")
    net, meta = model(model_name)
    base_name = baseline_for(meta["task"])
    base, base_meta = model(base_name)
    shape = (batch, *meta["input_shape"][1:])
    if meta["task"] == "segmentation" and math.prod(shape[2:]) * batch > MAX_MODEL_VOXELS:
        raise fail(f"batch: a {meta['task']} batch may hold at most {MAX_MODEL_VOXELS:,} voxels "
                   f"(memory limit), got {batch} × {'×'.join(map(str, shape[2:]))}")
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    cases = {model_name: (_form(model_name, net, form), x)}
    if base_name != model_name:  # the same input tensor and form for both
        cases[base_name] = (_form(base_name, base, form), x)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            times = compare_latency(cases, repeats=repeats, warmup=2)
    finally:
        torch.set_num_threads(before)
    ref = times[base_name]
    rows = []
    for name, ms in times.items():
        m = meta if name == model_name else base_meta
        rows.append([name, round(ms, 2), round(ms / ref, 3), round(batch * m["macs"] / 1e6, 1),
                     round(m["macs"] / base_meta["macs"], 3)])
    fig = go.Figure(go.Bar(x=[r[0] for r in rows], y=[r[1] for r in rows],
                           marker_color=["#0072B2", "#D55E00"][: len(rows)],
                           text=[f"{r[1]:.1f} ms" for r in rows], textposition="auto"))
    fig.update_layout(height=300, yaxis_title="median latency (ms)", autosize=True,
                      margin=dict(l=60, r=10, t=30, b=40))
    note = (f"Input {list(shape)} (batch {batch}), {threads} CPU thread"
            f"{'s' * (threads > 1)}, both models {FORMS[form]}, {repeats} interleaved rounds "
            f"(one call of each model per round, same input) after 2 warm-up rounds; medians. ")
    if base_name != model_name:
        note += reading(times[model_name] / ref, meta["macs"] / base_meta["macs"], batch,
                        threads, shape)
    else:
        note += "This is the full 3D model itself; pick a CAKES model to compare."
    return gr.Dataframe(rows, headers=HEADERS), fig, ok(note)


def build() -> None:
    """The tab's components and events (call inside ``gr.Blocks``)."""
    gr.Markdown("### The bundled tiny models (16–64 channels)")
    with gr.Row():
        pmodel = gr.Dropdown(models_for("classification") + models_for("segmentation"),
                             value=default_model("classification"),
                             label="model (timed against the full 3D one of its task)")
        batch = gr.Slider(1, MAX_BATCH, value=1, step=1, label="batch size")
        threads = gr.Slider(1, MAX_THREADS, value=MAX_THREADS, step=1, label="CPU threads")
        repeats = gr.Slider(1, 50, value=10, step=1, label="timed rounds")
    form = gr.Radio([(label, key) for key, label in FORMS.items()], value="inference",
                    label="form of both models")
    measure = gr.Button("Measure", variant="primary")
    status = gr.Markdown(elem_id="speed-note")
    # stacked, not side by side: the table keeps all its columns on narrow screens
    table = gr.Dataframe(headers=HEADERS, label="latency on this machine", interactive=False,
                         wrap=True)
    plot = gr.Plot(label="median latency")
    measure.click(speed, [pmodel, batch, threads, repeats, form], [table, plot, status],
                  api_name="speed", concurrency_limit=1, concurrency_id="speed")
    speed_i3d.build()
