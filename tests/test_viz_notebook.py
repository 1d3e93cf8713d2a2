"""Fast tests of the notebook figures: cakes_lite.viz.kernels, .search and .training."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from torch import nn

import cakes_lite as cl
from cakes_lite.kernels import SUBKERNELS, kernel_volume
from cakes_lite.viz.kernels import (channel_strip, kernel_cubes, pretty, split_channels,
                                    subkernel_mask)
from cakes_lite.viz.search import allocation_evolution, importance_evolution, top_k_threshold
from cakes_lite.viz.training import (confusion_figure, confusion_matrix, curves, pair_confusion,
                                     pareto, pareto_front, predict)


# -- kernels ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(SUBKERNELS))
@pytest.mark.parametrize("k", [3, 5])
def test_subkernel_mask_is_centred_and_has_the_kernel_volume(name: str, k: int) -> None:
    mask = subkernel_mask(name, k)
    assert mask.shape == (k, k, k)
    assert mask.sum() == kernel_volume(name, k)
    assert mask[k // 2, k // 2, k // 2]  # every sub-kernel contains the centre tap
    # it is exactly the support of CAKESConv3d.dense_weight() for that sub-kernel
    layer = cl.CAKESConv3d(2, {name: 1}, kernel_size=k)
    nn.init.constant_(layer.weights[name], 1.0)
    assert np.array_equal(layer.dense_weight()[0, 0].detach().numpy() != 0, mask)


def test_split_channels_follows_the_layer_channel_order() -> None:
    split = {"kx1x1": 2, "kxkxk": 1, "1xkxk": 3}  # not canonical order
    assert split_channels(split) == ["kxkxk", "1xkxk", "1xkxk", "1xkxk", "kx1x1", "kx1x1"]
    assert list(cl.CAKESConv3d(4, split).split) == ["kxkxk", "1xkxk", "kx1x1"]


@pytest.mark.parametrize("split,max_channels,drawn", [
    ({"kxkxk": 2, "1xkxk": 3, "kx1x1": 1}, 32, {"kxkxk": 2, "1xkxk": 3, "kx1x1": 1}),
    ({"kxkxk": 40, "1xkxk": 23, "kx1x1": 1}, 16, None),   # sampled, tiny group kept
    ({"kxkxk": 0, "1xkxk": 5}, 8, {"1xkxk": 5}),           # empty groups are not drawn
])
def test_kernel_cubes_draws_each_group_with_its_voxels(split, max_channels, drawn) -> None:
    fig = kernel_cubes(split, max_channels=max_channels)
    meshes = [t for t in fig.data if isinstance(t, go.Mesh3d)]
    assert fig.layout.height > 0
    assert len(meshes) == sum(1 for c in split.values() if c)
    total = 0
    for mesh in meshes:
        name = next(n for n in SUBKERNELS if mesh.name.startswith(pretty(n) + " "))
        channels = len(mesh.x) // (8 * kernel_volume(name, 3))  # 8 vertices per voxel cube
        assert len(mesh.x) == channels * 8 * kernel_volume(name, 3)
        assert channels >= 1
        if drawn is not None:
            assert channels == drawn[name]
        total += channels
    assert total <= max(max_channels, len(meshes))


def _screen_axes(camera) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors of the picture's right and up directions for a plotly scene camera."""
    eye = np.array([camera.eye.x, camera.eye.y, camera.eye.z], float)
    view = -eye / np.linalg.norm(eye)
    right = np.cross(view, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    return right, np.cross(right, view)


def test_kernel_cubes_do_not_overlap_on_screen() -> None:
    """Orthographic view (nothing grows past the frame), and the drawn cubes of neighbouring
    channels stay apart in the picture: same row apart left-right, same column apart up-down."""
    per_row = 8
    fig = kernel_cubes({"kxkxk": 10, "1xkxk": 7, "kx1x1": 7}, per_row=per_row)
    camera = fig.layout.scene.camera
    assert camera.projection.type == "orthographic"
    right, up = _screen_axes(camera)
    wire = next(t for t in fig.data if isinstance(t, go.Scatter3d))
    pts = np.array([p for p in zip(wire.x, wire.y, wire.z) if None not in p], float)
    corners = pts.reshape(-1, 24, 3)  # 12 edges x 2 ends per channel's cube
    assert len(corners) == 24
    for axis, step in ((right, 1), (up, per_row)):  # neighbours along a row / a column
        extent = [(c @ axis).min() for c in corners], [(c @ axis).max() for c in corners]
        for i in range(len(corners) - step):
            if step == 1 and (i + 1) % per_row == 0:
                continue  # the last of a row and the first of the next are not neighbours
            a, b = (extent[0][i], extent[1][i]), (extent[0][i + step], extent[1][i + step])
            assert a[1] < b[0] or b[1] < a[0], f"cubes {i} and {i + step} overlap on screen"


def test_kernel_figures_reject_bad_splits() -> None:
    with pytest.raises(ValueError, match="unknown sub-kernel"):
        kernel_cubes({"3x3x3": 4})
    with pytest.raises(ValueError, match="at least one output channel"):
        channel_strip({"kxkxk": 0})


def test_channel_strip_covers_every_channel_once() -> None:
    split = {"kxkxk": 3, "1xkxk": 2, "kx1x1": 4}
    fig = channel_strip(split)
    kernel_rows = [t for t in fig.data if t.showlegend is not False]
    xs = sorted(x for t in kernel_rows for x in t.x)
    assert xs == list(range(9))
    assert "46%" in fig.layout.title.text  # (3·27 + 2·9 + 4·3) / (9·27) = 0.457
    assert fig.layout.height == 220


# -- search ----------------------------------------------------------------------------------
def _history(epochs: int = 3) -> dict:
    rng = np.random.default_rng(0)
    imp, lay = [], []
    for e in range(epochs):
        scores = {n: list(rng.random(4) * (e + 1)) for n in ("kxkxk", "1xkxk")}
        imp.append({"conv": scores})
        lay.append({"conv": {"kxkxk": 1 + e % 3, "1xkxk": 3 - e % 3}})
    return {"loss": [1.0] * epochs, "importance": imp, "layout": lay}


def test_top_k_threshold_is_the_c_out_th_largest() -> None:
    scores = {"kxkxk": [0.9, 0.1, 0.5], "1xkxk": [0.8, 0.7, 0.2]}
    assert top_k_threshold(scores) == 0.7  # C_out = 3: 0.9, 0.8, 0.7 kept


def test_importance_evolution_has_one_frame_per_epoch() -> None:
    hist = _history(3)
    fig = importance_evolution(hist)
    assert len(fig.frames) == 3
    assert len(fig.layout.sliders[0].steps) == 3
    assert fig.layout.height == 460
    last = fig.frames[-1].data
    assert sorted(last[0].y, reverse=True) == list(last[0].y)  # sorted curves
    assert last[-1].y[0] == pytest.approx(top_k_threshold(hist["importance"][-1]["conv"]))
    assert "epoch 3" in fig.layout.title.text
    with pytest.raises(ValueError, match="layer"):
        importance_evolution(hist, "nope")
    with pytest.raises(ValueError, match="history"):
        importance_evolution({"loss": []})


def test_allocation_evolution_shares_sum_to_one() -> None:
    fig = allocation_evolution(_history(4))
    ys = np.array([t.y for t in fig.data])  # (sub-kernels, epochs)
    assert np.allclose(ys.sum(0), 1.0)


def test_search_figures_accept_a_real_run_search_history() -> None:
    model = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1, bias=False), nn.BatchNorm3d(4),
                          nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 2))
    batches = [(torch.randn(4, 1, 4, 6, 6), torch.tensor([0, 1, 0, 1]))] * 2
    result = cl.run_search(model, batches, space="video-123d", mode="cost", epochs=2,
                           progress=False)
    assert len(importance_evolution(result.history, "0").frames) == 2
    assert len(allocation_evolution(result.history).data) >= 1


# -- training --------------------------------------------------------------------------------
def test_confusion_matrix_counts_and_validation() -> None:
    m = confusion_matrix([0, 0, 1, 2, 2], [0, 1, 1, 2, 0], 3)
    assert m.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]
    with pytest.raises(ValueError, match="class ids"):
        confusion_matrix([0, 3], [0, 0], 3)
    with pytest.raises(ValueError, match="shapes"):
        confusion_matrix([0, 1], [0], 3)


def test_pair_confusion_and_figure_outline_the_pairs() -> None:
    classes = ["left", "right", "still"]
    m = np.array([[6, 4, 0], [5, 5, 0], [0, 0, 10]])
    assert pair_confusion(m, classes, [("left", "right")]) == pytest.approx(9 / 20)
    fig = confusion_figure(m, classes, pairs=[("left", "right")])
    assert len(fig.layout.shapes) == 2
    assert np.allclose(np.array(fig.data[0].z).sum(1), 1.0)  # normalised rows
    with pytest.raises(ValueError, match="matrix"):
        confusion_figure(m[:2], classes)


def test_pareto_front_keeps_only_non_dominated_points() -> None:
    pts = [dict(name="3D", macs=10, score=0.8), dict(name="2D", macs=3, score=0.5),
           dict(name="bad", macs=12, score=0.6), dict(name="cakes", macs=5, score=0.8)]
    assert [pts[i]["name"] for i in pareto_front(pts)] == ["2D", "cakes"]
    fig = pareto(pts, height=300)
    assert fig.layout.height == 300
    assert any(t.name == "Pareto front" for t in fig.data)
    with pytest.raises(ValueError, match="lacks"):
        pareto([dict(name="x", macs=1)])


def test_pareto_names_points_in_the_legend_and_keeps_them_inside_the_axes() -> None:
    """Legend instead of text labels, one symbol per variant, coinciding points concentric
    (the later one smaller), error bars and axes padded around every marker and bar."""
    pts = [dict(name="3D", params=60_000, score=0.55, error=0.02),
           dict(name="2D", params=23_000, score=0.512),
           dict(name="volume-2d", params=23_000, score=0.511),   # on top of 2D
           dict(name="searched", params=30_000, score=0.53)]
    fig = pareto(pts, x="params", x_scale=1e-3)
    markers = [t for t in fig.data if t.name != "Pareto front"]
    assert [t.name for t in markers] == ["3D", "2D", "volume-2d", "searched"]
    assert all("text" not in t.mode for t in markers)
    assert len({t.marker.symbol for t in markers}) == len(markers)
    assert markers[2].marker.size[0] < markers[1].marker.size[0]   # concentric, both visible
    assert markers[3].marker.size[0] == markers[1].marker.size[0]  # far apart: full size
    assert list(markers[0].error_y.array) == [0.02] and not markers[1].error_y.visible
    x_lo, x_hi = fig.layout.xaxis.range
    y_lo, y_hi = fig.layout.yaxis.range
    assert x_lo < 23 and x_hi > 60
    assert y_lo < 0.511 and y_hi > 0.55 + 0.02


def test_predict_returns_targets_and_argmax_and_restores_mode() -> None:
    model = nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]))
        model.bias.zero_()
    model.train()
    x = torch.tensor([[2.0, 0, 0], [0, 2.0, 0], [0, 3.0, 0]])
    t, p = predict(model, [(x[:2], torch.tensor([0, 1])), (x[2:], torch.tensor([0]))])
    assert t.tolist() == [0, 1, 0] and p.tolist() == [0, 1, 1]
    assert model.training


def test_curves_need_the_key() -> None:
    fig = curves({"a": [{"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.0}]}, key="loss")
    assert list(fig.data[0].y) == [2.0, 1.0]
    with pytest.raises(ValueError, match="val_top1"):
        curves({"a": [{"epoch": 1, "loss": 2.0}]})
