"""Per-pixel confidence of predicted depth (0..1), from flip consistency.

A network that has really understood a pixel predicts the same depth for the mirrored image
(the test-time augmentation of monodepth2 and Depth Anything); where the two disagree the
prediction is a guess. confidence = exp(-(|d - d_flip| / min(d, d_flip) / tolerance)^2): equal
-> 1, a `tolerance` relative disagreement -> 0.37, invalid in either -> 0. It costs one more
network run per frame, so it is opt-in.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mde_ros.pipeline.intrinsics import Intrinsics

if TYPE_CHECKING:
    from mde_ros.pipeline.estimator import DepthEstimator, DepthResult

DEFAULT_TOLERANCE = 0.1


def mirrored_intrinsics(intr: Intrinsics | None) -> Intrinsics | None:
    """Intrinsics of the left-right mirrored image (cx -> width - 1 - cx)."""
    if intr is None:
        return None
    return Intrinsics(intr.fx, intr.fy, intr.width - 1 - intr.cx, intr.cy, intr.width, intr.height)


def flip_consistency(depth: np.ndarray, depth_of_mirror: np.ndarray, tolerance: float = DEFAULT_TOLERANCE) -> np.ndarray:
    """Confidence (float32 0..1) from a prediction and the prediction of the mirrored image, the latter
    already mirrored back into place."""
    if depth.shape != depth_of_mirror.shape:
        raise ValueError(f"shapes differ: {depth.shape} vs {depth_of_mirror.shape}")
    if not tolerance > 0:
        raise ValueError(f"tolerance must be > 0, got {tolerance}")
    a = np.asarray(depth, np.float32)
    b = np.asarray(depth_of_mirror, np.float32)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        rel = np.abs(a - b) / np.minimum(np.abs(a), np.abs(b))
        conf = np.exp(-np.square(rel / np.float32(tolerance)))
    conf[~np.isfinite(conf)] = 0.0
    return conf.astype(np.float32, copy=False)


def flip_confidence(estimator: "DepthEstimator", rgb: np.ndarray, result: "DepthResult",
                    tolerance: float = DEFAULT_TOLERANCE) -> np.ndarray:
    """Run the estimator on the mirrored image and compare with `result` (its prediction of `rgb`).

    For a relative model (result.relative set) the relative images are compared instead."""
    mirrored = estimator.estimate(np.ascontiguousarray(rgb[:, ::-1]), mirrored_intrinsics(result.intrinsics))
    relative = getattr(result, "relative", None)
    if relative is not None:
        return flip_consistency(relative, getattr(mirrored, "relative")[:, ::-1], tolerance)
    return flip_consistency(result.depth, mirrored.depth[:, ::-1], tolerance)


def mark_unconfident(depth: np.ndarray, confidence: np.ndarray, threshold: float) -> np.ndarray:
    """Depth with NaN (REP 117 invalid) where confidence < threshold; `depth` itself when threshold <= 0."""
    if threshold <= 0:
        return depth
    out = np.array(depth, np.float32, copy=True)
    out[confidence < threshold] = np.nan
    return out
