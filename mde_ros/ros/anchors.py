"""The node's metric anchors and depth refinement: `scale.*`, `temporal.*` and `confidence.*`.

Glue only (the algorithms are mde_ros.pipeline.anchoring / anchor_inputs / temporal / confidence /
refine): reads the parameters (declared by the node from ros/parameters' table), subscribes `range`
(sensor_msgs/Range) and `anchor_points` (sensor_msgs/PointCloud2) when enabled, looks sensor poses up
in TF where tf2_ros is importable (else the fixed poses in the parameters), hands the frame step
(pipeline.frame_step) its refiner and anchors, and reports the applied factor to /diagnostics. The
step's notes (rejected anchors, an expired scale) and the `depth/confidence` and `depth/scale` output
rows are the node's, as for every other output. With no anchor source enabled nothing is subscribed
and the depth is untouched.
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import numpy as np
from sensor_msgs.msg import PointCloud2, Range
from std_msgs.msg import Header

from mde_ros.pipeline.anchor_inputs import AnchorBuffer, AnchorSettings, TransformLookup
from mde_ros.pipeline.anchoring import AnchoringConfig, Anchors, GroundPrior, quaternion_matrix
from mde_ros.pipeline.refine import RefineConfig, Refined, Refiner
from mde_ros.pipeline.temporal import TemporalConfig
from mde_ros.ros import messages

if TYPE_CHECKING:
    from rclpy.node import Node

try:  # feature-detected: not every install has tf2_ros (the PyPI wheels here do not)
    import tf2_ros
except ImportError:  # pragma: no cover - depends on the install
    tf2_ros = None

RANGE_TOPIC = "range"
POINTS_TOPIC = "anchor_points"
CONFIDENCE_TOPIC = "depth/confidence"  # the output row "confidence" (pipeline.outputs.OUTPUTS)


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


class NodeAnchors:
    """Everything the node needs for anchoring, the temporal filter and confidence (see module doc).

    `anchors_for(header)` and `record(refined)` run on the inference thread once per frame."""

    def __init__(self, node: "Node", values: dict[str, Any], sub_qos: Any) -> None:
        """`values`: the scale.* / temporal.* / confidence.* parameters (ros/parameters, declared by the node);
        ValueError names a bad one."""
        self._node = node
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
        self.anchoring = range_on or points_on or settings.ground is not None  # depth/scale is published
        self.active = self.anchoring or config.temporal is not None or config.confidence
        sources = [name for name, on in (("range", range_on), ("points", points_on),
                                         ("ground", settings.ground is not None)) if on]
        if self.active:
            node.get_logger().info(
                f"scale anchors: {', '.join(sources) or 'none'}; pose lookup: "
                f"{'TF' if self._tf is not None else 'fixed poses (scale.range.*, scale.points.*)'}; temporal "
                f"filter {'on' if config.temporal else 'off'}; confidence {'on' if config.confidence else 'off'}")

    def close(self) -> None:
        """Remove the range / anchor_points subscriptions and the TF listener (lifecycle cleanup)."""
        for sub in self._subs:
            self._node.destroy_subscription(sub)
        self._subs = []
        listener = getattr(self, "_tf_listener", None)
        if listener is not None and hasattr(listener, "unregister"):  # tf2_ros: its /tf, /tf_static subscriptions
            listener.unregister()
        self._tf_listener = self._tf = None

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

    @property
    def refiner(self) -> Refiner | None:
        """The refiner the frame step runs (None with nothing enabled: the depth stays the estimator's)."""
        return self._refiner if self.active else None

    @property
    def confidence(self) -> bool:
        return self._refiner.config.confidence

    def anchors_for(self, header: Header) -> Anchors:
        """The anchors received for the image with this header (inference thread)."""
        return self._buffer.anchors_for(messages.stamp_ns(header), header.frame_id, self._lookup())

    def record(self, refined: Refined | None) -> None:
        """Keep the frame's scale estimate for /diagnostics."""
        if refined is not None:
            with self._lock:
                self._last = refined

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
