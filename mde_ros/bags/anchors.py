"""Scale anchors, the temporal filter and confidence in `mde-ros replay` (the node's ros/anchors twin).

Range and PointCloud2 messages of the bag are fed to the same AnchorBuffer as the node's, in
receive order, so an image is anchored by what a live node would have received before it. There
is no TF in a bag replay: sensor poses are the fixed ones (--range-frame/--range-position/
--range-direction, --points-frame/--points-transform), as the node's parameters without tf2_ros.
"""
from __future__ import annotations

import argparse
import math
import posixpath
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rosbags.serde import SerdeError

from mde_ros.bags.io import BagError, deserialize, stamp_ns
from mde_ros.pipeline.anchor_inputs import AnchorBuffer, AnchorSettings
from mde_ros.pipeline.anchoring import EXPIRY_CHOICES, AnchoringConfig, Anchors, GroundPrior
from mde_ros.pipeline.refine import RefineConfig, Refined, Refiner
from mde_ros.pipeline.temporal import TemporalConfig

RANGE_TYPE = "sensor_msgs/msg/Range"
CLOUD_TYPE = "sensor_msgs/msg/PointCloud2"
MAX_PER_FRAME_RECORDS = 10_000


@dataclass(frozen=True)
class ReplayAnchors:
    """What `run_replay(anchors=...)` anchors with and how it refines the depth."""

    range_topic: str | None = None
    points_topic: str | None = None
    settings: AnchorSettings = AnchorSettings()
    refine: RefineConfig = RefineConfig()

    @property
    def anchoring(self) -> bool:
        """A scale anchor source is given (the bag then gets depth/scale, as the node publishes it)."""
        return bool(self.range_topic or self.points_topic or self.settings.ground)

    @property
    def active(self) -> bool:
        r = self.refine
        return bool(self.range_topic or self.points_topic or self.settings.ground or r.temporal or r.confidence)

    def check_topics(self, topics: dict[str, str]) -> None:
        """BagError when a named anchor topic is missing or of another type (`topics`: name -> msgtype)."""
        for topic, msgtype in ((self.range_topic, RANGE_TYPE), (self.points_topic, CLOUD_TYPE)):
            if topic is None:
                continue
            if topic not in topics:
                raise BagError(f"anchor topic {topic} is not in the bag")
            if topics[topic] != msgtype:
                raise BagError(f"anchor topic {topic} is {topics[topic]}, expected {msgtype}")


@dataclass
class ReplayRefine:
    """Per-bag state: the anchor buffer, the refiner and the scale log of the summary."""

    anchors: ReplayAnchors
    depth_topic: str
    buffer: AnchorBuffer = field(init=False)
    _refiner: Refiner = field(init=False)
    rejected: Counter = field(default_factory=Counter)
    corrupt: int = 0
    frames: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.buffer = AnchorBuffer(self.anchors.settings)
        self._refiner = Refiner(self.anchors.refine)

    @property
    def confidence_topic(self) -> str | None:
        """`<depth namespace>/confidence` beside the depth image (/camera/depth/confidence)."""
        if not self.anchors.refine.confidence:
            return None
        return posixpath.join(posixpath.dirname(self.depth_topic), "confidence")

    def feed(self, topic: str, data: bytes) -> bool:
        """Take a Range/PointCloud2 message of the anchor topics; False for any other topic."""
        if topic not in (self.anchors.range_topic, self.anchors.points_topic):
            return False
        msgtype = RANGE_TYPE if topic == self.anchors.range_topic else CLOUD_TYPE
        try:
            msg = deserialize(data, msgtype)
        except SerdeError:
            self.corrupt += 1
            return True
        (self.buffer.add_range if msgtype == RANGE_TYPE else self.buffer.add_cloud)(msg)
        return True

    def anchors_for(self, header: Any) -> Anchors:
        """The anchors fed so far that match the image with this header (fixed poses: no TF in a bag)."""
        return self.buffer.anchors_for(stamp_ns(header), header.frame_id)

    @property
    def refiner(self) -> Refiner:
        return self._refiner

    def record(self, refined: Refined | None, header: Any) -> None:
        """Log one frame's scale estimate and rejected anchors for the summary."""
        if refined is None:
            return
        self.rejected.update(refined.anchors.rejected)
        if len(self.frames) < MAX_PER_FRAME_RECORDS:
            self.frames.append({"stamp_ns": stamp_ns(header), **refined.scale.as_dict()})

    def summary(self) -> dict[str, Any]:
        """The `scale` section of replay's JSON summary."""
        applied = [f for f in self.frames if f["applied"]]
        factors = np.array([f["scale"] for f in applied]) if applied else np.zeros(0)
        return {
            "range_topic": self.anchors.range_topic, "points_topic": self.anchors.points_topic,
            "camera_height": None if self.anchors.settings.ground is None else self.anchors.settings.ground.camera_height,
            "frames_anchored": len(applied),
            "factor": None if not applied else {"min": round(float(factors.min()), 6),
                                               "median": round(float(np.median(factors)), 6),
                                               "max": round(float(factors.max()), 6), "last": applied[-1]["scale"]},
            "sources": dict(Counter(f["source"] for f in applied)),
            # every frame's regime (anchored, held, stopped, ...) and the filter's events (outlier, reset, ...)
            "regimes": dict(Counter(f.get("regime", "unanchored") for f in self.frames)),
            "events": dict(Counter(f["event"] for f in self.frames if f.get("event"))),
            "confidence_mean": None if not applied else round(float(np.mean([f["confidence"] for f in applied])), 4),
            "anchors_mean": None if not applied else round(float(np.mean([f["anchors"] for f in applied])), 2),
            "rejected": dict(self.rejected),
            "corrupt_messages": self.corrupt,
            "temporal_filter": self.anchors.refine.temporal is not None,
            "confidence_topic": self.confidence_topic,
            "per_frame": self.frames,
        }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("scale anchors", "as the node's scale.* / temporal.* / confidence.* "
                                                       "parameters (no TF in a bag: fixed sensor poses)")
    group.add_argument("--range-topic", help="sensor_msgs/Range topic that anchors the scale")
    group.add_argument("--range-frame", default="", help="the fixed pose is for Range messages in this frame "
                                                         "(default: any)")
    group.add_argument("--range-position", type=float, nargs=3, default=(0.0, 0.0, 0.0), metavar=("X", "Y", "Z"),
                       help="rangefinder position in the camera optical frame, metres (default 0 0 0)")
    group.add_argument("--range-direction", type=float, nargs=3, default=(0.0, 0.0, 1.0), metavar=("X", "Y", "Z"),
                       help="beam axis in the camera optical frame (default 0 0 1)")
    group.add_argument("--points-topic", help="sensor_msgs/PointCloud2 topic of metric points")
    group.add_argument("--points-frame", default="", help="clouds in this frame use --points-transform")
    group.add_argument("--points-transform", type=float, nargs=7, default=(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0),
                       metavar=("X", "Y", "Z", "QX", "QY", "QZ", "QW"),
                       help="pose of --points-frame in the camera optical frame")
    group.add_argument("--camera-height", type=float, help="metres above a flat floor: anchor to the fitted floor")
    group.add_argument("--camera-pitch", type=float, help="radians, > 0 looks down (with --camera-roll: known attitude)")
    group.add_argument("--camera-roll", type=float, help="radians, > 0 turns the image clockwise")
    group.add_argument("--anchor-stamp-tolerance", type=float, default=0.1, metavar="SECONDS")
    group.add_argument("--scale-time-constant", type=float, default=AnchoringConfig.time_constant, metavar="SECONDS")
    group.add_argument("--scale-max-age", type=float, default=AnchoringConfig.max_age, metavar="SECONDS",
                       help="seconds the factor is held without anchors (default %(default)s)")
    group.add_argument("--scale-on-expiry", choices=EXPIRY_CHOICES, default=AnchoringConfig.on_expiry,
                       help="after --scale-max-age: hold, decay, stop (write no depth) or nan (default %(default)s)")
    group.add_argument("--temporal", action="store_true", help="temporal stability filter")
    group.add_argument("--confidence", action="store_true", help="write per-pixel confidence (flip consistency) "
                                                                  "on <depth namespace>/confidence")
    group.add_argument("--confidence-threshold", type=float, default=0.0,
                       help="depth with confidence below this becomes NaN (needs --confidence)")


def from_args(args: argparse.Namespace) -> ReplayAnchors | None:
    """The anchors the options ask for (None when none); ValueError names a bad option."""
    ground = None
    if args.camera_height is not None:
        if not (math.isfinite(args.camera_height) and args.camera_height > 0):
            raise ValueError(f"--camera-height must be > 0 m, got {args.camera_height}")
        known = args.camera_pitch is not None or args.camera_roll is not None
        ground = GroundPrior(args.camera_height, (args.camera_pitch or 0.0) if known else None,
                             (args.camera_roll or 0.0) if known else None)
    elif args.camera_pitch is not None or args.camera_roll is not None:
        raise ValueError("--camera-pitch/--camera-roll need --camera-height")
    settings = AnchorSettings(range_frame=args.range_frame, range_position=tuple(args.range_position),
                              range_direction=tuple(args.range_direction), points_frame=args.points_frame,
                              points_transform=tuple(args.points_transform), ground=ground,
                              stamp_tolerance=args.anchor_stamp_tolerance)
    refine = RefineConfig(anchoring=AnchoringConfig(time_constant=args.scale_time_constant, max_age=args.scale_max_age,
                                                    on_expiry=args.scale_on_expiry),
                          temporal=TemporalConfig() if args.temporal else None, confidence=args.confidence,
                          confidence_threshold=args.confidence_threshold)
    anchors = ReplayAnchors(args.range_topic, args.points_topic, settings, refine)
    return anchors if anchors.active else None
