"""Network output -> metric depth at the camera's resolution.

Only conversions that every consumer needs happen here. Marking out-of-range depth for
publication (REP 117 -Inf/+Inf, 16UC1 zero) is `outputs.encode_depth`'s job, so the depth in a
DepthResult keeps the network's values and only turns impossible ones (non-finite, <= 0) into NaN.
"""
from __future__ import annotations

import cv2
import numpy as np

from mde_ros.models.card import ModelCard
from mde_ros.pipeline.intrinsics import Intrinsics
from mde_ros.pipeline.preprocess import ResizeInfo


def invalid_to_nan(depth: np.ndarray) -> np.ndarray:
    """In place: non-finite and non-positive depth becomes NaN (no camera sees at <= 0 m)."""
    depth[~(np.isfinite(depth) & (depth > 0))] = np.nan
    return depth


def raw_to_depth(raw: np.ndarray, card: ModelCard) -> np.ndarray:
    """Metres (float32, same shape as raw) from the card's output kind; impossible values -> NaN."""
    raw = np.asarray(raw, dtype=np.float32)
    scale, shift = np.float32(card.output_scale), np.float32(card.output_shift)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if card.output == "metric_depth":
            depth = raw * scale + shift
        elif card.output == "inverse_depth":
            inverse = raw * scale + shift
            depth = np.where(inverse > 0, 1.0 / inverse, np.nan).astype(np.float32)
        elif card.output == "disparity":
            depth = np.where(raw > 0, scale / raw, np.nan).astype(np.float32)
        else:  # ModelCard.validate rejects this; kept for cards built by hand
            raise ValueError(f"unknown output kind {card.output!r}")
    return invalid_to_nan(depth)


def network_intrinsics(intr: Intrinsics, info: ResizeInfo) -> Intrinsics:
    """Intrinsics of the network input image: per-axis scale, plus the letterbox offset."""
    if (intr.width, intr.height) != (info.src_width, info.src_height):
        raise ValueError(f"intrinsics are for {intr.width}x{intr.height} but the image is "
                         f"{info.src_width}x{info.src_height}")
    sx, sy = info.scale_x, info.scale_y
    return Intrinsics(fx=intr.fx * sx, fy=intr.fy * sy,
                      cx=intr.cx * sx + info.content_left, cy=intr.cy * sy + info.content_top,
                      width=info.net_width, height=info.net_height)


def camera_rescale_factor(intr_net: Intrinsics | None, card: ModelCard) -> float:
    """Metric3D-style canonical-camera rescale: f_cam / f_train, both fx at network resolution.

    A network learns its training camera's field of view: a longer lens makes things look bigger,
    hence closer, so the prediction is scaled up by the focal ratio. 1.0 when either focal is unknown.
    """
    if intr_net is None or not intr_net.is_valid() or not card.train_focal_px:
        return 1.0
    return float(intr_net.fx / card.train_focal_px)


def to_camera_resolution(depth_net: np.ndarray, info: ResizeInfo) -> np.ndarray:
    """Undo the letterbox crop and resize (bilinear) back to the camera image's size.

    A network whose output is smaller than its input (e.g. half resolution) is handled by scaling
    the content box to the output size.
    """
    if depth_net.ndim != 2:
        raise ValueError(f"expected an HxW depth map, got shape {depth_net.shape}")
    out_h, out_w = depth_net.shape
    ry, rx = out_h / info.net_height, out_w / info.net_width
    top, left = round(info.content_top * ry), round(info.content_left * rx)
    height = max(1, round(info.content_height * ry))
    width = max(1, round(info.content_width * rx))
    content = depth_net[top:top + height, left:left + width]
    if content.shape == (info.src_height, info.src_width):
        return np.ascontiguousarray(content, dtype=np.float32)
    return cv2.resize(content.astype(np.float32, copy=False), (info.src_width, info.src_height),
                      interpolation=cv2.INTER_LINEAR)


def clamp_depth(depth: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    """Clip into [min_depth, max_depth] (the Eigen/monodepth2 evaluation convention); NaN stays NaN.

    For evaluation only: published depth marks out-of-range pixels instead (outputs.encode_depth).
    """
    return np.clip(np.asarray(depth, np.float32), min_depth, max_depth)
