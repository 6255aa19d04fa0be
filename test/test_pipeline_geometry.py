"""Back-projection, PointCloud2 packing and depthimage_to_laserscan-compatible scans."""
import math

import numpy as np
import pytest

from mde_ros.pipeline.geometry import (FLOAT32, backproject, decimated_intrinsics, depth_to_scan, mavlink_scan,
                                       pack_cloud, unpack_cloud)
from mde_ros.pipeline.intrinsics import Intrinsics

INTR = Intrinsics(fx=520.0, fy=515.0, cx=318.5, cy=245.25, width=640, height=480)


def plane(z: float, intr: Intrinsics = INTR) -> np.ndarray:
    return np.full((intr.height, intr.width), z, np.float32)


def records(cloud) -> np.ndarray:
    """The cloud's points as an N x 4 float32 table, read straight from the bytes."""
    assert len(cloud.data) == cloud.height * cloud.row_step
    return np.frombuffer(cloud.data, "<f4").reshape(-1, cloud.point_step // 4)


# --- back-projection -------------------------------------------------------------------------------

def test_fronto_parallel_plane_back_projects_with_the_pinhole_model():
    points = backproject(plane(2.5), INTR)
    assert points.shape == (480, 640, 3) and points.dtype == np.float32
    np.testing.assert_array_equal(points[:, :, 2], 2.5)
    for v, u in [(0, 0), (0, 639), (479, 0), (479, 639)]:
        assert points[v, u, 0] == pytest.approx((u - 318.5) * 2.5 / 520.0, rel=1e-6)
        assert points[v, u, 1] == pytest.approx((v - 245.25) * 2.5 / 515.0, rel=1e-6)


def test_invalid_depth_becomes_a_nan_point():
    depth = plane(2.0)
    depth[10, 20], depth[11, 21], depth[12, 22], depth[13, 23] = np.nan, 0.0, -1.0, np.inf
    points = backproject(depth, INTR)
    for v, u in [(10, 20), (11, 21), (12, 22), (13, 23)]:
        assert np.isnan(points[v, u]).all()
    assert np.isfinite(points).all(axis=2).sum() == 640 * 480 - 4


def test_backproject_checks_size_and_calibration():
    with pytest.raises(ValueError, match="depth is 320x240 but the intrinsics are for 640x480"):
        backproject(np.ones((240, 320), np.float32), INTR)
    zero_k = Intrinsics(0.0, 0.0, 0.0, 0.0, 640, 480)
    with pytest.raises(ValueError, match="all-zero K"):
        backproject(plane(1.0), zero_k)


# --- point clouds ---------------------------------------------------------------------------------

def test_organised_cloud_keeps_every_pixel_and_is_not_dense():
    depth = plane(2.5)
    depth[:100] = np.nan
    cloud = pack_cloud(depth, INTR)
    assert (cloud.height, cloud.width, cloud.point_step, cloud.row_step) == (480, 640, 16, 640 * 16)
    assert cloud.fields == [("x", 0, FLOAT32, 1), ("y", 4, FLOAT32, 1), ("z", 8, FLOAT32, 1)]
    assert cloud.is_dense is False
    table = records(cloud)
    assert len(table) == 640 * 480
    assert np.isnan(table[:, 2]).sum() == 100 * 640
    np.testing.assert_array_equal(table[:, :3].reshape(480, 640, 3), backproject(depth, INTR))
    np.testing.assert_array_equal(table[:, 3], 0.0)  # padding is deterministic


def test_unorganised_cloud_drops_invalid_points_and_is_dense():
    depth = plane(2.5)
    depth[:100] = np.nan
    cloud = pack_cloud(depth, INTR, organized=False)
    assert (cloud.height, cloud.width, cloud.is_dense) == (1, 380 * 640, True)
    assert cloud.row_step == 16 * 380 * 640
    expected = backproject(depth, INTR)[100:].reshape(-1, 3)
    np.testing.assert_array_equal(records(cloud)[:, :3], expected)


def test_rgb_is_packed_like_pcl_and_decodes_back():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    cloud = pack_cloud(plane(1.0), INTR, rgb=rgb)
    # pcl::PointXYZRGB / depth_image_proc's xyzrgb cloud: rgb at byte 16 of a 32-byte point.
    assert cloud.fields[-1] == ("rgb", 16, FLOAT32, 1)
    assert (cloud.point_step, cloud.row_step) == (32, 32 * 640)
    table = np.frombuffer(cloud.data, "<u4").reshape(-1, 8)
    np.testing.assert_array_equal(table[:, [3, 5, 6, 7]], 0)  # padding is deterministic
    packed = table[:, 4]
    assert (packed >> 24 == 0).all()
    np.testing.assert_array_equal((packed >> 16) & 0xFF, rgb[:, :, 0].ravel())
    np.testing.assert_array_equal((packed >> 8) & 0xFF, rgb[:, :, 1].ravel())
    np.testing.assert_array_equal(packed & 0xFF, rgb[:, :, 2].ravel())
    xyz, colours = unpack_cloud(cloud)
    np.testing.assert_array_equal(colours, rgb.reshape(-1, 3))
    np.testing.assert_array_equal(xyz, backproject(plane(1.0), INTR).reshape(-1, 3))


def test_unorganised_rgb_cloud_keeps_colour_with_its_point():
    depth = plane(1.0)
    depth[:, :320] = np.nan
    rgb = np.zeros((480, 640, 3), np.uint8)
    rgb[:, 320:] = (10, 20, 30)
    cloud = pack_cloud(depth, INTR, rgb=rgb, organized=False)
    assert (cloud.height, cloud.width, cloud.point_step, cloud.row_step) == (1, 480 * 320, 32, 32 * 480 * 320)
    _, colours = unpack_cloud(cloud)
    assert len(colours) == 480 * 320
    assert (colours == (10, 20, 30)).all()


def test_decimation_takes_every_kth_pixel_and_the_intrinsics_follow():
    rng = np.random.default_rng(1)
    depth = rng.uniform(0.5, 5.0, (480, 640)).astype(np.float32)
    cloud = pack_cloud(depth, INTR, decimation=4)
    assert (cloud.height, cloud.width) == (120, 160)
    full = backproject(depth, INTR)[::4, ::4]
    np.testing.assert_allclose(records(cloud)[:, :3].reshape(120, 160, 3), full, rtol=1e-6)


def test_decimation_of_odd_sizes_rounds_up():
    intr = Intrinsics(100.0, 100.0, 40.0, 30.0, 81, 61)
    dec = decimated_intrinsics(intr, 2)
    assert (dec.width, dec.height, dec.fx, dec.cx) == (41, 31, 50.0, 20.0)
    cloud = pack_cloud(np.ones((61, 81), np.float32), intr, decimation=2)
    assert (cloud.height, cloud.width) == (31, 41)


def test_range_filter_is_on_z():
    depth = np.tile(np.linspace(0.5, 5.0, 640, dtype=np.float32), (480, 1))
    inside = (depth >= 1.0) & (depth <= 3.0)
    organised = records(pack_cloud(depth, INTR, min_range=1.0, max_range=3.0))
    np.testing.assert_array_equal(np.isfinite(organised[:, 2]), inside.ravel())
    unorganised = pack_cloud(depth, INTR, min_range=1.0, max_range=3.0, organized=False)
    assert unorganised.width == inside.sum()
    z = records(unorganised)[:, 2]
    assert z.min() >= 1.0 and z.max() <= 3.0


@pytest.mark.parametrize("kwargs, message", [
    ({"decimation": 0}, "decimation must be an integer >= 1"),
    ({"decimation": 1.5}, "decimation must be an integer >= 1"),
    ({"min_range": 3.0, "max_range": 1.0}, "min_range < max_range"),
    ({"rgb": np.zeros((480, 640), np.uint8)}, "rgb must be 480x640x3 uint8"),
    ({"rgb": np.zeros((240, 320, 3), np.uint8)}, "rgb must be 480x640x3 uint8"),
])
def test_pack_cloud_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        pack_cloud(plane(1.0), INTR, **kwargs)


# --- laser scan -----------------------------------------------------------------------------------

def reference_scan(depth, intr, scan_height, range_min, range_max):
    """depthimage_to_laserscan's convert() and use_point(), transliterated pixel by pixel."""
    def angle_between(a, b):
        return math.acos(sum(x * y for x, y in zip(a, b)) / (math.hypot(*a) * math.hypot(*b)))

    def ray(u):
        return ((u - intr.cx) / intr.fx, 0.0, 1.0)

    angle_max = angle_between(ray(0), ray(intr.cx))
    angle_min = -angle_between(ray(intr.cx), ray(depth.shape[1] - 1))
    increment = (angle_max - angle_min) / (depth.shape[1] - 1)
    ranges = [math.nan] * depth.shape[1]

    def use_point(new, old):
        if not math.isfinite(new) and not math.isfinite(old):
            return not math.isnan(new)
        if not range_min <= new <= range_max:
            return False
        return not math.isfinite(old) or new < old

    offset = int(intr.cy - scan_height / 2.0)
    for v in range(offset, offset + scan_height):
        for u in range(depth.shape[1]):
            d = float(depth[v, u])
            th = -math.atan2((u - intr.cx) / intr.fx, 1.0)
            # The one deliberate deviation: a 1e-6-bin guard, because the original's acos-based
            # limits put an end column into its neighbour's bin (or past the end) by rounding.
            index = min(int((th - angle_min) / increment + 1e-6), depth.shape[1] - 1)
            r = d
            if math.isfinite(d):
                r = math.hypot((u - intr.cx) * d / intr.fx, d)
            if use_point(r, ranges[index]):
                ranges[index] = r
    return angle_min, angle_max, increment, np.array(ranges, np.float32)


SMALL = Intrinsics(fx=40.0, fy=40.0, cx=31.3, cy=23.6, width=64, height=48)


def test_scan_angles_follow_depthimage_to_laserscan():
    scan = depth_to_scan(plane(2.0), INTR)
    assert scan.angle_max == pytest.approx(math.atan(318.5 / 520.0))
    assert scan.angle_min == pytest.approx(-math.atan((639 - 318.5) / 520.0))
    assert scan.angle_increment == pytest.approx((scan.angle_max - scan.angle_min) / 639)
    assert len(scan.ranges) == 640 and scan.ranges.dtype == np.float32
    assert (scan.range_min, scan.range_max) == (0.45, 10.0)


def test_scan_of_a_wall_is_distance_over_cosine():
    d = 2.0
    scan = depth_to_scan(plane(d), INTR)
    angles = scan.angle_min + np.arange(640) * scan.angle_increment
    hit = np.isfinite(scan.ranges)
    assert hit.sum() > 600  # a few bins get no column: columns are uniform in tan, bins in angle
    # Each bin holds its nearest column, at most one bin width from the bin's own angle.
    bound_low = d / np.cos(np.abs(angles) - scan.angle_increment)
    bound_low[np.abs(angles) < scan.angle_increment] = d
    assert (scan.ranges[hit] >= bound_low[hit] - 1e-5).all()
    assert (scan.ranges[hit] <= d / np.cos(np.abs(angles[hit]) + scan.angle_increment) + 1e-5).all()
    # The column at the principal point looks straight ahead.
    assert np.nanmin(scan.ranges) == pytest.approx(d, rel=1e-5)


@pytest.mark.parametrize("scan_height", [1, 4, 5])
def test_scan_matches_the_reference_on_a_messy_image(scan_height):
    rng = np.random.default_rng(scan_height)
    depth = rng.uniform(0.2, 12.0, (48, 64)).astype(np.float32)
    depth[rng.random(depth.shape) < 0.1] = np.nan
    depth[rng.random(depth.shape) < 0.05] = np.inf
    depth[rng.random(depth.shape) < 0.05] = -np.inf
    depth[:, 5:9] = np.nan  # columns with no finite value: Inf beats NaN
    depth[20:28, 6] = np.inf
    scan = depth_to_scan(depth, SMALL, scan_height, 0.45, 10.0)
    angle_min, angle_max, increment, expected = reference_scan(depth, SMALL, scan_height, 0.45, 10.0)
    assert (scan.angle_min, scan.angle_max) == (pytest.approx(angle_min), pytest.approx(angle_max))
    assert scan.angle_increment == pytest.approx(increment)
    np.testing.assert_allclose(scan.ranges, expected, rtol=1e-6)
    assert np.isinf(scan.ranges).any() and np.isnan(scan.ranges).any()


# Without a rounding guard, column 0 of the last two cameras falls into bin width - 2.
@pytest.mark.parametrize("width, cx, fx", [(640, 318.5, 520.0), (2, 0.5, 1.0), (1346, 799.3, 677.6),
                                          (851, 391.0, 1900.4)])
def test_end_columns_land_in_the_end_bins(width, cx, fx):
    intr = Intrinsics(fx, fx, cx, 1.0, width, 2)
    for column, expected_bin in [(0, width - 1), (width - 1, 0)]:  # u = 0 is the leftmost ray: angle_max
        depth = np.full((2, width), np.nan, np.float32)
        depth[:, column] = 2.0
        ranges = depth_to_scan(depth, intr).ranges
        assert np.flatnonzero(np.isfinite(ranges)).tolist() == [expected_bin]
        assert ranges[expected_bin] == pytest.approx(2.0 * math.hypot((column - cx) / fx, 1.0), rel=1e-6)


def test_nearest_point_in_the_band_wins():
    depth = plane(3.0, SMALL)
    offset = int(SMALL.cy - 5 / 2.0)
    depth[offset, 40:50] = 1.0  # an obstacle seen only by the top row of the band
    scan = depth_to_scan(depth, SMALL, scan_height=5)
    slope = (np.arange(64) - SMALL.cx) / SMALL.fx
    bins = np.trunc((-np.arctan(slope) - scan.angle_min) / scan.angle_increment + 1e-6).astype(int)
    for u in range(40, 50):
        assert scan.ranges[bins[u]] == pytest.approx(math.hypot(slope[u], 1.0), rel=1e-6)
    assert scan.ranges[bins[20]] == pytest.approx(3.0 * math.hypot(slope[20], 1.0), rel=1e-6)
    # A 1-row band (row int(cy - 0.5) = 23) does not see it.
    assert depth_to_scan(depth, SMALL, scan_height=1).ranges[bins[45]] > 2.9


def test_scan_range_limits_leave_nan():
    depth = plane(3.0, SMALL)
    depth[:, :10] = 0.2  # closer than range_min
    depth[:, 50:] = 20.0  # beyond range_max
    scan = depth_to_scan(depth, SMALL, range_min=0.45, range_max=10.0)
    slope = (np.arange(64) - SMALL.cx) / SMALL.fx
    bins = np.trunc((-np.arctan(slope) - scan.angle_min) / scan.angle_increment + 1e-6).astype(int)
    assert np.isnan(scan.ranges[bins[:10]]).all() and np.isnan(scan.ranges[bins[50:]]).all()
    assert np.isfinite(scan.ranges[bins[12:48]]).all()


def test_scan_height_too_large_for_the_image_is_rejected():
    with pytest.raises(ValueError, match=r"scan_height \(60 pixels\) is too large"):
        depth_to_scan(plane(1.0, SMALL), SMALL, scan_height=60)
    low = Intrinsics(40.0, 40.0, 31.3, 46.5, 64, 48)
    with pytest.raises(ValueError, match="too large"):
        depth_to_scan(plane(1.0, SMALL), low, scan_height=5)


# --- the scan for MAVROS's obstacle_distance plugin (PX4 / ArduPilot) ---------------------------------

def obstacle_distance(scan) -> dict:
    """MAVLink OBSTACLE_DISTANCE as mavros_extras' obstacle_distance plugin (ROS 2, obstacle_cb) fills it
    from a LaserScan: <= 72 ranges copied, more merged into 72 slots by their minimum; cm; NaN, < 0 and
    >= UINT16_MAX cm are UINT16_MAX (unknown); angle_offset = angle_min in degrees."""
    uint16_max, slots = 65535, 72
    ranges = np.asarray(scan.ranges, np.float32)
    distances = np.full(slots, uint16_max, np.int64)
    if len(ranges) <= slots:
        for i, r in enumerate(ranges):
            cm = r * 1e2
            distances[i] = uint16_max if (np.isnan(cm) or cm >= uint16_max or cm < 0) else int(cm)
        increment = math.degrees(scan.angle_increment)
    else:
        scale = np.float32(len(ranges) / slots)
        for i in range(slots):
            j = 0
            while j < scale:
                cm = ranges[int(math.floor(i * scale + j))] * 1e2
                if not np.isnan(cm) and cm < uint16_max and cm > 0:
                    distances[i] = min(distances[i], int(cm))
                j += 1
        increment = math.degrees(scan.angle_increment) * float(scale)
    return {"distances": distances, "increment": increment, "angle_offset": math.degrees(scan.angle_min),
            "max_distance": int(scan.range_max * 1e2)}


def test_mavlink_scan_reads_right_way_round_through_the_mavros_plugin():
    """A post 2 m ahead-left of the camera must come out of OBSTACLE_DISTANCE (BODY_FRD: 0 forward,
    positive clockwise = right) at a negative angle and 2 m; open space as 'no obstacle', not unknown."""
    depth = plane(np.inf)  # nothing within range: REP 117 'too far'
    depth[:, 100:140] = 2.0  # columns left of cx = 318.5
    depth[:, 600:] = 25.0  # far wall beyond range_max
    scan = mavlink_scan(depth, INTR, range_min=0.45, range_max=10.0)
    msg = obstacle_distance(scan)
    angles = msg["angle_offset"] + (np.arange(72) + 0.5) * msg["increment"]  # slot centres, degrees, + = right
    near = np.flatnonzero(msg["distances"] < 1000)
    assert len(near) and (angles[near] < 0).all()
    expected = np.degrees(np.arctan2([100 - 318.5, 140 - 318.5], 520.0))  # the post's true bearing, + = right
    assert expected.min() - msg["increment"] <= angles[near].min() and angles[near].max() <= expected.max() + msg[
        "increment"]
    ray = np.hypot((np.arange(100, 140) - 318.5) / 520.0, 1.0)
    assert msg["distances"][near].min() == int(np.float32(2.0 * ray.min()) * 100)
    free = np.setdiff1d(np.arange(72), near)
    assert (msg["distances"][free] == msg["max_distance"] + 1).all()  # 'no obstacle': never unknown
    assert msg["angle_offset"] == pytest.approx(-math.degrees(math.atan(318.5 / 520.0)))


def test_mavlink_scan_is_the_ros_scan_mirrored_with_explicit_free_space():
    rng = np.random.default_rng(4)
    depth = rng.uniform(0.5, 8.0, (480, 640)).astype(np.float32)
    row = int(INTR.cy - 0.5)  # the scan's row (scan_height 1)
    depth[row, :50] = np.nan  # no depth at all: stays unknown
    depth[row, 50:60] = 0.2  # nearer than range_min: an obstacle at range_min
    ros = depth_to_scan(depth, INTR)
    mav = mavlink_scan(depth, INTR)
    assert (mav.angle_min, mav.angle_max) == (-ros.angle_max, -ros.angle_min)
    assert mav.angle_increment == ros.angle_increment > 0
    both = np.isfinite(ros.ranges[::-1])
    np.testing.assert_array_equal(mav.ranges[both], ros.ranges[::-1][both])
    # ros: NaN where nothing is usable; mavlink: the too-close columns become obstacles at range_min, the
    # columns without depth stay unknown.
    mirrored_nan = np.isnan(ros.ranges[::-1])
    assert (mav.ranges[mirrored_nan & ~np.isnan(mav.ranges)] == 0.45).all() and (mav.ranges == 0.45).any()
    assert np.isnan(mav.ranges).any() and not np.isnan(mav.ranges[~mirrored_nan]).any()
