"""Depth PNG/npy, PLY, camera_info YAML and image files, read back in their real formats."""
import cv2
import numpy as np
import pytest

from mde_ros.fileio import (read_camera_info_yaml, read_depth_png16, read_image, write_camera_info_yaml,
                            write_depth_npy, write_depth_png16, write_image, write_ply)
from mde_ros.pipeline.intrinsics import Intrinsics

DEPTH = np.array([[1.2344, 1.2346, np.nan, np.inf], [-1.0, 0.0, 65.535, 70.0]], np.float32)


def read_ply(path):
    """A minimal binary little-endian PLY reader: (property names, structured vertex array)."""
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    assert header[0] == "ply" and header[1] == "format binary_little_endian 1.0"
    count = int(next(line for line in header if line.startswith("element vertex")).split()[-1])
    types = {"float": "<f4", "uchar": "u1"}
    properties = [line.split() for line in header if line.startswith("property")]
    dtype = np.dtype([(name, types[kind]) for _, kind, name in properties])
    vertices = np.frombuffer(data[end:], dtype)
    assert len(vertices) == count
    return [name for *_, name in properties], vertices


def test_depth_png16_is_millimetres_with_zero_invalid(tmp_path):
    path = write_depth_png16(tmp_path / "depth.png", DEPTH)
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16 and raw.shape == (2, 4)
    np.testing.assert_array_equal(raw, [[1234, 1235, 0, 0], [0, 0, 65535, 0]])
    back = read_depth_png16(path)
    np.testing.assert_allclose(back[0, :2], [1.234, 1.235], rtol=1e-6)
    assert np.isnan(back[0, 2:]).all() and np.isnan(back[1, [0, 1, 3]]).all()


def test_read_depth_png16_rejects_an_8bit_image(tmp_path):
    cv2.imwrite(str(tmp_path / "grey.png"), np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="not a single-channel 16-bit PNG"):
        read_depth_png16(tmp_path / "grey.png")


def test_depth_npy_is_lossless_float32(tmp_path):
    path = write_depth_npy(tmp_path / "depth.npy", DEPTH.astype(np.float64))
    back = np.load(path)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, DEPTH)


def test_depth_writers_need_a_2d_image(tmp_path):
    with pytest.raises(ValueError, match="HxW depth"):
        write_depth_png16(tmp_path / "d.png", np.zeros((2, 2, 1), np.float32))


def test_ply_with_colour_drops_invalid_points(tmp_path):
    points = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
    points[0, 1] = np.nan
    points[1, 2, 0] = np.inf
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10
    names, vertices = read_ply(write_ply(tmp_path / "cloud.ply", points, rgb))
    assert names == ["x", "y", "z", "red", "green", "blue"]
    keep = [0, 2, 3, 4]  # flattened pixels with finite x, y and z
    flat_points, flat_rgb = points.reshape(-1, 3), rgb.reshape(-1, 3)
    for axis, name in enumerate("xyz"):
        np.testing.assert_array_equal(vertices[name], flat_points[keep, axis])
    for channel, name in enumerate(("red", "green", "blue")):
        np.testing.assert_array_equal(vertices[name], flat_rgb[keep, channel])


def test_ply_without_colour_from_an_n_by_3_array(tmp_path):
    points = np.array([[0.0, 1.0, 2.0], [np.nan, 0.0, 1.0], [3.0, 4.0, 5.0]])
    names, vertices = read_ply(write_ply(tmp_path / "cloud.ply", points))
    assert names == ["x", "y", "z"]
    np.testing.assert_array_equal(vertices["z"], [2.0, 5.0])


def test_ply_rejects_mismatched_inputs(tmp_path):
    with pytest.raises(ValueError, match="HxWx3 or Nx3"):
        write_ply(tmp_path / "a.ply", np.zeros((4, 2)))
    with pytest.raises(ValueError, match="rgb must be uint8"):
        write_ply(tmp_path / "a.ply", np.zeros((4, 3)), np.zeros((3, 3), np.uint8))


CAMERA_CALIBRATION_YAML = """\
image_width: 640
image_height: 480
camera_name: narrow_stereo
camera_matrix:
  rows: 3
  cols: 3
  data: [518.8579, 0, 325.5824, 0, 519.4696, 253.7362, 0, 0, 1]
distortion_model: plumb_bob
distortion_coefficients:
  rows: 1
  cols: 5
  data: [0.2, -0.5, 0.001, 0.002, 0.4]
rectification_matrix:
  rows: 3
  cols: 3
  data: [1, 0, 0, 0, 1, 0, 0, 0, 1]
projection_matrix:
  rows: 3
  cols: 4
  data: [518.8579, 0, 325.5824, 0, 0, 519.4696, 253.7362, 0, 0, 0, 1, 0]
"""

TOPIC_ECHO_YAML = """\
header:
  stamp:
    sec: 12
    nanosec: 5
  frame_id: camera_color_optical_frame
height: 240
width: 320
distortion_model: plumb_bob
d: [0.0, 0.0, 0.0, 0.0, 0.0]
k: [300.0, 0.0, 161.0, 0.0, 301.0, 119.0, 0.0, 0.0, 1.0]
r: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
p: [300.0, 0.0, 161.0, 0.0, 0.0, 301.0, 119.0, 0.0, 0.0, 0.0, 1.0, 0.0]
"""


def test_reads_camera_calibration_yaml(tmp_path):
    path = tmp_path / "camera.yaml"
    path.write_text(CAMERA_CALIBRATION_YAML)
    assert read_camera_info_yaml(path) == Intrinsics.nyu()


def test_reads_a_ros2_topic_echo_of_camera_info(tmp_path):
    path = tmp_path / "info.yaml"
    path.write_text(TOPIC_ECHO_YAML)
    assert read_camera_info_yaml(path) == Intrinsics(300.0, 301.0, 161.0, 119.0, 320, 240)


def test_a_camera_info_echo_with_roi_and_binning_describes_the_image_rep_104(tmp_path):
    """K of the full 640x480 sensor; ROI (160, 120, 320, 240) binned 2: a 160x120 image, cx = (cx - 160) / 2."""
    path = tmp_path / "info.yaml"
    path.write_text("height: 480\nwidth: 640\nk: [500.0, 0.0, 330.0, 0.0, 510.0, 250.0, 0.0, 0.0, 1.0]\n"
                    "binning_x: 2\nbinning_y: 2\nroi: {x_offset: 160, y_offset: 120, height: 240, width: 320}\n")
    assert read_camera_info_yaml(path) == Intrinsics(250.0, 255.0, 85.0, 65.0, 160, 120)
    path.write_text("height: 480\nwidth: 640\nk: [500.0, 0.0, 1.0e5, 0.0, 510.0, 250.0, 0.0, 0.0, 0.0]\n")
    with pytest.raises(ValueError, match=r"K\[8\]=0 must be 1"):
        read_camera_info_yaml(path)


def test_camera_yaml_round_trip(tmp_path):
    intr = Intrinsics(612.25, 611.5, 318.75, 242.125, 640, 480)
    path = write_camera_info_yaml(tmp_path / "camera.yaml", intr, camera_name="front")
    assert read_camera_info_yaml(path) == intr
    text = path.read_text()
    assert "camera_name: front" in text and "projection_matrix" in text and "distortion_model: plumb_bob" in text


@pytest.mark.parametrize("text, message", [
    (CAMERA_CALIBRATION_YAML.replace("image_width: 640\n", ""), r"missing \['image_width'\]"),
    (CAMERA_CALIBRATION_YAML.replace("518.8579, 0, 325.5824, 0, 519.4696, 253.7362, 0, 0, 1",
                                     "0, 0, 0, 0, 0, 0, 0, 0, 0"), "all zero: the camera is not calibrated"),
    (CAMERA_CALIBRATION_YAML.replace("data: [518.8579, 0, 325.5824, 0, 519.4696, 253.7362, 0, 0, 1]",
                                     "data: [1, 2, 3]"), "'camera_matrix' must hold 3x3 = 9 numbers"),
    ("image_width: 640\nimage_height: 480\n", "no 'camera_matrix'"),
    ("- just\n- a list\n", "expected a camera_info YAML mapping"),
    ("camera_matrix: {rows: 3\n", "not valid YAML"),
    (TOPIC_ECHO_YAML.replace("k: [300.0,", "k: [-300.0,"), "invalid camera matrix"),
])
def test_bad_camera_yaml_says_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "camera.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_camera_info_yaml(path)


def test_missing_camera_yaml_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="camera info file not found"):
        read_camera_info_yaml(tmp_path / "nope.yaml")


def test_read_image_returns_rgb(tmp_path):
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 200  # red
    cv2.imwrite(str(tmp_path / "red.png"), rgb[:, :, ::-1])  # OpenCV files are BGR
    loaded = read_image(tmp_path / "red.png")
    assert loaded.shape == (4, 5, 3) and loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded, rgb)


def test_read_image_replicates_grey_and_drops_alpha(tmp_path):
    cv2.imwrite(str(tmp_path / "grey.png"), np.full((3, 3), 77, np.uint8))
    assert (read_image(tmp_path / "grey.png") == 77).all()
    bgra = np.zeros((3, 3, 4), np.uint8)
    bgra[..., 2], bgra[..., 3] = 250, 10  # red, nearly transparent
    cv2.imwrite(str(tmp_path / "alpha.png"), bgra)
    np.testing.assert_array_equal(read_image(tmp_path / "alpha.png")[0, 0], [250, 0, 0])


def test_read_image_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="image not found"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ValueError, match="cannot decode"):
        read_image(tmp_path / "text.png")


def test_write_image_round_trips_rgb_and_reports_bad_paths(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(read_image(write_image(tmp_path / "x.png", rgb)), rgb)
    with pytest.raises(OSError, match="does not exist"):
        write_image(tmp_path / "no" / "x.png", rgb)
    with pytest.raises(OSError, match="no writer"):
        write_image(tmp_path / "x.unknownext", rgb)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        write_image(tmp_path / "y.png", rgb.astype(np.float32))
