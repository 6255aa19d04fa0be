"""Copy pipeline results into sensor_msgs and incoming messages into numpy.

No algorithm lives here: every number is computed by mde_ros.pipeline; these functions only
move fields between the packed pipeline outputs and the ROS message classes.
"""
from __future__ import annotations

import array

import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, LaserScan, PointCloud2, PointField
from std_msgs.msg import Header

from mde_ros.pipeline.geometry import PackedCloud, Scan
from mde_ros.pipeline.intrinsics import (CameraInfoError, Intrinsics, camera_info_image_size,  # noqa: F401 (re-export)
                                         camera_info_matrices, intrinsics_from_camera_info)
from mde_ros.pipeline.outputs import PackedImage
from mde_ros.pipeline.budget import FrameBudget
from mde_ros.pipeline.imagecodec import message_to_rgb
from mde_ros.pipeline.preprocess import InputError  # noqa: F401 (re-export)


def image_msg_to_rgb(msg: Image, budget: FrameBudget | None = None) -> np.ndarray:
    """HxWx3 uint8 RGB of a raw Image; InputError says what is wrong with a bad one."""
    return message_to_rgb(msg, False, budget)


def compressed_msg_to_rgb(msg: CompressedImage, budget: FrameBudget | None = None,
                          notes: list[str] | None = None) -> np.ndarray:
    """HxWx3 uint8 RGB of a JPEG/PNG CompressedImage (`notes`: harmless codec messages)."""
    return message_to_rgb(msg, True, budget, notes)


def camera_info_msg(intr: Intrinsics, header: Header, template: CameraInfo | None = None) -> CameraInfo:
    """CameraInfo of a published depth image.

    D, R and the distortion model come from the camera's CameraInfo; K and P are the template's for
    the image it describes (its ROI and binning applied), scaled per axis to the depth image; the
    message itself has binning 0 and no ROI (pipeline.intrinsics.camera_info_matrices).
    """
    msg = CameraInfo(header=header, width=intr.width, height=intr.height)
    msg.k, msg.p = camera_info_matrices(intr, template)
    if template is None:
        msg.distortion_model = "plumb_bob"
        msg.d = [0.0] * 5
        msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        return msg
    msg.distortion_model = template.distortion_model
    msg.d = list(template.d)
    msg.r = list(template.r)
    # K and P are already those of the published image (ROI and binning applied): REP 104's
    # defaults (binning 0, all-zero ROI) say so; copying the camera's would make consumers apply them twice.
    msg.binning_x = msg.binning_y = 0
    return msg


def image_msg(packed: PackedImage, header: Header) -> Image:
    msg = Image(header=header, height=packed.height, width=packed.width, encoding=packed.encoding,
                is_bigendian=0, step=packed.step)
    msg.data = array.array("B", packed.data)
    return msg


def point_cloud_msg(cloud: PackedCloud, header: Header) -> PointCloud2:
    msg = PointCloud2(header=header, height=cloud.height, width=cloud.width, is_bigendian=False,
                      point_step=cloud.point_step, row_step=cloud.row_step, is_dense=cloud.is_dense)
    msg.fields = [PointField(name=name, offset=offset, datatype=datatype, count=count)
                  for name, offset, datatype, count in cloud.fields]
    msg.data = array.array("B", cloud.data)
    return msg


def laser_scan_msg(scan: Scan, header: Header, scan_time: float = 0.0) -> LaserScan:
    msg = LaserScan(header=header, angle_min=float(scan.angle_min), angle_max=float(scan.angle_max),
                    angle_increment=float(scan.angle_increment), time_increment=0.0, scan_time=float(scan_time),
                    range_min=float(scan.range_min), range_max=float(scan.range_max))
    msg.ranges = array.array("f", np.ascontiguousarray(scan.ranges, dtype=np.float32).tobytes())
    return msg


def stamp_ns(header: Header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
