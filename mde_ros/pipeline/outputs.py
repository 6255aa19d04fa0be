"""Everything a frame publishes, as plain packed data the ROS layer only copies into messages.

Depth images follow REP 118 (32FC1 metres, or 16UC1 millimetres with 0 = invalid) and, for
float depth, REP 117: NaN = no estimate, -Inf = closer than min_depth, +Inf = beyond max_depth.
The cloud and the scan are built from that same marked depth, so a consumer running
depth_image_proc or depthimage_to_laserscan on our depth topic gets what we publish.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from mde_ros.pipeline.colorize import check_colormap, colorize
from mde_ros.pipeline.geometry import PackedCloud, Scan, depth_to_scan, pack_cloud
from mde_ros.pipeline.intrinsics import Intrinsics

DEPTH_ENCODINGS = ("32FC1", "16UC1")
MAX_UINT16_MM = 65535


@dataclass
class OutputConfig:
    depth_encoding: str = "32FC1"
    cloud_enabled: bool = True
    cloud_decimation: int = 1
    cloud_min_range: float = 0.0  # on z, like the depth image (see geometry.pack_cloud)
    cloud_max_range: float = math.inf
    cloud_organized: bool = True
    cloud_rgb: bool = True
    scan_enabled: bool = True
    scan_height: int = 1  # depthimage_to_laserscan's parameters and defaults
    scan_range_min: float = 0.45
    scan_range_max: float = 10.0
    colorized_enabled: bool = True
    colormap: str = "turbo"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting."""
        if self.depth_encoding not in DEPTH_ENCODINGS:
            raise ValueError(f"depth_encoding must be one of {DEPTH_ENCODINGS}, got {self.depth_encoding!r}")
        if int(self.cloud_decimation) != self.cloud_decimation or self.cloud_decimation < 1:
            raise ValueError(f"cloud_decimation must be an integer >= 1, got {self.cloud_decimation}")
        if not 0 <= self.cloud_min_range < self.cloud_max_range:
            raise ValueError(f"need 0 <= cloud_min_range < cloud_max_range, got "
                             f"{self.cloud_min_range}..{self.cloud_max_range}")
        if int(self.scan_height) != self.scan_height or self.scan_height < 1:
            raise ValueError(f"scan_height must be an integer >= 1, got {self.scan_height}")
        if not 0 <= self.scan_range_min < self.scan_range_max:
            raise ValueError(f"need 0 <= scan_range_min < scan_range_max, got "
                             f"{self.scan_range_min}..{self.scan_range_max}")
        check_colormap(self.colormap)


@dataclass
class PackedImage:
    """sensor_msgs/Image content; `data` is little-endian (is_bigendian = 0)."""

    height: int
    width: int
    encoding: str
    step: int
    data: bytes


def pack_image(array: np.ndarray, encoding: str) -> PackedImage:
    array = np.ascontiguousarray(array)
    height, width = array.shape[:2]
    return PackedImage(height, width, encoding, array.strides[0], array.tobytes())


@dataclass
class FrameOutputs:
    depth: PackedImage
    depth_intrinsics: Intrinsics | None  # the input image's: published depth has its resolution
    cloud: PackedCloud | None  # None when disabled or the intrinsics are unknown/invalid
    scan: Scan | None  # idem
    colorized: PackedImage | None
    timings: dict[str, float] = field(default_factory=dict)  # seconds per part built


def mark_out_of_range(depth: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    """REP 117 float depth: -Inf below min_depth, +Inf beyond max_depth, NaN kept (float32 copy)."""
    marked = np.array(depth, dtype="<f4")
    marked[marked < min_depth] = -np.inf
    marked[marked > max_depth] = np.inf
    return marked


def depth_to_millimetres(depth: np.ndarray, min_depth: float = 0.0, max_depth: float = math.inf) -> np.ndarray:
    """REP 118 16UC1: rounded millimetres, 0 for invalid, out-of-range or unrepresentable (> 65.535 m)."""
    depth = np.asarray(depth, np.float32)
    # Comparisons are False for NaN, so these two also reject NaN, +-Inf and depth <= 0.
    valid = (depth > 0) & (depth >= min_depth) & (depth <= min(max_depth, MAX_UINT16_MM / 1000.0))
    millimetres = np.rint(depth * np.float32(1000.0))
    millimetres[~valid] = 0
    return millimetres.astype("<u2")


def encode_depth(depth: np.ndarray, encoding: str, min_depth: float, max_depth: float) -> PackedImage:
    if encoding == "32FC1":
        return pack_image(mark_out_of_range(depth, min_depth, max_depth), encoding)
    if encoding == "16UC1":
        return pack_image(depth_to_millimetres(depth, min_depth, max_depth), encoding)
    raise ValueError(f"depth encoding must be one of {DEPTH_ENCODINGS}, got {encoding!r}")


def build_outputs(result, rgb: np.ndarray | None, config: OutputConfig, min_depth: float,
                  max_depth: float) -> FrameOutputs:
    """Build the enabled outputs of one DepthResult; timings keys: depth, cloud, scan, colorized."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    marked = mark_out_of_range(result.depth, min_depth, max_depth)
    depth_image = (pack_image(marked, "32FC1") if config.depth_encoding == "32FC1"
                   else encode_depth(result.depth, config.depth_encoding, min_depth, max_depth))
    now = time.perf_counter()
    timings["depth"], start = now - start, now

    intr = result.intrinsics if result.intrinsics is not None and result.intrinsics.is_valid() else None
    cloud = scan = colorized = None
    if config.cloud_enabled and intr is not None:
        cloud = pack_cloud(marked, intr, rgb if config.cloud_rgb else None, config.cloud_decimation,
                           config.cloud_min_range, config.cloud_max_range, config.cloud_organized)
        now = time.perf_counter()
        timings["cloud"], start = now - start, now
    if config.scan_enabled and intr is not None:
        scan = depth_to_scan(marked, intr, config.scan_height, config.scan_range_min, config.scan_range_max)
        now = time.perf_counter()
        timings["scan"], start = now - start, now
    if config.colorized_enabled:
        colorized = pack_image(colorize(result.depth, min_depth, max_depth, config.colormap), "rgb8")
        timings["colorized"] = time.perf_counter() - start
    return FrameOutputs(depth_image, result.intrinsics, cloud, scan, colorized, timings)
