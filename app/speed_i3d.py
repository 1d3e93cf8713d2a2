"""The Speed tab's second part: the paper's network, ResNet-50 I3D with random weights (time does
not depend on them), full 3D against one of the authors' six layouts, both in inference form.

The CAKES copy is tuned once per (layout, input shape, threads) inside the network
(``for_inference(model, example=x)``, a few seconds at 8×112²) and cached with its 3D parent, so
later clicks only time. Only one tuned copy per network is kept (each holds ~190 MB of weights).
"""

from __future__ import annotations

import os
import threading

import gradio as gr
import plotly.graph_objects as go
import torch

from cakes_lite.deploy.inference import for_inference
from cakes_lite.models import resnet50_i3d
from cakes_lite.official import OFFICIAL_TITLES, official_layouts, resnet50_macs
from cakes_lite.speed import compare_latency
from state import fail, guarded, ok

SIDES = (32, 64, 112, 160)  # frame side of the 8-frame clips offered
MAX_GMACS = 35.0  # per call (3D network): 8×160² batch 1 is 31.8, 8×224² batch 1 62.3
MAX_BATCH = 2
MAX_THREADS = max(1, os.cpu_count() or 1)
TUNE_BUDGET_S = 8.0  # tune_plans(budget_s=): a first click at 8×112² returns in ~10–20 s
HEADERS = ["network", "median ms", "time ÷ 3D", "GMACs", "MACs ÷ 3D", "efficiency"]

_lock = threading.Lock()
_cache: dict[str, tuple[tuple, torch.nn.Module]] = {}  # "3d" / "cakes" -> (key, network)


def _network(which: str, key: tuple, build) -> tuple[torch.nn.Module, bool]:
    """The cached inference copy for ``key``, built (and tuned) if the key changed."""
    with _lock:
        hit = _cache.get(which)
        if hit is not None and hit[0] == key:
            return hit[1], False
        _cache.pop(which, None)  # free the old copy before building the next one
        torch.manual_seed(0)
        net = build()
        _cache[which] = (key, net)
        return net, True


def reading(ratio: float, mac_ratio: float, title: str) -> str:
    """What the measurement says, next to what the tiny zoo models show."""
    eff = mac_ratio / ratio
    verdict = (f"CAKES saves time here: {ratio:.2f}× the 3D time for {mac_ratio:.2f}× the MACs "
               f"(efficiency {eff:.2f}; 1 = time saved exactly as MACs)." if ratio < 0.95 else
               f"CAKES is not faster here ({ratio:.2f}× the 3D time for {mac_ratio:.2f}× the "
               f"MACs).")
    return (f"{verdict} At ResNet-50 width (64–512 channels) the searched groups of {title} "
            "fill whole channel blocks of the CPU's convolution kernels, so the saved "
            "arithmetic shows; the bundled tiny models above (16–64 channels, small clips) are "
            "per-call bound and run at about their parent's speed. Random weights: time does "
            "not depend on them. benchmarks/model_speed.py --i3d measures the full grid.")


@guarded(lambda: (gr.Dataframe(value=[], headers=HEADERS), None))
def speed_i3d(layout: str, side: float, batch: float, threads: float, repeats: float):
    """Interleaved median latency of ResNet-50 I3D (full 3D) and with ``layout``.

    Returns:
        (table, bar figure, status note).
    """
    if layout not in OFFICIAL_TITLES:
        raise fail(f"layout: expected one of {list(OFFICIAL_TITLES)}, got {layout!r}")
    side, batch, threads, repeats = (int(v or 0) for v in (side, batch, threads, repeats))
    if side not in SIDES:
        raise fail(f"frame side: expected one of {list(SIDES)}, got {side}")
    if not 1 <= batch <= MAX_BATCH:
        raise fail(f"batch: expected 1 to {MAX_BATCH}, got {batch}")
    if not 1 <= threads <= MAX_THREADS:
        raise fail(f"threads: expected 1 to {MAX_THREADS} (this machine's cores), got {threads}")
    if not 1 <= repeats <= 20:
        raise fail(f"timed rounds: expected 1 to 20, got {repeats}")
    cost = resnet50_macs(official_layouts()[layout], frames=8, size=side)["network"]
    gmacs = batch * cost["macs_3d"] / 1e9
    if gmacs > MAX_GMACS:
        raise fail(f"input: at most {MAX_GMACS:g} GMACs per call on this demo, got batch "
                   f"{batch} × 8×{side}² = {gmacs:.1f} GMACs; choose a smaller side or batch")
    shape = (batch, 3, 8, side, side)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        parent, _ = _network("3d", ("3d",), lambda: for_inference(resnet50_i3d().eval()))
        cakes, tuned = _network("cakes", (layout, shape, threads), lambda: for_inference(
            resnet50_i3d(layout=layout).eval(), example=x,
            tuning={"budget_s": TUNE_BUDGET_S}))
        with torch.no_grad():
            times = compare_latency({"3d": (parent, x), layout: (cakes, x)}, repeats=repeats,
                                    warmup=1)
    finally:
        torch.set_num_threads(before)
    ratio, mac_ratio = times[layout] / times["3d"], cost["macs"] / cost["macs_3d"]
    rows = [["ResNet-50 I3D, full 3D", round(times["3d"], 1), 1.0, round(gmacs, 2), 1.0, 1.0],
            [f"ResNet-50 I3D, {OFFICIAL_TITLES[layout]} ({layout})", round(times[layout], 1),
             round(ratio, 3), round(batch * cost["macs"] / 1e9, 2), round(mac_ratio, 3),
             round(mac_ratio / ratio, 2)]]
    fig = go.Figure(go.Bar(x=["full 3D", OFFICIAL_TITLES[layout]], y=[r[1] for r in rows],
                           marker_color=["#D55E00", "#0072B2"],
                           text=[f"{r[1]:.0f} ms" for r in rows], textposition="auto"))
    fig.update_layout(height=300, yaxis_title="median latency (ms)", autosize=True,
                      margin=dict(l=60, r=10, t=30, b=40))
    note = (f"Input {list(shape)} (batch {batch}, 8 frames of {side}²), {threads} CPU thread"
            f"{'s' * (threads > 1)}, both networks in inference form (cakes_lite.for_inference), "
            f"the CAKES one {'tuned in the network just now' if tuned else 'tuned earlier'} "
            f"and cached; {repeats} interleaved rounds after 1 warm-up round; medians. "
            + reading(ratio, mac_ratio, OFFICIAL_TITLES[layout]))
    return gr.Dataframe(rows, headers=HEADERS), fig, ok(note)


def build() -> None:
    """The section's components and events (inside the Speed tab)."""
    gr.Markdown("### The paper's network: ResNet-50 I3D (random weights)\nFull 3D against one "
                "of the authors' six searched layouts, at a small clip so a click returns in "
                "seconds (the first click for a layout and input also tunes the CAKES copy).")
    with gr.Row():
        layout = gr.Dropdown([(f"{t} ({k})", k) for k, t in OFFICIAL_TITLES.items()],
                             value="CAKES123D_P", label="official layout")
        side = gr.Dropdown(list(SIDES), value=112, label="frame side (8 frames)")
        batch = gr.Slider(1, MAX_BATCH, value=1, step=1, label="batch size")
        threads = gr.Slider(1, MAX_THREADS, value=MAX_THREADS, step=1, label="CPU threads")
        repeats = gr.Slider(1, 20, value=3, step=1, label="timed rounds")
    measure = gr.Button("Measure ResNet-50 I3D", variant="primary")
    status = gr.Markdown(elem_id="speed-i3d-note")
    table = gr.Dataframe(headers=HEADERS, label="ResNet-50 I3D on this machine",
                         interactive=False, wrap=True)
    plot = gr.Plot(label="median latency")
    measure.click(speed_i3d, [layout, side, batch, threads, repeats], [table, plot, status],
                  api_name="speed_i3d", concurrency_limit=1, concurrency_id="speed")
