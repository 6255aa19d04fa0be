"""The pipeline's image resize written as two matrices, so a GPU or an ONNX graph can do it.

`preprocess.resize_image` resizes with OpenCV: INTER_AREA when shrinking both axes, INTER_LINEAR
otherwise. Both are separable, so ``rows @ image @ cols.T`` with the matrices below gives the same
result (before OpenCV's rounding to uint8, which the caller repeats with a round-half-even). That
is how the fused GPU/ONNX path (`mde_ros.inference.fused`) reproduces the CPU preprocessing without
OpenCV: two matrix products, which every engine runs fast and exports as plain MatMul.
Pure numpy.
"""
from __future__ import annotations

import numpy as np

from mde_ros.pipeline.preprocess import ResizeInfo


def area_matrix(src: int, dst: int) -> np.ndarray:
    """(dst, src) float64 weights of OpenCV's INTER_AREA along one axis (dst <= src).

    Output pixel i averages the source interval [i*s, (i+1)*s), s = src/dst, each source pixel
    weighted by how much of it lies inside (cv::resize's area weights).
    """
    if not 0 < dst <= src:
        raise ValueError(f"area resampling shrinks: need 0 < dst <= src, got {dst}, {src}")
    scale = src / dst
    lo = np.arange(dst)[:, None] * scale
    j = np.arange(src)[None, :]
    weights = np.clip(np.minimum(lo + scale, j + 1) - np.maximum(lo, j), 0.0, None)
    weights[weights < 1e-9] = 0.0
    return weights / weights.sum(axis=1, keepdims=True)


def linear_matrix(src: int, dst: int) -> np.ndarray:
    """(dst, src) float64 weights of OpenCV's INTER_LINEAR along one axis (half-pixel centres,
    source positions clamped to the image, as cv::resize does)."""
    if dst <= 0 or src <= 0:
        raise ValueError(f"sizes must be positive, got {src} -> {dst}")
    position = np.clip((np.arange(dst) + 0.5) * (src / dst) - 0.5, 0.0, src - 1)
    return np.clip(1.0 - np.abs(position[:, None] - np.arange(src)[None, :]), 0.0, None)


def resize_matrices(info: ResizeInfo) -> tuple[np.ndarray, np.ndarray]:
    """(rows (content_h, src_h), cols (content_w, src_w)) float32: content = rows @ image @ cols.T.

    The same interpolation choice as `preprocess.resize_image`: area when both axes shrink (or stay),
    linear otherwise; an axis that keeps its size gets the identity.
    """
    src_h, src_w, dst_h, dst_w = info.src_height, info.src_width, info.content_height, info.content_width
    shrinking = dst_w <= src_w and dst_h <= src_h
    if (src_h, src_w) == (dst_h, dst_w):
        return np.eye(src_h, dtype=np.float32), np.eye(src_w, dtype=np.float32)
    axis = area_matrix if shrinking else linear_matrix
    return axis(src_h, dst_h).astype(np.float32), axis(src_w, dst_w).astype(np.float32)


def resize_with_matrices(image: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """HxWxC uint8 -> content-sized uint8 (round half to even, saturated): the numpy reference of
    what the fused graph computes."""
    planes = image.astype(np.float32).transpose(2, 0, 1)
    resized = rows @ planes @ cols.T
    return np.clip(np.rint(resized), 0, 255).astype(np.uint8).transpose(1, 2, 0)
