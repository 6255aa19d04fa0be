"""Everything a frame publishes, as plain packed data the ROS layer only copies into messages.

Depth images follow REP 118 (32FC1 metres, or 16UC1 millimetres with 0 = invalid) and, for
float depth, REP 117: NaN = no estimate, -Inf = closer than min_depth, +Inf = beyond max_depth.
The cloud and the scan are built from that same marked depth, so a consumer running
depth_image_proc or depthimage_to_laserscan on our depth topic gets what we publish.
"""
from __future__ import annotations

import array
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

from mde_ros.pipeline.bands import row_bands
from mde_ros.pipeline.buffers import message_buffer, packed_copy, view
from mde_ros.pipeline.colorize import check_colormap, colorize
from mde_ros.pipeline.geometry import SCAN_CONVENTIONS, PackedCloud, Scan, depth_to_scan, mavlink_scan, pack_cloud
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
    scan_convention: str = "ros"  # geometry.SCAN_CONVENTIONS: ros | mavlink (MAVROS obstacle_distance)
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
        if self.scan_convention not in SCAN_CONVENTIONS:
            raise ValueError(f"scan_convention must be one of {SCAN_CONVENTIONS}, got {self.scan_convention!r}")
        check_colormap(self.colormap)


@dataclass
class PackedImage:
    """sensor_msgs/Image content; `data` is little-endian (is_bigendian = 0)."""

    height: int
    width: int
    encoding: str
    step: int
    data: bytes | array.array  # array.array('B') as built (pipeline.buffers): rclpy's message takes it as it is


def pack_image(array: np.ndarray, encoding: str, name: str = "image") -> PackedImage:
    """`array` copied once into output `name`'s message buffer (pipeline.buffers), rows packed."""
    height, width = array.shape[:2]
    data = packed_copy(name, array)
    return PackedImage(height, width, encoding, len(data) // height if height else 0, data)


def mark_out_of_range(depth: np.ndarray, min_depth: float, max_depth: float,
                      out: np.ndarray | None = None) -> np.ndarray:
    """REP 117 float depth: -Inf below min_depth, +Inf beyond max_depth, NaN kept (a float32 copy, or
    `out`: a little-endian float32 array of depth's shape, e.g. the depth message buffer's view)."""
    if out is None:
        marked = np.array(depth, dtype="<f4")
    else:
        marked = out
        np.copyto(marked, depth, casting="same_kind")
    if not marked.flags.c_contiguous:  # an `out` view with strides (not from this package): as a whole
        marked[marked < min_depth] = -np.inf
        marked[marked > max_depth] = np.inf
        return marked
    flat = marked.reshape(marked.shape[0] if marked.ndim > 1 else 1, -1)  # rows (a view: C-contiguous)
    for rows in row_bands(*flat.shape):  # the comparison masks of a band at a time (pipeline.bands)
        band = flat[rows].reshape(-1)
        # the few marked pixels by index: a boolean-mask assignment walks every pixel again (2x slower)
        band[np.flatnonzero(band < min_depth)] = -np.inf
        band[np.flatnonzero(band > max_depth)] = np.inf
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
        return pack_image(mark_out_of_range(depth, min_depth, max_depth), encoding, "depth")
    if encoding == "16UC1":
        return pack_image(depth_to_millimetres(depth, min_depth, max_depth), encoding, "depth")
    raise ValueError(f"depth encoding must be one of {DEPTH_ENCODINGS}, got {encoding!r}")


IMAGE = "sensor_msgs/msg/Image"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
POINT_CLOUD2 = "sensor_msgs/msg/PointCloud2"
LASER_SCAN = "sensor_msgs/msg/LaserScan"
DIAGNOSTIC_ARRAY = "diagnostic_msgs/msg/DiagnosticArray"


@dataclass
class FrameData:
    """One frame's (refined) DepthResult and what its outputs are built from, shared by the rows."""

    result: Any  # pipeline.estimator.DepthResult
    rgb: np.ndarray | None
    config: OutputConfig
    min_depth: float
    max_depth: float
    confidence: np.ndarray | None = None  # HxW 0..1 (pipeline.refine) when computed
    scale: Any = None  # the frame's pipeline.scale_filter.ScaleEstimate when refined
    # Builders where the depth is (inference.device_outputs.DeviceFrame) when `result` is the estimator's
    # own, unrefined result from a device pipeline; None: numpy (the reference).
    device: Any = None
    _marked: np.ndarray | None = field(default=None, repr=False)
    _marked_data: Any = field(default=None, repr=False)  # the 32FC1 depth message's buffer, marked in place

    @property
    def marked(self) -> np.ndarray:
        """The published float depth (REP 117 marks), computed once for depth, cloud and scan; with
        32FC1 depth it is built in the depth message's own buffer (no copy to publish it)."""
        if self._marked is None:
            depth = self.result.depth
            out = None
            if self.config.depth_encoding == "32FC1":
                self._marked_data = message_buffer("depth", depth.size * 4)
                out = view(self._marked_data, np.dtype("<f4"), depth.shape)
            self._marked = mark_out_of_range(depth, self.min_depth, self.max_depth, out)
        return self._marked

    @property
    def intrinsics(self) -> Intrinsics | None:
        """The image's intrinsics when usable for geometry (cloud, scan), else None."""
        intr = self.result.intrinsics
        return intr if intr is not None and intr.is_valid() else None


def _depth(f: FrameData) -> PackedImage:
    if f.config.depth_encoding == "32FC1" and f.device is not None:
        return f.device.depth_image(f.min_depth, f.max_depth)
    if f.config.depth_encoding == "32FC1":
        height, width = f.marked.shape
        return PackedImage(height, width, "32FC1", width * 4, f._marked_data)
    return encode_depth(f.result.depth, f.config.depth_encoding, f.min_depth, f.max_depth)


def _cloud(f: FrameData) -> PackedCloud | None:
    c = f.config
    if f.intrinsics is not None and f.device is not None:
        return f.device.cloud(f.min_depth, f.max_depth, f.intrinsics, f.rgb if c.cloud_rgb else None,
                              c.cloud_decimation, c.cloud_min_range, c.cloud_max_range, c.cloud_organized)
    return None if f.intrinsics is None else pack_cloud(
        f.marked, f.intrinsics, f.rgb if c.cloud_rgb else None, c.cloud_decimation, c.cloud_min_range,
        c.cloud_max_range, c.cloud_organized)


def _scan(f: FrameData) -> Scan | None:
    c = f.config
    if f.intrinsics is None:
        return None
    if f.device is not None and c.scan_convention == "ros":
        return f.device.scan(f.min_depth, f.max_depth, f.intrinsics, c.scan_height, c.scan_range_min,
                             c.scan_range_max)
    build = mavlink_scan if c.scan_convention == "mavlink" else depth_to_scan
    return build(f.marked, f.intrinsics, c.scan_height, c.scan_range_min, c.scan_range_max)


def _colorized(f: FrameData) -> PackedImage:
    if f.device is not None:
        return f.device.colorized(f.min_depth, f.max_depth, f.config.colormap)
    height, width = f.result.depth.shape
    data = message_buffer("colorized", height * width * 3)
    colorize(f.result.depth, f.min_depth, f.max_depth, f.config.colormap, out=view(data, np.uint8, (height, width, 3)))
    return PackedImage(height, width, "rgb8", width * 3, data)


def _relative(f: FrameData) -> PackedImage | None:
    relative = getattr(f.result, "relative", None)
    return None if relative is None else pack_image(np.asarray(relative, "<f4"), "32FC1", "relative")


def _confidence(f: FrameData) -> PackedImage | None:
    return None if f.confidence is None else pack_image(np.asarray(f.confidence, "<f4"), "32FC1", "confidence")


@dataclass(frozen=True)
class OutputSpec:
    """One published output: what builds it, when, and which message carries it.

    Adding an output = its algorithm + one row in OUTPUTS (+ a message adapter in mde_ros.ros.adapters
    for a message type none of the rows uses yet); the node and `mde-ros replay` take it from here.
    """

    key: str  # FrameOutputs.parts key, replay's OutputTopics name and summary key
    topic: str  # relative to the node's namespace (replay: the camera's namespace)
    msgtype: str  # ROS message type
    adapter: str  # mde_ros.ros.adapters.ADAPTERS key: packed value -> message (rclpy or rosbags)
    build: Callable[[FrameData], Any]  # the packed value, or None when the frame cannot have it
    description: str = ""
    switch: str | None = None  # node parameter (and OutputConfig flag) that turns it off
    config_flag: str | None = None  # OutputConfig field: enabled in this run
    on_demand: bool = False  # built only while someone subscribes (depth_image_proc's way)
    metric: bool = True  # needs metres: not built for an unanchored relative model's frame
    when: str = "always"  # "always" | "relative" (relative models) | "confidence" (confidence enabled)
    #                       | "anchoring" (a scale anchor source enabled)
    stage: str | None = None  # timing name (None: not timed)


OUTPUTS: tuple[OutputSpec, ...] = (
    OutputSpec("depth", "depth/image", IMAGE, "image", _depth, "depth, REP 118 (32FC1 m or 16UC1 mm)",
               stage="depth"),
    OutputSpec("depth_camera_info", "depth/camera_info", CAMERA_INFO, "camera_info", lambda f: f.result.intrinsics,
               "the depth image's CameraInfo (the camera's, at the depth resolution)"),
    OutputSpec("points", "points", POINT_CLOUD2, "cloud", _cloud, "point cloud (depth_image_proc semantics)",
               switch="publish.points", config_flag="cloud_enabled", on_demand=True, stage="cloud"),
    OutputSpec("scan", "scan", LASER_SCAN, "scan", _scan, "laser scan (depthimage_to_laserscan semantics)",
               switch="publish.scan", config_flag="scan_enabled", on_demand=True, stage="scan"),
    OutputSpec("colorized", "depth/colorized", IMAGE, "image", _colorized, "rgb8 colour-mapped depth (RViz)",
               switch="publish.colorized", config_flag="colorized_enabled", on_demand=True, stage="colorized"),
    OutputSpec("relative", "depth/relative", IMAGE, "image", _relative,
               "a relative model's affine-invariant output, 32FC1, larger = nearer", metric=False, when="relative"),
    OutputSpec("confidence", "depth/confidence", IMAGE, "image", _confidence,
               "per-pixel confidence 0..1 (flip consistency; one more network run, only while subscribed unless "
               "confidence.threshold marks the depth)", on_demand=True, metric=False, when="confidence"),
    OutputSpec("scale", "depth/scale", DIAGNOSTIC_ARRAY, "scale", lambda f: f.scale,
               "each frame's scale: factor, regime, error bound, confidence, source (scale anchors)", metric=False,
               when="anchoring"),
)
BY_KEY = {spec.key: spec for spec in OUTPUTS}
METRIC_KEYS = tuple(spec.key for spec in OUTPUTS if spec.when == "always")  # every metric model's outputs


def outputs_for(relative: bool, confidence: bool, anchoring: bool = False) -> tuple[OutputSpec, ...]:
    """The rows a run has: the metric ones, depth/relative for a relative model, depth/confidence when on,
    depth/scale with a scale anchor source."""
    present = {"always": True, "relative": relative, "confidence": confidence, "anchoring": anchoring}
    return tuple(spec for spec in OUTPUTS if present[spec.when])


@dataclass
class FrameOutputs:
    """The packed outputs of one frame, keyed like OUTPUTS; missing keys were not built."""

    parts: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)  # seconds per part built (OutputSpec.stage)

    @property
    def depth(self) -> PackedImage | None:
        return self.parts.get("depth")

    @property
    def depth_intrinsics(self) -> Intrinsics | None:  # the input image's: published depth has its resolution
        return self.parts.get("depth_camera_info")

    @property
    def cloud(self) -> PackedCloud | None:  # None when disabled or the intrinsics are unknown/invalid
        return self.parts.get("points")

    @property
    def scan(self) -> Scan | None:
        return self.parts.get("scan")

    @property
    def colorized(self) -> PackedImage | None:
        return self.parts.get("colorized")


def build_parts(frame: FrameData, keys: Iterable[str], metric: bool | None = None) -> FrameOutputs:
    """Build the outputs named by `keys` that this frame can have (table order; the rows that need metres
    only when `metric`, by default when the result holds metres; OutputConfig flags respected)."""
    parts: dict[str, Any] = {}
    timings: dict[str, float] = {}
    wanted = set(keys)
    metric = getattr(frame.result, "is_metric", True) if metric is None else metric
    for spec in OUTPUTS:
        if spec.key not in wanted or (spec.metric and not metric):
            continue
        if spec.config_flag is not None and not getattr(frame.config, spec.config_flag):
            continue
        start = time.perf_counter()
        value = spec.build(frame)
        if value is None:
            continue
        parts[spec.key] = value
        if spec.stage is not None:
            timings[spec.stage] = time.perf_counter() - start
    return FrameOutputs(parts, timings)


def build_outputs(result, rgb: np.ndarray | None, config: OutputConfig, min_depth: float,
                  max_depth: float) -> FrameOutputs:
    """Build the enabled metric outputs of one DepthResult; timings keys: depth, cloud, scan, colorized."""
    return build_parts(FrameData(result, rgb, config, min_depth, max_depth), METRIC_KEYS)
