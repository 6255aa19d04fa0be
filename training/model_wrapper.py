"""The network as training sees it: RGB in [0, 1] in, metric depth out.

Training normalises inside the model (mean/std buffers) so datasets stay in plain [0, 1] RGB.
What gets exported is the bare ``net``: the runtime pipeline normalises with the model card's
mean/std, the same numbers that live in the buffers here, so both paths see identical inputs.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from mde_ros.models.card import IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger(__name__)


class DepthModel(nn.Module):
    def __init__(self, net: nn.Module, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD) -> None:
        super().__init__()
        self.net = net
        # Not persistent: checkpoints hold net's state_dict; mean/std come from the config/card.
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    @property
    def max_depth(self) -> float:
        return float(self.net.max_depth)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net((image - self.mean) / self.std)


def normalization(model_cfg: dict[str, Any]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean = tuple(float(v) for v in model_cfg.get("mean") or IMAGENET_MEAN)
    std = tuple(float(v) for v in model_cfg.get("std") or IMAGENET_STD)
    return mean, std


def build_depth_model(model_cfg: dict[str, Any], *, load_pretrained: bool = True) -> DepthModel:
    """``build_model(name, **kwargs)`` wrapped with normalisation, encoder initialised per config.

    ``load_pretrained=False`` (resume, phase init, export, evaluation: the weights come from a
    checkpoint) also drops the model's own ``encoder_weights`` kwarg, so no ImageNet file is needed.
    """
    from mde_ros.models.registry import build_model, without_build_only

    kwargs = dict(model_cfg.get("kwargs") or {})
    if model_cfg.get("pretrained") and kwargs.get("encoder_weights"):
        raise ValueError("model.pretrained and model.kwargs.encoder_weights both ask for ImageNet weights; "
                         "keep one (pretrained: auto falls back to random init, encoder_weights: imagenet fails)")
    if not load_pretrained:
        kwargs = without_build_only(kwargs)
    net = build_model(model_cfg["name"], **kwargs)
    if load_pretrained:
        init_encoder(net, model_cfg)
    mean, std = normalization(model_cfg)
    return DepthModel(net, mean, std)


def depth_model_from_checkpoint(state: dict[str, Any]) -> DepthModel:
    """The network of a loaded training checkpoint (its config's model, its weights; no ImageNet file needed):
    the weight average (``ema``) when the run kept one, as validation scored it."""
    model = build_depth_model(state["config"]["model"], load_pretrained=False)
    model.net.load_state_dict(state.get("ema") or state["model"])
    return model


def init_encoder(net: nn.Module, model_cfg: dict[str, Any]) -> Path | None:
    """Load ImageNet weights into ``net.encoder`` as ``model.pretrained`` asks.

    ``pretrained``: null (from scratch), a path to a torchvision state_dict, or "auto" (look in
    torch's hub cache; nothing is ever downloaded). Returns the file used, or None.
    """
    pretrained = model_cfg.get("pretrained")
    if not pretrained:
        return None
    from mde_ros.models.resnet import (ResNetEncoder, find_torchvision_weights, hub_checkpoints_dir,
                                       load_imagenet_weights)

    encoder = getattr(net, "encoder", None)
    if not isinstance(encoder, ResNetEncoder):
        raise ValueError(f"model.pretrained loads torchvision ResNet weights, but {model_cfg['name']} has no ResNet "
                         "encoder; set model.pretrained=null (and use the model's own kwargs for its weights)")

    if pretrained == "auto":
        path = find_torchvision_weights(encoder.name)
        if path is None:
            log.warning("model.pretrained=auto: no torchvision ImageNet weights for %s in %s; training the "
                        "encoder FROM SCRATCH (expect much worse accuracy). Copy e.g. %s-*.pth there or set "
                        "model.pretrained=/path/to/weights.pth", encoder.name, hub_checkpoints_dir(), encoder.name)
            return None
    else:
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"model.pretrained={pretrained}: no such file; give a torchvision ImageNet "
                                    "state_dict (.pth), 'auto' to search torch's hub cache, or null")
    load_imagenet_weights(encoder, path)
    log.info("encoder initialised from ImageNet weights %s", path)
    return Path(path)
