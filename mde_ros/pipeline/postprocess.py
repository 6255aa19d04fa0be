"""Network output -> metric depth at the camera's resolution.

Only conversions that every consumer needs happen here. Marking out-of-range depth for
publication (REP 117 -Inf/+Inf, 16UC1 zero) is `outputs.encode_depth`'s job, so the depth in a
DepthResult keeps the network's values and only turns impossible ones (non-finite, <= 0) into NaN.
"""
from __future__ import annotations

import cv2
import numpy as np

from mde_ros.models.card import RELATIVE_KINDS, ModelCard
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
        elif card.output in RELATIVE_KINDS:
            raise ValueError(f"card {card.name!r}: output {card.output!r} is affine-invariant: it has no "
                             "metres without scale anchors (use raw_to_relative and relative_to_depth)")
        else:  # ModelCard.validate rejects this; kept for cards built by hand
            raise ValueError(f"unknown output kind {card.output!r}")
    return invalid_to_nan(depth)


def raw_to_relative(raw: np.ndarray, card: ModelCard) -> np.ndarray:
    """A relative model's affine-invariant inverse depth (scale * raw + shift); non-finite -> NaN.

    Larger is nearer; the unknown scale and shift are what scale anchoring fits.
    """
    relative = np.asarray(raw, dtype=np.float32) * np.float32(card.output_scale) + np.float32(card.output_shift)
    relative[~np.isfinite(relative)] = np.nan
    return relative


def relative_to_depth(relative: np.ndarray, scale: float, shift: float) -> np.ndarray:
    """Metres from relative inverse depth once anchors fixed its affine ambiguity:
    depth = 1 / (scale * relative + shift); non-positive inverse depth -> NaN."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        inverse = np.asarray(relative, np.float32) * np.float32(scale) + np.float32(shift)
        depth = np.where(inverse > 0, 1.0 / inverse, np.nan).astype(np.float32)
    return invalid_to_nan(depth)


def sky_mask(sky_raw: np.ndarray, info: ResizeInfo, threshold: float) -> np.ndarray:
    """Bool HxW at the camera's resolution: the model's sky output >= threshold (Depth-Anything-3's
    rule, as the ika-rwth-aachen node applies it), resized like the depth."""
    sky = to_camera_resolution(np.asarray(sky_raw, np.float32), info)
    return sky >= np.float32(threshold)


def network_intrinsics(intr: Intrinsics, info: ResizeInfo) -> Intrinsics:
    """Intrinsics of the network input image: per-axis scale, plus the letterbox offset."""
    if (intr.width, intr.height) != (info.src_width, info.src_height):
        raise ValueError(f"intrinsics are for {intr.width}x{intr.height} but the image is "
                         f"{info.src_width}x{info.src_height}")
    sx, sy = info.scale_x, info.scale_y
    return Intrinsics(fx=intr.fx * sx, fy=intr.fy * sy,
                      cx=intr.cx * sx + info.content_left, cy=intr.cy * sy + info.content_top,
                      width=info.net_width, height=info.net_height)


def camera_focal(intr_net: Intrinsics, card: ModelCard) -> float:
    """The camera's focal at network resolution by the card's rule: fx, or the mean of fx and fy
    (Depth-Anything-3 / ika: they differ under an anisotropic resize)."""
    return float(intr_net.fx) if card.focal_rule == "fx" else 0.5 * (float(intr_net.fx) + float(intr_net.fy))


def camera_rescale_factor(intr_net: Intrinsics | None, card: ModelCard) -> float:
    """Camera-aware rescale: f_cam / f_ref, both at network resolution.

    f_ref is the card's canonical_focal_px (Metric3D: 1000, Depth-Anything-3: 300; the output is
    depth for that camera) or train_focal_px (the training camera: a longer lens makes things look
    bigger, hence closer, so the prediction is scaled up by the focal ratio). 1.0 when unknown.
    """
    reference = card.canonical_focal_px or card.train_focal_px
    if intr_net is None or not intr_net.is_valid() or not reference:
        return 1.0
    return float(camera_focal(intr_net, card) / reference)


def resize_output(content: np.ndarray, width: int, height: int, interpolation: str = "linear") -> np.ndarray:
    """Resize a network output to width x height as the family's own demo does (card.OUTPUT_INTERPOLATIONS):
    bilinear with half-pixel centres, bilinear with aligned corners (torch align_corners=True), or bicubic
    (half-pixel, a = -0.75 as torch's)."""
    content = content.astype(np.float32, copy=False)
    if interpolation == "linear":
        return cv2.resize(content, (width, height), interpolation=cv2.INTER_LINEAR)
    if interpolation == "cubic":
        return cv2.resize(content, (width, height), interpolation=cv2.INTER_CUBIC)
    if interpolation == "linear_align_corners":
        in_h, in_w = content.shape
        map_x = np.arange(width, dtype=np.float32) * ((in_w - 1) / (width - 1) if width > 1 else 0.0)
        map_y = np.arange(height, dtype=np.float32) * ((in_h - 1) / (height - 1) if height > 1 else 0.0)
        grid_x, grid_y = np.meshgrid(map_x, map_y)
        return cv2.remap(content, grid_x, grid_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    raise ValueError(f"unknown output interpolation {interpolation!r}")


def to_camera_resolution(depth_net: np.ndarray, info: ResizeInfo, interpolation: str = "linear") -> np.ndarray:
    """Undo the letterbox crop and resize back to the camera image's size (resize_output: the card's
    output_interpolation).

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
    return resize_output(content, info.src_width, info.src_height, interpolation)


def clamp_depth(depth: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    """Clip into [min_depth, max_depth] (the Eigen/monodepth2 evaluation convention); NaN stays NaN.

    For evaluation only: published depth marks out-of-range pixels instead (outputs.encode_depth).
    """
    return np.clip(np.asarray(depth, np.float32), min_depth, max_depth)
