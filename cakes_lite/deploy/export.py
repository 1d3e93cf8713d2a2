"""Deploy a (shrunk) model: ``torch.export`` programs and ONNX files for ONNX Runtime.

CAKESConv3d exports like any PyTorch layer: under tracing its fast path uses only public ops
(convolutions, slices, zero-padded shifts, adds, one cat; see cakes_lite/fast/plans.py), so the
graph holds the grouped calls of the plan the layer would run. Export the inference form
(:func:`cakes_lite.deploy.inference.for_inference`: BatchNorm folded, channels_last_3d) for speed.

Example::

    fast = cl.for_inference(shrunk)
    program = cl.export.export_program(fast, clips)        # torch.export.ExportedProgram
    cl.export.export_onnx(fast, clips, "model.onnx")        # then onnxruntime.InferenceSession

Speed against eager PyTorch: ``benchmarks/model_speed.py --export``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .._helpers import atomic_write


def _check(model: object, example: object) -> None:
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: expected an nn.Module, got {type(model).__name__}")
    if not isinstance(example, torch.Tensor):
        raise ValueError(f"example: expected an input tensor (N, C, D, H, W), "
                         f"got {type(example).__name__}")


def export_program(model: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    """``torch.export.export`` of ``model`` (eval mode) for inputs shaped like ``example``.

    Args:
        model: any module, e.g. a shrunk network or its :func:`for_inference` form.
        example: an input (N, C, D, H, W); the program is specialised to its shape.

    Returns:
        The exported program; ``program.module()(x)`` runs it.
    """
    _check(model, example)
    return torch.export.export(model.eval(), (example,))


def export_onnx(model: nn.Module, example: torch.Tensor, path: str | Path,
                opset: int | None = None) -> Path:
    """Write ``model`` (eval mode) as an ONNX file via ``torch.onnx.export(dynamo=True)``.

    Needs the ``onnx`` and ``onnxscript`` packages. The file is written atomically
    (:func:`cakes_lite._helpers.atomic_write`: a temporary file in the same folder, then
    renamed, with the usual file mode), so a failed export or save leaves an existing file as
    it was.

    Args:
        model: any module, e.g. a shrunk network or its :func:`for_inference` form.
        example: an input (N, C, D, H, W); the graph is specialised to its shape.
        path: where to write ``*.onnx``.
        opset: ONNX opset version (default: the exporter's).

    Returns:
        ``path`` as a Path.
    """
    _check(model, example)
    kwargs = {} if opset is None else {"opset_version": opset}
    program = torch.onnx.export(model.eval(), (example,), dynamo=True, **kwargs)
    path = Path(path)
    atomic_write(path, program.save, suffix=".onnx")  # a failed save leaves the old file
    return path


def onnx_session(path: str | Path, threads: int | None = None, spinning: bool = True):
    """An ``onnxruntime.InferenceSession`` on the CPU for ``path``.

    Args:
        path: an ``*.onnx`` file (e.g. from :func:`export_onnx`).
        threads: intra-op threads (default: ONNX Runtime's, one per core).
        spinning: let idle worker threads spin-wait for the next run (ONNX Runtime's default,
            lowest latency when it has the cores to itself). False when other work shares the
            cores, e.g. PyTorch runs interleaved with it: spinning threads slowed PyTorch's own
            calls 2-4x in benchmarks/model_speed.py.
    """
    import onnxruntime as ort  # optional dependency (the [export] extra): sessions only

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
