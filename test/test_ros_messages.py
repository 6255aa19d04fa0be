"""ros/messages.py and ros/diagnostics.py: pipeline data <-> real sensor_msgs, without a ROS graph.

Messages are pushed through rclpy's CDR serialization, so a field the middleware would reject
(wrong array type, out-of-range value) fails here rather than in a running node.
"""
import math

import cv2
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, LaserScan, PointField
from std_msgs.msg import Header

from mde_ros.pipeline.geometry import backproject, depth_to_scan, pack_cloud
from mde_ros.pipeline.intrinsics import Intrinsics
from mde_ros.pipeline.outputs import encode_depth
from mde_ros.pipeline.preprocess import InputError
from mde_ros.ros import messages
from mde_ros.ros.diagnostics import NodeStats, ThrottledWarnings, diagnostic_status

RNG = np.random.default_rng(7)
RGB = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
INTR = Intrinsics(fx=50.0, fy=52.0, cx=30.5, cy=21.0, width=64, height=48)


def roundtrip(msg):
    return deserialize_message(serialize_message(msg), type(msg))


def header(frame_id="cam_optical_frame", sec=12, nanosec=345):
    h = Header(frame_id=frame_id)
    h.stamp.sec, h.stamp.nanosec = sec, nanosec
    return h


def camera_info(intr=INTR, **fields):
    info = CameraInfo(header=header(), width=intr.width, height=intr.height, distortion_model="plumb_bob",
                      **fields)
    info.k = intr.k()
    info.d = [0.1, -0.2, 0.001, 0.002, 0.03]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [intr.fx, 0.0, intr.cx, -3.0, 0.0, intr.fy, intr.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


def padded_image_msg(array, encoding, padding=3):
    """An Image whose rows carry `padding` junk bytes, as some drivers send."""
    height, width = array.shape[:2]
    row = array.reshape(height, -1)
    data = np.concatenate([row, np.full((height, padding), 255, np.uint8)], axis=1)
    return Image(header=header(), height=height, width=width, encoding=encoding, step=data.shape[1],
                 data=data.tobytes())


@pytest.mark.parametrize("encoding, convert", [
    ("rgb8", None), ("bgr8", cv2.COLOR_RGB2BGR), ("rgba8", cv2.COLOR_RGB2RGBA), ("bgra8", cv2.COLOR_RGB2BGRA)])
def test_colour_images_become_rgb_whatever_their_encoding_and_row_padding(encoding, convert):
    raw = RGB if convert is None else cv2.cvtColor(RGB, convert)
    msg = roundtrip(padded_image_msg(raw, encoding))
    np.testing.assert_array_equal(messages.image_msg_to_rgb(msg), RGB)


def test_mono8_becomes_grey_rgb():
    grey = RGB[:, :, 0].copy()
    rgb = messages.image_msg_to_rgb(padded_image_msg(grey, "mono8"))
    np.testing.assert_array_equal(rgb, np.repeat(grey[:, :, None], 3, axis=2))


@pytest.mark.parametrize("change, expected", [
    ({"encoding": "16UC1"}, "unsupported image encoding"),
    ({"step": 7 * 3 - 1}, "step"),
    ({"height": 6}, "bytes"),
    ({"height": 0, "width": 0, "step": 0, "data": b""}, "size"),
    ({"width": 100_000, "step": 300_000}, "size"),
])
def test_malformed_images_raise_input_error_naming_the_problem(change, expected):
    msg = Image(header=header(), height=5, width=7, encoding="rgb8", step=21, data=RGB.tobytes())
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(InputError, match=expected):
        messages.image_msg_to_rgb(msg)


def test_png_compressed_image_decodes_exactly_and_jpeg_closely():
    bgr = cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR)
    png = CompressedImage(header=header(), format="png", data=cv2.imencode(".png", bgr)[1].tobytes())
    np.testing.assert_array_equal(messages.compressed_msg_to_rgb(roundtrip(png)), RGB)
    smooth = np.tile(np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None], (16, 1, 3))
    encoded = cv2.imencode(".jpg", smooth, [cv2.IMWRITE_JPEG_QUALITY, 95])[1]
    jpeg = CompressedImage(format="jpeg", data=encoded.tobytes())
    decoded = messages.compressed_msg_to_rgb(jpeg)
    assert decoded.shape == (16, 32, 3)
    assert np.abs(decoded.astype(int) - smooth).max() <= 8


@pytest.mark.parametrize("data, expected", [(b"", "no data"), (b"\xff\xd8 not really a jpeg", "not a JPEG or PNG"),
                                           (b"\xff\xd8\xff\xe0 truncated", "no frame header|truncated")])
def test_undecodable_compressed_images_raise_input_error(data, expected):
    with pytest.raises(InputError, match=expected):
        messages.compressed_msg_to_rgb(CompressedImage(format="jpeg", data=data))


def test_camera_info_at_image_resolution_gives_its_own_intrinsics():
    assert messages.intrinsics_from_camera_info(camera_info(), 64, 48) == INTR


def test_camera_info_for_a_resized_image_is_scaled_per_axis():
    half = messages.intrinsics_from_camera_info(camera_info(), 32, 24)
    assert half == INTR.scaled(32, 24)
    assert (half.fx, half.cx, half.fy, half.cy) == (25.0, 15.25, 26.0, 10.5)


@pytest.mark.parametrize("make, kind", [
    (lambda: camera_info(), "camera_info_resolution"),  # 64x48 info for a 64x64 image
    (lambda: CameraInfo(width=64, height=48), "camera_info_zero_k"),
    (lambda: camera_info(Intrinsics(math.nan, 50.0, 30.0, 20.0, 64, 48)), "camera_info_invalid"),
    (lambda: camera_info(Intrinsics(-50.0, 50.0, 30.0, 20.0, 64, 48)), "camera_info_invalid"),
])
def test_unusable_camera_info_is_refused_with_the_reason(make, kind):
    with pytest.raises(messages.CameraInfoError) as error:
        messages.intrinsics_from_camera_info(make(), 64, 64 if kind == "camera_info_resolution" else 48)
    assert error.value.kind == kind
    if kind == "camera_info_zero_k":
        assert "all zero" in str(error.value)


def test_depth_camera_info_copies_the_calibration_at_the_same_resolution():
    template = camera_info()
    msg = roundtrip(messages.camera_info_msg(INTR, header(), template))
    assert (msg.width, msg.height) == (64, 48)
    assert msg.header == header()
    assert msg.distortion_model == "plumb_bob"
    np.testing.assert_array_equal(msg.k, template.k)
    np.testing.assert_array_equal(msg.p, template.p)
    np.testing.assert_array_equal(msg.d, template.d)
    np.testing.assert_array_equal(msg.r, template.r)


def test_depth_camera_info_of_a_camera_with_roi_and_binning_is_for_the_published_image():
    """REP 104: the camera's K is for the full sensor; its ROI offsets and its binning divides. The
    published CameraInfo carries K of the depth image itself, with binning 0 and no ROI, so a consumer
    (image_geometry) applies nothing a second time."""
    template = camera_info()
    template.roi.x_offset, template.roi.y_offset, template.roi.width, template.roi.height = 4, 8, 60, 40
    template.binning_x = template.binning_y = 2
    intr = messages.intrinsics_from_camera_info(template, 30, 20)
    assert (intr.fx, intr.fy, intr.cx, intr.cy) == (INTR.fx / 2, INTR.fy / 2, (INTR.cx - 4) / 2, (INTR.cy - 8) / 2)
    msg = roundtrip(messages.camera_info_msg(intr, header(), template))
    assert (msg.width, msg.height, msg.binning_x, msg.binning_y) == (30, 20, 0, 0)
    assert (msg.roi.x_offset, msg.roi.y_offset, msg.roi.width, msg.roi.height) == (0, 0, 0, 0)
    np.testing.assert_allclose(msg.k, intr.k())
    np.testing.assert_allclose([msg.p[0], msg.p[2], msg.p[3], msg.p[5], msg.p[6]],
                               [intr.fx, intr.cx, template.p[3] / 2, intr.fy, intr.cy])


def test_depth_camera_info_scales_k_and_p_when_the_depth_is_smaller_than_the_calibration():
    small = INTR.scaled(32, 24)
    msg = messages.camera_info_msg(small, header(), camera_info())
    assert (msg.width, msg.height) == (32, 24)
    np.testing.assert_allclose(msg.k, small.k())
    np.testing.assert_allclose(msg.p, [25.0, 0.0, 15.25, -1.5, 0.0, 26.0, 10.5, 0.0, 0.0, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(msg.d, camera_info().d)


def test_depth_camera_info_without_calibration_describes_an_ideal_pinhole():
    msg = roundtrip(messages.camera_info_msg(INTR, header()))
    np.testing.assert_allclose(msg.k, INTR.k())
    np.testing.assert_allclose(np.reshape(msg.p, (3, 4))[:, :3], np.reshape(INTR.k(), (3, 3)))
    np.testing.assert_array_equal(msg.r, np.eye(3).ravel())
    assert not any(msg.d)


def test_point_cloud_message_carries_the_packed_cloud():
    depth = np.full((48, 64), 2.5, np.float32)
    depth[0, 0] = np.nan
    rgb = RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    cloud = pack_cloud(depth, INTR, rgb)
    msg = roundtrip(messages.point_cloud_msg(cloud, header()))
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ("x", 0, PointField.FLOAT32, 1), ("y", 4, PointField.FLOAT32, 1), ("z", 8, PointField.FLOAT32, 1),
        ("rgb", 16, PointField.FLOAT32, 1)]  # pcl::PointXYZRGB's layout, as depth_image_proc's xyzrgb cloud
    assert (msg.height, msg.width, msg.point_step, msg.is_dense) == (48, 64, 32, False)
    assert len(msg.data) == msg.row_step * msg.height
    xyz = np.frombuffer(msg.data, np.float32).reshape(48, 64, 8)[..., :3]
    np.testing.assert_allclose(xyz, backproject(depth, INTR), equal_nan=True)
    assert msg.header.frame_id == "cam_optical_frame"


def test_laser_scan_message_carries_the_scan():
    depth = np.full((48, 64), 3.0, np.float32)
    scan = depth_to_scan(depth, INTR, scan_height=3, range_min=0.5, range_max=8.0)
    msg = roundtrip(messages.laser_scan_msg(scan, header()))
    assert isinstance(msg, LaserScan)
    assert (msg.range_min, msg.range_max) == (0.5, 8.0)
    assert msg.angle_min == pytest.approx(scan.angle_min) and msg.angle_max == pytest.approx(scan.angle_max)
    assert msg.angle_increment == pytest.approx(scan.angle_increment)
    np.testing.assert_array_equal(np.asarray(msg.ranges, np.float32), scan.ranges)


@pytest.mark.parametrize("encoding, dtype", [("32FC1", np.float32), ("16UC1", np.uint16)])
def test_depth_image_message_carries_the_encoded_depth(encoding, dtype):
    depth = np.linspace(0.05, 12.0, 48 * 64, dtype=np.float32).reshape(48, 64)
    packed = encode_depth(depth, encoding, 0.1, 10.0)
    msg = roundtrip(messages.image_msg(packed, header()))
    assert (msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian) == (
        encoding, 48, 64, 64 * np.dtype(dtype).itemsize, 0)
    values = np.frombuffer(msg.data, dtype).reshape(48, 64)
    if encoding == "16UC1":
        inside = (depth >= 0.1) & (depth <= 10.0)
        np.testing.assert_array_equal(values[inside], np.rint(depth[inside] * 1000).astype(np.uint16))
        assert not values[~inside].any()
    else:
        assert np.isneginf(values[depth < 0.1]).all() and np.isposinf(values[depth > 10.0]).all()


def test_stamp_ns_is_exact():
    assert messages.stamp_ns(header(sec=1_700_000_000, nanosec=999_999_999)) == 1_700_000_000_999_999_999


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_diagnostics_warn_when_most_frames_are_dropped_and_report_rates_and_latency():
    clock = FakeClock()
    stats = NodeStats(clock)
    for i in range(10):
        stats.frame_received()
        if i % 5:
            stats.frame_dropped()
    for _ in range(2):
        stats.frame_published({"network": 0.2, "preprocess": 0.01}, "camera_info", 0.9)
    clock.now += 2.0
    status = diagnostic_status(stats.take_window(), name="mde_depth: depth estimation", hardware_id="cpu",
                               backend="onnxruntime on cpu (fp32)", model="demo", input_topic="/image",
                               intrinsics_missing=False)
    values = {kv.key: kv.value for kv in roundtrip(status).values}
    assert status.level == DiagnosticStatus.WARN
    assert "dropping 8 of 10 frames" in status.message
    assert values["input rate (Hz)"] == "5.00" and values["output rate (Hz)"] == "1.00"
    assert values["latency network (ms)"] == "200.00" and values["latency preprocess (ms)"] == "10.00"
    assert values["dropped frames (total)"] == "8" and values["valid depth (%)"] == "90.0"
    assert values["backend"] == "onnxruntime on cpu (fp32)" and values["model"] == "demo"

    for _ in range(4):  # keeping up: OK, and the last latency is still shown
        stats.frame_received()
    clock.now += 1.0
    ok = diagnostic_status(stats.take_window(), name="n", hardware_id="cpu", backend="b", model="m",
                           input_topic="/image", intrinsics_missing=False)
    assert ok.level == DiagnosticStatus.OK, ok.message
    assert {kv.key: kv.value for kv in ok.values}["latency network (ms)"] == "200.00"


def test_diagnostics_report_the_inference_threads_cpu_per_frame_apart_from_the_latencies():
    """Issue 20: the node's CPU budget, per published frame, next to (not summed into) the latency stages."""
    stats = NodeStats(FakeClock())
    stats.frame_published({"network": 0.02}, "camera_info", 1.0, cpu_s={"frame": 0.020, "network": 0.015})
    stats.frame_published({"network": 0.02}, "camera_info", 1.0, cpu_s={"frame": 0.024, "network": 0.017})
    stats.frame_published({"network": 0.02}, "camera_info", 1.0)  # a frame without figures counts in the mean
    values = {kv.key: kv.value for kv in diagnostic_status(
        stats.take_window(), name="n", hardware_id="cpu", backend="b", model="m", input_topic="/image",
        intrinsics_missing=False).values}
    assert values["cpu inference thread per frame (ms)"] == "14.67"
    assert values["cpu network per frame (ms)"] == "10.67"
    assert values["latency total (ms)"] == "20.00"


def test_diagnostics_name_missing_intrinsics_and_problems():
    stats = NodeStats(FakeClock())
    stats.frame_received()
    stats.problem("bad_image", "image rejected: step too small")
    status = diagnostic_status(stats.take_window(), name="n", hardware_id="cpu", backend="b", model="m",
                               input_topic="/image", intrinsics_missing=True)
    values = {kv.key: kv.value for kv in status.values}
    assert status.level == DiagnosticStatus.WARN
    assert "no usable CameraInfo" in status.message and "bad_image x1" in status.message
    assert values["problem bad_image (total)"] == "1"
    assert values["last warning"] == "image rejected: step too small"


def test_warnings_are_counted_every_time_but_logged_once_per_period_and_kind():
    clock = FakeClock()
    stats = NodeStats(clock)
    logged = []
    warnings = ThrottledWarnings(logged.append, stats, period_s=5.0, clock=clock)
    warnings.warn("bad_image", "first")
    warnings.warn("bad_image", "second")
    warnings.warn("camera_info_zero_k", "zero K")
    warnings.warn("no_intrinsics", "no intrinsics", count=False)
    clock.now += 5.0
    warnings.warn("bad_image", "third")
    assert logged == ["first", "zero K", "no intrinsics", "third"]
    assert stats.totals()[3] == {"bad_image": 3, "camera_info_zero_k": 1}
