"""Model names -> constructors. A model card's ``architecture`` + ``arch_kwargs`` rebuild its network.

Every model takes (N,3,H,W) normalised RGB and returns (N,1,H,W) metres in [0, model.max_depth].
"""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from mde_ros.models.dpt import DPT
from mde_ros.models.encoder_decoder import ResNetEncoderDecoder, ResNetSumDecoder
from mde_ros.models.unet import PlainUNet, ResNetUNet

DEFAULT_MODEL = "unet_resnet34"
# Kwargs that only matter for a fresh network: a bundle or checkpoint brings its own weights.
BUILD_ONLY_KWARGS = ("encoder_weights",)

# name -> (constructor, keyword arguments the name itself fixes)
_MODELS: dict[str, tuple[Callable[..., nn.Module], dict]] = {
    "unet_resnet18": (ResNetUNet, {"encoder_name": "resnet18"}),
    "unet_resnet34": (ResNetUNet, {"encoder_name": "resnet34"}),
    "unet_resnet50": (ResNetUNet, {"encoder_name": "resnet50"}),
    "unet_plain": (PlainUNet, {}),
    "dpt_vitb16": (DPT, {}),
    "encdec_resnet50": (ResNetEncoderDecoder, {"encoder_name": "resnet50"}),
    "sumdec_resnet18": (ResNetSumDecoder, {"encoder_name": "resnet18"}),
}


def available_models() -> list[str]:
    return list(_MODELS)


def build_model(name: str, **kwargs) -> nn.Module:
    """Build a registered network with randomly initialised (or ``encoder_weights``) weights."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(available_models())}")
    constructor, fixed = _MODELS[name]
    for key, value in fixed.items():
        if key in kwargs and kwargs[key] != value:
            raise ValueError(f"model {name!r} fixes {key}={value!r}; got {key}={kwargs[key]!r} "
                             f"(pick the model name that matches instead)")
    try:
        return constructor(**{**kwargs, **fixed})
    except TypeError as exc:
        raise ValueError(f"bad arguments for model {name!r}: {exc}") from exc


def without_build_only(kwargs: dict) -> dict:
    """``kwargs`` less BUILD_ONLY_KWARGS: rebuilding a saved network must not need its pretrained file."""
    return {k: v for k, v in kwargs.items() if k not in BUILD_ONLY_KWARGS}
