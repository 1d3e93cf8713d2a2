"""Networks built from a convolution builder: a small 3D ResNet classifier, the paper's ResNet-50
I3D (with ImageNet inflation and the authors' checkpoints), and a 3D U-Net segmenter.

``build_model(name, **config)`` builds any registered network; checkpoints store
``(model_spec(model))`` so the same call rebuilds the network (a layout included) on load.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from .resnet3d import BasicBlock, Bottleneck, ResNet3d, ResNet3dConfig, resnet3d, resnet3d_tiny
from .inflate import inflate
from .official import load_official
from .resnet_i3d import ResNetI3d, ResNetI3dConfig, resnet50_i3d, resnet_i3d
from .unet3d import UNet3d, UNet3dConfig, unet3d, unet3d_tiny

#: name -> factory(**kwargs) -> nn.Module. "resnet3d"/"resnet_i3d"/"unet3d" take every config
#: field.
MODELS: dict[str, Callable[..., nn.Module]] = {
    "resnet3d": resnet3d,
    "resnet3d_tiny": resnet3d_tiny,
    "resnet_i3d": resnet_i3d,
    "resnet50_i3d": resnet50_i3d,
    "unet3d": unet3d,
    "unet3d_tiny": unet3d_tiny,
}

#: which task each network solves (for CLIs and fit()).
TASKS = {"resnet3d": "classification", "resnet3d_tiny": "classification",
         "resnet_i3d": "classification", "resnet50_i3d": "classification",
         "unet3d": "segmentation", "unet3d_tiny": "segmentation"}


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered network by name, e.g. ``build_model("resnet3d_tiny", builder="2d")``.

    Raises:
        ValueError: unknown name or bad config values (the message names the field).
    """
    if name not in MODELS:
        raise ValueError(f"model: expected one of {list(MODELS)}, got {name!r}")
    try:
        return MODELS[name](**kwargs)
    except TypeError as e:
        if "keyword argument" not in str(e):
            raise
        raise ValueError(f"model {name!r}: {e} (not a config field)") from None


def model_spec(model: nn.Module) -> dict[str, Any]:
    """``{"name", "config"}`` such that ``build_model(name, **config)`` rebuilds ``model``'s
    architecture (before any later ``shrink``; see :mod:`cakes_lite.train.checkpoint`).

    Raises:
        ValueError: not one of our networks, or built from a custom builder callable.
    """
    model = getattr(model, "module", model)  # DDP / DataParallel
    if isinstance(model, ResNet3d):
        return {"name": "resnet3d", "config": model.config.to_dict()}
    if isinstance(model, ResNetI3d):
        return {"name": "resnet_i3d", "config": model.config.to_dict()}
    if isinstance(model, UNet3d):
        return {"name": "unet3d", "config": model.config.to_dict()}
    raise ValueError(
        f"model: expected a cakes_lite ResNet3d, ResNetI3d or UNet3d to describe as a config, "
        f"got {type(model).__name__}"
    )


__all__ = ["MODELS", "TASKS", "BasicBlock", "Bottleneck", "ResNet3d", "ResNet3dConfig", "ResNetI3d",
           "ResNetI3dConfig", "UNet3d", "UNet3dConfig", "build_model", "inflate", "load_official",
           "model_spec", "resnet3d", "resnet3d_tiny", "resnet50_i3d", "resnet_i3d", "unet3d",
           "unet3d_tiny"]
