"""Deployed forms of a model for benchmarks/model_speed.py --export: the torch.export program
and an ONNX Runtime (CPU) session, each of the for_inference form, as callables x -> y."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from cakes_lite.deploy import export
from cakes_lite.deploy.inference import for_inference


def exported_forms(model: torch.nn.Module, x: torch.Tensor) -> dict:
    """{"export": program module, "onnxrt": session runner}; a form whose tool is missing or
    fails is left out with a note on stdout (this is a benchmark script, not the library)."""
    fast = for_inference(model, example=x)  # plans pinned: the exported graph holds them
    forms = {"export": export.export_program(fast, x).module()}
    if x.device.type != "cpu":
        return forms
    try:
        path = Path(tempfile.mkdtemp()) / "model.onnx"
        export.export_onnx(fast, x, path)
        # no spin-waiting: its idle threads would steal the cores from the PyTorch runs
        session = export.onnx_session(path, threads=torch.get_num_threads(), spinning=False)
        name = session.get_inputs()[0].name
        forms["onnxrt"] = lambda t: session.run(None, {name: t.numpy()})[0]
    except Exception as err:  # noqa: BLE001 - report and go on with the other forms
        print(f"onnx: skipped ({type(err).__name__}: {err})")
    return forms
