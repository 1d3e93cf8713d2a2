"""The six ResNet-50 layouts released by the paper's authors, and what they cost.

The layouts (yucornetto/CAKES, MIT licence) are in
``cakes_lite/reference/official_resnet50_layouts.json``, keyed like torchvision's ResNet-50
(``layer3.2.conv2``); :func:`official_layouts` reads them and :func:`resnet50_macs` costs them
analytically at any input size (the network itself is :func:`cakes_lite.models.resnet50_i3d`).
This module sits below ``models`` (which builds the network from these layouts) and ``zoo``
(which re-exports both functions).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from .kernels import kernel_volume
from .layout import Layout

#: readable names of the official layouts (keys of the reference JSON).
OFFICIAL_TITLES = {
    "CAKES12D_P": "CAKES^P 1,2D", "CAKES12D_C": "CAKES^C 1,2D",
    "CAKES23D_P": "CAKES^P 2,3D", "CAKES23D_C": "CAKES^C 2,3D",
    "CAKES123D_P": "CAKES^P 1,2,3D", "CAKES123D_C": "CAKES^C 1,2,3D",
}

#: ResNet-50 I3D at the paper's 8×224×224 input: (stage width, blocks, output H=W), T stays 8
#: (:func:`resnet50_macs` computes the output side for any input size).
RESNET50_STAGES = ((64, 3, 56), (128, 4, 28), (256, 6, 14), (512, 3, 7))


def official_layouts() -> dict[str, Layout]:
    """The six ResNet-50 layouts of the official code, keyed like torchvision's ResNet-50.

    Returns:
        ``{"CAKES12D_P": Layout, …}``; each layout's ``meta`` names the source and licence.
    """
    ref = resources.files("cakes_lite") / "reference" / "official_resnet50_layouts.json"
    data = json.loads(ref.read_text(encoding="utf-8"))
    meta = {"source": data["source"], "network": data["network"], "kernel_size": 3,
            "model": "resnet50-i3d"}
    return {key: Layout(splits, {**meta, "title": OFFICIAL_TITLES.get(key, key)})
            for key, splits in data["layouts"].items()}


def resnet50_macs(layout: Layout | dict, frames: int = 8, size: int = 224,
                  num_classes: int = 174) -> dict[str, Any]:
    """Analytic MACs / params of ResNet-50 I3D under ``layout``: its 16 searched layers, and the
    whole network (what :func:`cakes_lite.profile` counts on ``models.resnet50_i3d``).

    The searched layers are the 3×3×3 ``conv2`` of every bottleneck (stages of 3, 4, 6, 3
    blocks, widths 64–512, C_in = C_out = width). At the paper's input (8 frames of 224×224)
    the stages output 56², 28², 14², 7² with no temporal down-sampling (the first block's conv2
    carries the stride), so a layer costs T·H·W · C_in · Σ_g n_g·|g| MACs (|g| = sub-kernel
    volume: 27, 9 or 3). The whole network adds the 1×7×7 stem, the 1×1×1 convs and shortcuts
    and the classifier (MACs), and the BatchNorm affine weights (params).

    Args:
        layout: splits keyed ``layer{s}.{b}.conv2``; unnamed layers count as full 3D.
        frames, size: input clip length and side (any size: each stride-2 step maps s to
            ``(s - 1) // 2 + 1``, as the convolutions and the max-pool do).
        num_classes: classifier outputs (whole-network numbers only).

    Returns:
        ``{"macs", "params", "macs_3d", "params_3d", "layers": [{"name", "macs", "macs_3d"}…],
        "network": {"macs", "params", "macs_3d", "params_3d"}}``; the top-level numbers count
        the 16 searched layers only.

    Raises:
        ValueError: a layer that ResNet-50 does not have or a split of the wrong width.
    """
    layout = layout if isinstance(layout, Layout) else Layout(layout)
    widths, rows = {}, []
    for s, (width, blocks, _) in enumerate(RESNET50_STAGES, start=1):
        for b in range(blocks):
            widths[f"layer{s}.{b}.conv2"] = width
    for name, split in layout.items():
        if name not in widths:
            raise ValueError(f"layer {name!r}: not one of ResNet-50's 16 searched layers; "
                             f"expected names like {list(widths)[:3]}")
        if sum(split.values()) != widths[name]:
            raise ValueError(f"layer {name!r}: split must sum to {widths[name]} channels in "
                             f"ResNet-50, got {sum(split.values())}")
    totals = dict.fromkeys(("macs", "params", "macs_3d", "params_3d"), 0)

    def half(side: int) -> int:  # a stride-2 conv / pool with "same" padding
        return (side - 1) // 2 + 1

    side = half(half(size))  # stem conv, then max-pool: 224 -> 112 -> 56
    # fixed part: stem conv + BN, then per block 1×1×1 convs, shortcut, 3 BNs; classifier
    fixed_macs = frames * half(size) ** 2 * 64 * 3 * 49
    fixed_params = 64 * 3 * 49 + 2 * 64 + 2048 * num_classes + num_classes
    channels = 64
    for s, (width, blocks, _) in enumerate(RESNET50_STAGES, start=1):
        for b in range(blocks):
            name, side_in = f"layer{s}.{b}.conv2", side
            side = half(side) if s > 1 and b == 0 else side
            voxels_in, voxels = frames * side_in**2, frames * side**2
            fixed_macs += voxels_in * channels * width + voxels * width * 4 * width
            fixed_params += channels * width + width * 4 * width + 2 * (2 * width + 4 * width)
            if b == 0:  # projection shortcut (1×1×1 conv + BN)
                fixed_macs += voxels * channels * 4 * width
                fixed_params += channels * 4 * width + 2 * 4 * width
            channels = 4 * width
            split = layout.get(name, {"kxkxk": width})
            # params of a layer: C_in · Σ_g n_g · |g|; MACs: that per output voxel
            params = width * sum(n * kernel_volume(g, 3) for g, n in split.items())
            params_3d = width * width * 27
            rows.append({"name": name, "macs": voxels * params, "macs_3d": voxels * params_3d})
            totals["macs"] += voxels * params
            totals["macs_3d"] += voxels * params_3d
            totals["params"] += params
            totals["params_3d"] += params_3d
    fixed_macs += 2048 * num_classes
    network = {"macs": totals["macs"] + fixed_macs, "params": totals["params"] + fixed_params,
               "macs_3d": totals["macs_3d"] + fixed_macs,
               "params_3d": totals["params_3d"] + fixed_params}
    return {**totals, "layers": rows, "network": network}
