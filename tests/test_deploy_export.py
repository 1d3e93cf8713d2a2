"""Export (cakes_lite/deploy/export.py): shrunk models through torch.export and ONNX
(onnxruntime on CPU) keep their outputs; ONNX files are written atomically."""

from __future__ import annotations

import os

import pytest
import torch

from cakes_lite.deploy import export
from cakes_lite.deploy.inference import for_inference
from cakes_lite.models import resnet3d_tiny, unet3d_tiny

pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py

MODELS = {
    "resnet3d_tiny-cakes": (lambda: resnet3d_tiny(num_classes=5, widths=(8, 16, 16),
                                                  stem_width=8, builder="cakes"),
                            (2, 3, 4, 16, 16)),
    "unet3d_tiny-cakes:volume-all": (lambda: unet3d_tiny(builder="cakes:volume-all"),
                                     (1, 1, 8, 8, 8)),
}


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("inference", [False, True], ids=["eager", "for_inference"])
def test_torch_export_keeps_outputs(name, inference):
    build, shape = MODELS[name]
    model = build().eval()
    x = torch.randn(shape)
    with torch.no_grad():
        want = model(x)
    form = for_inference(model) if inference else model
    program = export.export_program(form, x)
    graph_ops = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert not any("mkldnn" in op for op in graph_ops)  # public conv ops only
    got = program.module()(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["resnet3d_tiny-cakes"])  # ONNX export takes seconds per model
def test_onnx_runtime_keeps_outputs(name, tmp_path):
    pytest.importorskip("onnxscript", reason="torch.onnx.export(dynamo=True) needs onnxscript")
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    build, shape = MODELS[name]
    model = build().eval()
    x = torch.randn(shape)
    with torch.no_grad():
        want = model(x).numpy()
    path = export.export_onnx(for_inference(model), x, tmp_path / "m.onnx")
    assert path.is_file() and not [p for p in tmp_path.iterdir() if p != path]
    for spinning in (True, False):
        session = export.onnx_session(path, threads=1, spinning=spinning)
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        assert got.shape == want.shape
        assert abs(got - want).max() < 1e-4
    assert session.get_session_options().get_session_config_entry(
        "session.intra_op.allow_spinning") == "0"


def test_export_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="model: expected an nn.Module"):
        export.export_program("net", torch.zeros(1))
    with pytest.raises(ValueError, match="example: expected an input tensor"):
        export.export_onnx(torch.nn.Identity(), [1, 2], tmp_path / "m.onnx")


class HalfSave:
    """Stands in for what ``torch.onnx.export`` returns: ``save`` writes part of a file, then
    fails like a full disk (or succeeds, with ``fail=False``)."""

    def __init__(self, fail: bool) -> None:
        self.fail = fail

    def save(self, destination, *args, **kwargs) -> None:
        with open(destination, "wb") as f:
            f.write(b"the first half of a model")
            if self.fail:
                raise OSError("No space left on device")


def test_onnx_file_is_replaced_only_by_a_complete_save(tmp_path, monkeypatch):
    target, x = tmp_path / "m.onnx", torch.zeros(1, 1, 2, 2, 2)
    target.write_bytes(b"the model that was there")
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **k: HalfSave(fail=True))
    with pytest.raises(OSError, match="No space left"):
        export.export_onnx(torch.nn.Identity(), x, target)
    assert target.read_bytes() == b"the model that was there"
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temporary file left behind
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **k: HalfSave(fail=False))
    assert export.export_onnx(torch.nn.Identity(), x, target) == target
    assert target.read_bytes() == b"the first half of a model"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # the usual mode, not mkstemp's 0600
