"""REP 117/118 depth encoding, colour maps and the per-frame output bundle."""

import numpy as np
import pytest

from mde_ros.pipeline.colorize import colorize, with_scale_bar
from mde_ros.pipeline.estimator import DepthResult
from mde_ros.pipeline.geometry import backproject, depth_to_scan
from mde_ros.pipeline.intrinsics import Intrinsics
from mde_ros.pipeline.outputs import OutputConfig, build_outputs, encode_depth, mark_out_of_range

INTR = Intrinsics(fx=260.0, fy=258.0, cx=159.5, cy=121.0, width=320, height=240)


def decode(image) -> np.ndarray:
    """The pixels of a PackedImage, read straight from its bytes and step."""
    dtype, channels = {"32FC1": ("<f4", 1), "16UC1": ("<u2", 1), "rgb8": (np.uint8, 3)}[image.encoding]
    rows = np.frombuffer(image.data, np.uint8).reshape(image.height, image.step)
    pixels = rows[:, :image.width * channels * np.dtype(dtype).itemsize].copy().view(dtype)
    return pixels.reshape((image.height, image.width) + ((channels,) if channels > 1 else ()))


# --- depth encoding -------------------------------------------------------------------------------

def test_32fc1_marks_out_of_range_per_rep_117():
    depth = np.array([[0.05, 0.1, 5.0, 10.0, 12.0, np.nan]], np.float32)
    image = encode_depth(depth, "32FC1", min_depth=0.1, max_depth=10.0)
    assert (image.height, image.width, image.encoding, image.step) == (1, 6, "32FC1", 24)
    values = decode(image)[0]
    assert values[0] == -np.inf and values[4] == np.inf and np.isnan(values[5])
    np.testing.assert_array_equal(values[1:4], [np.float32(0.1), 5.0, 10.0])


def test_16uc1_is_rounded_millimetres_with_zero_for_everything_invalid():
    depth = np.array([[1.2344, 1.2346, 0.05, 12.0, np.nan, np.inf, -1.0, 0.0, 65.5, 70.0]], np.float32)
    image = encode_depth(depth, "16UC1", min_depth=0.1, max_depth=100.0)
    assert (image.encoding, image.step) == ("16UC1", 20)
    values = decode(image)[0]
    assert values.dtype == np.uint16
    # 0.05 m is below min_depth; 70 m does not fit in 16 bits of millimetres.
    np.testing.assert_array_equal(values, [1234, 1235, 0, 12000, 0, 0, 0, 0, 65500, 0])
    beyond_max = decode(encode_depth(np.array([[12.0]], np.float32), "16UC1", 0.1, 10.0))
    assert beyond_max[0, 0] == 0


def test_unknown_depth_encoding_is_rejected():
    with pytest.raises(ValueError, match="32FC1"):
        encode_depth(np.ones((2, 2), np.float32), "mono16", 0.1, 10.0)


# --- colour ---------------------------------------------------------------------------------------

def test_colorize_is_rgb_with_warm_near_cold_far_and_black_invalid():
    depth = np.array([[0.5, 9.5, np.nan, np.inf, 0.01, 50.0]], np.float32)
    rgb = colorize(depth, 0.5, 9.5)
    assert rgb.shape == (1, 6, 3) and rgb.dtype == np.uint8
    near, far = rgb[0, 0].astype(int), rgb[0, 1].astype(int)
    assert near[0] > near[2] and far[2] > far[0]  # red-ish near, blue-ish far
    assert (rgb[0, 2] == 0).all() and (rgb[0, 3] == 0).all()
    np.testing.assert_array_equal(rgb[0, 4], rgb[0, 0])  # out of range takes the end colours
    np.testing.assert_array_equal(rgb[0, 5], rgb[0, 1])


def test_colorize_is_cv2_convert_scale_abs_of_the_clamped_level_through_the_lut():
    """The definition, written plainly (float32 level, clamped at 0, cvRound + saturation, the map's LUT,
    non-finite black), on every kind of value: NaN, +-Inf, negative, zero, beyond both limits, huge, and a
    .5 tie at every level; the fast clamp and the by-index blacking give the same bytes."""
    import cv2

    from mde_ros.pipeline.colorize import colormap_table

    rng = np.random.default_rng(5)
    depth = rng.uniform(-2.0, 14.0, (37, 53)).astype(np.float32)
    depth[rng.random(depth.shape) < 0.05] = np.nan
    depth[0, :6] = [np.inf, -np.inf, 0.0, -0.0, 1e30, -1e30]
    ties = np.float32(255 / 64) - (np.arange(255, dtype=np.float32) + np.float32(0.5)) / np.float32(64)
    for low, high, values in ((0.3, 10.0, depth), (0.0, 255 / 64, ties[None, :])):
        level = (np.float32(high) - values) * np.float32(255.0 / (high - low))
        index = cv2.convertScaleAbs(np.maximum(level, np.float32(0)))
        want = colormap_table("turbo")[index]
        want[~np.isfinite(values)] = 0
        np.testing.assert_array_equal(colorize(values, low, high), want)


def test_colorize_is_monotonic_in_hue_along_a_ramp():
    ramp = np.linspace(1.0, 5.0, 50, dtype=np.float32)[None, :]
    rgb = colorize(ramp, 1.0, 5.0).astype(int)
    assert len({tuple(c) for c in rgb[0]}) > 40  # distinct colours for distinct depths


def test_colorize_rejects_unknown_map_and_empty_range():
    with pytest.raises(ValueError, match="unknown colour map 'rainbowz'"):
        colorize(np.ones((2, 2), np.float32), 0.1, 10.0, colormap="rainbowz")
    with pytest.raises(ValueError, match="min_depth < max_depth"):
        colorize(np.ones((2, 2), np.float32), 5.0, 5.0)


@pytest.mark.parametrize("width", [320, 20])
def test_scale_bar_is_appended_below_the_image(width):
    image = colorize(np.full((60, width), 3.0, np.float32), 0.1, 10.0)
    with_bar = with_scale_bar(image, 0.1, 10.0)
    assert with_bar.shape[1] == width and with_bar.shape[0] > 60 + 20
    np.testing.assert_array_equal(with_bar[:60], image)
    bar = with_bar[60:]
    near, far = colorize(np.array([[0.1, 10.0]], np.float32), 0.1, 10.0)[0]
    assert (bar == near).all(axis=2).any() and (bar == far).all(axis=2).any()
    if width >= 100:
        assert (bar > 200).all(axis=2).sum() > 50  # white tick labels


# --- config and bundle ----------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({"depth_encoding": "mono16"}, "depth_encoding"),
    ({"cloud_decimation": 0}, "cloud_decimation"),
    ({"cloud_decimation": 2.5}, "cloud_decimation"),
    ({"cloud_min_range": 5.0, "cloud_max_range": 1.0}, "cloud_min_range < cloud_max_range"),
    ({"scan_height": 0}, "scan_height"),
    ({"scan_range_min": -1.0}, "scan_range_min"),
    ({"colormap": "nope"}, "unknown colour map"),
])
def test_output_config_validates(kwargs, message):
    with pytest.raises(ValueError, match=message):
        OutputConfig(**kwargs)
    config = OutputConfig()
    for key, value in kwargs.items():
        setattr(config, key, value)
    with pytest.raises(ValueError, match=message):
        config.validate()


def wall_result(depth_value=2.0, intrinsics=INTR) -> DepthResult:
    depth = np.full((240, 320), depth_value, np.float32)
    depth[:10] = np.nan  # no estimate
    depth[10:20] = 0.05  # closer than min_depth
    depth[20:30, :] = 15.0  # beyond max_depth
    return DepthResult(depth, intrinsics, 1.0, {})


def test_build_outputs_produces_every_enabled_part():
    rgb = np.full((240, 320, 3), (200, 100, 50), np.uint8)
    result = wall_result()
    out = build_outputs(result, rgb, OutputConfig(), min_depth=0.1, max_depth=10.0)
    np.testing.assert_array_equal(decode(out.depth), mark_out_of_range(result.depth, 0.1, 10.0))
    assert out.depth_intrinsics == INTR
    assert (out.cloud.height, out.cloud.width) == (240, 320) and out.cloud.fields[-1][0] == "rgb"
    xyz = np.frombuffer(out.cloud.data, "<f4").reshape(240, 320, out.cloud.point_step // 4)[:, :, :3]
    assert np.isnan(xyz[:30]).all()  # NaN, too close and too far all become NaN points
    np.testing.assert_allclose(xyz[30:], backproject(result.depth, INTR)[30:])
    expected_scan = depth_to_scan(mark_out_of_range(result.depth, 0.1, 10.0), INTR, 1, 0.45, 10.0)
    np.testing.assert_array_equal(out.scan.ranges, expected_scan.ranges)
    assert np.nanmin(out.scan.ranges) == pytest.approx(2.0, rel=1e-5)
    assert decode(out.colorized).shape == (240, 320, 3)
    assert set(out.timings) == {"depth", "cloud", "scan", "colorized"}
    assert all(t >= 0 for t in out.timings.values())


def test_the_scan_sees_rep_117_marks_like_depthimage_to_laserscan_would():
    result = wall_result()
    result.depth[:] = 15.0  # everything beyond max_depth -> +Inf in the published depth
    out = build_outputs(result, None, OutputConfig(), 0.1, 10.0)
    assert np.isposinf(out.scan.ranges).any() and not np.isfinite(out.scan.ranges).any()


def test_disabled_parts_are_skipped_and_16uc1_is_used():
    config = OutputConfig(depth_encoding="16UC1", cloud_enabled=False, scan_enabled=False,
                          colorized_enabled=False)
    out = build_outputs(wall_result(), None, config, 0.1, 10.0)
    assert out.cloud is None and out.scan is None and out.colorized is None
    assert out.depth.encoding == "16UC1" and decode(out.depth)[100, 100] == 2000
    assert set(out.timings) == {"depth"}


def test_cloud_options_are_applied():
    config = OutputConfig(cloud_decimation=2, cloud_organized=False, cloud_rgb=False, cloud_max_range=1.5)
    result = wall_result()
    result.depth[200:] = 1.0
    out = build_outputs(result, np.zeros((240, 320, 3), np.uint8), config, 0.1, 10.0)
    assert out.cloud.height == 1 and out.cloud.width == 20 * 160  # rows 200..239, every 2nd pixel
    assert [f[0] for f in out.cloud.fields] == ["x", "y", "z"]


def test_without_usable_intrinsics_there_is_no_cloud_or_scan():
    for intrinsics in (None, Intrinsics(0.0, 0.0, 0.0, 0.0, 320, 240)):
        out = build_outputs(wall_result(intrinsics=intrinsics), None, OutputConfig(), 0.1, 10.0)
        assert out.cloud is None and out.scan is None
        assert out.depth is not None and out.colorized is not None
