"""Layouts and shrink() on a model that is not ours; validation; JSON I/O; summaries."""

from __future__ import annotations

import json
import os

import pytest
import torch
from torch import nn

import cakes_lite as cl
from cakes_lite._helpers import atomic_write_text
from cakes_lite.layout import FORMAT, VERSION, is_searchable


class Foreign(nn.Module):
    """A user's own network: nested Sequential/ModuleDict, a biased Conv3d, non-searchable convs."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv3d(3, 8, 3, padding=1, bias=True), nn.BatchNorm3d(8),
                                  nn.ReLU())
        self.blocks = nn.ModuleDict({
            "a": nn.Sequential(nn.Conv3d(8, 8, 3, stride=(1, 2, 2), padding=1, bias=False),
                               nn.ReLU()),
            "b": nn.Conv3d(8, 8, 1),                              # 1×1×1: nothing to shrink
            "same": nn.Conv3d(8, 6, 3, padding="same"),          # "same" == k // 2
        })
        self.dw = nn.Conv3d(6, 6, 3, padding=1, groups=6)       # groups != 1
        self.dil = nn.Conv3d(6, 6, 3, padding=2, dilation=2)    # dilation != 1
        self.valid = nn.Conv3d(6, 6, 3, padding=0)              # unused here, wrong padding
        self.circ = nn.Conv3d(6, 6, 3, padding=1, padding_mode="circular")
        self.flat = nn.Conv3d(6, 6, (1, 3, 3), padding=(0, 1, 1))  # not cubic
        self.head = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks["a"](self.stem(x))
        x = self.blocks["same"](self.blocks["b"](x))
        x = self.flat(self.circ(self.dil(self.dw(x))))
        return self.head(x.mean(dim=(2, 3, 4)))


SPLITS = {
    "stem.0": {"kxkxk": 2, "1xkxk": 3, "kx1x1": 3},
    "blocks.a.0": {"1xkxk": 4, "kx1xk": 4},
    "blocks.same": {"kxkxk": 1, "1x1xk": 5},
}
X = (2, 3, 4, 7, 6)


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("as_layout", [False, True])
def test_shrink_replaces_exactly_the_named_layers(as_layout):
    model = Foreign()
    before = snapshot(model)
    types = {n: type(m) for n, m in model.named_modules()}
    shrunk = cl.shrink(model, cl.Layout(SPLITS) if as_layout else SPLITS)

    assert shrunk is not model
    for name, module in shrunk.named_modules():
        if name in SPLITS:
            old = dict(model.named_modules())[name]
            assert type(module) is cl.CAKESConv3d and module.split == SPLITS[name]
            assert (module.in_channels, module.out_channels) == (old.in_channels, old.out_channels)
            assert module.stride == old.stride
            assert (module.bias is None) == (old.bias is None)
        elif not name.startswith(tuple(f"{n}." for n in SPLITS)):
            assert type(module) is types[name], name
    assert set(types) - set(SPLITS) <= {n for n, _ in shrunk.named_modules()}
    # untouched layers keep their weights (and buffers); the caller's model is untouched
    after = shrunk.state_dict()
    for key, value in before.items():
        if not key.startswith(tuple(SPLITS)):
            assert torch.equal(after[key], value), key
        assert torch.equal(model.state_dict()[key], value), key
    assert all(type(dict(model.named_modules())[n]) is nn.Conv3d for n in SPLITS)
    torch.testing.assert_close(shrunk.stem[0].bias, model.stem[0].bias)

    x = torch.randn(*X)
    assert shrunk(x).shape == model(x).shape == (2, 4)


def test_shrink_inplace_modifies_and_returns_the_callers_model():
    model = Foreign()
    out = cl.shrink(model, SPLITS, inplace=True)
    assert out is model and isinstance(model.blocks["a"][0], cl.CAKESConv3d)


def test_full_kernel_layout_with_sum_init_is_the_identity():
    model = Foreign().eval()
    full = {name: {"kxkxk": dict(model.named_modules())[name].out_channels} for name in SPLITS}
    x = torch.randn(*X)
    torch.testing.assert_close(cl.shrink(model, full)(x), model(x), rtol=1e-5, atol=1e-5)


def test_shrink_keeps_each_layers_training_mode():
    model = Foreign().train()
    model.blocks.eval()
    shrunk = cl.shrink(model, SPLITS)
    assert shrunk.stem[0].training and not shrunk.blocks["a"][0].training


def test_uniform_layout_names_only_searchable_convs():
    model = Foreign()
    layout = cl.Layout.uniform(model, "video-123d")
    assert list(layout) == ["stem.0", "blocks.a.0", "blocks.same"]
    assert layout["blocks.same"] == {"kxkxk": 2, "1xkxk": 2, "kx1x1": 2}
    assert layout.meta == {"space": "video-123d", "method": "uniform", "kernel_size": 3}
    assert not any(is_searchable(m) for m in (model.blocks["b"], model.dw, model.dil, model.valid,
                                             model.circ, model.flat, model.head))
    # every conv left out is listed with the reason (not saved to JSON)
    assert layout.skipped == {
        "blocks.b": "kernel 1×1×1: nothing to shrink",
        "dw": "expected groups=1, got groups=6",
        "dil": "expected dilation 1, got (2, 2, 2)",
        "valid": "expected zero 'same' padding (1, 1, 1), got padding=(0, 0, 0) "
                 "padding_mode='zeros'",
        "circ": "expected zero 'same' padding (1, 1, 1), got padding=(1, 1, 1) "
                "padding_mode='circular'",
        "flat": "expected a cubic odd kernel (k, k, k), got (1, 3, 3)",
    }
    shrunk = cl.shrink(model, layout)
    assert shrunk(torch.randn(*X)).shape == (2, 4)


@pytest.mark.parametrize(
    "layout, match",
    [
        ({"stem.9": {"kxkxk": 8}}, r"layer 'stem\.9': not found in the model"),
        ({"blocks.c": {"kxkxk": 8}}, r"layer 'blocks\.c': not found"),
        ({"stem.1": {"kxkxk": 8}}, r"layer 'stem\.1': expected an nn\.Conv3d, got BatchNorm3d"),
        ({"head": {"kxkxk": 4}}, r"layer 'head': expected an nn\.Conv3d, got Linear"),
        ({"stem": {"kxkxk": 8}}, r"layer 'stem': expected an nn\.Conv3d, got Sequential"),
        ({"stem.0": {"3x3x3": 8}}, r"layer 'stem\.0': unknown sub-kernel '3x3x3'"),
        ({"stem.0": {"kxkxk": 10, "1xkxk": -2}},
         r"layer 'stem\.0': .*'1xkxk'.*non-negative int, got -2"),
        ({"stem.0": {"kxkxk": 8.0}}, r"layer 'stem\.0': .*non-negative int, got 8\.0"),
        ({"stem.0": {"kxkxk": "8"}}, r"layer 'stem\.0': .*non-negative int, got '8'"),
        ({"stem.0": {"kxkxk": True, "1xkxk": 7}}, r"layer 'stem\.0': .*non-negative int, got True"),
        ({"stem.0": {"kxkxk": 0}}, r"layer 'stem\.0': expected at least one output channel"),
        ({"stem.0": {"kxkxk": 4, "1xkxk": 3}},
         r"layer 'stem\.0': split must sum to out_channels=8, got 7"),
        ({"dw": {"kxkxk": 6}}, r"layer 'dw': expected groups=1, got groups=6"),
        ({"dil": {"kxkxk": 6}}, r"layer 'dil': expected dilation 1, got \(2, 2, 2\)"),
        ({"valid": {"kxkxk": 6}}, r"layer 'valid': expected zero 'same' padding \(1, 1, 1\)"),
        ({"circ": {"kxkxk": 6}}, r"layer 'circ': .*padding_mode='circular'"),
        ({"flat": {"kxkxk": 6}}, r"layer 'flat': expected a cubic odd kernel"),
        ({"stem.0": [("kxkxk", 8)]}, r"layer 'stem\.0': expected a dict"),
    ],
)
@pytest.mark.parametrize("as_layout", [False, True])
def test_validation_errors_name_the_layer(layout, match, as_layout):
    model = Foreign()
    before = snapshot(model)
    with pytest.raises(ValueError, match=match):
        cl.shrink(model, cl.Layout(layout) if as_layout else layout)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_json_round_trip_keeps_splits_and_meta(tmp_path):
    meta = {"space": "video-123d", "kernel_size": 3, "method": "search", "budget": 0.5}
    layout = cl.Layout(SPLITS, meta)
    path = tmp_path / "sub" / "layout.json"
    layout.to_json(path)
    data = json.loads(path.read_text())
    assert data["format"] == FORMAT and data["version"] == VERSION and data["meta"] == meta
    back = cl.Layout.from_json(path)
    assert back == layout and back.meta == meta
    assert dict(back) == {n: dict(s) for n, s in SPLITS.items()}
    assert os.listdir(path.parent) == ["layout.json"]  # no temp file left behind


def test_bare_dict_json_is_accepted(tmp_path):
    path = tmp_path / "bare.json"
    path.write_text(json.dumps(SPLITS))
    assert cl.Layout.from_json(path) == SPLITS


@pytest.mark.parametrize(
    "text, match",
    [
        ('{"stem.0": {"kxkxk": 8}', "not valid JSON"),
        ("[1, 2]", "expected an object, got list"),
        (json.dumps({"format": "other", "version": 1, "layers": {}}), "expected format"),
        (json.dumps({"format": FORMAT, "version": VERSION + 1, "layers": {}}), "newer than"),
        (json.dumps({"format": FORMAT, "version": "one", "layers": {}}), "integer version"),
        (json.dumps({"layers": {"a": {"kxkxk": -1}}}), r"layer 'a'"),
    ],
)
def test_malformed_json_raises_value_error(tmp_path, text, match):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        cl.Layout.from_json(path)


def test_atomic_write_leaves_old_file_and_no_temp_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "layout.json"
    atomic_write_text(path, "old")

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        cl.Layout(SPLITS).to_json(path)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["layout.json"]


def test_summary_numbers():
    layout = cl.Layout({"a": {"kxkxk": 2, "1xkxk": 6}, "b": {"kxkxk": 8}})
    summary = layout.summary()
    assert summary["layers"][0] == {"name": "a", "out_channels": 8,
                                    "counts": {"kxkxk": 2, "1xkxk": 6},
                                    "shares": {"kxkxk": 0.25, "1xkxk": 0.75}}
    assert summary["layers"][1]["shares"] == {"kxkxk": 1.0}
    assert summary["total"]["counts"] == {"kxkxk": 10, "1xkxk": 6}
    assert summary["total"]["shares"] == pytest.approx({"kxkxk": 10 / 16, "1xkxk": 6 / 16})
    assert layout.kernel_weight_share(3) == pytest.approx((10 * 27 + 6 * 9) / (16 * 27))


def test_layout_is_a_read_only_mapping_that_copies_meta():
    layout = cl.Layout(SPLITS, {"space": "x"})
    again = cl.Layout(layout, {"note": "copy"})
    assert again.meta == {"space": "x", "note": "copy"} and again == layout
    assert len(layout) == 3 and "stem.0" in layout
    with pytest.raises(TypeError):
        layout["stem.0"] = {"kxkxk": 8}
    with pytest.raises(ValueError, match="layer names must be strings"):
        cl.Layout({1: {"kxkxk": 8}})


BAD_CONVS = [  # (conv, what the message says is wrong)
    (nn.Conv3d(4, 6, (3, 1, 1), padding=(1, 0, 0)), r"expected a cubic odd kernel .* \(3, 1, 1\)"),
    (nn.Conv3d(4, 6, 3, padding=0), r"expected zero 'same' padding \(1, 1, 1\), got padding=\(0"),
    (nn.Conv3d(4, 6, 3, padding=2, dilation=2), r"expected dilation 1, got \(2, 2, 2\)"),
    (nn.Conv3d(4, 6, 3, padding=1, padding_mode="circular"), r"padding_mode='circular'"),
    (nn.Conv3d(4, 6, 3, padding=1, groups=2), r"expected groups=1, got groups=2"),
    (nn.Conv3d(4, 6, 4, padding=2), r"expected a cubic odd kernel .* \(4, 4, 4\)"),
    (nn.Linear(4, 6), r"expected an nn\.Conv3d, got Linear"),
]


@pytest.mark.parametrize("conv, match", BAD_CONVS)
def test_from_conv_validates_exactly_like_shrink(conv, match):
    """CAKESConv3d.from_conv, SearchConv3d.from_conv and shrink raise the same message."""
    split = {"kxkxk": 2, "1xkxk": 2, "kx1x1": 2}
    model = nn.Sequential(conv)
    with pytest.raises(ValueError, match=match) as via_shrink:
        cl.shrink(model, {"0": split})
    assert str(via_shrink.value).startswith("layer '0': ")
    for build in (lambda **kw: cl.CAKESConv3d.from_conv(conv, split, **kw),
                  lambda **kw: cl.SearchConv3d.from_conv(conv, "video-123d", **kw)):
        with pytest.raises(ValueError) as named:
            build(name="0")
        assert str(named.value) == str(via_shrink.value)
        with pytest.raises(ValueError, match=match) as unnamed:  # no name: the layer's repr
            build()
        assert str(unnamed.value).startswith(f"layer {type(conv).__name__}(")


@pytest.mark.parametrize("init", ["sum", "centre"])
def test_one_sum_initialisation_for_both_from_convs(init):
    conv = nn.Conv3d(3, 6, 3, padding=1, bias=False)
    cakes = cl.CAKESConv3d.from_conv(conv, {"kxkxk": 2, "1xkxk": 2, "kx1x1": 2}, init=init)
    dense = conv.weight.detach()
    if init == "sum":
        search = cl.SearchConv3d.from_conv(conv, "video-123d", init=init)
        torch.testing.assert_close(search.weights["1xkxk"], dense.sum(2, keepdim=True))
        torch.testing.assert_close(cakes.weights["1xkxk"], dense[2:4].sum(2, keepdim=True))
        torch.testing.assert_close(cakes.weights["kx1x1"], dense[4:].sum((3, 4), keepdim=True))
    else:
        torch.testing.assert_close(cakes.weights["kx1x1"], dense[4:, :, :, 1:2, 1:2])
