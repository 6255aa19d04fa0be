"""Copy pipeline results into sensor_msgs and incoming messages into numpy.

No algorithm lives here: every number is computed by mde_ros.pipeline; these functions only
move fields between the packed pipeline outputs and the ROS message classes.
"""
from __future__ import annotations

import array
import functools
import importlib

import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, LaserScan, PointCloud2
from std_msgs.msg import Header

from mde_ros.pipeline.geometry import PackedCloud, Scan
from mde_ros.pipeline.intrinsics import (CameraInfoError, Intrinsics, camera_info_image_size,  # noqa: F401
                                         intrinsics_from_camera_info)
from mde_ros.pipeline.outputs import OutputSpec, PackedImage
from mde_ros.pipeline.budget import FrameBudget
from mde_ros.pipeline.imagecodec import message_to_rgb
from mde_ros.pipeline.preprocess import InputError  # noqa: F401 (re-export)
from mde_ros.ros import adapters


def image_msg_to_rgb(msg: Image, budget: FrameBudget | None = None) -> np.ndarray:
    """HxWx3 uint8 RGB of a raw Image; InputError says what is wrong with a bad one."""
    return message_to_rgb(msg, False, budget)


def compressed_msg_to_rgb(msg: CompressedImage, budget: FrameBudget | None = None,
                          notes: list[str] | None = None) -> np.ndarray:
    """HxWx3 uint8 RGB of a JPEG/PNG CompressedImage (`notes`: harmless codec messages)."""
    return message_to_rgb(msg, True, budget, notes)


@functools.lru_cache(maxsize=None)
def message_class(msgtype: str) -> type:
    """The rclpy message class of "sensor_msgs/msg/Image"."""
    package, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


class _RclpyWorld:
    """rclpy's message classes for mde_ros.ros.adapters (arrays as array.array: no per-element checks)."""

    def make(self, msgtype: str, **fields):
        # rosidl_python's generated __init__ copies an array field into a new array.array, and so does the
        # setter unless field checks are on (Humble's asserts; Jazzy's ROS_PYTHON_CHECK_FIELDS), which
        # stores an array.array of the field's type code as it is. Array fields are stored that way here
        # (the field's slot, as the checked setter does), so a cloud is not copied before rclpy's own copy.
        arrays = {name: value for name, value in fields.items() if isinstance(value, array.array)}
        msg = message_class(msgtype)(**{name: value for name, value in fields.items() if name not in arrays})
        for name, value in arrays.items():
            current = getattr(msg, name)
            if isinstance(current, array.array) and current.typecode == value.typecode and hasattr(msg, f"_{name}"):
                setattr(msg, f"_{name}", value)
            else:
                setattr(msg, name, value)
        return msg

    def uint8s(self, data) -> array.array:
        # The pipeline's outputs are array.array('B') already (pipeline.buffers): the setter stores it as it is.
        if isinstance(data, array.array) and data.typecode == "B":
            return data
        return array.array("B", data)

    def float32s(self, values: np.ndarray) -> array.array:
        return array.array("f", np.ascontiguousarray(values, dtype=np.float32).tobytes())

    def float64s(self, values) -> list[float]:
        return [float(v) for v in values]

    def byte(self, value: int) -> bytes:
        return bytes([value])


RCLPY = _RclpyWorld()


def output_msg(spec: OutputSpec, packed, header: Header, context: adapters.AdapterContext):
    """The rclpy message of one output row."""
    return adapters.output_message(RCLPY, spec.adapter, packed, header, context)


def camera_info_msg(intr: Intrinsics, header: Header, template: CameraInfo | None = None) -> CameraInfo:
    """CameraInfo of a published depth image.

    D, R and the distortion model come from the camera's CameraInfo; K and P are the template's for
    the image it describes (its ROI and binning applied), scaled per axis to the depth image; the
    message itself has binning 0 and no ROI (pipeline.intrinsics.camera_info_matrices).
    """
    return adapters.camera_info(RCLPY, intr, header, template=template)


def image_msg(packed: PackedImage, header: Header) -> Image:
    return adapters.image(RCLPY, packed, header)


def point_cloud_msg(cloud: PackedCloud, header: Header) -> PointCloud2:
    return adapters.cloud(RCLPY, cloud, header)


def laser_scan_msg(scan: Scan, header: Header, scan_time: float = 0.0) -> LaserScan:
    return adapters.scan(RCLPY, scan, header, scan_time=scan_time)


def stamp_ns(header: Header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
