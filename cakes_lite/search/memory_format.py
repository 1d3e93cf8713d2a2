"""Memory formats inside the supernet layer: NCDHW, or channels_last_3d where the caller chose
it (``run_search(channels_last=True)``: oneDNN's faster convolution layout on CPU). A
:class:`~cakes_lite.search.layer.SearchConv3d` keeps its input's format through its convolution,
BatchNorm and (cost priority) candidate sum, and makes the gradient reaching its BatchNorm the
same format: BatchNorm's CPU backward is several times slower on mixed formats."""

from __future__ import annotations

import torch


def memory_format(x: torch.Tensor) -> torch.memory_format:
    """channels_last_3d for an input in that memory (and not also NCDHW-contiguous, as inputs
    with size-1 dims can be), else NCDHW: the layer keeps its input's format."""
    cl = torch.channels_last_3d
    return cl if x.is_contiguous(memory_format=cl) and not x.is_contiguous() else \
        torch.contiguous_format


def same_format_grad(y: torch.Tensor, fmt: torch.memory_format) -> None:
    """Make the gradient arriving at the BN output contiguous in the BN input's format ``fmt``:
    the next layer's fast conv path (channels_last_3d) would otherwise send a channels_last
    gradient to an NCDHW BN (or the reverse), and BatchNorm's CPU backward on mixed memory
    formats is several times slower."""
    if y.requires_grad:
        y.register_hook(lambda g: g.contiguous(memory_format=fmt))


def sum_candidates(y: torch.Tensor, n: int, c_out: int) -> torch.Tensor:
    """Cost priority's sum over the n candidates of each channel, in ``y``'s memory format.

    Args:
        y: (N, n·C_out, D, H, W), candidate j = i·C_out + c.

    Returns:
        (N, C_out, D, H, W): y_c = Σ_i y_{i·C_out + c}.
    """
    if memory_format(y) == torch.contiguous_format:
        return y.view(y.shape[0], n, c_out, *y.shape[2:]).sum(dim=1)
    # channels_last_3d: the same sum on the (N, D, H, W, n·C_out) memory, so that the result
    # stays channels-last (and its backward is one expand, like the view's above)
    z = y.permute(0, 2, 3, 4, 1)
    return z.reshape(*z.shape[:4], n, c_out).sum(dim=4).permute(0, 4, 1, 2, 3)
