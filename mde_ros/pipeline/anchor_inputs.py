"""Range and PointCloud2 messages -> `anchoring.Anchors` for one image, checked on the way.

Works on any object with the sensor_msgs field names (rclpy messages in the node, rosbags
dataclasses in replay), so both match anchors to images the same way: the reading nearest in time
to the image stamp (per sensor frame), within `stamp_tolerance`. A sensor's pose in the camera
frame comes from `lookup` (the node's TF, where tf2_ros is importable) or else from the fixed pose
in `AnchorSettings`; a message in a frame neither knows is rejected ("frame"). Every rejected
anchor is counted by reason (anchoring.REJECT_REASONS) in Anchors.rejected; nothing here raises on
bad input.
"""
from __future__ import annotations

import bisect
import math
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from mde_ros.pipeline.anchoring import (Anchors, GroundPrior, RangeReading, quaternion_matrix, range_problem,
                                        transform_points)

# (target frame, source frame, stamp ns) -> (3x3 rotation, translation) of source in target, or None.
TransformLookup = Callable[[str, str, int], Optional[tuple[np.ndarray, np.ndarray]]]
POINTFIELD_FLOAT32, POINTFIELD_FLOAT64 = 7, 8
HISTORY = 32  # messages kept per sensor frame
MAX_ANCHOR_POINTS = 5000  # a full lidar scan is subsampled to this many anchors


@dataclass(frozen=True)
class AnchorSettings:
    """Where the metric sensors are when TF cannot say (the node's `scale.*` parameters)."""

    range_frame: str = ""  # the fixed pose applies to Range messages in this frame ("" : any frame)
    range_position: tuple[float, float, float] = (0.0, 0.0, 0.0)  # in the camera optical frame, metres
    range_direction: tuple[float, float, float] = (0.0, 0.0, 1.0)  # beam axis in the camera optical frame
    points_frame: str = ""  # clouds in this frame use points_transform ("" : only the camera's frame)
    points_transform: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # x y z qx qy qz qw of it in the camera frame
    ground: GroundPrior | None = None
    stamp_tolerance: float = 0.1  # seconds between an anchor's stamp and the image's

    def __post_init__(self) -> None:
        if not (math.isfinite(self.stamp_tolerance) and self.stamp_tolerance >= 0):
            raise ValueError(f"stamp tolerance must be >= 0 s, got {self.stamp_tolerance}")
        if len(self.range_position) != 3 or len(self.range_direction) != 3:
            raise ValueError("range position and direction need 3 values each")
        if not all(math.isfinite(v) for v in (*self.range_position, *self.range_direction)) or \
                np.linalg.norm(self.range_direction) == 0:
            raise ValueError(f"range direction must be a finite non-zero vector, got {self.range_direction}")
        if len(self.points_transform) != 7:
            raise ValueError(f"points transform needs x y z qx qy qz qw, got {len(self.points_transform)} values")
        quaternion_matrix(*self.points_transform[3:])  # ValueError for a zero quaternion
        if self.ground is not None and not (math.isfinite(self.ground.camera_height) and self.ground.camera_height > 0):
            raise ValueError(f"camera height must be > 0 m, got {self.ground.camera_height}")


def stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def cloud_xyz(msg: Any) -> np.ndarray:
    """Nx3 float64 x, y, z of a PointCloud2 (FLOAT32 or FLOAT64 fields, either byte order);
    ValueError for a cloud without them or with inconsistent sizes."""
    fields = {f.name: f for f in msg.fields}
    if not all(name in fields for name in "xyz"):
        raise ValueError(f"PointCloud2 has no x, y, z fields (has {sorted(fields)})")
    n = int(msg.width) * int(msg.height)
    step = int(msg.point_step)
    data = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, np.ndarray) else msg.data.tobytes(), np.uint8)
    if n == 0:
        return np.zeros((0, 3))
    if step <= 0 or len(data) < n * step:
        raise ValueError(f"PointCloud2 data holds {len(data)} bytes, {n} points of {step} need {n * step}")
    records = data[:n * step].reshape(n, step)
    order = ">" if msg.is_bigendian else "<"
    columns = []
    for name in "xyz":
        f = fields[name]
        kind = {POINTFIELD_FLOAT32: "f4", POINTFIELD_FLOAT64: "f8"}.get(int(f.datatype))
        if kind is None:
            raise ValueError(f"PointCloud2 field {name} has datatype {f.datatype}; FLOAT32 or FLOAT64 expected")
        size = int(kind[1])
        if int(f.offset) + size > step:
            raise ValueError(f"PointCloud2 field {name} lies outside the {step}-byte point")
        raw = np.ascontiguousarray(records[:, int(f.offset):int(f.offset) + size])
        columns.append(raw.view(order + kind)[:, 0].astype(np.float64))
    return np.stack(columns, axis=1)


@dataclass
class _Stream:
    stamps: list[int] = field(default_factory=list)
    msgs: list[Any] = field(default_factory=list)

    def add(self, stamp: int, msg: Any) -> None:
        i = bisect.bisect_right(self.stamps, stamp)
        self.stamps.insert(i, stamp)
        self.msgs.insert(i, msg)
        if len(self.stamps) > HISTORY:
            del self.stamps[0], self.msgs[0]

    def nearest(self, stamp: int) -> tuple[int, Any]:
        i = bisect.bisect_left(self.stamps, stamp)
        best = min((j for j in (i - 1, i) if 0 <= j < len(self.stamps)), key=lambda j: abs(self.stamps[j] - stamp))
        return self.stamps[best], self.msgs[best]


class AnchorBuffer:
    """The latest Range and PointCloud2 messages (per frame_id); `anchors_for` picks each sensor's
    reading nearest the image stamp. Thread-safe: the node adds from the executor thread and reads
    from the inference thread."""

    def __init__(self, settings: AnchorSettings = AnchorSettings()) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._ranges: dict[str, _Stream] = defaultdict(_Stream)
        self._clouds: dict[str, _Stream] = defaultdict(_Stream)

    def add_range(self, msg: Any) -> None:
        with self._lock:
            self._ranges[msg.header.frame_id].add(stamp_ns(msg.header), msg)

    def add_cloud(self, msg: Any) -> None:
        with self._lock:
            self._clouds[msg.header.frame_id].add(stamp_ns(msg.header), msg)

    def _nearest(self, streams: dict[str, _Stream], image_ns: int, rejected: Counter) -> list[Any]:
        tolerance_ns = self.settings.stamp_tolerance * 1e9
        found = []
        for stream in streams.values():
            if not stream.stamps:
                continue
            stamp, msg = stream.nearest(image_ns)
            if abs(stamp - image_ns) <= tolerance_ns:
                found.append(msg)
            else:
                rejected["stamp"] += 1
        return found

    def anchors_for(self, image_ns: int, camera_frame: str, lookup: TransformLookup | None = None) -> Anchors:
        """The anchors of the image stamped `image_ns` in `camera_frame` (the ground prior included)."""
        rejected: Counter = Counter()
        with self._lock:
            ranges = self._nearest(self._ranges, image_ns, rejected)
            clouds = self._nearest(self._clouds, image_ns, rejected)
        readings = [r for r in (self._range_reading(msg, camera_frame, lookup, rejected) for msg in ranges) if r]
        points = [p for p in (self._cloud_points(msg, camera_frame, lookup, rejected) for msg in clouds)
                  if p is not None]
        xyz = np.concatenate(points) if points else np.zeros((0, 3))
        return Anchors(points=xyz, ranges=readings, ground=self.settings.ground, rejected=rejected)

    def _range_reading(self, msg: Any, camera_frame: str, lookup: TransformLookup | None,
                       rejected: Counter) -> RangeReading | None:
        problem = range_problem(float(msg.range), float(msg.min_range), float(msg.max_range),
                                float(msg.field_of_view))
        if problem:
            rejected[problem] += 1
            return None
        settings = self.settings
        pose = lookup(camera_frame, msg.header.frame_id, stamp_ns(msg.header)) if lookup else None
        if pose is not None:
            rotation, translation = pose
            origin, direction = np.asarray(translation, float), np.asarray(rotation, float) @ [1.0, 0.0, 0.0]
        elif settings.range_frame in ("", msg.header.frame_id):
            origin, direction = np.asarray(settings.range_position, float), np.asarray(settings.range_direction, float)
        else:
            rejected["frame"] += 1
            return None
        return RangeReading(float(msg.range), float(msg.field_of_view), tuple(origin), tuple(direction))

    def _cloud_points(self, msg: Any, camera_frame: str, lookup: TransformLookup | None,
                      rejected: Counter) -> np.ndarray | None:
        try:
            xyz = cloud_xyz(msg)
        except ValueError:
            rejected["bad_cloud"] += 1
            return None
        if len(xyz) > MAX_ANCHOR_POINTS:
            xyz = xyz[np.linspace(0, len(xyz) - 1, MAX_ANCHOR_POINTS).astype(np.intp)]
        frame = msg.header.frame_id
        if frame == camera_frame:
            return xyz
        pose = lookup(camera_frame, frame, stamp_ns(msg.header)) if lookup else None
        if pose is not None:
            return transform_points(xyz, *pose)
        settings = self.settings
        if settings.points_frame and settings.points_frame == frame:
            t = settings.points_transform
            return transform_points(xyz, quaternion_matrix(*t[3:]), t[:3])
        rejected["frame"] += 1
        return None
