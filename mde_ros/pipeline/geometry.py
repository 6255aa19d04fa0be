"""Depth image -> 3D points, packed point clouds and laser scans.

Conventions follow the ROS tools users already know:
- back-projection is depth_image_proc's (optical frame: x right, y down, z forward), with the
  calibrated principal point and NaN points for invalid depth;
- `depth_to_scan` reproduces depthimage_to_laserscan (ros-perception), including its angle limits,
  its column -> bin mapping and its rules for which of several candidate ranges wins a bin.

Per-pixel ray factors depend only on the intrinsics, so they are computed once per Intrinsics
(a frozen, hashable dataclass) and cached; every per-frame operation is a few vectorised passes.
"""
from __future__ import annotations

import array
import functools
import math
import threading
from dataclasses import dataclass

import cv2
import numpy as np

from mde_ros.pipeline.buffers import message_buffer, view
from mde_ros.pipeline.intrinsics import Intrinsics

FLOAT32 = 7  # sensor_msgs/PointField.FLOAT32
# PCL's layouts (and depth_image_proc's): pcl::PointXYZ is x, y, z + 4 padding bytes (16); pcl::PointXYZRGB
# is x, y, z, padding, rgb at 16, padding to 32. Code that copies the bytes into PCL structs relies on them.
POINT_STEP = 16  # xyz
POINT_STEP_RGB = 32  # xyz + rgb
XYZ_FIELDS = [("x", 0, FLOAT32, 1), ("y", 4, FLOAT32, 1), ("z", 8, FLOAT32, 1)]
RGB_FIELD = ("rgb", 16, FLOAT32, 1)


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


@functools.lru_cache(maxsize=16)
def rays(intr: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """((u - cx) / fx for every column, (v - cy) / fy for every row), float32, shared: read-only."""
    x = (np.arange(intr.width, dtype=np.float64) - intr.cx) / intr.fx
    y = (np.arange(intr.height, dtype=np.float64) - intr.cy) / intr.fy
    return _read_only(x.astype(np.float32)), _read_only(y.astype(np.float32)[:, None])


def _check(depth: np.ndarray, intr: Intrinsics) -> None:
    if depth.ndim != 2:
        raise ValueError(f"expected an HxW depth image, got shape {depth.shape}")
    _check_fit(tuple(depth.shape), intr)


def _check_fit(shape: tuple[int, int], intr: Intrinsics) -> None:
    if shape != (intr.height, intr.width):
        raise ValueError(f"depth is {shape[1]}x{shape[0]} but the intrinsics are for "
                         f"{intr.width}x{intr.height}")
    if not intr.is_valid():
        raise ValueError(f"invalid intrinsics (fx, fy must be finite and > 0; an all-zero K means the "
                         f"camera is uncalibrated): {intr}")


def _copy_valid_depth(depth: np.ndarray, out: np.ndarray, min_range: float = 0.0,
                      max_range: float = math.inf) -> np.ndarray:
    """Depth into float32 `out`, NaN wherever it is non-finite, <= 0 or outside [min_range, max_range]."""
    np.copyto(out, depth, casting="same_kind")
    valid = (out > 0) & (out < math.inf)  # NaN fails every comparison
    if min_range > 0:
        valid &= out >= min_range
    if max_range < math.inf:
        valid &= out <= max_range
    np.copyto(out, np.float32(np.nan), where=np.logical_not(valid, out=valid))
    return out


def backproject(depth: np.ndarray, intr: Intrinsics) -> np.ndarray:
    """HxWx3 float32 points in the optical frame: X=(u-cx)d/fx, Y=(v-cy)d/fy, Z=d; NaN if invalid."""
    _check(depth, intr)
    z = _copy_valid_depth(depth, np.empty(depth.shape, np.float32))
    x_ray, y_ray = rays(intr)
    points = np.empty(z.shape + (3,), np.float32)
    np.multiply(z, x_ray, out=points[:, :, 0])
    np.multiply(z, y_ray, out=points[:, :, 1])
    points[:, :, 2] = z
    return points


def decimated_intrinsics(intr: Intrinsics, decimation: int) -> Intrinsics:
    """Intrinsics of depth[::k, ::k]: pixel u' is pixel k*u' of the original, so f/k and c/k."""
    k = int(decimation)
    return Intrinsics(intr.fx / k, intr.fy / k, intr.cx / k, intr.cy / k,
                      -(-intr.width // k), -(-intr.height // k))


@dataclass
class PackedCloud:
    """sensor_msgs/PointCloud2 content; `data` is little-endian (is_bigendian = false)."""

    height: int
    width: int
    fields: list[tuple[str, int, int, int]]  # (name, offset, datatype, count)
    point_step: int
    row_step: int
    data: bytes | array.array  # array.array('B') as built (pipeline.buffers): rclpy's message takes it as it is
    is_dense: bool

    @property
    def num_points(self) -> int:
        return self.height * self.width


_local = threading.local()


def scratch(name: str, shape: tuple[int, ...], dtype, zeroed: bool = False) -> np.ndarray:
    """A per-thread scratch array, reused across frames while the shape stays the same.

    Fresh 5 MB arrays per frame next to the 5 MB `bytes` result make glibc map and fault in new
    pages every frame (~3 ms each at 640x480); reused ones keep packing around a millisecond.
    """
    array = getattr(_local, name, None)
    if array is None or array.shape != shape or array.dtype != dtype:
        array = np.zeros(shape, dtype) if zeroed else np.empty(shape, dtype)
        setattr(_local, name, array)
    return array


def check_cloud_args(shape: tuple[int, ...], intr: Intrinsics, rgb: np.ndarray | None, decimation: int,
                     min_range: float, max_range: float) -> None:
    """pack_cloud's argument checks, for every builder of its layout (inference.ort_outputs too)."""
    _check_fit(tuple(shape), intr)
    if int(decimation) != decimation or decimation < 1:
        raise ValueError(f"decimation must be an integer >= 1, got {decimation}")
    if not 0 <= min_range < max_range:
        raise ValueError(f"need 0 <= min_range < max_range, got {min_range}..{max_range}")
    if rgb is not None and (rgb.shape != tuple(shape) + (3,) or rgb.dtype != np.uint8):
        raise ValueError(f"rgb must be {shape[0]}x{shape[1]}x3 uint8 to colour the cloud, "
                         f"got shape {rgb.shape} dtype {rgb.dtype}")


def pcl_rgb(rgb: np.ndarray) -> np.ndarray:
    """PCL's packed colour per pixel (HxW): the little-endian uint32 0x00RRGGBB, i.e. bytes B, G, R, 0 =
    OpenCV's BGRA with alpha 0."""
    bgra = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGRA)
    bgra[:, :, 3] = 0
    return bgra.view("<u4")[:, :, 0]


def pack_cloud(depth: np.ndarray, intr: Intrinsics, rgb: np.ndarray | None = None, decimation: int = 1,
               min_range: float = 0.0, max_range: float = math.inf, organized: bool = True) -> PackedCloud:
    """Back-project and pack into PointCloud2 layout in one buffer.

    Layout: PCL's. x, y, z float32 at offsets 0, 4, 8; without rgb a 16-byte point_step (zero padding,
    pcl::PointXYZ, depth_image_proc's xyz cloud); with rgb, 'rgb' at offset 16 (PCL's packing, 0x00RRGGBB
    as a float32) and a 32-byte point_step (pcl::PointXYZRGB, depth_image_proc's xyzrgb cloud).
    The range filter is on z (depth along the optical axis), the quantity the depth image holds,
    so the cloud drops exactly the pixels a depth image with the same limits marks out of range.
    Organised clouds keep invalid points as NaN and, like depth_image_proc, say is_dense = False;
    unorganised clouds drop them (height 1, is_dense = True).
    """
    if depth.ndim != 2:
        raise ValueError(f"expected an HxW depth image, got shape {depth.shape}")
    check_cloud_args(depth.shape, intr, rgb, decimation, min_range, max_range)
    if decimation > 1:
        depth = depth[::decimation, ::decimation]
        rgb = None if rgb is None else rgb[::decimation, ::decimation]
        intr = decimated_intrinsics(intr, decimation)
    x_ray, y_ray = rays(intr)
    height, width = depth.shape
    # Separate buffers per layout (with and without colour, organised or not): their padding bytes stay
    # zero from the allocation (a reused buffer only ever held the same layout), so no frame clears them.
    step = POINT_STEP_RGB if rgb is not None else POINT_STEP
    # Arithmetic on contiguous planes, then one interleaving copy per plane: strided arithmetic costs
    # more than the copies.
    planes = scratch("xyz_planes", (3, height, width), np.dtype("<f4"))
    z = planes[2]
    _copy_valid_depth(depth, z, min_range, max_range)
    np.multiply(z, x_ray, out=planes[0])
    np.multiply(z, y_ray, out=planes[1])
    fields = list(XYZ_FIELDS)
    colour = None
    if rgb is not None:
        colour = pcl_rgb(rgb)
        fields.append(RGB_FIELD)
    # Built in place in the buffer the message takes (pipeline.buffers). Organised: every pixel a point;
    # unorganised: only the valid ones, compressed plane by plane into a buffer of their count (no
    # full-size scratch cloud: a 4K frame's decimated cloud was 7.9 MB more at its peak).
    points_name = "points_rgb" if rgb is not None else "points_xyz"
    if organized:
        count, keep = height * width, None
        data = message_buffer(points_name, count * step)
    else:
        keep = np.isfinite(z).ravel()
        count = int(np.count_nonzero(keep))
        data = message_buffer(points_name + "_valid", count * step)
    records = view(data, np.dtype("<f4"), (count, step // 4))
    for axis in range(3):
        plane = planes[axis].ravel()
        records[:, axis] = plane if keep is None else plane[keep]
    if colour is not None:
        values = colour.ravel()
        records.view("<u4")[:, RGB_FIELD[1] // 4] = values if keep is None else values[keep]
    if organized:
        return PackedCloud(height, width, fields, step, step * width, data, False)
    return PackedCloud(1, count, fields, step, step * count, data, True)


def unpack_cloud(cloud: PackedCloud) -> tuple[np.ndarray, np.ndarray | None]:
    """(N x 3 float32 xyz, N x 3 uint8 rgb or None): the inverse of pack_cloud, for tests and tools."""
    records = np.frombuffer(cloud.data, "<f4").reshape(-1, cloud.point_step // 4)
    xyz = records[:, :3].copy()
    offsets = {name: offset for name, offset, *_ in cloud.fields}
    if "rgb" not in offsets:
        return xyz, None
    raw = np.frombuffer(cloud.data, np.uint8).reshape(-1, cloud.point_step)
    blue = offsets["rgb"]  # little-endian 0x00RRGGBB: bytes B, G, R, 0
    return xyz, raw[:, [blue + 2, blue + 1, blue]].copy()


@dataclass
class Scan:
    """sensor_msgs/LaserScan content (angles in radians, counter-clockwise seen from above)."""

    angle_min: float
    angle_max: float
    angle_increment: float
    range_min: float
    range_max: float
    ranges: np.ndarray  # float32, one per image column; NaN = no return, +-Inf passed through


@functools.lru_cache(maxsize=16)
def _scan_geometry(intr: Intrinsics) -> tuple[float, float, float, np.ndarray, np.ndarray]:
    """(angle_min, angle_max, increment, bin index per column, |ray| in the x-z plane per column)."""
    # depthimage_to_laserscan: angle between the ray of column 0 (resp. width-1) and the centre ray.
    angle_max = math.atan(abs(intr.cx) / intr.fx)
    angle_min = -math.atan(abs(intr.width - 1 - intr.cx) / intr.fx)
    increment = (angle_max - angle_min) / (intr.width - 1)
    slope = (np.arange(intr.width, dtype=np.float64) - intr.cx) / intr.fx
    theta = -np.arctan(slope)  # -atan2(x, z): independent of depth
    # The original truncates toward zero; the 1e-6-bin tolerance keeps float rounding from moving
    # the end columns into their neighbour's bin.
    index = np.clip(np.trunc((theta - angle_min) / increment + 1e-6), 0, intr.width - 1).astype(np.intp)
    norm = np.sqrt(1.0 + slope * slope).astype(np.float32)  # hypot(x, z) / z
    return angle_min, angle_max, increment, _read_only(index), _read_only(norm)


def scan_fits(intr: Intrinsics, scan_height: int) -> bool:
    """Whether depth_to_scan can run: the image is at least 2 columns wide and the scan_height rows
    around cy lie inside it (depthimage_to_laserscan's check)."""
    return intr.width >= 2 and scan_height >= 1 and scan_height // 2 <= min(intr.cy, intr.height - intr.cy)


def depth_to_scan(depth: np.ndarray, intr: Intrinsics, scan_height: int = 1, range_min: float = 0.45,
                  range_max: float = 10.0) -> Scan:
    """depthimage_to_laserscan on a float depth image (REP 117 +-Inf allowed).

    Rows int(cy - scan_height/2) .. +scan_height are projected to r = hypot(x, z) at angle
    -atan2(u - cx, fx). In each bin the shortest finite range within [range_min, range_max] wins;
    with none, an +-Inf reading (more informative than NaN) is kept, else NaN.
    """
    _check(depth, intr)
    if intr.width < 2:
        raise ValueError("a laser scan needs a depth image at least 2 pixels wide")
    if not scan_fits(intr, scan_height):
        raise ValueError(f"scan_height ({scan_height} pixels) is too large for the image height "
                         f"{intr.height} with cy = {intr.cy:.1f}")
    if not 0 <= range_min < range_max:
        raise ValueError(f"need 0 <= range_min < range_max, got {range_min}..{range_max}")
    return scan_of_band(depth[scan_rows(intr, scan_height)], intr, range_min, range_max)


def scan_rows(intr: Intrinsics, scan_height: int) -> slice:
    """The image rows a scan is made of: int(cy - scan_height/2) .. + scan_height (depthimage_to_laserscan)."""
    offset = int(intr.cy - scan_height / 2.0)
    return slice(offset, offset + scan_height)


def scan_of_band(band: np.ndarray, intr: Intrinsics, range_min: float = 0.45, range_max: float = 10.0) -> Scan:
    """depth_to_scan's reduction of its rows (`band`: scan_rows of a REP 117 float depth image, width
    intr.width), shared with builders that hold the depth elsewhere (inference.device_outputs)."""
    angle_min, angle_max, increment, index, norm = _scan_geometry(intr)
    band = np.asarray(band, dtype=np.float32)
    finite = np.isfinite(band)
    ranges_band = np.where(finite, np.abs(band) * norm, band)
    usable = finite & (ranges_band >= range_min) & (ranges_band <= range_max)
    column_min = np.where(usable, ranges_band, np.float32(np.inf)).min(axis=0)
    nearest = np.full(intr.width, np.inf, np.float32)
    np.minimum.at(nearest, index, column_min)
    ranges = np.full(intr.width, np.nan, np.float32)
    infinite = np.isinf(ranges_band)
    if infinite.any():
        # In iteration order (rows, then columns) the last +-Inf of a bin wins, as in use_point;
        # numpy's fancy assignment keeps the last of repeated indices.
        rows, cols = np.nonzero(infinite)
        ranges[index[cols]] = ranges_band[rows, cols]
    found = np.isfinite(nearest)
    ranges[found] = nearest[found]
    return Scan(angle_min, angle_max, increment, float(range_min), float(range_max), ranges)


# How the scan's ranges are laid out: ros (REP 103/117, depthimage_to_laserscan) or mavlink (what MAVROS's
# obstacle_distance plugin turns into MAVLink OBSTACLE_DISTANCE for PX4 / ArduPilot).
SCAN_CONVENTIONS = ("ros", "mavlink")
NO_OBSTACLE_M = 0.01  # OBSTACLE_DISTANCE: max_distance + 1 cm means "no obstacle"; UINT16_MAX "unknown"
NEAREST_REPORTED_M = 0.01  # the plugin drops ranges <= 0 when it merges bins


def mavlink_scan(depth: np.ndarray, intr: Intrinsics, scan_height: int = 1, range_min: float = 0.45,
                 range_max: float = 10.0) -> Scan:
    """The scan the way MAVROS's obstacle_distance plugin expects it (mav_frame BODY_FRD).

    The plugin copies angle_min into angle_offset and assumes "angle_increment is positive and the
    message is in a FRD/NED frame": index 0 is the leftmost direction, angles grow clockwise seen from
    above (to the right). So the ranges run left to right, angle_min = -(the ros scan's angle_max).
    It turns NaN and +Inf into UINT16_MAX, "unknown", which PX4's collision prevention treats as no data
    (CP_GO_NO_DATA): here a direction whose nearest depth is beyond range_max (or +Inf, REP 117 too far)
    says "no obstacle" (range_max + 1 cm), one nearer than range_min (or -Inf, too close) is an obstacle
    at range_min (at least 1 cm). Only pixels without any depth stay NaN (unknown). Bins are
    depthimage_to_laserscan's; the shortest range of a bin wins.
    """
    if not 0 <= range_min < range_max:
        raise ValueError(f"need 0 <= range_min < range_max, got {range_min}..{range_max}")
    every = depth_to_scan(depth, intr, scan_height, 0.0, math.inf)
    ranges = every.ranges[::-1].copy()
    ranges[ranges > range_max] = range_max + NO_OBSTACLE_M  # +Inf included; NaN compares False
    ranges[ranges < range_min] = max(range_min, NEAREST_REPORTED_M)  # -Inf included
    return Scan(-every.angle_max, -every.angle_min, every.angle_increment, float(range_min), float(range_max), ranges)
