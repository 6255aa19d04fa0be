"""Topic/frame naming and parameter aliases: pure functions, no rclpy."""
import pytest

from mde_ros.ros import naming
from mde_ros.ros.aliases import ALIASES, resolve_aliases


@pytest.mark.parametrize("image, sibling", [
    ("/camera/color/image_raw", "/camera/color/camera_info"),
    ("/camera/color/image_raw/compressed", "/camera/color/camera_info"),
    ("/image", "/camera_info"),
    ("/front/depth/image", "/front/depth/camera_info"),
    ("/cam/image_rect/", "/cam/camera_info"),
])
def test_sibling_topic_follows_image_transport(image, sibling):
    assert naming.sibling_topic(image) == sibling


def test_depth_outputs_are_siblings():
    assert naming.sibling_topic("/ns/" + naming.DEPTH_IMAGE) == "/ns/" + naming.DEPTH_CAMERA_INFO
    assert naming.sibling_topic("/ns/" + naming.DEPTH_COLORIZED) == "/ns/" + naming.DEPTH_CAMERA_INFO


@pytest.mark.parametrize("optical, body", [
    ("camera_color_optical_frame", "camera_color_frame"),  # realsense-ros
    ("camera_depth_optical_frame", "camera_depth_frame"),
    ("oak_rgb_camera_optical_frame", "oak_rgb_camera_frame"),  # depthai-ros
    ("zed_left_camera_optical_frame", "zed_left_camera_frame"),
    ("front_optical", "front"),
    ("robot/cam_optical_frame", "robot/cam_frame"),
    ("camera_link", None),
    ("", None),
    ("_optical", None),
])
def test_body_frame_of_an_optical_frame(optical, body):
    assert naming.body_frame(optical) == body


def test_scan_frame_prefers_output_frame_then_the_body_twin_then_the_image_frame_as_a_guess():
    assert naming.scan_frame("camera_color_optical_frame", "base_scan") == ("base_scan", False)
    assert naming.scan_frame("camera_color_optical_frame") == ("camera_color_frame", False)
    assert naming.scan_frame("camera_link") == ("camera_link", True)


DEFAULTS = {"image_transport": "raw", "scan.scan_height": 1, "scan.scan_time": 0.033, "scan.range_min": 0.45,
            "scan.range_max": 10.0, "scan.output_frame": ""}


def test_aliases_fill_in_unset_parameters_and_only_deprecated_ones_warn():
    values, warnings = resolve_aliases(DEFAULTS, {"range_max": 4.0, "output_frame": "laser", "scan_height": 1},
                                       DEFAULTS)
    assert values == {**DEFAULTS, "scan.range_max": 4.0, "scan.output_frame": "laser"}
    assert warnings == []
    values, warnings = resolve_aliases(DEFAULTS, {"input_transport": "compressed"}, DEFAULTS)
    assert values["image_transport"] == "compressed"
    assert len(warnings) == 1 and "deprecated" in warnings[0]


def test_the_canonical_name_wins_over_its_alias():
    values, warnings = resolve_aliases({**DEFAULTS, "scan.range_min": 1.0}, {"range_min": 2.0}, DEFAULTS)
    assert values["scan.range_min"] == 1.0
    assert warnings == ["both 'range_min' and 'scan.range_min' are set: using scan.range_min=1.0"]


def test_every_alias_points_at_a_node_parameter():
    rclpy = pytest.importorskip("rclpy")  # noqa: F841 (the node module imports it)
    from mde_ros.ros.depth_node import SPECS

    for alias in ALIASES:
        assert alias.canonical in SPECS and alias.name not in SPECS
