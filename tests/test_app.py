"""The Gradio app, driven through gradio_client against a launched server (committed zoo).

Each tab's main action returns the expected structure for the bundled examples. Every bad or
hostile input comes back as words in the tab's status output (the last one) — never a server
path — while the app's memory (psutil, sampled every 5 ms during the request) stays within the
stated per-request budget, and the app keeps serving; 8 concurrent requests all complete.
"""

from __future__ import annotations

import gzip
import json
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import av
import numpy as np
import pytest

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # the client too sends no telemetry
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
gradio_client = pytest.importorskip("gradio_client")
psutil = pytest.importorskip("psutil")
from gradio_client import Client, handle_file  # noqa: E402

from app_server import ROOT, running_app  # noqa: E402

from cakes_lite.official import official_layouts, resnet50_macs  # noqa: E402

ZOO = Path(os.environ.get("CAKES_LITE_ZOO", ROOT / "app" / "zoo"))  # as the app reads it
EXAMPLES = ROOT / "app" / "examples"
BUDGET_MB = 500  # app/state.py MEMORY_BUDGET_MB: peak of one request above the idle app
pytestmark = pytest.mark.skipif(not (ZOO / "index.json").is_file(),
                                reason="app/zoo is not built (python app/zoo_build.py)")


@pytest.fixture(scope="module")
def app():
    with running_app() as url:
        c = Client(url, verbose=False, analytics_enabled=False)
        c.pid = url.pid
        yield c
        c.close()


@contextmanager
def peak_memory(pid: int):
    """Yield a dict; on exit it holds ``idle_mb`` (before) and ``peak_mb`` (max RSS during)."""
    proc = psutil.Process(pid)
    out = {"idle_mb": proc.memory_info().rss / 2**20}
    out["peak_mb"] = out["idle_mb"]
    done = threading.Event()

    def sample():
        while not done.is_set():
            out["peak_mb"] = max(out["peak_mb"], proc.memory_info().rss / 2**20)
            time.sleep(0.005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        done.set()
        thread.join()
        out["above_idle_mb"] = out["peak_mb"] - out["idle_mb"]


def plotly_json(plot: dict) -> dict:
    assert plot["type"] == "plotly"
    return json.loads(plot["plot"])


def rows(df: dict) -> list[list]:
    return (df.get("value") or df)["data"]


def value(update):
    return update["value"] if isinstance(update, dict) and "value" in update else update


def zoo_models(task: str) -> list[dict]:
    index = json.loads((ZOO / "index.json").read_text())
    metas = [json.loads((ZOO / f"{n}.json").read_text()) for n in index["models"]]
    return [m for m in metas if m["task"] == task]


def assert_error(status: str, pattern: str) -> None:
    import re

    assert status.startswith("**⚠ Error:**"), status
    assert re.search(pattern, status), status
    assert "/tmp/" not in status and str(ROOT) not in status and "gradio/" not in status, status


def test_layout_explorer_official_and_ours(app):
    bars, grid, costs, layer, shapes, note = app.predict("official:CAKES123D_C", None, False,
                                                         api_name="/explore")
    fig = plotly_json(bars)
    assert {t["name"] for t in fig["data"]} == {"3×3×3", "1×3×3", "3×1×1"}
    assert len(fig["data"][0]["x"]) == 16 and fig["layout"]["height"]
    assert len(plotly_json(grid)["data"][0]["z"]) == 16
    table = rows(costs)
    # official CAKES^C 1,2,3D: under half of the 16 layers' 3D MACs (0.464, analytic)
    assert table[1][0] == "full 3D" and table[0][3] == pytest.approx(0.464, abs=1e-3)
    # whole network = cl.profile(resnet50_i3d(layout=…)) at 1×3×8×224² (test_resnet_i3d.py)
    assert [r[1] for r in table[2:]] == pytest.approx([38496.99, 62292.46], abs=0.01)
    assert [r[2] for r in table[2:]] == pytest.approx([35.0294, 46.4991], abs=1e-4)
    assert "8×224×224" in note and not note.startswith("**⚠")
    assert value(layer) == "layer1.0.conv2"
    scenes = plotly_json(shapes)
    assert [t["type"] for t in scenes["data"]].count("mesh3d") >= 2
    assert "64 input → 64 output channels" in scenes["layout"]["title"]["text"]
    cakes = [m for m in zoo_models("classification") if m["layout"]]
    _, _, costs, _, _, note = app.predict(f"zoo:{cakes[0]['name']}", None, True,
                                          api_name="/explore")
    assert 0 < rows(costs)[0][3] < 1 and "cakes_lite.profile" in note


def test_kernel_picture_of_one_layer(app):
    meta = [m for m in zoo_models("classification") if m["layout"]][0]
    layout = json.loads((ZOO / meta["layout"]).read_text())
    name, split = next(iter(layout["layers"].items()))
    fig, note = app.predict(f"zoo:{meta['name']}", None, name, api_name="/kernels")
    meshes = [t for t in plotly_json(fig)["data"] if t["type"] == "mesh3d"]
    assert len(meshes) == sum(1 for c in split.values() if c)
    assert name in note


@pytest.mark.parametrize("task,network", [("segmentation", "unet3d"),
                                          ("classification", "resnet3d")])
def test_uploaded_layout_is_matched_to_its_network(app, tmp_path, task, network):
    meta = [m for m in zoo_models(task) if m["layout"]][0]
    path = tmp_path / "mine.json"
    path.write_text((ZOO / meta["layout"]).read_text())
    out = app.predict("official:CAKES12D_P", handle_file(str(path)), False, api_name="/explore")
    costs, note = out[2], out[-1]
    assert f"`{network}`" in note and "mine.json (uploaded)" in note and "uploaded file" in note
    assert rows(costs)[0][1] == pytest.approx(meta["macs"] / 1e6, abs=0.01)


def test_compare_two_layouts(app):
    fig, costs, note = app.predict("official:CAKES12D_P", "official:CAKES23D_C", True,
                                   api_name="/compare")
    assert {t.get("xaxis") for t in plotly_json(fig)["data"]} == {"x", "x2"}
    assert len(rows(costs)) == 2 and "vs" in note


@pytest.mark.parametrize("meta", zoo_models("classification"), ids=lambda m: m["name"])
def test_video_inference_on_example(app, meta):
    example = sorted(p.name for p in EXAMPLES.glob("*.mp4"))[0]
    frames, label, note = app.predict(meta["name"], example, None, api_name="/classify")
    assert len(label["confidences"]) == 5 and label["label"] in meta["classes"]
    probs = [c["confidence"] for c in label["confidences"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    assert plotly_json(frames)["data"][0]["type"] == "image"
    assert "ms per clip" in note and "expected accuracy" in note


def test_volume_inference_on_mni152_memory_and_slices(app):
    meta = zoo_models("segmentation")[0]  # the full 3D U-Net: the larger of the two
    app.predict(meta["name"], None, api_name="/segment")  # warm-up: model and template loaded
    with peak_memory(app.pid) as mem:
        slice_fig, vols, index, axis, note = app.predict(meta["name"], None,
                                                         api_name="/segment")
    print("MNI152", {k: round(v) for k, v in mem.items()})
    assert mem["above_idle_mb"] <= BUDGET_MB, mem
    traces = plotly_json(slice_fig)["data"]
    assert traces[0]["type"] == "heatmap" and len(traces) == len(meta["classes"])  # + overlays
    bars = plotly_json(vols)["data"]
    assert [t["name"] for t in bars] == ["prediction", "reference"]
    assert all(v > 0 for v in bars[0]["y"]) and "Dice" in note
    assert axis == "axial" and value(index) > 0
    again, status = app.predict("sagittal", 10, api_name="/slice")  # needs the session's state
    assert plotly_json(again)["data"][0]["type"] == "heatmap" and "sagittal" in status


def test_speed_tab_shows_batch_threads_and_a_reading(app):
    meta = [m for m in zoo_models("classification") if m["layout"]][0]
    for form, named in (("inference", "for_inference"), ("eager", "as loaded")):
        table, fig, note = app.predict(meta["name"], 2, 1, 2, form, api_name="/speed")
        names = [r[0] for r in rows(table)]
        assert names[0] == meta["name"] and len(names) == 2 and all(r[1] > 0 for r in rows(table))
        assert plotly_json(fig)["data"][0]["type"] == "bar"
        assert "batch 2" in note and "1 CPU thread" in note and "interleaved" in note
        assert named in note and ("model_speed.py" in note or "CAKES is faster" in note)
    with pytest.raises(Exception, match="'compiled'.*not in the list of choices"):
        app.predict(meta["name"], 2, 1, 2, "compiled", api_name="/speed")  # gradio refuses it


def test_speed_tab_times_the_papers_network_and_tunes_it_once(app):
    """ResNet-50 I3D (random weights) at the smallest clip: the 3D row, the layout's row with
    its MACs ratio, a reading; the second click reuses the tuned copy; too big an input is
    refused in words before anything is built."""
    macs = resnet50_macs(official_layouts()["CAKES12D_C"], 8, 32)
    for tuned in ("tuned in the network just now", "tuned earlier"):
        table, fig, note = app.predict("CAKES12D_C", 32, 1, 1, 1, api_name="/speed_i3d")
        (full, cakes) = rows(table)
        assert full[0] == "ResNet-50 I3D, full 3D" and full[2] == 1.0 and cakes[1] > 0
        assert "CAKES12D_C" in cakes[0] and cakes[4] == pytest.approx(
            macs["network"]["macs"] / macs["network"]["macs_3d"], abs=1e-3)
        assert tuned in note and "8 frames of 32²" in note and "random weights" in note.lower()
        assert [b["x"] for b in plotly_json(fig)["data"]] == [["full 3D", "CAKES^C 1,2D"]]
    table, fig, note = app.predict("CAKES123D_P", 160, 2, 1, 1, api_name="/speed_i3d")
    assert rows(table) == [] and fig is None
    assert "at most 35 GMACs per call" in note and "got batch 2 × 8×160² = 63.6 GMACs" in note


# -- hostile and broken uploads ---------------------------------------------------------------

def _nifti_header_only(path: Path, shape, dtype) -> Path:
    """A .nii.gz of about 85 bytes whose header declares ``shape`` (no voxel data)."""
    import nibabel as nib

    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(dtype)
    hdr["vox_offset"] = 352
    path.write_bytes(gzip.compress(hdr.binaryblock + b"\0" * 4, compresslevel=9))
    return path


def _nifti(path: Path, shape, zooms=(1.0, 1.0, 1.0)) -> Path:
    import nibabel as nib

    img = nib.Nifti1Image(np.ones(shape, dtype=np.float32), np.diag([*zooms, 1.0][:4]))
    nib.save(img, str(path))
    return path


def _truncated_nifti(path: Path) -> Path:
    full = _nifti(path.with_name("full.nii"), (40, 40, 40))
    path.write_bytes(gzip.compress(full.read_bytes()[:20_000]))
    return path


def _write_video(path: Path, frames: int, fps: int, size=(16, 16), fmt=None) -> Path:
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        img = np.zeros((size[1], size[0], 3), dtype=np.uint8)
        img[: size[1] // 2, : size[0] // 4] = (200, 60, 30)  # a block sliding right
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.roll(img, i, axis=1), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


BAD_VIDEOS = {
    "wrong type": (lambda d: (d / "notes.txt").write_text("hello") and d / "notes.txt",
                   "expected a mp4/webm/avi/mov/mkv|Invalid file"),
    "corrupt": (lambda d: (d / "broken.mp4").write_bytes(b"\x00not a video" * 50) and
                d / "broken.mp4", "could not decode"),
    "too long": (lambda d: _write_video(d / "long.mp4", frames=40, fps=1), "at most 30 s"),
    # a raw H.264 stream saved as .mp4: no duration, no frame count; 1,200 frames at 640×480
    "raw h264, 1200 frames": (lambda d: _write_video(d / "raw.mp4", 1200, 30, (640, 480),
                                                     fmt="h264"),
                              "at most 900 frames .*counted while decoding"),
}
BAD_VOLUMES = {
    "wrong type": (lambda d: (d / "scan.png").write_bytes(b"png") and d / "scan.png",
                   "expected a NIfTI|Invalid file"),  # Gradio's own check or ours
    "2000³ int16 header": (lambda d: _nifti_header_only(d / "bomb.nii.gz", (2000,) * 3,
                                                        np.int16), "declares 2000×2000×2000"),
    "2000³ float32 header": (lambda d: _nifti_header_only(d / "bomb32.nii.gz", (2000,) * 3,
                                                          np.float32), "declares 2000×2000×2000"),
    # within the 1024-per-axis cap, 8× the voxel limit: refused from the header alone (reading
    # voxels would fail differently: the file holds none)
    "512³ uint8 header": (lambda d: _nifti_header_only(d / "cube.nii.gz", (512,) * 3, np.uint8),
                          "at most 16,777,216 voxels .*declares 512×512×512"),
    "too big at 2 mm": (lambda d: _nifti(d / "wide.nii.gz", (60, 60, 60), (5.0, 5.0, 5.0)),
                        "at most 1,200,000 voxels at 2 mm"),
    "4D": (lambda d: _nifti(d / "dwi.nii.gz", (12, 12, 12, 3)), "expected a 3D volume"),
    "2D": (lambda d: _nifti(d / "slice.nii", (12, 12)), "expected a 3D volume"),
    "corrupt": (lambda d: (d / "bad.nii.gz").write_bytes(b"junk") and d / "bad.nii.gz",
                "could not read it as NIfTI"),
    "truncated": (lambda d: _truncated_nifti(d / "cut.nii.gz"), "could not read its voxels"),
}
BAD_LAYOUTS = {
    "malformed": ("{not json", "not valid JSON"),
    "huge": ('{"a": "' + "x" * 1_100_000 + '"}', "at most 1,000,000 bytes"),
    "deeply nested": ("[" * 50_000 + "]" * 50_000, "nested too deeply|not a valid layout"),
    "binary": (None, "expected UTF-8"),
    "unknown sub-kernel": ('{"layer1.0.conv1": {"2x2x2": 16}}', "unknown sub-kernel"),
    "names of no network": ('{"layer9.0.conv1": {"kxkxk": 7}}', "belong to no bundled network"),
    "wrong width": ('{"layer1.0.conv2": {"kxkxk": 3}}', "does not fit ResNet-50"),
}


@pytest.mark.parametrize("case", list(BAD_VIDEOS))
def test_bad_video_gives_message_within_memory(app, tmp_path, case):
    make, message = BAD_VIDEOS[case]
    model = zoo_models("classification")[0]["name"]
    upload = handle_file(str(make(tmp_path)))
    frames = None
    try:
        with peak_memory(app.pid) as mem:
            frames, label, status = app.predict(model, None, upload, api_name="/classify")
    except gradio_client.exceptions.AppError as e:  # Gradio's own file-type check
        status = f"**⚠ Error:** {e}"
    assert_error(status, message)
    print(case, {k: round(v) for k, v in mem.items()})
    assert mem["above_idle_mb"] <= BUDGET_MB, mem
    assert frames is None or case == "wrong type"


@pytest.mark.parametrize("case", list(BAD_VOLUMES))
def test_bad_volume_gives_message_within_memory(app, tmp_path, case):
    make, message = BAD_VOLUMES[case]
    model = zoo_models("segmentation")[0]["name"]
    upload = handle_file(str(make(tmp_path)))
    try:
        with peak_memory(app.pid) as mem:
            out = app.predict(model, upload, api_name="/segment")
        status = out[-1]
        assert out[0] is None  # no stale slice left behind
    except gradio_client.exceptions.AppError as e:  # Gradio's own file-type check
        status = f"**⚠ Error:** {e}"
    assert_error(status, message)
    print(case, {k: round(v) for k, v in mem.items()})
    assert mem["above_idle_mb"] <= BUDGET_MB, mem


@pytest.mark.parametrize("case", list(BAD_LAYOUTS))
def test_bad_layout_gives_message(app, tmp_path, case):
    text, message = BAD_LAYOUTS[case]
    path = tmp_path / "layout.json"
    if text is None:
        path.write_bytes(b"\xff\xfe\x00junk" * 10)
    else:
        path.write_text(text)
    with peak_memory(app.pid) as mem:
        out = app.predict("official:CAKES12D_P", handle_file(str(path)), False,
                          api_name="/explore")
    assert_error(out[-1], message)
    assert out[0] is None and out[1] is None  # the previous layout's plots are gone
    assert mem["above_idle_mb"] <= BUDGET_MB, mem


def test_largest_accepted_volume_runs_within_memory(app, tmp_path):
    import nibabel as nib

    data = np.zeros((256, 256, 256), dtype=np.int16)  # the most voxels a file may declare
    data[60:200, 50:210, 60:200] = 100
    path = tmp_path / "big.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.8, 0.8, 1.0])), str(path))  # -> 102³ at 2 mm
    del data
    model = zoo_models("segmentation")[0]["name"]
    app.predict(model, None, api_name="/segment")  # model loaded before measuring
    with peak_memory(app.pid) as mem:
        out = app.predict(model, handle_file(str(path)), api_name="/segment")
    print("largest", {k: round(v) for k, v in mem.items()})
    assert "102×102×102 voxels" in out[-1] and not out[-1].startswith("**⚠"), out[-1]
    assert mem["above_idle_mb"] <= BUDGET_MB, mem


def test_keeps_serving_and_handles_8_concurrent_requests(app):
    meta = zoo_models("classification")[-1]
    example = sorted(p.name for p in EXAMPLES.glob("*.mp4"))[0]
    jobs = [app.submit(meta["name"], example, None, api_name="/classify") for _ in range(8)]
    labels = [job.result(timeout=120)[1]["label"] for job in jobs]
    assert len(labels) == 8 and len(set(labels)) == 1  # same clip, same answer


@pytest.mark.parametrize("path,served", [(ZOO / "index.json", False),
                                        (Path("/etc/hostname"), False),
                                        (ROOT / "app" / "app.py", False),
                                        (EXAMPLES / "grow.mp4", True)])
def test_only_the_apps_own_folders_are_served(app, path, served):
    import urllib.error
    import urllib.request

    url = f"{app.src.rstrip('/')}/gradio_api/file={path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    assert (status == 200) == served, (path, status)
