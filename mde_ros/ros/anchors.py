"""The node's metric anchors and depth refinement: `scale.*`, `temporal.*` and `confidence.*`.

Glue only (the algorithms are mde_ros.pipeline.anchoring / anchor_inputs / temporal / confidence /
refine): declares the parameters, subscribes `range` (sensor_msgs/Range) and `anchor_points`
(sensor_msgs/PointCloud2) when enabled, looks sensor poses up in TF where tf2_ros is importable
(else the fixed poses in the parameters), publishes `depth/confidence` (32FC1, 0..1) when
enabled, warns (throttled) about every rejected anchor and reports the applied factor to
/diagnostics. With no anchor source enabled nothing is subscribed and the depth is untouched.
"""
from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import ParameterException
from sensor_msgs.msg import Image, PointCloud2, Range
from std_msgs.msg import Header

from mde_ros.pipeline.anchor_inputs import AnchorBuffer, AnchorSettings, TransformLookup
from mde_ros.pipeline.anchoring import AnchoringConfig, GroundPrior, quaternion_matrix
from mde_ros.pipeline.outputs import pack_image
from mde_ros.pipeline.refine import RefineConfig, Refined, Refiner
from mde_ros.pipeline.scale_filter import ScaleEstimate
from mde_ros.pipeline.temporal import TemporalConfig
from mde_ros.ros import messages

if TYPE_CHECKING:
    from rclpy.node import Node

    from mde_ros.pipeline.estimator import DepthEstimator, DepthResult

try:  # feature-detected: not every install has tf2_ros (the PyPI wheels here do not)
    import tf2_ros
except ImportError:  # pragma: no cover - depends on the install
    tf2_ros = None

RANGE_TOPIC = "range"
POINTS_TOPIC = "anchor_points"
CONFIDENCE_TOPIC = "depth/confidence"
SCALE_TOPIC = "depth/scale"  # diagnostic_msgs/DiagnosticArray per frame: factor, regime, error bound, confidence
EXPIRED_REGIMES = ("decaying", "stopped", "invalid")
REJECTION_HINTS = {
    "nan": "NaN values", "negative": "negative depth", "range_limits": "reading outside its min_range..max_range",
    "field_of_view": "invalid field_of_view", "outside_image": "outside the image",
    "behind_camera": "behind the camera", "stamp": "stamp too far from the image's (scale.stamp_tolerance)",
    "frame": "frame unknown (no TF and not scale.range.frame_id / scale.points.frame_id)",
    "no_prediction": "no valid predicted depth there", "no_floor": "no floor found in the predicted depth",
    "no_intrinsics": "no camera intrinsics", "bad_cloud": "unreadable PointCloud2 (needs FLOAT32/64 x, y, z)",
}

# (name, default, description, (low, high) or None); all read-only: they shape subscriptions and filters.
PARAMETERS: tuple[tuple[str, Any, str, tuple[float, float] | None], ...] = (
    ("scale.range.enabled", False, f"subscribe sensor_msgs/Range on '{RANGE_TOPIC}' and anchor the scale to it", None),
    ("scale.range.frame_id", "", "the fixed pose below is for Range messages in this frame (empty: any frame); "
     "TF is used first where tf2_ros is available", None),
    ("scale.range.position", [0.0, 0.0, 0.0], "rangefinder position in the camera's optical frame (x right, "
     "y down, z forward), metres", None),
    ("scale.range.direction", [0.0, 0.0, 1.0], "rangefinder beam axis (the Range frame's x) in the camera's "
     "optical frame", None),
    ("scale.points.enabled", False, f"subscribe sensor_msgs/PointCloud2 on '{POINTS_TOPIC}' (metric points: "
     "lidar, VIO/SLAM map points, a stereo/ToF patch) and anchor the scale to them", None),
    ("scale.points.frame_id", "", "clouds in this frame use scale.points.transform (empty: only clouds in the "
     "image's frame, or resolvable by TF, are used)", None),
    ("scale.points.transform", [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0], "x y z qx qy qz qw of scale.points.frame_id "
     "in the camera's optical frame", None),
    ("scale.ground.camera_height", 0.0, "metres from the camera to a flat floor; > 0 anchors the scale to the "
     "floor fitted in the predicted cloud; 0: off", (0.0, 100.0)),
    ("scale.ground.attitude_known", False, "use scale.ground.pitch/roll (strongly recommended: the floor's tilt "
     "fitted from the prediction alone is far less accurate)", None),
    ("scale.ground.pitch", 0.0, "radians, > 0 looks down (REP 103 body convention)", (-1.5, 1.5)),
    ("scale.ground.roll", 0.0, "radians, > 0 turns the image clockwise", (-1.5, 1.5)),
    ("scale.use_tf", True, "look sensor poses up in TF when tf2_ros is importable", None),
    ("scale.stamp_tolerance", 0.1, "seconds; an anchor farther than this from the image stamp is not used",
     (0.0, 10.0)),
    ("scale.time_constant", 0.5, "seconds: the filtered factor follows an accepted change at least this fast; "
     "0: at once", (0.0, 3600.0)),
    ("scale.jump_threshold", 0.3, "relative change of the factor never taken from one frame: it needs a new view "
     "(the prediction changed) and a second frame, or scale.glitch_frames frames", (0.001, 100.0)),
    ("scale.max_age", 2.0, "seconds the last factor is held after anchors stop; then scale.on_expiry",
     (0.0, 3600.0)),
    ("scale.on_expiry", "stop", "after scale.max_age without anchors: hold (keep the last factor), decay (return "
     "to the model's own metres with time constant max_age; relative models: stop), stop (publish no depth, "
     "points, scan) or nan (publish NaN depth); the regime is on depth/scale and /diagnostics", None),
    ("scale.glitch_frames", 15, "frames an anchor's disagreement with the filtered factor must last, while the "
     "prediction stays put, before it is believed (a sensor glitch shorter than this is never applied)", (1, 100000)),
    ("scale.scene_change", 0.1, "median relative change of the predicted depth at the anchors that counts as a new "
     "view (a jump of the factor is then believed on the second frame)", (0.001, 10.0)),
    ("scale.model_error", 0.15, "prior relative error of the model at one pixel (calibrates the error bound of one "
     "range reading or a few points; many points measure it)", (0.001, 10.0)),
    ("scale.drift", 0.05, "relative change of the true factor per sqrt(second) while the view stays", (0.0, 10.0)),
    ("scale.min_confidence", 0.0, "per-frame fits less confident than this (1 - their error bound) are not used",
     (0.0, 1.0)),
    ("scale.range_weight", 5.0, "a Range reading counts as this many metric points", (0.0, 1e6)),
    ("scale.ground_weight", 5.0, "the ground plane counts as this many metric points", (0.0, 1e6)),
    ("temporal.enabled", False, "damp frame-to-frame flicker of static structure (follows motion)", None),
    ("temporal.time_constant", 0.3, "seconds of per-pixel smoothing", (0.001, 3600.0)),
    ("temporal.threshold", 0.03, "relative change of a pixel that counts as real (the pixel follows at once)",
     (0.0001, 10.0)),
    ("temporal.scene_change", 0.1, "share of changed pixels that means the camera moved (all pixels follow)",
     (0.001, 1.0)),
    ("confidence.enabled", False, f"publish per-pixel confidence (flip consistency, 32FC1 0..1) on "
     f"'{CONFIDENCE_TOPIC}'; costs one more network run per frame", None),
    ("confidence.tolerance", 0.1, "relative disagreement of the mirrored prediction that gives confidence 0.37",
     (0.001, 10.0)),
    ("confidence.threshold", 0.0, "depth whose confidence is below this becomes NaN (invalid); 0: none",
     (0.0, 1.0)),
)


def _descriptor(name: str, description: str, limits: tuple[float, float] | None,
                integer: bool = False) -> ParameterDescriptor:
    descriptor = ParameterDescriptor(name=name, description=description, read_only=True)
    if limits is not None and integer:
        descriptor.integer_range = [IntegerRange(from_value=int(limits[0]), to_value=int(limits[1]), step=1)]
    elif limits is not None:
        descriptor.floating_point_range = [FloatingPointRange(from_value=limits[0], to_value=limits[1], step=0.0)]
    return descriptor


def configs_from_values(values: dict[str, Any]) -> tuple[RefineConfig, AnchorSettings, bool, bool]:
    """(refine config, anchor settings, range enabled, points enabled) of the parameter values;
    ValueError names a bad one."""
    v = values
    ground = None
    if v["scale.ground.camera_height"] > 0:
        attitude = v["scale.ground.attitude_known"]
        ground = GroundPrior(float(v["scale.ground.camera_height"]),
                             float(v["scale.ground.pitch"]) if attitude else None,
                             float(v["scale.ground.roll"]) if attitude else None)
    for name, size in (("scale.range.position", 3), ("scale.range.direction", 3), ("scale.points.transform", 7)):
        if len(v[name]) != size:
            raise ValueError(f"{name} needs {size} numbers, got {list(v[name])}")
    try:
        settings = AnchorSettings(range_frame=v["scale.range.frame_id"],
                                  range_position=tuple(float(x) for x in v["scale.range.position"]),
                                  range_direction=tuple(float(x) for x in v["scale.range.direction"]),
                                  points_frame=v["scale.points.frame_id"],
                                  points_transform=tuple(float(x) for x in v["scale.points.transform"]),
                                  ground=ground, stamp_tolerance=float(v["scale.stamp_tolerance"]))
    except ValueError as exc:
        raise ValueError(f"scale.*: {exc}") from exc
    anchoring = AnchoringConfig(range_weight=v["scale.range_weight"], ground_weight=v["scale.ground_weight"],
                                time_constant=v["scale.time_constant"], jump_threshold=v["scale.jump_threshold"],
                                max_age=v["scale.max_age"], min_confidence=v["scale.min_confidence"],
                                on_expiry=v["scale.on_expiry"], glitch_frames=int(v["scale.glitch_frames"]),
                                scene_change=v["scale.scene_change"], model_error=v["scale.model_error"],
                                drift=v["scale.drift"])
    temporal = None
    if v["temporal.enabled"]:
        temporal = TemporalConfig(time_constant=v["temporal.time_constant"], threshold=v["temporal.threshold"],
                                  scene_change=v["temporal.scene_change"])
    if v["confidence.threshold"] > 0 and not v["confidence.enabled"]:
        raise ValueError("confidence.threshold needs confidence.enabled: true")
    refine = RefineConfig(anchoring=anchoring, temporal=temporal, confidence=v["confidence.enabled"],
                          confidence_tolerance=v["confidence.tolerance"],
                          confidence_threshold=v["confidence.threshold"])
    return refine, settings, bool(v["scale.range.enabled"]), bool(v["scale.points.enabled"])


EXPIRY_TEXT = {"decaying": "returning to the model's own metres", "stopped": "not published",
               "invalid": "published as NaN"}


def scale_message(estimate: ScaleEstimate, header: Header) -> DiagnosticArray:
    """The `depth/scale` message of one frame: the image's header, one status named 'scale' whose
    message is the regime (level OK anchored, WARN held/unanchored, ERROR expired) and whose values
    are the factor, shift, error bound, confidence, source, anchors, age and event."""
    level = {"anchored": DiagnosticStatus.OK, "held": DiagnosticStatus.WARN,
             "unanchored": DiagnosticStatus.WARN}.get(estimate.regime, DiagnosticStatus.ERROR)
    values = {"factor": f"{estimate.scale:.6g}" if estimate.applied else "1", "shift": f"{estimate.shift:.6g}",
              "regime": estimate.regime,
              "error_bound": f"{estimate.error_bound:.4f}" if math.isfinite(estimate.error_bound) else "inf",
              "confidence": f"{estimate.confidence:.4f}", "source": estimate.source,
              "anchors": str(estimate.n_anchors), "age": f"{estimate.age:.3f}", "event": estimate.event,
              "scale_only": str(estimate.scale_only).lower()}
    status = DiagnosticStatus(level=level, name="scale", message=estimate.regime, hardware_id="",
                              values=[KeyValue(key=k, value=v) for k, v in values.items()])
    return DiagnosticArray(header=header, status=[status])


class NodeAnchors:
    """Everything the node needs for anchoring, the temporal filter and confidence (see module doc).

    `refine(estimator, result, rgb, header)` runs on the inference thread once per frame."""

    def __init__(self, node: "Node", sub_qos: Any, pub_qos: Any, warn: Callable[[str, str], None]) -> None:
        self._node = node
        self._warn = warn
        try:
            declared = node.declare_parameters("", [
                (name, default, _descriptor(name, text, limits, type(default) is int))
                for name, default, text, limits in PARAMETERS])
        except ParameterException as exc:
            raise ValueError(f"invalid parameter: {exc}") from exc
        values = {p.name: p.value for p in declared}
        config, settings, range_on, points_on = configs_from_values(values)
        self._refiner = Refiner(config)
        self._buffer = AnchorBuffer(settings)
        self._lock = threading.Lock()
        self._last: Refined | None = None
        self._subs = []
        if range_on:
            self._subs.append(node.create_subscription(Range, RANGE_TOPIC, self._buffer.add_range, sub_qos))
        if points_on:
            self._subs.append(node.create_subscription(PointCloud2, POINTS_TOPIC, self._buffer.add_cloud, sub_qos))
        self._tf = None
        if values["scale.use_tf"] and tf2_ros is not None and (range_on or points_on):
            self._tf = tf2_ros.Buffer()
            self._tf_listener = tf2_ros.TransformListener(self._tf, node)
        self._confidence_pub = node.create_publisher(Image, CONFIDENCE_TOPIC, pub_qos) if config.confidence else None
        self.anchoring = range_on or points_on or settings.ground is not None
        self._scale_pub = node.create_publisher(DiagnosticArray, SCALE_TOPIC, pub_qos) if self.anchoring else None
        self.active = self.anchoring or config.temporal is not None or config.confidence
        sources = [name for name, on in (("range", range_on), ("points", points_on),
                                         ("ground", settings.ground is not None)) if on]
        if self.active:
            node.get_logger().info(
                f"scale anchors: {', '.join(sources) or 'none'}; pose lookup: "
                f"{'TF' if self._tf is not None else 'fixed poses (scale.range.*, scale.points.*)'}; temporal "
                f"filter {'on' if config.temporal else 'off'}; confidence {'on' if config.confidence else 'off'}")

    def _lookup(self) -> TransformLookup | None:
        if self._tf is None:
            return None
        tf = self._tf

        def lookup(target: str, source: str, stamp_ns: int):
            from rclpy.time import Time

            try:
                t = tf.lookup_transform(target, source, Time(nanoseconds=stamp_ns)).transform
            except Exception:  # tf2's LookupException, ExtrapolationException, ...: fall back to fixed poses
                return None
            q, p = t.rotation, t.translation
            return quaternion_matrix(q.x, q.y, q.z, q.w), np.array([p.x, p.y, p.z])

        return lookup

    def refine(self, estimator: "DepthEstimator", result: "DepthResult", rgb: np.ndarray,
               header: Header) -> "DepthResult | None":
        """The frame's depth after anchoring, the temporal filter and confidence marking; None when
        the scale expired with scale.on_expiry 'stop' (publish no metric output for it)."""
        if not self.active:
            return result
        image_ns = messages.stamp_ns(header)
        anchors = self._buffer.anchors_for(image_ns, header.frame_id, self._lookup())
        refined = self._refiner.refine(estimator, result, rgb, anchors, image_ns * 1e-9)
        for reason, count in sorted(refined.anchors.rejected.items()):
            self._warn(f"anchor_{reason}", f"ignored {count} scale anchor(s) for the image at "
                       f"{image_ns * 1e-9:.3f} s: {REJECTION_HINTS.get(reason, reason)}")
        if self._confidence_pub is not None and refined.confidence is not None:
            self._confidence_pub.publish(messages.image_msg(pack_image(refined.confidence, "32FC1"), header))
        with self._lock:
            self._last = refined
        if self._scale_pub is not None:
            self._scale_pub.publish(scale_message(refined.scale, header))
        s = refined.scale
        if s.regime in EXPIRED_REGIMES:
            self._warn("scale_expired", f"no usable scale anchor for {s.age:.1f} s (> scale.max_age): depth is "
                       f"{EXPIRY_TEXT[s.regime]} (scale.on_expiry)")
        return refined.result if refined.publish else None

    def diagnostic_values(self) -> dict[str, str]:
        """Applied factor, source, confidence and anchor count of the latest frame (empty when off)."""
        if not self.active:
            return {}
        with self._lock:
            last = self._last
        if last is None:
            return {"scale source": "none yet"}
        s = last.scale
        values = {"scale factor": f"{s.scale:.4f}" if s.applied else "1 (not anchored)",
                  "scale regime": s.regime, "scale source": s.source, "scale confidence": f"{s.confidence:.3f}",
                  "scale error bound (90 %)": "n/a" if not s.applied else f"{s.error_bound:.3f}",
                  "scale anchors": str(s.n_anchors),
                  "scale frame factor": "n/a" if s.frame_scale is None else f"{s.frame_scale:.4f}"}
        if s.scale_only:
            values["scale fit"] = "scale only (one anchor cannot fix a relative model's shift: held)"
        if s.shift:
            values["scale shift"] = f"{s.shift:.6f}"
        if s.event:
            values["scale event"] = s.event
        if last.confidence is not None:
            values["confident depth (%)"] = f"{100.0 * float(np.mean(last.confidence >= 0.5)):.1f}"
        return values
