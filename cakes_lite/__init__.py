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
  :func:`load_checkpoint`.

Subpackages not re-exported here: ``cakes_lite.data`` (datasets), ``cakes_lite.viz`` (figures),
``cakes_lite.zoo`` (the bundled pretrained models).
"""


from .baselines import BUILDERS, cakes, conv2d, conv3d, csn, get_builder, p3d, r2plus1d
from .convtypes import register_conv_type, unregister_conv_type
from .cost import Profile, profile
from .kernels import SPACES, SUBKERNELS, kernel_shape, kernel_volume, resolve_space
from .layout import Layout, shrink
from .ops import CAKESConv3d
from .speed import compare_latency, latency
from .models import MODELS, build_model, resnet3d_tiny, unet3d_tiny
from .train import evaluate, fit, load_checkpoint, save_checkpoint
from .search import SearchConv3d, SearchResult, derive_layout, run_search, sparsity_step, supernet

__version__ = "0.1.0"

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
]
