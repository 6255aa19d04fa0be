"""FrameOutputs <-> rosbags message dataclasses: the bag-side twin of mde_ros.ros.messages.

Only field copies: the data itself comes packed from mde_ros.pipeline.outputs, so a replayed bag
and the live node carry the same bytes. The CameraInfo checks and the depth CameraInfo mirror the
node's (mde_ros.ros.messages, which needs the ROS message packages this module must do without).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from mde_ros.bags.io import COMPRESSED_IMAGE_TYPE, typestore
from mde_ros.pipeline.intrinsics import CameraInfoError, Intrinsics, intrinsics_from_camera_info  # noqa: F401
from mde_ros.pipeline.imagecodec import message_to_rgb
from mde_ros.ros import adapters, naming
from mde_ros.ros.naming import SCAN_TIME_S

if TYPE_CHECKING:
    from mde_ros.pipeline.geometry import PackedCloud, Scan
    from mde_ros.pipeline.outputs import FrameOutputs, OutputSpec, PackedImage


def _types() -> Any:
    return typestore().types


def make_header(sec: int, nanosec: int, frame_id: str) -> Any:
    types = _types()
    return types["std_msgs/msg/Header"](
        stamp=types["builtin_interfaces/msg/Time"](sec=int(sec), nanosec=int(nanosec)), frame_id=frame_id)


def _bytes(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8)


class _RosbagsWorld:
    """rosbags' message dataclasses (Jazzy typestore) for mde_ros.ros.adapters; arrays as numpy."""

    def make(self, msgtype: str, **fields: Any) -> Any:
        return _types()[msgtype](**fields)

    def uint8s(self, data: bytes) -> np.ndarray:
        return _bytes(data)

    def float32s(self, values: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(values, dtype=np.float32)

    def float64s(self, values: Any) -> np.ndarray:
        return np.array(values, dtype=np.float64)

    def byte(self, value: int) -> int:
        return int(value)


ROSBAGS = _RosbagsWorld()


def output_msg(spec: "OutputSpec", packed: Any, header: Any, context: adapters.AdapterContext) -> Any:
    """The rosbags message of one output row."""
    return adapters.output_message(ROSBAGS, spec.adapter, packed, header, context)


def image_msg(packed: "PackedImage", header: Any) -> Any:
    return adapters.image(ROSBAGS, packed, header)


def camera_info_msg(intr: Intrinsics, header: Any, template: Any | None = None) -> Any:
    """CameraInfo of a published depth image: D, R, model from the camera's CameraInfo (`template`),
    K and P scaled per axis to the depth resolution; an undistorted pinhole without a template."""
    return adapters.camera_info(ROSBAGS, intr, header, template=template)


def cloud_msg(packed: "PackedCloud", header: Any) -> Any:
    return adapters.cloud(ROSBAGS, packed, header)


def scan_msg(scan: "Scan", header: Any, scan_time: float = 0.0) -> Any:
    return adapters.scan(ROSBAGS, scan, header, scan_time=scan_time)


def output_messages(outputs: "FrameOutputs", header: Any, source_info: Any | None = None,
                    scan_frame: str | None = None, scan_time: float = SCAN_TIME_S) -> dict[str, Any]:
    """Messages keyed like OutputTopics' fields; outputs the pipeline did not make are left out.
    The scan goes out in `scan_frame` (the node's scan.output_frame) or, as the node does, in the
    image's optical frame's body twin (mde_ros.ros.naming.scan_frame)."""
    messages = {"depth": image_msg(outputs.depth, header)}
    if outputs.depth_intrinsics is not None:
        messages["depth_camera_info"] = camera_info_msg(outputs.depth_intrinsics, header, source_info)
    if outputs.cloud is not None:
        messages["points"] = cloud_msg(outputs.cloud, header)
    if outputs.scan is not None:
        frame, _ = naming.scan_frame(header.frame_id, scan_frame or "")
        messages["scan"] = scan_msg(outputs.scan, make_header(header.stamp.sec, header.stamp.nanosec, frame),
                                    scan_time)
    if outputs.colorized is not None:
        messages["colorized"] = image_msg(outputs.colorized, header)
    return messages


def rgb_from_msg(msg: Any, msgtype: str) -> np.ndarray:
    """HxWx3 uint8 RGB of an Image or CompressedImage, decoded as the node decodes it."""
    return message_to_rgb(msg, msgtype == COMPRESSED_IMAGE_TYPE)
