"""Message adapters: a packed pipeline output -> its ROS message, written once for both message worlds.

Pure (no rclpy import): each adapter builds the message through a `MessageWorld`, which is the rclpy
message classes for the node (mde_ros.ros.messages.RCLPY) and rosbags' dataclasses for the bag tools
(mde_ros.bags.messages.ROSBAGS). So the node and a replayed bag carry the same fields, and a new
output with a new message type needs one adapter here (named by its row in
mde_ros.pipeline.outputs.OUTPUTS), not one per world.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Protocol

import numpy as np

from mde_ros.pipeline.intrinsics import Intrinsics, camera_info_matrices

if TYPE_CHECKING:
    from mde_ros.pipeline.geometry import PackedCloud, Scan
    from mde_ros.pipeline.outputs import PackedImage
    from mde_ros.pipeline.scale_filter import ScaleEstimate


class MessageWorld(Protocol):
    """How one message library builds messages (every field given: rosbags' classes have no defaults)."""

    def make(self, msgtype: str, **fields: Any) -> Any: ...  # "sensor_msgs/msg/Image"
    def uint8s(self, data: bytes) -> Any: ...  # a uint8[] field
    def float32s(self, values: np.ndarray) -> Any: ...  # a float32[] field
    def float64s(self, values: Any) -> Any: ...  # a float64[] / float64[N] field
    def byte(self, value: int) -> Any: ...  # a `byte` field (rclpy: bytes of one, rosbags: int)


class AdapterContext(Protocol):
    """What an adapter may need besides the packed value (mde_ros.pipeline.frame_step.FrameResult)."""

    camera_info: Any | None  # the camera's CameraInfo the intrinsics came from (either world), or None
    scan_frame: str  # frame_id of the scan (naming.scan_frame)
    scan_time: float  # LaserScan.scan_time


def header_like(world: MessageWorld, header: Any, frame_id: str) -> Any:
    """A header with `header`'s stamp and another frame."""
    stamp = world.make("builtin_interfaces/msg/Time", sec=int(header.stamp.sec), nanosec=int(header.stamp.nanosec))
    return world.make("std_msgs/msg/Header", stamp=stamp, frame_id=frame_id)


def image(world: MessageWorld, packed: "PackedImage", header: Any, context: AdapterContext | None = None) -> Any:
    return world.make("sensor_msgs/msg/Image", header=header, height=packed.height, width=packed.width,
                      encoding=packed.encoding, is_bigendian=0, step=packed.step, data=world.uint8s(packed.data))


def camera_info(world: MessageWorld, intr: Intrinsics, header: Any, context: AdapterContext | None = None,
                template: Any | None = None) -> Any:
    """CameraInfo of a published depth image: D, R, model from the camera's CameraInfo (the context's, or
    `template`), K and P for the image it describes (ROI, binning: REP 104) scaled per axis to the depth
    resolution; an undistorted pinhole without one. Binning 0 and no ROI: K and P are already the
    published image's, so copying the camera's would make consumers apply them twice."""
    if template is None and context is not None:
        template = context.camera_info
    k, p = camera_info_matrices(intr, template)
    empty_roi = world.make("sensor_msgs/msg/RegionOfInterest", x_offset=0, y_offset=0, height=0, width=0,
                           do_rectify=False)
    if template is None:
        return world.make("sensor_msgs/msg/CameraInfo", header=header, height=intr.height, width=intr.width,
                          distortion_model="plumb_bob", d=world.float64s([0.0] * 5), k=world.float64s(k),
                          r=world.float64s([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]), p=world.float64s(p),
                          binning_x=0, binning_y=0, roi=empty_roi)
    return world.make("sensor_msgs/msg/CameraInfo", header=header, height=intr.height, width=intr.width,
                      distortion_model=template.distortion_model, d=world.float64s(template.d), k=world.float64s(k),
                      r=world.float64s(template.r), p=world.float64s(p), binning_x=0, binning_y=0, roi=empty_roi)


def cloud(world: MessageWorld, packed: "PackedCloud", header: Any, context: AdapterContext | None = None) -> Any:
    fields = [world.make("sensor_msgs/msg/PointField", name=name, offset=offset, datatype=datatype, count=count)
              for name, offset, datatype, count in packed.fields]
    return world.make("sensor_msgs/msg/PointCloud2", header=header, height=packed.height, width=packed.width,
                      fields=fields, is_bigendian=False, point_step=packed.point_step, row_step=packed.row_step,
                      data=world.uint8s(packed.data), is_dense=bool(packed.is_dense))


def scan(world: MessageWorld, packed: "Scan", header: Any, context: AdapterContext | None = None,
         scan_time: float | None = None) -> Any:
    """A LaserScan in the context's scan frame (the header's own frame without a context)."""
    if context is not None:
        header = header_like(world, header, context.scan_frame)
        scan_time = context.scan_time if scan_time is None else scan_time
    return world.make("sensor_msgs/msg/LaserScan", header=header, angle_min=float(packed.angle_min),
                      angle_max=float(packed.angle_max), angle_increment=float(packed.angle_increment),
                      time_increment=0.0, scan_time=float(scan_time or 0.0), range_min=float(packed.range_min),
                      range_max=float(packed.range_max), ranges=world.float32s(packed.ranges),
                      intensities=world.float32s(np.zeros(0, np.float32)))


# diagnostic_msgs/DiagnosticStatus levels
OK, WARN, ERROR = 0, 1, 2


def scale(world: MessageWorld, estimate: "ScaleEstimate", header: Any, context: AdapterContext | None = None) -> Any:
    """The `depth/scale` message of one frame: the image's header, one status named 'scale' whose message
    is the regime (level OK anchored, WARN held/unanchored, ERROR expired) and whose values are the factor,
    shift, error bound, confidence, source, anchors, age and event."""
    level = {"anchored": OK, "held": WARN, "unanchored": WARN}.get(estimate.regime, ERROR)
    values = {"factor": f"{estimate.scale:.6g}" if estimate.applied else "1", "shift": f"{estimate.shift:.6g}",
              "regime": estimate.regime,
              "error_bound": f"{estimate.error_bound:.4f}" if math.isfinite(estimate.error_bound) else "inf",
              "confidence": f"{estimate.confidence:.4f}", "source": estimate.source,
              "anchors": str(estimate.n_anchors), "age": f"{estimate.age:.3f}", "event": estimate.event,
              "scale_only": str(estimate.scale_only).lower()}
    status = world.make("diagnostic_msgs/msg/DiagnosticStatus", level=world.byte(level), name="scale",
                        message=estimate.regime, hardware_id="",
                        values=[world.make("diagnostic_msgs/msg/KeyValue", key=k, value=v) for k, v in values.items()])
    return world.make("diagnostic_msgs/msg/DiagnosticArray", header=header, status=[status])


ADAPTERS: dict[str, Callable[..., Any]] = {"image": image, "camera_info": camera_info, "cloud": cloud, "scan": scan,
                                           "scale": scale}


def output_message(world: MessageWorld, adapter: str, packed: Any, header: Any, context: AdapterContext) -> Any:
    """The message of one output row (OutputSpec.adapter) in `world`."""
    return ADAPTERS[adapter](world, packed, header, context)

