"""FrameOutputs <-> rosbags message dataclasses: the bag-side twin of mde_ros.ros.messages.

Only field copies: the data itself comes packed from mde_ros.pipeline.outputs, so a replayed bag
and the live node carry the same bytes. The CameraInfo checks and the depth CameraInfo mirror the
node's (mde_ros.ros.messages, which needs the ROS message packages this module must do without).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from mde_ros.bags.io import COMPRESSED_IMAGE_TYPE, typestore
from mde_ros.pipeline.intrinsics import (CameraInfoError, Intrinsics, camera_info_matrices,  # noqa: F401 (re-export)
                                         intrinsics_from_camera_info)
from mde_ros.pipeline.imagecodec import message_to_rgb
from mde_ros.ros import naming
from mde_ros.ros.naming import SCAN_TIME_S

if TYPE_CHECKING:
    from mde_ros.pipeline.geometry import PackedCloud, Scan
    from mde_ros.pipeline.outputs import FrameOutputs, PackedImage


def _types() -> Any:
    return typestore().types


def make_header(sec: int, nanosec: int, frame_id: str) -> Any:
    types = _types()
    return types["std_msgs/msg/Header"](
        stamp=types["builtin_interfaces/msg/Time"](sec=int(sec), nanosec=int(nanosec)), frame_id=frame_id)


def _bytes(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8)


def image_msg(packed: "PackedImage", header: Any) -> Any:
    return _types()["sensor_msgs/msg/Image"](
        header=header, height=packed.height, width=packed.width, encoding=packed.encoding,
        is_bigendian=0, step=packed.step, data=_bytes(packed.data))


def camera_info_msg(intr: Intrinsics, header: Any, template: Any | None = None) -> Any:
    """CameraInfo of a published depth image: D, R, model from the camera's CameraInfo (`template`),
    K and P for the image it describes (ROI, binning) scaled per axis to the depth resolution, binning 0
    and no ROI; an undistorted pinhole without a template."""
    types = _types()
    roi = types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    k, p = (np.array(m, dtype=np.float64) for m in camera_info_matrices(intr, template))
    if template is None:
        return types["sensor_msgs/msg/CameraInfo"](
            header=header, height=intr.height, width=intr.width, distortion_model="plumb_bob",
            d=np.zeros(5), k=k, r=np.eye(3).ravel(), p=p, binning_x=0, binning_y=0, roi=roi)
    return types["sensor_msgs/msg/CameraInfo"](  # binning 0, no ROI: K is the published image's (as the node)
        header=header, height=intr.height, width=intr.width, distortion_model=template.distortion_model,
        d=np.array(template.d, dtype=np.float64), k=k, r=np.array(template.r, dtype=np.float64), p=p,
        binning_x=0, binning_y=0, roi=roi)


def cloud_msg(packed: "PackedCloud", header: Any) -> Any:
    types = _types()
    fields = [types["sensor_msgs/msg/PointField"](name=name, offset=offset, datatype=datatype, count=count)
              for name, offset, datatype, count in packed.fields]
    return types["sensor_msgs/msg/PointCloud2"](
        header=header, height=packed.height, width=packed.width, fields=fields, is_bigendian=False,
        point_step=packed.point_step, row_step=packed.row_step, data=_bytes(packed.data),
        is_dense=bool(packed.is_dense))


def scan_msg(scan: "Scan", header: Any, scan_time: float = 0.0) -> Any:
    return _types()["sensor_msgs/msg/LaserScan"](
        header=header, angle_min=float(scan.angle_min), angle_max=float(scan.angle_max),
        angle_increment=float(scan.angle_increment), time_increment=0.0, scan_time=float(scan_time),
        range_min=float(scan.range_min), range_max=float(scan.range_max),
        ranges=np.ascontiguousarray(scan.ranges, dtype=np.float32), intensities=np.zeros(0, np.float32))


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
