"""Outputs built with torch where the depth already is (the CUDA device pipeline's depth tensor).

The REP 117 depth image, the PointCloud2 bytes (organised or unorganised, decimated, xyz or xyzrgb in
pipeline.geometry's PCL layout) and the colourised image are built as tensors on the depth's device and
come to the host in one copy each, straight into the array.array('B') buffer their message stores as it
is (pipeline.buffers); the scan copies only its rows (scan_height x width) and reduces them with
pipeline.geometry's own code. The numpy builders of mde_ros.pipeline are the reference: test_device_outputs
holds these to them on CPU torch (same NaN / +-Inf pattern, values within 1e-4 m).

The torch device pipeline hands its depth tensor over as a DeviceFrame (DepthResult.device), and
pipeline.outputs builds through it whenever the frame's depth is the estimator's own (a refined depth,
changed on the CPU, is built by numpy). Not measured on a GPU here (none in this project's sessions).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from mde_ros.pipeline.buffers import message_buffer
from mde_ros.pipeline.colorize import colormap_table
from mde_ros.pipeline.geometry import (POINT_STEP, POINT_STEP_RGB, RGB_FIELD, XYZ_FIELDS, PackedCloud,
                                       Scan, decimated_intrinsics, scan_fits, scan_of_band, scan_rows)
from mde_ros.pipeline.intrinsics import Intrinsics
from mde_ros.pipeline.outputs import PackedImage

if TYPE_CHECKING:
    import torch


def to_message(name: str, tensor: "torch.Tensor"):
    """`tensor`'s bytes (C order) in output `name`'s message buffer: the one device -> host copy."""
    import torch

    flat = tensor.contiguous().reshape(-1).view(torch.uint8)
    buffer = message_buffer(name, flat.numel())
    torch.from_numpy(np.frombuffer(buffer, np.uint8)).copy_(flat)
    return buffer


def marked_depth(depth: "torch.Tensor", min_depth: float, max_depth: float) -> "torch.Tensor":
    """REP 117 float depth (pipeline.outputs.mark_out_of_range): -Inf below, +Inf beyond, NaN kept."""
    import torch

    marked = depth.to(torch.float32).clone()
    marked[marked < min_depth] = -math.inf
    marked[marked > max_depth] = math.inf
    return marked


def depth_image(marked: "torch.Tensor") -> PackedImage:
    """The 32FC1 depth message's content of a marked depth tensor."""
    height, width = marked.shape
    return PackedImage(height, width, "32FC1", width * 4, to_message("depth", marked))


def _rays(intr: Intrinsics, device) -> tuple["torch.Tensor", "torch.Tensor"]:
    """geometry.rays on the device (the same float32 values: computed in float64, then rounded)."""
    import torch

    x = torch.from_numpy(((np.arange(intr.width, dtype=np.float64) - intr.cx) / intr.fx).astype(np.float32))
    y = torch.from_numpy(((np.arange(intr.height, dtype=np.float64) - intr.cy) / intr.fy).astype(np.float32))
    return x.to(device), y.to(device)[:, None]


def cloud(marked: "torch.Tensor", intr: Intrinsics, rgb: "torch.Tensor | None" = None, decimation: int = 1,
          min_range: float = 0.0, max_range: float = math.inf, organized: bool = True) -> PackedCloud:
    """pipeline.geometry.pack_cloud of a depth tensor (rgb: HxWx3 uint8 on the same device)."""
    import torch

    if tuple(marked.shape) != (intr.height, intr.width) or not intr.is_valid():
        raise ValueError(f"depth {tuple(marked.shape)} does not fit valid intrinsics {intr}")
    if decimation > 1:
        marked = marked[::decimation, ::decimation]
        rgb = None if rgb is None else rgb[::decimation, ::decimation]
        intr = decimated_intrinsics(intr, decimation)
    height, width = marked.shape
    z = marked.to(torch.float32)
    valid = (z > 0) & (z < math.inf)  # NaN fails every comparison
    if min_range > 0:
        valid &= z >= min_range
    if max_range < math.inf:
        valid &= z <= max_range
    z = torch.where(valid, z, torch.full_like(z, math.nan))
    x_ray, y_ray = _rays(intr, z.device)
    step = POINT_STEP_RGB if rgb is not None else POINT_STEP
    points = torch.zeros((height, width, step // 4), dtype=torch.float32, device=z.device)
    points[:, :, 0] = z * x_ray
    points[:, :, 1] = z * y_ray
    points[:, :, 2] = z
    fields = list(XYZ_FIELDS)
    if rgb is not None:
        channels = rgb.to(torch.int32)
        packed = (channels[:, :, 0] << 16) | (channels[:, :, 1] << 8) | channels[:, :, 2]  # PCL 0x00RRGGBB
        points.view(torch.int32)[:, :, RGB_FIELD[1] // 4] = packed
        fields.append(RGB_FIELD)
    name = "points_rgb" if rgb is not None else "points_xyz"
    if organized:
        return PackedCloud(height, width, fields, step, step * width, to_message(name, points), False)
    records = points.reshape(-1, step // 4)[torch.isfinite(z).reshape(-1)]
    count = records.shape[0]
    return PackedCloud(1, count, fields, step, step * count, to_message("points_valid", records), True)


def colorized(depth: "torch.Tensor", min_depth: float, max_depth: float, colormap: str = "turbo") -> PackedImage:
    """pipeline.colorize.colorize of a depth tensor, as the rgb8 message's content."""
    import torch

    if not 0 <= min_depth < max_depth:
        raise ValueError(f"need 0 <= min_depth < max_depth, got {min_depth}..{max_depth}")
    depth = depth.to(torch.float32)
    level = (torch.tensor(max_depth, dtype=torch.float32, device=depth.device) - depth) * torch.tensor(
        255.0 / (max_depth - min_depth), dtype=torch.float32, device=depth.device)
    # cv2.convertScaleAbs: round half to even (torch.round too) and saturate to 0..255
    index = torch.nan_to_num(torch.round(torch.clamp(level, min=0.0)), nan=0.0, posinf=255.0).clamp(0, 255).long()
    lut = torch.from_numpy(colormap_table(colormap).copy()).to(depth.device)
    rgb = lut[index]
    rgb[~torch.isfinite(depth)] = 0
    height, width = depth.shape
    return PackedImage(height, width, "rgb8", width * 3, to_message("colorized", rgb))


def scan(marked: "torch.Tensor", intr: Intrinsics, scan_height: int = 1, range_min: float = 0.45,
         range_max: float = 10.0) -> Scan | None:
    """pipeline.geometry.depth_to_scan: only its rows come to the host; None where the scan cannot be made."""
    if tuple(marked.shape) != (intr.height, intr.width) or not intr.is_valid() or not scan_fits(intr, scan_height):
        return None
    band = marked[scan_rows(intr, scan_height)].cpu().numpy()
    return scan_of_band(band, intr, range_min, range_max)


def _host_tensor(array: np.ndarray) -> "torch.Tensor":
    """A CPU tensor on `array`'s memory, only read: a read-only array (an image decoded from a bag or message
    buffer) is taken as it is, without torch's once-per-process warning about non-writable arrays."""
    import warnings

    import torch

    array = np.ascontiguousarray(array)
    if array.flags.writeable:
        return torch.from_numpy(array)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


class DeviceFrame:
    """One frame's depth tensor and the outputs built from it (what pipeline.outputs calls)."""

    def __init__(self, depth: "torch.Tensor") -> None:
        self.depth = depth
        self._marked: dict[tuple[float, float], "torch.Tensor"] = {}

    def kept(self) -> "DeviceFrame":
        """A frame on a copy of the depth (on its device): the CUDA graph writes the next frame of this
        shape into the same static buffer, and a deferred build (replay's writer thread) comes later."""
        return DeviceFrame(self.depth.clone())

    def marked(self, min_depth: float, max_depth: float) -> "torch.Tensor":
        key = (min_depth, max_depth)
        if key not in self._marked:
            self._marked[key] = marked_depth(self.depth, min_depth, max_depth)
        return self._marked[key]

    def depth_image(self, min_depth: float, max_depth: float) -> PackedImage:
        return depth_image(self.marked(min_depth, max_depth))

    def cloud(self, min_depth: float, max_depth: float, intr: Intrinsics, rgb: np.ndarray | None, decimation: int,
              min_range: float, max_range: float, organized: bool) -> PackedCloud:
        colour = None if rgb is None else _host_tensor(rgb).to(self.depth.device)
        return cloud(self.marked(min_depth, max_depth), intr, colour, decimation, min_range, max_range, organized)

    def colorized(self, min_depth: float, max_depth: float, colormap: str) -> PackedImage:
        return colorized(self.depth, min_depth, max_depth, colormap)

    def scan(self, min_depth: float, max_depth: float, intr: Intrinsics, scan_height: int, range_min: float,
             range_max: float) -> Scan | None:
        return scan(self.marked(min_depth, max_depth), intr, scan_height, range_min, range_max)
