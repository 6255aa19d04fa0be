"""The two simpler seed architectures, kept for comparison with the U-Net.

* :class:`ResNetEncoderDecoder` (Kaggle seed): ResNet-50 encoder, then up-sampling blocks with no
  skip connections back to the input resolution.
* :class:`ResNetSumDecoder` (NYU blog seed): every encoder stage 1x1-projected to a common width,
  up-sampled to the finest stage and summed, then a small head.

Same output contract as the U-Nets: (N,1,H,W) metres in [0, max_depth], any input size.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mde_ros.models.unet import DepthHead, build_encoder_for_decoder, build_resnet_encoder, conv_bn_relu, resize_to


class ResNetEncoderDecoder(nn.Module):
    """Encoder-decoder without skips: each block up-samples to the next shallower stage's size."""

    def __init__(self, encoder_name: str = "resnet50", encoder_depth: int = 5,
                 decoder_channels: Sequence[int] = (512, 256, 128, 64, 32), max_depth: float = 10.0,
                 encoder_weights: str | None = None):
        super().__init__()
        self.encoder, decoder_channels = build_encoder_for_decoder(
            encoder_name, encoder_depth, encoder_weights, decoder_channels)
        in_ch = [self.encoder.out_channels[-1], *decoder_channels[:-1]]
        self.decoder = nn.ModuleList(conv_bn_relu(i, o) for i, o in zip(in_ch, decoder_channels))
        self.head = DepthHead(decoder_channels[-1], max_depth)
        self.max_depth = self.head.max_depth

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        features = self.encoder(image)
        # The encoder maps are used only for their sizes: no skip connections in this design.
        targets = list(reversed(features[:-1])) + [image]
        x = features[-1]
        for block, target in zip(self.decoder, targets):
            x = block(resize_to(x, target))
        return self.head(x)


class ResNetSumDecoder(nn.Module):
    """Multi-scale sum decoder: cheap, and every stage reaches the output directly."""

    def __init__(self, encoder_name: str = "resnet18", encoder_depth: int = 5, channels: int = 128,
                 max_depth: float = 10.0, encoder_weights: str | None = None):
        super().__init__()
        self.encoder = build_resnet_encoder(encoder_name, encoder_depth, encoder_weights)
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, kernel_size=1) for c in self.encoder.out_channels)
        self.fuse = conv_bn_relu(channels, channels)
        self.head = DepthHead(channels, max_depth)
        self.max_depth = self.head.max_depth

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        features = self.encoder(image)
        finest = features[0]
        x = self.lateral[0](finest)
        for lateral, feature in zip(self.lateral[1:], features[1:]):
            x = x + resize_to(lateral(feature), finest)
        return self.head(resize_to(self.fuse(x), image))
