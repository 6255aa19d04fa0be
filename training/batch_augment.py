"""Augmentations applied to a whole batch on the training device (after the DataLoader).

* ``random_roll``: each sample rotated by its own angle in ±``max_deg`` about the image centre (a
  camera mounted slightly off level). The image is resampled bilinearly; depth and its validity with
  nearest neighbours (depth values are never blended across edges); pixels rotated in from outside
  are invalid. A rotation about the optical axis does not change any pixel's depth, so labels stay exact.
* ``crop_for_curriculum``: the resolution curriculum (``train.resolution_curriculum``): while progress
  is below ``until``, the batch is a random window of ``scale`` x the size (one window per batch, sides
  multiples of 32), so early training is cheap; after it, full frames. A crop keeps every pixel's ray
  and depth, so fx and the labels (canonical or metric) stay right; only the principal point moves.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_roll(image: torch.Tensor, depth: torch.Tensor, valid: torch.Tensor, max_deg: float,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(image, depth, valid) of shape (N,C,H,W) rotated per sample by U(-max_deg, max_deg) degrees."""
    if not max_deg:
        return image, depth, valid
    n, _, h, w = image.shape
    angles = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(float(max_deg))
    cos, sin = torch.cos(angles), torch.sin(angles)
    # affine_grid works in normalised coordinates; keep pixels square on a non-square image
    aspect = w / h
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin / aspect
    theta[:, 1, 0], theta[:, 1, 1] = sin * aspect, cos
    grid = F.affine_grid(theta.to(image.device, image.dtype), list(image.shape), align_corners=False)
    rotated = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)
    stacked = torch.cat([depth.to(grid.dtype), valid.to(grid.dtype)], dim=1)
    moved = F.grid_sample(stacked, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    new_valid = (moved[:, 1:2] > 0.5) & (moved[:, 0:1] > 0)
    return rotated, torch.where(new_valid, moved[:, 0:1], torch.zeros_like(moved[:, 0:1])).to(depth.dtype), \
        new_valid.to(valid.dtype)


def curriculum_scale(cfg: dict | None, progress: float) -> float:
    """The crop scale for this point of the run (1.0: full frames)."""
    if not cfg:
        return 1.0
    scale, until = float(cfg.get("scale", 1.0)), float(cfg.get("until", 0.0))
    if not 0 < scale <= 1 or not 0 <= until <= 1:
        raise ValueError(f"train.resolution_curriculum needs 0 < scale <= 1 and 0 <= until <= 1, got {cfg}")
    return scale if progress < until else 1.0


def crop_for_curriculum(tensors: tuple[torch.Tensor, ...], scale: float, multiple: int = 32,
                        generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
    """One random window of ``scale`` x (H, W) (sides multiples of ``multiple``) cut from every tensor."""
    if scale >= 1.0:
        return tensors
    h, w = tensors[0].shape[-2:]
    ch = max(multiple, int(h * scale) // multiple * multiple)
    cw = max(multiple, int(w * scale) // multiple * multiple)
    if ch >= h and cw >= w:
        return tensors
    top = int(torch.randint(0, h - ch + 1, (1,), generator=generator))
    left = int(torch.randint(0, w - cw + 1, (1,), generator=generator))
    return tuple(t[..., top:top + ch, left:left + cw] for t in tensors)
