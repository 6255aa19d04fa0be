"""ResNet-18/34/50 encoders in plain torch, with torchvision's state_dict key names.

torchvision is not a dependency, yet its ImageNet files (``resnet34-b627a593.pth``...) are the
usual starting point for a depth network: the module layout below mirrors
``torchvision.models.resnet`` exactly (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer1.0.downsample.0``...), so such a file loads by path. The classifier (``fc``) is not built.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mde_ros.models.weights import read_weights_file

# (block, blocks per stage) as in torchvision.models.resnet
_SPECS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}
# torchvision's hub file names, newest first (resnet50 has the V2 recipe, then the V1 weights).
TORCHVISION_FILES: dict[str, tuple[str, ...]] = {
    "resnet18": ("resnet18-f37072fd.pth",),
    "resnet34": ("resnet34-b627a593.pth",),
    "resnet50": ("resnet50-11ad3fa6.pth", "resnet50-0676ba61.pth"),
}
ENCODER_NAMES = tuple(_SPECS)
# Feature strides of the stages: conv1 stem, layer1 (after maxpool), layer2, layer3, layer4.
STAGE_STRIDES = (2, 4, 8, 16, 32)


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """torchvision's ResNet V1.5 bottleneck: the stride sits on the 3x3 convolution."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNetEncoder(nn.Module):
    """ResNet trunk returning features at strides 2, 4, 8, 16, 32 (like segmentation_models_pytorch).

    ``encoder_depth`` (3..5) keeps that many stages; the later layers are not built at all, so
    their weights neither cost memory nor appear in the state_dict.
    """

    def __init__(self, name: str = "resnet34", encoder_depth: int = 5):
        super().__init__()
        if name not in _SPECS:
            raise ValueError(f"unknown ResNet encoder {name!r}; choose one of {list(ENCODER_NAMES)}")
        if not 3 <= encoder_depth <= 5:
            raise ValueError(f"encoder_depth must be 3, 4 or 5, got {encoder_depth}")
        kind, blocks = _SPECS[name]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.name = name
        self.encoder_depth = encoder_depth

        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.out_channels: list[int] = [64]
        inplanes = 64
        for index, (planes, count) in enumerate(zip((64, 128, 256, 512), blocks), start=1):
            if index >= encoder_depth:
                break
            stride = 1 if index == 1 else 2
            layer, inplanes = _make_layer(block, inplanes, planes, count, stride)
            setattr(self, f"layer{index}", layer)
            self.out_channels.append(inplanes)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    @property
    def strides(self) -> tuple[int, ...]:
        return STAGE_STRIDES[: self.encoder_depth]

    def built_layers(self) -> list[str]:
        return [f"layer{i}" for i in range(1, self.encoder_depth)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        features = [x]
        x = self.maxpool(x)
        for name in self.built_layers():
            x = getattr(self, name)(x)
            features.append(x)
        return features


def _make_layer(block: type[BasicBlock] | type[Bottleneck], inplanes: int, planes: int, count: int,
                stride: int) -> tuple[nn.Sequential, int]:
    out_planes = planes * block.expansion
    downsample = None
    if stride != 1 or inplanes != out_planes:
        downsample = nn.Sequential(_conv1x1(inplanes, out_planes, stride), nn.BatchNorm2d(out_planes))
    layers = [block(inplanes, planes, stride, downsample)]
    layers += [block(out_planes, planes) for _ in range(count - 1)]
    return nn.Sequential(*layers), out_planes


def hub_checkpoints_dir() -> Path:
    """Where torchvision would have downloaded its weights (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_torchvision_weights(name: str) -> Path | None:
    """torchvision's ImageNet file for ``name`` if it is already in torch's hub cache (no download)."""
    if name not in TORCHVISION_FILES:
        raise ValueError(f"unknown ResNet encoder {name!r}; choose one of {list(ENCODER_NAMES)}")
    for filename in TORCHVISION_FILES[name]:
        candidate = hub_checkpoints_dir() / filename
        if candidate.is_file():
            return candidate
    return None


def resolve_encoder_weights(name: str, encoder_weights: str | Path | None) -> Path | None:
    """``None`` -> random init; ``"imagenet"`` -> torchvision's file from the hub cache; else a path."""
    if encoder_weights is None:
        return None
    if str(encoder_weights) != "imagenet":
        return Path(encoder_weights)
    found = find_torchvision_weights(name)
    if found is None:
        raise FileNotFoundError(
            f"ImageNet weights for {name} are not in {hub_checkpoints_dir()}: nothing is downloaded at run time, so "
            f"copy https://download.pytorch.org/models/{TORCHVISION_FILES[name][0]} there, or pass "
            "encoder_weights=<path to a torchvision .pth>, or encoder_weights: null for random init "
            "(model.kwargs.encoder_weights=null in a training recipe; None from Python)")
    return found


def load_imagenet_weights(encoder: ResNetEncoder, path: str | Path) -> None:
    """Load a torchvision ResNet state_dict file into ``encoder``.

    Strict on the encoder's own keys; the classifier (``fc.*``) and the stages that
    ``encoder_depth`` left out are ignored. Errors name the file and the offending keys.
    """
    path = Path(path)
    state = read_weights_file(path, "encoder weights")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} is not a plain state_dict of tensors (expected a torchvision ResNet .pth)")

    skipped = ("fc.",) + tuple(f"layer{i}." for i in range(encoder.encoder_depth, 5))
    state = {k: v for k, v in state.items() if not k.startswith(skipped)}
    own = encoder.state_dict()
    # Old torchvision files predate BatchNorm's num_batches_tracked; torch fills it in.
    missing = sorted(k for k in own if k not in state and not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in state if k not in own)
    if missing or unexpected:
        raise ValueError(
            f"{path} does not match a torchvision {encoder.name} "
            f"({len(missing)} missing keys, {len(unexpected)} unexpected keys); "
            f"missing: {_preview(missing)}; unexpected: {_preview(unexpected)}")
    mismatched = [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                  for k, v in state.items() if v.shape != own[k].shape]
    if mismatched:
        raise ValueError(f"{path} has tensors of the wrong shape for {encoder.name}: {_preview(mismatched)}")
    encoder.load_state_dict(state, strict=False)


def _preview(keys: list[str], limit: int = 8) -> str:
    if not keys:
        return "none"
    more = f" ... (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more
