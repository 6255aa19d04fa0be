"""U-Nets for metric depth: the ResNet U-Net (the package default) and a plain Ronneberger U-Net.

Both resize every upsampled map to its skip's exact size instead of assuming factors of two,
so any input height/width works (camera images are rarely multiples of 32), and the sizes are
taken from tensor shapes so the ONNX export keeps dynamic height/width.
Output contract shared by every model in the registry: (N,1,H,W) metres in [0, max_depth].
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mde_ros.models.resnet import ResNetEncoder, load_imagenet_weights, resolve_encoder_weights


def conv_bn_relu(in_ch: int, out_ch: int, kernel_size: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


def resize_to(x: torch.Tensor, like: torch.Tensor | Sequence[int]) -> torch.Tensor:
    size = like.shape[-2:] if isinstance(like, torch.Tensor) else like
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class DepthHead(nn.Module):
    """3x3 conv to one channel, then ``max_depth * sigmoid``: bounded metres, smooth gradients."""

    def __init__(self, in_ch: int, max_depth: float):
        super().__init__()
        if not max_depth > 0:
            raise ValueError(f"max_depth must be > 0 metres, got {max_depth}")
        self.conv = nn.Conv2d(in_ch, 1, kernel_size=3, padding=1)
        self.max_depth = float(max_depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.max_depth * torch.sigmoid(self.conv(x))


class DecoderBlock(nn.Module):
    """Upsample to the skip's size, concatenate it, two conv-bn-relu (smp's U-Net block)."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int):
        super().__init__()
        self.conv1 = conv_bn_relu(in_ch + skip_ch, out_ch)
        self.conv2 = conv_bn_relu(out_ch, out_ch)

    def forward(self, x: torch.Tensor, target: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        """``target``: the tensor whose height/width the output takes (the skip, or the input image)."""
        x = resize_to(x, target)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


def build_resnet_encoder(encoder_name: str, encoder_depth: int,
                         encoder_weights: str | Path | None) -> ResNetEncoder:
    encoder = ResNetEncoder(encoder_name, encoder_depth)
    weights_path = resolve_encoder_weights(encoder_name, encoder_weights)
    if weights_path is not None:
        load_imagenet_weights(encoder, weights_path)
    return encoder


def build_encoder_for_decoder(encoder_name: str, encoder_depth: int, encoder_weights: str | Path | None,
                              decoder_channels: Sequence[int]) -> tuple[ResNetEncoder, tuple[int, ...]]:
    """The encoder and the checked decoder widths of a decoder with one block per encoder stage."""
    decoder_channels = tuple(int(c) for c in decoder_channels)
    if len(decoder_channels) != encoder_depth:
        raise ValueError(f"decoder_channels needs {encoder_depth} entries (one per encoder stage), "
                         f"got {len(decoder_channels)}: {decoder_channels}")
    return build_resnet_encoder(encoder_name, encoder_depth, encoder_weights), decoder_channels


class ResNetUNet(nn.Module):
    """U-Net with a torchvision-compatible ResNet encoder (segmentation_models_pytorch layout).

    ``encoder_weights``: None (random), "imagenet" (torchvision file from torch's hub cache) or a
    path to a torchvision ResNet .pth. ``decoder_channels`` needs one entry per encoder stage.
    """

    def __init__(self, encoder_name: str = "resnet34", encoder_depth: int = 5,
                 decoder_channels: Sequence[int] = (256, 128, 64, 32, 16), max_depth: float = 10.0,
                 encoder_weights: str | None = None):
        super().__init__()
        self.encoder, decoder_channels = build_encoder_for_decoder(
            encoder_name, encoder_depth, encoder_weights, decoder_channels)
        enc_ch = self.encoder.out_channels                     # strides 2, 4, ..., 2**depth
        skip_ch = list(reversed(enc_ch[:-1])) + [0]            # deepest skip first, none at full res
        in_ch = [enc_ch[-1], *decoder_channels[:-1]]
        self.decoder = nn.ModuleList(
            DecoderBlock(i, s, o) for i, s, o in zip(in_ch, skip_ch, decoder_channels))
        self.head = DepthHead(decoder_channels[-1], max_depth)
        self.max_depth = self.head.max_depth

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        features = self.encoder(image)
        skips = list(reversed(features[:-1]))
        x = features[-1]
        for block, skip in zip(self.decoder[:-1], skips):
            x = block(x, target=skip, skip=skip)
        x = self.decoder[-1](x, target=image)
        return self.head(x)


def double_conv(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(conv_bn_relu(in_ch, out_ch), conv_bn_relu(out_ch, out_ch))


class PlainUNet(nn.Module):
    """Ronneberger et al.'s U-Net trained from scratch (padded convs, bilinear up-sampling).

    ``depth`` max-pool steps, channels doubling from ``base_channels``; needs no pretrained file.
    """

    def __init__(self, base_channels: int = 64, depth: int = 4, max_depth: float = 10.0):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        widths = [base_channels * 2 ** i for i in range(depth + 1)]
        self.inc = double_conv(3, widths[0])
        self.down = nn.ModuleList(double_conv(widths[i], widths[i + 1]) for i in range(depth))
        # Up path: concat(upsampled deeper, skip) -> double conv down to the skip's width.
        self.up = nn.ModuleList(double_conv(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(depth)))
        self.head = DepthHead(widths[0], max_depth)
        self.max_depth = self.head.max_depth

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.inc(image)
        skips = [x]
        for block in self.down:
            x = block(F.max_pool2d(x, kernel_size=2, ceil_mode=True))
            skips.append(x)
        skips.pop()
        for block, skip in zip(self.up, reversed(skips)):
            x = block(torch.cat([resize_to(x, skip), skip], dim=1))
        return self.head(x)
