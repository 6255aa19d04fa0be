"""The depth node: camera image (+ CameraInfo) in; depth, CameraInfo, cloud, scan, preview out.

Glue only: decoding, depth estimation and output packing are mde_ros.pipeline's. The image
callback keeps just the newest frame and wakes the inference thread, so the executor keeps
receiving while the network runs and a slow network drops stale frames instead of queueing them.

    ros2 run mde_ros depth_node --ros-args --params-file config/depth.yaml -r image:=/camera/image_raw

Topics follow image_transport: `camera_info` is the image topic's sibling unless remapped itself,
and depth goes out as `depth/image` + its sibling `depth/camera_info` (mde_ros.ros.naming).
"""
from __future__ import annotations

import dataclasses
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, LaserScan, PointCloud2
from std_msgs.msg import Header

from mde_ros.inference import BACKEND_NAMES
from mde_ros.inference.base import PRECISIONS
from mde_ros.inference.options import BACKEND_OPTIONS, options_from_params
from mde_ros.inference.registry import auto_description
from mde_ros.memory import LargeFrameTrim, map_large_arrays
from mde_ros.modelfiles import load_estimator
from mde_ros.models.card import ModelCard
from mde_ros.pipeline.estimator import SKY_DEPTHS, DepthEstimator, EstimatorConfig
from mde_ros.pipeline.geometry import scan_fits
from mde_ros.pipeline.intrinsics import Intrinsics
from mde_ros.pipeline.budget import (DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_MAX_PIXELS,
                                     BudgetError, FrameBudget, output_bytes)
from mde_ros.pipeline.health import frame_findings
from mde_ros.pipeline.outputs import DEPTH_ENCODINGS, OutputConfig, build_outputs, pack_image
from mde_ros.pipeline.pairing import SyncedCameraInfos
from mde_ros.pipeline.preprocess import RESIZE_POLICIES, InputError
from mde_ros.ros import fastdds, messages, naming, paramcheck
from mde_ros.ros.aliases import ALIASES, resolve_aliases
from mde_ros.ros.anchors import NodeAnchors
from mde_ros.ros.compat import add_parameter_callbacks
from mde_ros.ros.diagnostics import NodeStats, ThrottledWarnings, diagnostic_status
from mde_ros.ros.qos import (DEFAULT_RELIABILITY, RELIABILITIES, incompatible_publisher_callbacks, publisher_qos,
                             subscription_qos)

NODE_NAME = "mde_depth"
TRANSPORTS = ("raw", "compressed")
DIAGNOSTICS_PERIOD_S = 1.0
WARN_THROTTLE_S = 5.0
MAX_RANGE_M = 1000.0


class StartupError(RuntimeError):
    """The node cannot start with this configuration; the message says what to change."""


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    read_only: bool = False
    low: float | None = None  # inclusive range, enforced by rclpy
    high: float | None = None
    choices: tuple[str, ...] = ()

    def descriptor(self) -> ParameterDescriptor:
        descriptor = ParameterDescriptor(name=self.name, description=self.description, read_only=self.read_only)
        if self.choices:
            descriptor.additional_constraints = "one of: " + ", ".join(self.choices)
        if self.low is not None and isinstance(self.default, float):
            descriptor.floating_point_range = [FloatingPointRange(from_value=self.low, to_value=self.high, step=0.0)]
        elif self.low is not None:
            descriptor.integer_range = [IntegerRange(from_value=int(self.low), to_value=int(self.high), step=1)]
        return descriptor


PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("model", "", "model file (.onnx with card, or .pt bundle); empty: the shipped demo model "
              "($MDE_ROS_MODEL overrides)", read_only=True),
    ParamSpec("backend", "auto", f"inference backend; {auto_description()}", read_only=True, choices=BACKEND_NAMES),
    ParamSpec("device", "cpu", "cpu, cuda or cuda:<index>", read_only=True),
    ParamSpec("precision", "fp32", "network precision: fp16 (GPU backends: the fp16 model), int8 (the model's "
              "Q/DQ int8 model: int8.model, MODEL.int8.onnx beside it, or built from int8.calibration)",
              read_only=True, choices=PRECISIONS),
    ParamSpec("device_pipeline", False, "resize, normalisation and the depth's conversion on the device too "
              "(only the image goes up, only the depth comes back): torch on CUDA with CUDA graphs, any size; "
              "onnxruntime / tensorrt run MODEL.fused.onnx beside the model (mde-ros export --fused WxH) for "
              "frames of its camera size and resize policy, other frames numpy", read_only=True),
    ParamSpec("image_transport", "raw", "raw: subscribe sensor_msgs/Image on 'image'; compressed: "
              "sensor_msgs/CompressedImage (JPEG/PNG) on '<image>/compressed'", read_only=True, choices=TRANSPORTS),
    ParamSpec("qos.reliability", DEFAULT_RELIABILITY, "reliability of the image and camera_info subscriptions: "
              "reliable (realsense-ros and image_pipeline's choice; measured to deliver, README 'Delivery') or "
              "best_effort (needed for a best-effort camera driver: a reliable subscription does not match it)",
              read_only=True, choices=tuple(RELIABILITIES)),
    ParamSpec("qos.depth", 5, "history depth of the camera_info subscription and the publishers (the image "
              "subscription keeps 1: only the newest frame is processed)", read_only=True, low=1, high=1000),
    ParamSpec("resize_policy", "card", "how the image is fitted to the network input; card: the model "
              "card's rule", choices=("card", *RESIZE_POLICIES)),
    ParamSpec("camera_aware_rescale", True, "scale depth by f_camera / f_training (needs CameraInfo and a "
              "card with train_focal_px; canonical-focal models are always rescaled)"),
    ParamSpec("sky_depth", "too_far", "depth of pixels the model's sky output marks: too_far (+Inf, REP 117), "
              "invalid (NaN), or keep the network's", choices=SKY_DEPTHS),
    ParamSpec("min_depth", 0.0, "metres; closer is published as -Inf (32FC1) or 0 (16UC1); 0: the model "
              "card's", low=0.0, high=MAX_RANGE_M),
    ParamSpec("max_depth", 0.0, "metres; farther is published as +Inf (32FC1) or 0 (16UC1); 0: the model "
              "card's", low=0.0, high=MAX_RANGE_M),
    ParamSpec("depth_encoding", "32FC1", "32FC1 metres (REP 118 canonical) or 16UC1 millimetres, 0 invalid",
              choices=DEPTH_ENCODINGS),
    # 'points' defaults to an obstacle-sized cloud (nav2's obstacle / voxel layers, best-effort subscribers):
    # 640x480 -> at most 160x120 points of 16 bytes. The full organised xyzrgb cloud (depth_image_proc's):
    # decimation 1, organized true, max_range 0, rgb true.
    ParamSpec("cloud.decimation", 4, "use every n-th pixel in both axes for 'points' (1: full resolution)",
              low=1, high=64),
    ParamSpec("cloud.min_range", 0.0, "metres; closer points are dropped (NaN when organized)",
              low=0.0, high=MAX_RANGE_M),
    ParamSpec("cloud.max_range", 10.0, "metres (on z); farther points are dropped; 0: no limit",
              low=0.0, high=MAX_RANGE_M),
    ParamSpec("cloud.organized", False, "true: keep the image layout with NaN points (like depth_image_proc); "
              "false: only valid points"),
    ParamSpec("cloud.rgb", False, "add the camera colour as PCL's float 'rgb' field (pcl::PointXYZRGB layout: "
              "offset 16, point_step 32)"),
    ParamSpec("scan.scan_height", 1, "image rows around cy used for 'scan' (depthimage_to_laserscan)",
              low=1, high=4096),
    ParamSpec("scan.range_min", 0.45, "metres; shorter ranges are not returns", low=0.0, high=MAX_RANGE_M),
    ParamSpec("scan.range_max", 10.0, "metres; longer ranges are not returns", low=0.0, high=MAX_RANGE_M),
    ParamSpec("scan.scan_time", 0.033, "seconds between scans, copied into LaserScan.scan_time "
              "(depthimage_to_laserscan's default)", low=0.0, high=3600.0),
    ParamSpec("scan.output_frame", "", "frame_id of 'scan' (a body-convention frame, x forward, z up); "
              "empty: the image's optical frame without '_optical' (camera_color_optical_frame -> "
              "camera_color_frame)"),
    ParamSpec("publish.points", True, "publish sensor_msgs/PointCloud2 on 'points'"),
    ParamSpec("publish.scan", True, "publish sensor_msgs/LaserScan on 'scan'"),
    ParamSpec("publish.colorized", True, "publish an rgb8 preview on 'depth/colorized'"),
    ParamSpec("sync_tolerance", 0.05, "seconds; the newest CameraInfo whose stamp is this close to the "
              "image's is used", low=0.0, high=10.0),
    ParamSpec("budget.max_pixels", DEFAULT_MAX_PIXELS, "largest image (width x height, read from the message or "
              "the JPEG/PNG header before decoding) that is processed; larger frames are rejected; 0: no limit",
              low=0, high=2**31 - 1),
    ParamSpec("budget.max_message_bytes", DEFAULT_MAX_MESSAGE_BYTES, "largest image message payload processed; "
              "0: no limit", low=0, high=2**31 - 1),
    ParamSpec("budget.max_output_bytes", DEFAULT_MAX_OUTPUT_BYTES, "largest total of one frame's outputs (depth, "
              "cloud, preview), estimated before building them; 0: no limit", low=0, high=2**31 - 1),
    ParamSpec("fallback_intrinsics.fx", 0.0, "pixels at the image's resolution, used while no CameraInfo "
              "matches; all four > 0 to enable", low=0.0, high=1e6),
    ParamSpec("fallback_intrinsics.fy", 0.0, "see fallback_intrinsics.fx", low=0.0, high=1e6),
    ParamSpec("fallback_intrinsics.cx", 0.0, "see fallback_intrinsics.fx", low=0.0, high=1e6),
    ParamSpec("fallback_intrinsics.cy", 0.0, "see fallback_intrinsics.fx", low=0.0, high=1e6),
)
# Backend options (read-only), from the one table the CLI and the launch file use too.
BACKEND_PARAMETERS = tuple(ParamSpec(o.param, o.unset, o.help, read_only=True, low=o.low, high=o.high,
                                     choices=o.choices) for o in BACKEND_OPTIONS)
PARAMETERS += BACKEND_PARAMETERS
BACKEND_PARAMS = frozenset(spec.name for spec in BACKEND_PARAMETERS)
SPECS = {spec.name: spec for spec in PARAMETERS}


def _field(param_name: str) -> str:
    return param_name.replace(".", "_")


@dataclass(frozen=True)
class Settings:
    """One consistent snapshot of every parameter (the inference thread reads it once per frame)."""

    model: str
    backend: str
    device: str
    precision: str
    image_transport: str
    qos_reliability: str
    qos_depth: int
    resize_policy: str
    camera_aware_rescale: bool
    device_pipeline: bool
    sky_depth: str
    min_depth: float
    max_depth: float
    depth_encoding: str
    cloud_decimation: int
    cloud_min_range: float
    cloud_max_range: float
    cloud_organized: bool
    cloud_rgb: bool
    scan_scan_height: int
    scan_range_min: float
    scan_range_max: float
    scan_scan_time: float
    scan_output_frame: str
    publish_points: bool
    publish_scan: bool
    publish_colorized: bool
    sync_tolerance: float
    budget_max_pixels: int
    budget_max_message_bytes: int
    budget_max_output_bytes: int
    fallback_intrinsics_fx: float
    fallback_intrinsics_fy: float
    fallback_intrinsics_cx: float
    fallback_intrinsics_cy: float
    backend_params: tuple[tuple[str, Any], ...] = ()  # (ROS name, value) of BACKEND_PARAMETERS

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> "Settings":
        backend = tuple(sorted((k, v) for k, v in values.items() if k in BACKEND_PARAMS))
        return cls(**{_field(name): value for name, value in values.items() if name not in BACKEND_PARAMS},
                   backend_params=backend)

    def with_values(self, values: dict[str, Any]) -> "Settings":
        backend = dict(self.backend_params, **{k: v for k, v in values.items() if k in BACKEND_PARAMS})
        return dataclasses.replace(self, **{_field(name): value for name, value in values.items()
                                            if name not in BACKEND_PARAMS},
                                   backend_params=tuple(sorted(backend.items())))

    def backend_options(self) -> dict[str, Any]:
        """create_backend options of the backend parameters (ValueError names a bad one)."""
        return options_from_params(dict(self.backend_params), self.backend, self.precision)

    def depth_range(self, card: ModelCard) -> tuple[float, float]:
        """(min_depth, max_depth) in metres: the parameters, or the card's where they are 0."""
        return self.min_depth or card.min_depth, self.max_depth or card.max_depth

    def problem(self, card: ModelCard | None = None) -> str | None:
        """Why these settings cannot work together (with this model, if given), or None."""
        for spec in PARAMETERS:
            if spec.name in BACKEND_PARAMS:
                continue
            value = getattr(self, _field(spec.name))
            if spec.choices and value not in spec.choices:
                return f"{spec.name} must be one of {', '.join(spec.choices)}, got {value!r}"
        try:
            self.backend_options()
        except ValueError as exc:
            return str(exc)
        if self.min_depth > 0 and self.max_depth > 0 and self.min_depth >= self.max_depth:
            return f"min_depth ({self.min_depth}) must be < max_depth ({self.max_depth})"
        if card is not None and self.depth_range(card)[0] >= self.depth_range(card)[1]:
            low, high = self.depth_range(card)
            return (f"min_depth {low} must be < max_depth {high} (0 means the model card's: "
                    f"{card.min_depth}..{card.max_depth})")
        if self.scan_range_min >= self.scan_range_max:
            return f"scan.range_min ({self.scan_range_min}) must be < scan.range_max ({self.scan_range_max})"
        if self.cloud_max_range > 0 and self.cloud_min_range >= self.cloud_max_range:
            return f"cloud.min_range ({self.cloud_min_range}) must be < cloud.max_range ({self.cloud_max_range})"
        return None

    def budget(self) -> FrameBudget:
        return FrameBudget(self.budget_max_pixels, self.budget_max_message_bytes, self.budget_max_output_bytes)

    def _fallback_values(self) -> tuple[float, float, float, float]:
        return (self.fallback_intrinsics_fx, self.fallback_intrinsics_fy,
                self.fallback_intrinsics_cx, self.fallback_intrinsics_cy)

    def fallback_incomplete(self) -> bool:
        """Some but not all fallback_intrinsics set: allowed at run time (`ros2 param set` sets one
        at a time), refused in a start-up configuration."""
        return any(self._fallback_values()) and not all(self._fallback_values())

    def fallback_intrinsics(self, width: int, height: int) -> Intrinsics | None:
        if not all(self._fallback_values()):
            return None
        return Intrinsics(*self._fallback_values(), width, height)


@dataclass
class _Frame:
    msg: Image | CompressedImage
    received: float  # time.perf_counter()


class DepthNode(Node):
    """sensor_msgs/Image (+ CameraInfo) -> metric depth, CameraInfo, PointCloud2, LaserScan, preview.

    `estimator` replaces the model named by the parameters (tests, or an application that already
    holds one); everything else behaves exactly as in production.
    """

    def __init__(self, *, estimator: DepthEstimator | None = None, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        try:
            self._settings = self._declare_parameters()
            self._estimator = estimator if estimator is not None else self._load_estimator(self._settings)
            problem = self._settings.problem(self._estimator.card)
            if problem:
                raise StartupError(f"invalid parameters: {problem}")
        except StartupError:
            super().destroy_node()
            raise
        settings = self._settings
        # The backend is fixed for the node's life (read-only parameters): describe it once.
        backend_info = self._estimator.backend.describe()
        self._hardware_id = str(backend_info.get("device", ""))
        self._backend_label = (f"{backend_info.get('backend', self._estimator.backend.name)} on "
                               f"{backend_info.get('device', '?')} ({backend_info.get('precision', '?')})")
        self._stats = NodeStats()
        self._warnings = ThrottledWarnings(self.get_logger().warning, self._stats, WARN_THROTTLE_S)
        self._camera_infos: SyncedCameraInfos[CameraInfo] = SyncedCameraInfos(settings.sync_tolerance)

        self._pub_qos = publisher_qos(settings.qos_depth)
        self._depth_pub = self.create_publisher(Image, naming.DEPTH_IMAGE, self._pub_qos)
        self._info_pub = self.create_publisher(CameraInfo, naming.DEPTH_CAMERA_INFO, self._pub_qos)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._relative_pub = None
        if self._estimator.card.is_relative:
            self._relative_pub = self.create_publisher(Image, "depth/relative", self._pub_qos)
            self.get_logger().warning(
                f"model {self._estimator.card.name!r} outputs {self._estimator.card.output} (affine-invariant): "
                "publishing it on depth/relative (32FC1, larger = nearer); depth, points and scan need "
                "metres, which only scale anchors give it (scale.range.*, scale.points.*, scale.ground.*)")
        self._optional_pubs: dict[str, Any] = {}
        self._pubs_lock = threading.Lock()
        self._sync_publishers(settings)

        sub_qos = subscription_qos(settings.qos_reliability, settings.qos_depth)
        # Depth 1 for images: only the newest frame is processed, so an older one waiting in a
        # queue is pure latency (issue 9: p99 781 ms under 2x overload with a reliable depth-5 queue).
        image_qos = subscription_qos(settings.qos_reliability, 1)
        image_topic = self.resolve_topic_name("image")
        def hints(topic: str):
            return incompatible_publisher_callbacks(self.get_logger().warning, topic, settings.qos_reliability)

        if settings.image_transport == "compressed":
            self._image_topic = image_topic + "/compressed"
            self._image_sub = self.create_subscription(CompressedImage, self._image_topic, self._on_image, image_qos,
                                                       event_callbacks=hints(self._image_topic))
        else:
            self._image_sub = self.create_subscription(Image, image_topic, self._on_image, image_qos,
                                                       event_callbacks=hints(image_topic))
            self._image_topic = self._image_sub.topic_name
        info_topic = self._camera_info_topic(image_topic)
        self._info_sub = self.create_subscription(CameraInfo, info_topic, self._on_camera_info, sub_qos,
                                                  event_callbacks=hints(info_topic))
        self._scan_frame_guessed: str | None = None  # image frame warned about (no '_optical' in it)
        try:  # scale anchors, temporal filter, confidence: scale.*, temporal.*, confidence.* (ros/anchors)
            # best effort: matches both kinds of rangefinder / lidar driver (anchor messages are small)
            self._anchors = NodeAnchors(self, subscription_qos("best_effort", settings.qos_depth), self._pub_qos,
                                        self._warnings.warn)
        except ValueError as exc:
            super().destroy_node()
            raise StartupError(f"invalid parameters: {exc}") from exc

        add_parameter_callbacks(self, self._check_parameters, self._apply_parameters)
        self._diag_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics)

        self._pending: _Frame | None = None
        map_large_arrays()  # a large frame's arrays are unmapped when freed (process-wide, idempotent)
        self._memory = LargeFrameTrim()
        self._stopping = False
        self._wake = threading.Condition()
        self._worker = threading.Thread(target=self._inference_loop, name="mde_depth_inference", daemon=True)
        self._worker.start()
        self.get_logger().info(f"model {self._estimator.card.name!r} on {self._backend_label}; listening on "
                               f"{self._image_topic} and {self._info_sub.topic_name}")

    def _camera_info_topic(self, image_topic: str) -> str:
        """image_transport's pairing: the image topic's sibling `camera_info`, unless `camera_info`
        itself is remapped (then the remap wins, as for any topic)."""
        if self.resolve_topic_name("camera_info") != self.resolve_topic_name("camera_info", only_expand=True):
            return self.resolve_topic_name("camera_info")
        return naming.sibling_topic(image_topic)

    # ---- parameters ---------------------------------------------------------------------------

    def _declare_parameters(self) -> Settings:
        try:
            declared = self.declare_parameters("", [(s.name, s.default, s.descriptor()) for s in PARAMETERS])
            aliases = self.declare_parameters("", [
                (a.name, SPECS[a.canonical].default,
                 ParameterDescriptor(name=a.name, description=a.description(), read_only=True)) for a in ALIASES])
        except ParameterException as exc:
            raise StartupError(f"invalid parameter: {exc}") from exc
        values, warnings = resolve_aliases({p.name: p.value for p in declared}, {p.name: p.value for p in aliases},
                                           {s.name: s.default for s in PARAMETERS})
        known = [*SPECS, *(a.name for a in ALIASES)]
        for warning in warnings + paramcheck.unknown_parameters(getattr(self, "_parameter_overrides", {}), known):
            self.get_logger().warning(warning)
        settings = Settings.from_values(values)
        problem = settings.problem()
        if problem is None and settings.fallback_incomplete():
            problem = "set all of fallback_intrinsics.fx, fy, cx, cy (> 0) or none of them"
        if problem:
            raise StartupError(f"invalid parameters: {problem}")
        return settings

    def _check_parameters(self, params: list[Parameter]) -> SetParametersResult:
        ours = {p.name: p.value for p in params if p.name in SPECS}
        problem = self._settings.with_values(ours).problem(self._estimator.card)
        return SetParametersResult(successful=problem is None, reason=problem or "")

    def _apply_parameters(self, params: list[Parameter]) -> None:
        ours = {p.name: p.value for p in params if p.name in SPECS}
        if ours:
            self._settings = self._settings.with_values(ours)
            self._sync_publishers(self._settings)
            self.get_logger().info("parameters changed: " + ", ".join(f"{k}={v!r}" for k, v in ours.items()))

    def _sync_publishers(self, settings: Settings) -> None:
        """Publishers exist only for enabled outputs, so `ros2 topic list` shows what is produced."""
        wanted = {"points": (settings.publish_points, PointCloud2), "scan": (settings.publish_scan, LaserScan),
                  "depth/colorized": (settings.publish_colorized, Image)}
        with self._pubs_lock:
            for topic, (enabled, msg_type) in wanted.items():
                if enabled and topic not in self._optional_pubs:
                    self._optional_pubs[topic] = self.create_publisher(msg_type, topic, self._pub_qos)
                elif not enabled and topic in self._optional_pubs:
                    self.destroy_publisher(self._optional_pubs.pop(topic))

    def _load_estimator(self, settings: Settings) -> DepthEstimator:
        model = settings.model
        if not model:
            from mde_ros.resources import default_model_path

            try:
                model = str(default_model_path())
            except OSError as exc:  # not found, or an unusable ament environment
                raise StartupError(f"no model given and the shipped one cannot be found: {exc}") from exc
        path = Path(model).expanduser()
        if not path.is_file():
            raise StartupError(f"model file not found: {path} (set the 'model' parameter to an .onnx or .pt file)")
        config = EstimatorConfig(camera_aware_rescale=settings.camera_aware_rescale,
                                 resize_policy=settings.resize_policy, sky_depth=settings.sky_depth,
                                 device_pipeline=settings.device_pipeline)
        try:
            return load_estimator(path, backend=settings.backend, device=settings.device,
                                  precision=settings.precision, config=config, **settings.backend_options())
        except Exception as exc:  # card, backend and runtime errors alike end the start-up with their reason
            raise StartupError(f"cannot load model {path} with backend {settings.backend!r} on "
                               f"{settings.device} ({settings.precision}): {exc}") from exc

    # ---- callbacks (executor thread): cheap, never block on inference ---------------------------

    def _on_image(self, msg: Image | CompressedImage) -> None:
        received = time.perf_counter()
        self._stats.frame_received()
        self._camera_infos.add_image(messages.stamp_ns(msg.header), received)
        with self._wake:
            if self._pending is not None:
                self._stats.frame_dropped()
            self._pending = _Frame(msg, received)
            self._wake.notify()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_infos.add_info(messages.stamp_ns(msg.header), msg)

    def _publish_diagnostics(self) -> None:
        window = self._stats.take_window()
        settings = self._settings
        geometry_wanted = settings.publish_points or settings.publish_scan
        status = diagnostic_status(
            window, name=f"{self.get_fully_qualified_name()}: depth estimation", hardware_id=self._hardware_id,
            backend=self._backend_label, model=self._estimator.card.name, input_topic=self._image_topic,
            intrinsics_missing=window.intrinsics_source == "none" and geometry_wanted,
            extra=self._anchors.diagnostic_values())
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(array)

    # ---- inference thread ---------------------------------------------------------------------

    def _inference_loop(self) -> None:
        while True:
            with self._wake:
                while self._pending is None and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                frame, self._pending = self._pending, None
            pixels = 0
            message_bytes = len(getattr(frame.msg, "data", b""))
            try:
                pixels = self._process(frame)
            except Exception as exc:  # a bug or backend failure must not stop the node
                if self._stopping or not self.context.ok():  # shutting down: the publishers are gone
                    return
                self._warnings.warn("frame_failed", f"frame skipped: {type(exc).__name__}: {exc}")
            del frame  # the message (up to budget.max_message_bytes) must not outlive its frame
            # a one-off large frame's (or a rejected large message's) memory goes back to the system
            self._memory.after_frame(pixels, message_bytes)

    def _process(self, frame: _Frame) -> int:
        """Decode, pair, estimate, publish one frame; the pixels it processed (0: rejected)."""
        settings = self._settings
        header = frame.msg.header
        decode_start = time.perf_counter()
        budget = settings.budget()
        notes: list[str] = []
        try:
            if isinstance(frame.msg, CompressedImage):
                rgb = messages.compressed_msg_to_rgb(frame.msg, budget, notes)
            else:
                rgb = messages.image_msg_to_rgb(frame.msg, budget)
        except BudgetError as exc:  # checked from the message fields / JPEG-PNG header: nothing decoded
            self._warnings.warn("over_budget", f"image on {self._image_topic} rejected: {exc}")
            return 0
        except InputError as exc:
            self._warnings.warn("bad_image", f"image on {self._image_topic} rejected: {exc}")
            return 0
        for note in notes:  # harmless codec messages (libjpeg's), throttled with the rest
            self._warnings.warn("image_codec_note", f"image on {self._image_topic}: {note}", count=False)
        height, width = rgb.shape[:2]
        intr, template, source = self._match_intrinsics(header, frame.received, width, height, settings)
        decode_s = time.perf_counter() - decode_start

        with self._pubs_lock:
            pubs = {topic: pub for topic, pub in self._optional_pubs.items() if pub.get_subscription_count() > 0}
        has_geometry = intr is not None
        scan_possible = has_geometry and scan_fits(intr, settings.scan_scan_height)
        if "scan" in pubs and has_geometry and not scan_possible:
            self._warnings.warn("scan_height", f"scan.scan_height {settings.scan_scan_height} does not fit the "
                                f"{height}-row image around cy={intr.cy:.1f}: no scan")
        config = OutputConfig(
            depth_encoding=settings.depth_encoding,
            cloud_enabled="points" in pubs and has_geometry, cloud_decimation=settings.cloud_decimation,
            cloud_min_range=settings.cloud_min_range, cloud_max_range=settings.cloud_max_range or float("inf"),
            cloud_organized=settings.cloud_organized, cloud_rgb=settings.cloud_rgb,
            scan_enabled="scan" in pubs and scan_possible, scan_height=settings.scan_scan_height,
            scan_range_min=settings.scan_range_min, scan_range_max=settings.scan_range_max,
            colorized_enabled="depth/colorized" in pubs)
        try:
            budget.check_outputs(output_bytes(width, height, depth_bytes_per_pixel=2 if config.depth_encoding == "16UC1"
                                              else 4, cloud=config.cloud_enabled,
                                              cloud_decimation=config.cloud_decimation,
                                              cloud_rgb=config.cloud_rgb, colorized=config.colorized_enabled))
        except BudgetError as exc:
            self._warnings.warn("over_budget", f"image on {self._image_topic} rejected: {exc}")
            return 0

        card = self._estimator.card
        min_depth, max_depth = settings.depth_range(card)
        self._estimator.config = EstimatorConfig(min_depth=min_depth, max_depth=max_depth,
                                                 camera_aware_rescale=settings.camera_aware_rescale,
                                                 resize_policy=settings.resize_policy, sky_depth=settings.sky_depth,
                                                 device_pipeline=settings.device_pipeline)
        result = self._estimator.estimate(rgb, intr)
        for warning in result.warnings:
            self._warnings.warn("intrinsics_ignored", warning)
        refined = self._anchors.refine(self._estimator, result, rgb, header)
        if refined is None:  # the scale expired and scale.on_expiry is 'stop': depth/scale says so
            if result.relative is not None:
                self._relative_pub.publish(messages.image_msg(pack_image(result.relative, "32FC1"), header))
            return width * height
        result = refined
        if result.relative is not None:  # a relative model: its own topic, never metres unanchored
            self._relative_pub.publish(messages.image_msg(pack_image(result.relative, "32FC1"), header))
            if not result.is_metric:
                self._stats.frame_published({"queue": decode_start - frame.received, "decode": decode_s,
                                             **result.timings}, source,
                                            float(np.isfinite(result.relative).mean()))
                return width * height
        outputs = build_outputs(result, rgb, config, min_depth, max_depth)

        publish_start = time.perf_counter()
        self._depth_pub.publish(messages.image_msg(outputs.depth, header))
        if outputs.depth_intrinsics is not None:
            self._info_pub.publish(messages.camera_info_msg(outputs.depth_intrinsics, header, template))
        optional: dict[str, Any] = {}
        if outputs.cloud is not None:
            optional["points"] = messages.point_cloud_msg(outputs.cloud, header)
        if outputs.scan is not None:
            optional["scan"] = messages.laser_scan_msg(outputs.scan, self._scan_header(header, settings),
                                                       settings.scan_scan_time)
        if outputs.colorized is not None:
            optional["depth/colorized"] = messages.image_msg(outputs.colorized, header)
        # Under the lock: a parameter change (executor thread) may have destroyed a publisher since
        # `pubs` was taken, and publishing on a destroyed one raises.
        with self._pubs_lock:
            for topic, msg in optional.items():
                if topic in self._optional_pubs:
                    self._optional_pubs[topic].publish(msg)

        timings = {"queue": decode_start - frame.received, "decode": decode_s, **result.timings,
                   "outputs": sum(outputs.timings.values()), "publish": time.perf_counter() - publish_start}
        valid, findings = frame_findings(result.depth, min_depth, max_depth, result.rescale, result.intrinsics, card)
        for finding in findings:  # states of the output, not rejected frames: logged, not counted
            self._warnings.warn(finding.kind, finding.message, count=False)
        self._stats.frame_published(timings, source, valid, findings)
        return width * height

    def _scan_header(self, header: Header, settings: Settings) -> Header:
        """The scan's header: the image's stamp, a body-convention frame (never the optical one)."""
        frame, guessed = naming.scan_frame(header.frame_id, settings.scan_output_frame)
        if guessed and self._scan_frame_guessed != frame:
            self._scan_frame_guessed = frame  # once per frame name, not per period: it is a setup issue
            self.get_logger().warning(
                f"image frame_id {frame!r} has no '_optical' part: publishing 'scan' in {frame!r}, assumed to "
                "be a body-convention frame (x forward, z up); set scan.output_frame if it is an optical frame")
        return Header(stamp=header.stamp, frame_id=frame)

    def _match_intrinsics(self, header: Header, received: float, width: int, height: int,
                          settings: Settings) -> tuple[Intrinsics | None, CameraInfo | None, str]:
        """(intrinsics at the image's resolution, the CameraInfo they came from, source name).

        The image's CameraInfo (same stamp, else the newest within sync_tolerance), waited for as
        long as this camera's measured lag says (mde_ros.pipeline.pairing); a bad one is treated as
        missing (with a warning); then fallback_intrinsics; then none (depth only).
        """
        self._camera_infos.tolerance_s = settings.sync_tolerance
        info_topic = self._info_sub.topic_name
        pairing = self._camera_infos.pair(messages.stamp_ns(header), received, self.count_publishers(info_topic))
        info = pairing.info
        if info is not None:
            try:
                intr = messages.intrinsics_from_camera_info(info, width, height)
            except messages.CameraInfoError as exc:
                self._warnings.warn(exc.kind, str(exc))
            else:
                described = messages.camera_info_image_size(info)  # its ROI / binning (REP 104)
                if described != (width, height):
                    self._warnings.warn("camera_info_scaled", f"CameraInfo describes a {described[0]}x{described[1]}"
                                        f" image, the image is {width}x{height}: K scaled per axis", count=False)
                return intr, info, "camera_info"
        elif pairing.problem[0] != "no_camera_info":
            kind, message = pairing.problem
            self._warnings.warn(kind, f"no CameraInfo on {info_topic} for the image stamped "
                                f"{header.stamp.sec}.{header.stamp.nanosec:09d}: {message}")
        fallback = settings.fallback_intrinsics(width, height)
        if fallback is not None:
            return fallback, None, "fallback_intrinsics"
        if pairing.problem is not None and pairing.problem[0] == "no_camera_info":
            fallback_state = "incomplete (need fx, fy, cx and cy > 0)" if settings.fallback_incomplete() else "not set"
            self._warnings.warn("no_intrinsics", f"no CameraInfo received on {self._info_sub.topic_name} and "
                                f"fallback_intrinsics.* {fallback_state}: publishing depth only (points, scan and "
                                "camera-aware rescale are off)", count=False)
        return None, None, "none"

    # ---- shutdown -----------------------------------------------------------------------------

    def destroy_node(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._worker.is_alive() and threading.current_thread() is not self._worker:
            self._worker.join(timeout=10.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Entry point of `ros2 run mde_ros depth_node` and `mde-ros node`; `args` as sys.argv (ROS args)."""
    argv = list(sys.argv if args is None else args)
    problem = next(filter(None, map(paramcheck.params_file_problem, paramcheck.params_files(argv))), None)
    if problem:  # rcl would raise it from rclpy.init as a traceback
        print(f"[FATAL] [{NODE_NAME}]: {problem}", file=sys.stderr)
        return 1
    # Before rclpy starts Fast DDS: the transport that delivers camera-sized messages and returns a large
    # sample's memory (mde_ros.ros.fastdds; README Delivery, Reliability).
    try:
        variables, _ = fastdds.profile_environment(os.environ)
    except OSError as exc:
        print(f"[FATAL] [{NODE_NAME}]: {exc}", file=sys.stderr)
        return 1
    os.environ.update(variables)
    try:
        rclpy.init(args=args)
    except Exception as exc:  # rcl's RCLError for other bad --ros-args
        print(f"[FATAL] [{NODE_NAME}]: cannot start: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    node = None
    try:
        node = DepthNode()
        for warning in paramcheck.unmatched_params_files(paramcheck.params_files(argv),
                                                         node.get_fully_qualified_name()):
            node.get_logger().warning(warning)
        rclpy.spin(node)
    except StartupError as exc:
        rclpy.logging.get_logger(NODE_NAME).fatal(str(exc))
        return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.utilities.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
