"""Figures of layouts, volumes and clips: the data drawn matches the input, heights are set."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest
import torch

from cakes_lite import Layout
from cakes_lite.viz.layout import (COST_HEADERS, SUBKERNEL_COLORS, channel_assignment,
                                   compare_layouts, cost_table, layout_bars, layout_grid,
                                   subkernel_label)
from cakes_lite.viz.video import clip_frames, clip_strip, topk, topk_figure
from cakes_lite.viz.volume import class_volume_figure, class_volumes, slice_figure, take_slice

SMALL = {"a.conv": {"kxkxk": 3, "1xkxk": 5}, "b.conv": {"1xkxk": 2, "kx1x1": 6, "kxkxk": 0}}


def official():
    ref = resources.files("cakes_lite") / "reference" / "official_resnet50_layouts.json"
    return json.loads(ref.read_text())["layouts"]


@pytest.mark.parametrize("normalize", [False, True])
def test_layout_bars_stack_counts_per_subkernel(normalize):
    fig = layout_bars(Layout(SMALL), normalize=normalize)
    assert fig.layout.height and fig.layout.barmode == "stack"
    bars = {t.name: list(t.y) for t in fig.data}
    # canonical order, only sub-kernels that are used; zero counts stay zero
    assert list(bars) == ["3×3×3", "1×3×3", "3×1×1"]
    if normalize:
        assert bars["3×3×3"] == [3 / 8, 0] and np.allclose(np.sum(list(bars.values()), 0), 1)
    else:
        assert bars["1×3×3"] == [5, 2] and bars["3×1×1"] == [0, 6]
    assert [t.marker.color for t in fig.data] == [SUBKERNEL_COLORS[k] for k in
                                                  ("kxkxk", "1xkxk", "kx1x1")]


def test_layout_grid_one_cell_per_channel_in_canonical_order():
    layout = {"l1": {"kx1x1": 2, "kxkxk": 1}, "l2": {"1xkxk": 4}}
    assert channel_assignment(layout) == {"l1": ["kxkxk", "kx1x1", "kx1x1"], "l2": ["1xkxk"] * 4}
    fig = layout_grid(layout)
    hm = fig.data[0]
    assert fig.layout.height and list(hm.y) == ["l2", "l1"]  # first layer on top
    # legend order kxkxk=0, 1xkxk=1, kx1x1=2; l1 is narrower -> empty cells
    assert [list(r) for r in hm.z] == [[1, 1, 1, 1], [0, 2, 2, None]]
    assert list(hm.colorbar.ticktext) == ["3×3×3", "1×3×3", "3×1×1"]


def test_official_layouts_draw_and_compare():
    layouts = official()
    assert len(layouts) == 6
    for name, lay in layouts.items():
        grid = layout_grid(lay, title=name)
        assert np.array(grid.data[0].z, dtype=float).shape == (16, 512)
    fig = compare_layouts(layouts["CAKES12D_P"], layouts["CAKES23D_C"], names=("P", "C"))
    legend = sorted(t.name for t in fig.data if t.showlegend)
    assert legend == ["1×3×3", "3×1×1", "3×3×3"] and fig.layout.height
    # shares per layer sum to one in both panels
    for axis in ("x", "x2"):
        ys = np.sum([t.y for t in fig.data if t.xaxis == axis], axis=0)
        assert np.allclose(ys, 1.0)


def test_cost_table_ratios_and_bad_reference():
    rows = cost_table({"3d": (200e6, 4e6), "cakes": (100e6, 1e6)}, reference="3d")
    assert len(COST_HEADERS) == len(rows[0])
    assert rows[1] == ["cakes", 100.0, 1.0, 0.5, 0.25]
    with pytest.raises(ValueError, match="reference"):
        cost_table({"3d": (1, 1)}, reference="2d")


@pytest.mark.parametrize("bad", [[1, 2], {"l": {"3x3x3": 4}}, {"l": {"kxkxk": -1}}])
def test_bad_layouts_raise_value_error(bad):
    with pytest.raises(ValueError):
        layout_bars(bad)
    with pytest.raises(ValueError):
        subkernel_label("2x2x2")


@pytest.mark.parametrize("axis,shape", [(0, (6, 7)), ("coronal", (5, 7)), (2, (5, 6))])
def test_slice_figure_overlay_per_class(axis, shape):
    rng = np.random.default_rng(0)
    image = rng.random((5, 6, 7)).astype(np.float32)
    labels = np.zeros((5, 6, 7), dtype=np.int64)
    labels[2] = 1
    labels[:, :, 3] = 2
    fig = slice_figure(torch.from_numpy(image)[None], labels, axis=axis, index=2,
                       class_names=["bg", "a", "b", "c"])
    assert fig.layout.height
    assert np.asarray(fig.data[0].z).shape == shape
    assert [t.name for t in fig.data[1:]] == ["a", "b", "c"]  # all named classes in the legend
    # overlay of class 2 is 1 exactly where the slice has class 2, NaN elsewhere
    z2 = np.asarray(fig.data[2].z, dtype=float)
    assert np.array_equal(~np.isnan(z2), take_slice(labels, 2, axis) == 2)


def test_slice_figure_ras_draws_axial_slices_anterior_up():
    labels = np.zeros((4, 5, 6), dtype=np.int64)  # RAS: x=4, y=5, z=6
    labels[1, 4, :] = 1  # most anterior row (y = 4) at x = 1
    fig = slice_figure(labels.astype(np.float32), labels, axis="axial", index=3, ras=True)
    z = np.asarray(fig.data[1].z, dtype=float)  # rows = y (drawn upwards), columns = x
    assert z.shape == (5, 4) and not np.isnan(z[4, 1]) and np.isnan(z[0, 1])
    assert fig.layout.yaxis.autorange is True
    assert fig.layout.xaxis.title.text == "x (L→R), voxel index"  # axes count voxels, not mm


def test_slice_figure_rejects_wrong_dimensionality_and_mismatch():
    with pytest.raises(ValueError, match="image"):
        slice_figure(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="labels"):
        slice_figure(np.zeros((4, 4, 4)), np.zeros((4, 4, 5), dtype=int))
    with pytest.raises(ValueError, match="axis"):
        slice_figure(np.zeros((4, 4, 4)), axis="oblique")


def test_class_volumes_in_millilitres():
    labels = np.zeros((10, 10, 10), dtype=np.int64)
    labels[:5] = 1
    labels[:1] = 2
    # 400 voxels of class 1 at 2 mm isotropic = 400 * 8 mm^3 = 3.2 mL
    assert class_volumes(labels, 2.0) == pytest.approx([4.0, 3.2, 0.8])
    assert class_volumes(labels, (1, 1, 2), num_classes=4)[3] == 0
    fig = class_volume_figure(labels, 2.0, class_names=["bg", "x", "y"], reference=labels)
    assert [t.name for t in fig.data] == ["prediction", "reference"]
    assert list(fig.data[0].x) == ["x", "y"] and list(fig.data[0].y) == pytest.approx([3.2, 0.8])
    with pytest.raises(ValueError, match="spacing"):
        class_volumes(labels, 0)


@pytest.mark.parametrize("scale", [1.0, 255.0])
def test_clip_frames_and_strip(scale):
    clip = np.zeros((3, 4, 5, 6), dtype=np.float32)
    clip[0, 1] = 1.0 * scale  # frame 1 is red
    frames = clip_frames(clip)
    assert frames.shape == (4, 5, 6, 3) and frames.dtype == np.uint8
    assert frames[1, 0, 0].tolist() == [255, 0, 0] and frames[0].max() == 0
    fig = clip_strip(clip, gap=2)
    strip = np.asarray(fig.data[0].z)
    assert strip.shape == (5, 4 * 6 + 3 * 2, 3) and fig.layout.height
    assert strip[0, 8].tolist() == [255, 0, 0]  # frame 1 starts at column 6 + 2
    with pytest.raises(ValueError, match="clip"):
        clip_frames(np.zeros((8, 32, 32)))


def test_normalised_clip_is_rescaled_for_display():
    frames = clip_frames(torch.linspace(-2, 2, 3 * 2 * 2 * 2).reshape(3, 2, 2, 2))
    assert frames.min() == 0 and frames.max() == 255


def test_topk_orders_and_checks_length():
    names = [f"c{i}" for i in range(7)]
    probs = torch.tensor([0.05, 0.3, 0.1, 0.2, 0.15, 0.12, 0.08])
    top = topk(probs, names, k=5)
    assert list(top) == ["c1", "c3", "c4", "c5", "c2"]
    assert top["c1"] == pytest.approx(0.3)
    fig = topk_figure(probs, names, k=3)
    assert list(fig.data[0].y) == ["c4", "c3", "c1"] and fig.layout.height
    with pytest.raises(ValueError, match="probs"):
        topk(probs, names[:3])


@pytest.mark.parametrize("split, voxels", [
    ({"kxkxk": 8, "1xkxk": 20, "kx1x1": 4}, {"3×3×3": 27, "1×3×3": 9, "3×1×1": 3}),
    ({"1xkxk": 5, "kx1xk": 0, "kxkx1": 3}, {"1×3×3": 9, "3×3×1": 9}),
])
def test_subkernel_shapes_draws_each_kept_voxel_once(split, voxels):
    from cakes_lite.viz.kernels import subkernel_shapes

    fig = subkernel_shapes(split, kernel_size=3, in_channels=16, title="layer1")
    meshes = [t for t in fig.data if t.type == "mesh3d"]
    # one mesh per sub-kernel with channels, 8 vertices per kept voxel
    assert {t.name: len(t.x) // 8 for t in meshes} == voxels
    total = sum(split.values())
    assert f"16 input → {total} output channels" in fig.layout.title.text
    titles = [a.text for a in fig.layout.annotations]
    assert any(f"of {total} ch" in t for t in titles) and len(titles) == len(voxels)


def test_subkernel_shapes_rejects_an_empty_split():
    from cakes_lite.viz.kernels import subkernel_shapes

    with pytest.raises(ValueError, match="at least one"):
        subkernel_shapes({"kxkxk": 0})
