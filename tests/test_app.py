"""The Gradio app, driven through gradio_client against a launched server (committed zoo).

Each tab's main action returns the expected structure for the bundled examples; every bad
input comes back as an error message (gradio_client raises AppError carrying it) and the app
keeps serving; 8 concurrent requests all complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import av
import numpy as np
import pytest

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # the client too sends no telemetry
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from app_server import ROOT, running_app  # noqa: E402

ZOO = Path(os.environ.get("CAKES_LITE_ZOO", ROOT / "app" / "zoo"))  # as the app reads it
EXAMPLES = ROOT / "app" / "examples"
pytestmark = pytest.mark.skipif(not (ZOO / "index.json").is_file(),
                                reason="app/zoo is not built (python -m cakes_lite zoo build)")


@pytest.fixture(scope="module")
def client():
    with running_app() as url:
        c = Client(url, verbose=False, analytics_enabled=False)
        yield c
        c.close()


def plotly_json(plot: dict) -> dict:
    assert plot["type"] == "plotly"
    return json.loads(plot["plot"])


def rows(df: dict) -> list[list]:
    return (df.get("value") or df)["data"]


def zoo_models(task: str) -> list[dict]:
    index = json.loads((ZOO / "index.json").read_text())
    metas = [json.loads((ZOO / f"{n}.json").read_text()) for n in index["models"]]
    return [m for m in metas if m["task"] == task]


def test_layout_explorer_official_and_ours(client):
    bars, grid, costs, note = client.predict("official:CAKES123D_C", None, False,
                                             api_name="/explore")
    fig = plotly_json(bars)
    assert {t["name"] for t in fig["data"]} == {"3×3×3", "1×3×3", "3×1×1"}
    assert len(fig["data"][0]["x"]) == 16 and fig["layout"]["height"]
    assert len(plotly_json(grid)["data"][0]["z"]) == 16
    table = rows(costs)
    # official CAKES^C 1,2,3D: under half of the 16 layers' 3D MACs (0.464, analytic)
    assert table[1][0] == "full 3D" and table[0][3] == pytest.approx(0.464, abs=1e-3)
    assert "8×224×224" in note
    cakes = [m for m in zoo_models("classification") if m["layout"]]
    _, _, costs, note = client.predict(f"zoo:{cakes[0]['name']}", None, True,
                                       api_name="/explore")
    assert 0 < rows(costs)[0][3] < 1 and "cakes_lite.profile" in note


@pytest.mark.parametrize("task,network", [("segmentation", "unet3d"),
                                          ("classification", "resnet3d")])
def test_uploaded_layout_is_matched_to_its_network(client, tmp_path, task, network):
    meta = [m for m in zoo_models(task) if m["layout"]][0]
    path = tmp_path / "mine.json"
    path.write_text((ZOO / meta["layout"]).read_text())
    bars, _, costs, note = client.predict("official:CAKES12D_P", handle_file(str(path)), False,
                                          api_name="/explore")
    assert f"`{network}`" in note and "mine.json" in note
    assert rows(costs)[0][1] == pytest.approx(meta["macs"] / 1e6, abs=0.01)


def test_compare_two_layouts(client):
    fig, costs = client.predict("official:CAKES12D_P", "official:CAKES23D_C", True,
                                api_name="/compare")
    fig = plotly_json(fig)
    assert {t.get("xaxis") for t in fig["data"]} == {"x", "x2"}
    assert len(rows(costs)) == 2


@pytest.mark.parametrize("meta", zoo_models("classification"), ids=lambda m: m["name"])
def test_video_inference_on_example(client, meta):
    example = sorted(p.name for p in EXAMPLES.glob("*.mp4"))[0]
    frames, label, note = client.predict(meta["name"], example, None, api_name="/classify")
    assert len(label["confidences"]) == 5 and label["label"] in meta["classes"]
    probs = [c["confidence"] for c in label["confidences"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    strip = plotly_json(frames)["data"][0]
    assert strip["type"] == "image" and "ms per clip" in note


def test_volume_inference_on_mni152_and_slices(client):
    meta = zoo_models("segmentation")[-1]
    slice_fig, vols, note, index, axis = client.predict(meta["name"], None, api_name="/segment")
    traces = plotly_json(slice_fig)["data"]
    assert traces[0]["type"] == "heatmap" and len(traces) == len(meta["classes"])  # + overlays
    bars = plotly_json(vols)["data"]
    assert [t["name"] for t in bars] == ["prediction", "reference"]
    assert all(v > 0 for v in bars[0]["y"]) and "Dice" in note
    index = index["value"] if isinstance(index, dict) else index  # a Slider update (new maximum)
    assert axis == "axial" and index > 0
    again = client.predict("sagittal", 10, api_name="/slice")  # needs the session's state
    assert plotly_json(again)["data"][0]["type"] == "heatmap"


def test_speed_tab(client):
    meta = [m for m in zoo_models("classification") if m["layout"]][0]
    table, fig, note = client.predict(meta["name"], 2, api_name="/speed")
    names = [r[0] for r in rows(table)]
    assert names[0] == meta["name"] and len(names) == 2 and all(r[2] > 0 for r in rows(table))
    assert plotly_json(fig)["data"][0]["type"] == "bar"


def _write_video(path: Path, frames: int, fps: int) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width = stream.height = 16
        stream.pix_fmt = "yuv420p"
        for _ in range(frames):
            img = np.zeros((16, 16, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _nifti(path: Path, shape) -> Path:
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.ones(shape, dtype=np.float32), np.eye(4)), str(path))
    return path


BAD_VIDEOS = {
    "wrong type": (lambda d: (d / "notes.txt").write_text("hello") and d / "notes.txt",
                   "expected a mp4/webm/avi"),
    "corrupt": (lambda d: (d / "broken.mp4").write_bytes(b"\x00not a video" * 50) and
                d / "broken.mp4", "could not decode"),
    "too long": (lambda d: _write_video(d / "long.mp4", frames=40, fps=1), "at most 30 s"),
}
BAD_VOLUMES = {
    "wrong type": (lambda d: (d / "scan.png").write_bytes(b"png") and d / "scan.png",
                   "expected a NIfTI|Invalid file type"),  # Gradio's own check or ours
    "4D": (lambda d: _nifti(d / "dwi.nii.gz", (12, 12, 12, 3)), "expected a 3D volume"),
    "2D": (lambda d: _nifti(d / "slice.nii", (12, 12)), "expected a 3D volume"),
    "corrupt": (lambda d: (d / "bad.nii.gz").write_bytes(b"junk") and d / "bad.nii.gz",
                "could not read"),
}
BAD_LAYOUTS = {
    "malformed": ("{not json", "not valid JSON"),
    "unknown sub-kernel": ('{"layer1.0.conv1": {"2x2x2": 16}}', "unknown sub-kernel"),
    "does not fit": ('{"layer9.0.conv1": {"kxkxk": 7}}', "does not fit"),
    "wrong width": ('{"layer1.0.conv2": {"kxkxk": 3}}', "does not fit"),
}


@pytest.mark.parametrize("case", list(BAD_VIDEOS))
def test_bad_video_gives_message(client, tmp_path, case):
    make, message = BAD_VIDEOS[case]
    model = zoo_models("classification")[0]["name"]
    with pytest.raises(AppError, match=message):
        client.predict(model, None, handle_file(str(make(tmp_path))), api_name="/classify")


@pytest.mark.parametrize("case", list(BAD_VOLUMES))
def test_bad_volume_gives_message(client, tmp_path, case):
    make, message = BAD_VOLUMES[case]
    model = zoo_models("segmentation")[0]["name"]
    with pytest.raises(AppError, match=message):
        client.predict(model, handle_file(str(make(tmp_path))), api_name="/segment")


@pytest.mark.parametrize("case", list(BAD_LAYOUTS))
def test_bad_layout_gives_message(client, tmp_path, case):
    text, message = BAD_LAYOUTS[case]
    path = tmp_path / "layout.json"
    path.write_text(text)
    with pytest.raises(AppError, match=message):
        client.predict("official:CAKES12D_P", handle_file(str(path)), False, api_name="/explore")


def test_keeps_serving_and_handles_8_concurrent_requests(client):
    meta = zoo_models("classification")[-1]
    example = sorted(p.name for p in EXAMPLES.glob("*.mp4"))[0]
    jobs = [client.submit(meta["name"], example, None, api_name="/classify") for _ in range(8)]
    labels = [job.result(timeout=120)[1]["label"] for job in jobs]
    assert len(labels) == 8 and len(set(labels)) == 1  # same clip, same answer


@pytest.mark.parametrize("path,served", [(ZOO / "index.json", False),
                                        (Path("/etc/hostname"), False),
                                        (ROOT / "app" / "app.py", False),
                                        (EXAMPLES / "grow.mp4", True)])
def test_only_the_apps_own_folders_are_served(client, path, served):
    import urllib.error
    import urllib.request

    url = f"{client.src.rstrip('/')}/gradio_api/file={path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    assert (status == 200) == served, (path, status)
