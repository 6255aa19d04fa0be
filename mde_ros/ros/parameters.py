"""The node's parameters, one table: its own, the scale anchors' (ros/anchors) and the backends'
(inference/options), in one format (`ParamSpec`).

The node declares PARAMETERS with their descriptors (description, range, choices, read-only), its
`Settings` snapshot has one field per row (made from the table, not written out again), and
test_ros_launch checks config/depth.yaml and the launch file against it. A new parameter is one row
here (and its line in config/depth.yaml, which the test asks for).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from mde_ros.inference import BACKEND_NAMES
from mde_ros.inference.base import PRECISIONS
from mde_ros.inference.options import BACKEND_OPTIONS, options_from_params
from mde_ros.inference.registry import auto_description
from mde_ros.models.card import ModelCard
from mde_ros.pipeline.budget import DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_MAX_PIXELS, FrameBudget
from mde_ros.pipeline.estimator import SKY_DEPTHS, EstimatorConfig
from mde_ros.pipeline.frame_step import StepConfig
from mde_ros.pipeline.geometry import SCAN_CONVENTIONS
from mde_ros.pipeline.intrinsics import Intrinsics
from mde_ros.pipeline.outputs import DEPTH_ENCODINGS, OUTPUTS, OutputConfig
from mde_ros.pipeline.preprocess import RESIZE_POLICIES
from mde_ros.ros.executor import EXECUTORS
from mde_ros.ros.qos import DEFAULT_RELIABILITY, RELIABILITIES

TRANSPORTS = ("raw", "compressed")
MAX_RANGE_M = 1000.0


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    read_only: bool = False
    low: float | None = None  # inclusive range, enforced by rclpy
    high: float | None = None
    choices: tuple[str, ...] = ()
    group: str = "node"  # "node" | "anchors" (ros/anchors) | "backend" (inference/options)

    @property
    def field(self) -> str:
        """Its Settings field: `cloud.max_range` -> `cloud_max_range`."""
        return self.name.replace(".", "_")

    def descriptor(self) -> ParameterDescriptor:
        descriptor = ParameterDescriptor(name=self.name, description=self.description, read_only=self.read_only)
        if self.choices:
            descriptor.additional_constraints = "one of: " + ", ".join(self.choices)
        if self.low is not None and isinstance(self.default, float):
            descriptor.floating_point_range = [FloatingPointRange(from_value=self.low, to_value=self.high, step=0.0)]
        elif self.low is not None:
            descriptor.integer_range = [IntegerRange(from_value=int(self.low), to_value=int(self.high), step=1)]
        return descriptor



NODE_PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("model", "", "model file (.onnx with card, or .pt bundle); empty: the shipped demo model "
              "($MDE_ROS_MODEL overrides)", read_only=True),
    ParamSpec("backend", "auto", f"inference backend; {auto_description()}", read_only=True, choices=BACKEND_NAMES),
    ParamSpec("device", "cpu", "cpu, cuda or cuda:<index>", read_only=True),
    ParamSpec("lifecycle", False, "a managed (lifecycle) node: start unconfigured; configure loads the model, "
              "activate starts publishing, deactivate stops, cleanup unloads (nav2's lifecycle manager, ros2 "
              "lifecycle set); false: configure and activate at start", read_only=True),
    ParamSpec("executor", "auto", "rclpy executor spinning the node: auto (rclpy's EventsExecutor where this "
              "rclpy has it: Jazzy >= 7.1.4, Kilted; else the SingleThreadedExecutor, Humble) | events | "
              "single_threaded (measured: ~0.6-1 ms less main-thread CPU per frame with events)",
              read_only=True, choices=EXECUTORS),
    ParamSpec("opencv_threads", 1, "OpenCV's threads for resizing and colouring: 1: in the frame's own thread "
              "(its worker pool spins between frames: +1.3 ms CPU per 640x480 frame measured); n: a pool of n; "
              "0: OpenCV's default (one per core); process-wide", read_only=True, low=0, high=256),
    ParamSpec("precision", "fp32", "network precision: fp16 (GPU backends: the fp16 model), bf16 (torch on CUDA "
              "only), int8 (the model's "
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
    ParamSpec("scan.convention", "ros", "ros: REP 103/117 (angles counter-clockwise, +-Inf), what nav2, "
              "slam_toolbox and RViz read; mavlink: for MAVROS's obstacle_distance plugin (mav_frame BODY_FRD, PX4 "
              "collision prevention): ranges left to right (clockwise), beyond range_max as range_max + 1 cm "
              "('no obstacle'), nearer than range_min as range_min", choices=SCAN_CONVENTIONS),
    ParamSpec("scan.output_frame", "", "frame_id of 'scan' (a body-convention frame, x forward, z up); "
              "empty: the image's optical frame without '_optical' (camera_color_optical_frame -> "
              "camera_color_frame)"),
    # publish.points, publish.scan, publish.colorized: one per switchable row of the output table
    *(ParamSpec(o.switch, True, f"publish {o.msgtype.replace('/msg/', '/')} on '{o.topic}': {o.description}")
      for o in OUTPUTS if o.switch),
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


def _anchor(name: str, default: Any, description: str, limits: tuple[float, float] | None = None) -> ParamSpec:
    """A scale.* / temporal.* / confidence.* row: read-only (they shape subscriptions and filters)."""
    low, high = limits if limits is not None else (None, None)
    return ParamSpec(name, default, description, read_only=True, low=low, high=high, group="anchors")


# Scale anchors, the temporal filter and confidence (mde_ros.ros.anchors.configs_from_values reads them).
ANCHOR_PARAMETERS: tuple[ParamSpec, ...] = (
    _anchor("scale.range.enabled", False, "subscribe sensor_msgs/Range on 'range' and anchor the scale to it"),
    _anchor("scale.range.frame_id", "", "the fixed pose below is for Range messages in this frame (empty: any "
            "frame); TF is used first where tf2_ros is available"),
    _anchor("scale.range.position", [0.0, 0.0, 0.0], "rangefinder position in the camera's optical frame (x right, y "
            "down, z forward), metres"),
    _anchor("scale.range.direction", [0.0, 0.0, 1.0], "rangefinder beam axis (the Range frame's x) in the camera's "
            "optical frame"),
    _anchor("scale.points.enabled", False, "subscribe sensor_msgs/PointCloud2 on 'anchor_points' (metric points: "
            "lidar, VIO/SLAM map points, a stereo/ToF patch) and anchor the scale to them"),
    _anchor("scale.points.frame_id", "", "clouds in this frame use scale.points.transform (empty: only clouds in the "
            "image's frame, or resolvable by TF, are used)"),
    _anchor("scale.points.transform", [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0], "x y z qx qy qz qw of "
            "scale.points.frame_id in the camera's optical frame"),
    _anchor("scale.ground.camera_height", 0.0, "metres from the camera to a flat floor; > 0 anchors the scale to the "
            "floor fitted in the predicted cloud; 0: off", (0.0, 100.0)),
    _anchor("scale.ground.attitude_known", False, "use scale.ground.pitch/roll (strongly recommended: the floor's "
            "tilt fitted from the prediction alone is far less accurate)"),
    _anchor("scale.ground.pitch", 0.0, "radians, > 0 looks down (REP 103 body convention)", (-1.5, 1.5)),
    _anchor("scale.ground.roll", 0.0, "radians, > 0 turns the image clockwise", (-1.5, 1.5)),
    _anchor("scale.use_tf", True, "look sensor poses up in TF when tf2_ros is importable"),
    _anchor("scale.stamp_tolerance", 0.1, "seconds; an anchor farther than this from the image stamp is not used",
            (0.0, 10.0)),
    _anchor("scale.time_constant", 0.5, "seconds: the filtered factor follows an accepted change at least this fast; "
            "0: at once", (0.0, 3600.0)),
    _anchor("scale.jump_threshold", 0.3, "relative change of the factor never taken from one frame: it needs a new "
            "view (the prediction changed) and a second frame, or scale.glitch_frames frames", (0.001, 100.0)),
    _anchor("scale.max_age", 2.0, "seconds the last factor is held after anchors stop; then scale.on_expiry",
            (0.0, 3600.0)),
    _anchor("scale.on_expiry", "stop", "after scale.max_age without anchors: hold (keep the last factor), decay "
            "(return to the model's own metres with time constant max_age; relative models: stop), stop (publish no "
            "depth, points, scan) or nan (publish NaN depth); the regime is on depth/scale and /diagnostics"),
    _anchor("scale.glitch_frames", 15, "frames an anchor's disagreement with the filtered factor must last, while "
            "the prediction stays put, before it is believed (a sensor glitch shorter than this is never applied)",
            (1, 100000)),
    _anchor("scale.scene_change", 0.1, "median relative change of the predicted depth at the anchors that counts as "
            "a new view (a jump of the factor is then believed on the second frame)", (0.001, 10.0)),
    _anchor("scale.model_error", 0.15, "prior relative error of the model at one pixel (calibrates the error bound "
            "of one range reading or a few points; many points measure it)", (0.001, 10.0)),
    _anchor("scale.drift", 0.05, "relative change of the true factor per sqrt(second) while the view stays",
            (0.0, 10.0)),
    _anchor("scale.min_confidence", 0.0, "per-frame fits less confident than this (1 - their error bound) are not "
            "used", (0.0, 1.0)),
    _anchor("scale.range_weight", 5.0, "a Range reading counts as this many metric points", (0.0, 1000000.0)),
    _anchor("scale.ground_weight", 5.0, "the ground plane counts as this many metric points", (0.0, 1000000.0)),
    _anchor("temporal.enabled", False, "damp frame-to-frame flicker of static structure (follows motion)"),
    _anchor("temporal.time_constant", 0.3, "seconds of per-pixel smoothing", (0.001, 3600.0)),
    _anchor("temporal.threshold", 0.03, "relative change of a pixel that counts as real (the pixel follows at once)",
            (0.0001, 10.0)),
    _anchor("temporal.scene_change", 0.1, "share of changed pixels that means the camera moved (all pixels follow)",
            (0.001, 1.0)),
    _anchor("confidence.enabled", False, "publish per-pixel confidence (flip consistency, 32FC1 0..1) on "
            "'depth/confidence'; costs one more network run per frame"),
    _anchor("confidence.tolerance", 0.1, "relative disagreement of the mirrored prediction that gives confidence "
            "0.37", (0.001, 10.0)),
    _anchor("confidence.threshold", 0.0, "depth whose confidence is below this becomes NaN (invalid); 0: none",
            (0.0, 1.0)),
)
# Backend options (read-only), from the one table the CLI and the launch file use too.
BACKEND_PARAMETERS = tuple(ParamSpec(o.param, o.unset, o.help, read_only=True, low=o.low, high=o.high,
                                     choices=o.choices, group="backend") for o in BACKEND_OPTIONS)
PARAMETERS: tuple[ParamSpec, ...] = NODE_PARAMETERS + ANCHOR_PARAMETERS + BACKEND_PARAMETERS
SPECS = {spec.name: spec for spec in PARAMETERS}
BACKEND_PARAMS = frozenset(spec.name for spec in BACKEND_PARAMETERS)


class _Settings:
    """One consistent snapshot of every parameter (the inference thread reads it once per frame): one
    field per PARAMETERS row (ParamSpec.field), made by `dataclasses.make_dataclass` below."""

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> "Settings":
        """From parameter values (name -> value); missing ones take the table's default."""
        return cls(**{spec.field: values.get(spec.name, spec.default) for spec in PARAMETERS})

    def with_values(self, values: dict[str, Any]) -> "Settings":
        return dataclasses.replace(self, **{SPECS[name].field: value for name, value in values.items()})

    def value(self, name: str) -> Any:
        """The value of parameter `name` (`scale.range.enabled`)."""
        return getattr(self, SPECS[name].field)

    def values(self, group: str | None = None) -> dict[str, Any]:
        """Parameter name -> value, of one group of rows (ParamSpec.group) or all."""
        return {spec.name: self.value(spec.name) for spec in PARAMETERS if group in (None, spec.group)}

    def backend_options(self) -> dict[str, Any]:
        """create_backend options of the backend parameters (ValueError names a bad one)."""
        return options_from_params(self.values("backend"), self.backend, self.precision)

    def depth_range(self, card: ModelCard) -> tuple[float, float]:
        """(min_depth, max_depth) in metres: the parameters, or the card's where they are 0."""
        return self.min_depth or card.min_depth, self.max_depth or card.max_depth

    def problem(self, card: ModelCard | None = None) -> str | None:
        """Why these settings cannot work together (with this model, if given), or None."""
        for spec in PARAMETERS:
            if spec.name in BACKEND_PARAMS:
                continue
            value = getattr(self, spec.field)
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

    def estimator_config(self, card: ModelCard) -> EstimatorConfig:
        min_depth, max_depth = self.depth_range(card)
        return EstimatorConfig(min_depth=min_depth, max_depth=max_depth, camera_aware_rescale=self.camera_aware_rescale,
                               resize_policy=self.resize_policy, sky_depth=self.sky_depth,
                               device_pipeline=self.device_pipeline)

    def step_config(self, card: ModelCard) -> StepConfig:
        """The frame step's settings (the optional outputs on; the step keeps those nobody wants off)."""
        min_depth, max_depth = self.depth_range(card)
        outputs = OutputConfig(
            depth_encoding=self.depth_encoding, cloud_decimation=self.cloud_decimation,
            cloud_min_range=self.cloud_min_range, cloud_max_range=self.cloud_max_range or float("inf"),
            cloud_organized=self.cloud_organized, cloud_rgb=self.cloud_rgb, scan_height=self.scan_scan_height,
            scan_range_min=self.scan_range_min, scan_range_max=self.scan_range_max,
            scan_convention=self.scan_convention)
        return StepConfig(outputs, min_depth, max_depth, self.budget())

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




Settings = dataclasses.make_dataclass("Settings", [(spec.field, type(spec.default)) for spec in PARAMETERS],
                                      bases=(_Settings,), frozen=True)
Settings.__module__ = __name__
