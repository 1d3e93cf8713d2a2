"""cakes_lite: channel-wise automatic kernel shrinking (CAKES, Yu et al., AAAI 2021) for 3D CNNs.

Public API (``__all__``), layer by layer — the map of the code is ``docs/ARCHITECTURE.md``:

* sub-kernels: :data:`SUBKERNELS`, :data:`SPACES`, :func:`kernel_shape`, :func:`kernel_volume`,
  :func:`resolve_space`;
* the operation: :class:`CAKESConv3d`; replaceable conv types: :func:`register_conv_type`,
  :func:`unregister_conv_type`;
* layouts and cost: :class:`Layout`, :func:`shrink`, :func:`profile` / :class:`Profile`,
  :func:`latency`, :func:`compare_latency`;
* baselines: :data:`BUILDERS`, :func:`get_builder`, :func:`conv3d`, :func:`conv2d`, :func:`p3d`,
  :func:`r2plus1d`, :func:`csn`, :func:`cakes`;
* search: :class:`SearchConv3d`, :func:`supernet`, :func:`sparsity_step`, :func:`derive_layout`,
  :func:`run_search` / :class:`SearchResult`;
* models and training: :data:`MODELS`, :func:`build_model`, :func:`resnet3d_tiny`,
  :func:`unet3d_tiny`, :func:`fit`, :func:`evaluate`, :func:`save_checkpoint`,
  :func:`load_checkpoint`;
* inference speed: :func:`for_inference`, :func:`fold_batchnorm`, :func:`set_autotune`.

Not re-exported here, reached as modules: the subpackages ``cakes_lite.data`` (datasets) and
``cakes_lite.viz`` (figures), the module ``cakes_lite.zoo`` (the model zoo format: reads and
writes any zoo folder; the app ships one) and ``cakes_lite.export`` (torch.export / ONNX, the
module ``cakes_lite/deploy/export.py``). The machinery has two wings: ``cakes_lite.fast`` (how
one CAKES layer runs fast) and ``cakes_lite.deploy`` (shipping a trained model).

Names are imported on first use (PEP 562), so ``import cakes_lite`` and ``python -m cakes_lite
--help`` do not load torch; ``from cakes_lite import X`` and ``cakes_lite.X`` work as usual.
"""


from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> the module (relative to this package) that defines it
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("SPACES", "SUBKERNELS", "kernel_shape", "kernel_volume", "resolve_space"),
                    "kernels"),
    "CAKESConv3d": "ops",
    **dict.fromkeys(("register_conv_type", "unregister_conv_type"), "convtypes"),
    **dict.fromkeys(("Layout", "shrink"), "layout"),
    **dict.fromkeys(("Profile", "profile"), "cost"),
    **dict.fromkeys(("compare_latency", "latency"), "speed"),
    **dict.fromkeys(("BUILDERS", "cakes", "conv2d", "conv3d", "csn", "get_builder", "p3d",
                     "r2plus1d"), "baselines"),
    **dict.fromkeys(("SearchConv3d", "SearchResult", "derive_layout", "run_search",
                     "sparsity_step", "supernet"), "search"),
    **dict.fromkeys(("MODELS", "build_model", "resnet3d_tiny", "unet3d_tiny"), "models"),
    **dict.fromkeys(("evaluate", "fit", "load_checkpoint", "save_checkpoint"), "train"),
    **dict.fromkeys(("for_inference", "fold_batchnorm"), "deploy.inference"),
    "set_autotune": "fast.autotune",
}
#: modules reachable as attributes that live in a subpackage: ``cakes_lite.export.export_onnx``
_MODULES: dict[str, str] = {"export": "deploy.export"}

__all__ = [
    # sub-kernels
    "SPACES", "SUBKERNELS", "kernel_shape", "kernel_volume", "resolve_space",
    # the operation and the conv types it replaces
    "CAKESConv3d", "register_conv_type", "unregister_conv_type",
    # layouts and cost
    "Layout", "Profile", "compare_latency", "latency", "profile", "shrink",
    # baselines
    "BUILDERS", "cakes", "conv2d", "conv3d", "csn", "get_builder", "p3d", "r2plus1d",
    # search
    "SearchConv3d", "SearchResult", "derive_layout", "run_search", "sparsity_step", "supernet",
    # models and training
    "MODELS", "build_model", "evaluate", "fit", "load_checkpoint", "resnet3d_tiny",
    "save_checkpoint", "unet3d_tiny",
    # inference speed
    "fold_batchnorm", "for_inference", "set_autotune",
]


def __getattr__(name: str) -> Any:
    """Import a public name (or a submodule such as ``cakes_lite.baselines``) on first use."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    elif name in _MODULES:
        value = importlib.import_module(f".{_MODULES[name]}", __name__)
    else:
        try:
            value = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
