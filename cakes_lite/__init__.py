"""cakes_lite: channel-wise automatic kernel shrinking (CAKES, Yu et al., AAAI 2021) for 3D CNNs.

Public API: SUBKERNELS, SPACES, CAKESConv3d, Layout, shrink, profile, register_conv_type, the
baseline builders, and — from the search module — SearchConv3d, supernet, derive_layout,
run_search.
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
