"""The node as ROS users know camera nodes: Humble's rclpy API, image_transport topic pairing, the
scan in a body-convention frame, depthimage_to_laserscan's parameter names. Real rclpy traffic."""
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import rclpy
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from mde_ros.pipeline.estimator import DepthEstimator
from mde_ros.ros.compat import POST_SET_PARAMETERS
from mde_ros.ros.depth_node import DepthNode
from mde_ros.ros.discovery import localhost_discovery_env
from test_ros_node import (CARD, CX, FX, PLANE_M, PlaneBackend, depth_array, image_msg, info_msg,  # noqa: F401
                           rig, wait_for)

# Node methods rclpy gained after Humble (`git diff humble jazzy -- rclpy/rclpy/node.py`, public `def`s).
IRON_PLUS_NODE_METHODS = (
    "add_post_set_parameters_callback", "add_pre_set_parameters_callback", "remove_post_set_parameters_callback",
    "remove_pre_set_parameters_callback", "count_clients", "count_services", "get_fully_qualified_node_names",
    "list_parameters", "wait_for_node")


def _absent(name):
    def missing(self):
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}' (not in Humble's rclpy)")
    return property(missing)


class HumbleApiDepthNode(DepthNode):
    """Humble API stand-in: the real DepthNode on the installed (Jazzy) rclpy with the Node methods
    Humble lacks hidden, so every feature check takes its Humble branch. It proves the node does
    not need those methods; it is not Humble's rclpy (its executor, C extension and services)."""


for _name in IRON_PLUS_NODE_METHODS:
    setattr(HumbleApiDepthNode, _name, _absent(_name))


def test_node_runs_on_the_humble_rclpy_api_surface(rig):
    r = rig(node_class=HumbleApiDepthNode)
    for name in IRON_PLUS_NODE_METHODS:
        assert not hasattr(r.node, name)
    out = r.exchange(1.0, need=("depth/image", "depth/camera_info", "points", "scan"))
    np.testing.assert_allclose(depth_array(out["depth/image"]), PLANE_M, rtol=1e-6)
    assert out["points"].height * out["points"].width == out["depth/image"].height * out["depth/image"].width
    assert np.isfinite(np.asarray(out["scan"].ranges)).mean() > 0.8

    # Parameter changes go through Humble's single on-set callback: applied when accepted, not otherwise.
    assert r.node.set_parameters([Parameter("depth_encoding", value="16UC1")])[0].successful
    assert depth_array(r.exchange(2.0)["depth/image"]).dtype == np.uint16
    assert not r.node.set_parameters([Parameter("scan.range_min", value=50.0)])[0].successful
    assert r.node._settings.scan_range_min == 0.45 and r.node.get_parameter("scan.range_min").value == 0.45
    assert r.node.set_parameters([Parameter("publish.points", value=False)])[0].successful
    wait_for(lambda: r.probe.count_publishers(f"/{r.namespace}/points") == 0)


def test_the_installed_rclpy_takes_the_post_set_branch():
    """On Iron+ (the wheels here) the real post-set callback is used; the stand-in above covers Humble."""
    assert hasattr(rclpy.node.Node, POST_SET_PARAMETERS)


def test_scan_is_in_the_body_frame_of_the_optical_frame_with_left_at_positive_angles(rig):
    # Image columns u < cx / 2 (left of the optical axis) at 1 m, the rest at 3 m (network: w of 64 columns).
    def near_left(h, w):
        return np.repeat(np.where(np.arange(w) * 64 / w < CX / 2, 1.0, 3.0)[None, :], h, 0).astype(np.float32)
    backend = PlaneBackend(depth_fn=near_left)
    r = rig(backend=backend)
    image = image_msg(1.0, frame_id="camera_color_optical_frame")
    scan = r.exchange(1.0, need=("scan", "points"), image=image)["scan"]
    assert scan.header.frame_id == "camera_color_frame"
    assert r.with_stamp("points", 1.0)[-1].header.frame_id == "camera_color_optical_frame"  # cloud stays optical
    ranges = np.asarray(scan.ranges)
    angles = scan.angle_min + scan.angle_increment * np.arange(len(ranges))
    finite = np.isfinite(ranges)
    # REP 103 body frame: y (left) = r sin(angle). The near obstacle is left of the optical axis.
    near = finite & (ranges < 2.0)
    assert near.any() and (angles[near] > 0).all()
    assert (ranges[finite & (angles < -0.1)] > 2.5).all()
    assert scan.angle_max == pytest.approx(math.atan(CX / FX))
    assert scan.scan_time == pytest.approx(0.033)


def test_a_frame_without_optical_is_used_as_it_is_with_one_warning(rig, capfd):
    r = rig()
    for t in (1.0, 2.0, 3.0):
        scan = r.exchange(t, need=("scan",), image=image_msg(t, frame_id="camera_link"))["scan"]
        assert scan.header.frame_id == "camera_link"
    err = capfd.readouterr().err
    assert err.count("has no '_optical' part") == 1, err


def test_depthimage_to_laserscan_parameter_names(rig):
    r = rig(params={"range_max": 5.0, "scan_time": 0.1, "output_frame": "laser_link", "scan_height": 3})
    settings = r.node._settings
    assert (settings.scan_range_max, settings.scan_scan_time, settings.scan_output_frame,
            settings.scan_scan_height) == (5.0, 0.1, "laser_link", 3)
    scan = r.exchange(1.0, need=("scan",))["scan"]
    assert (scan.header.frame_id, scan.range_max) == ("laser_link", 5.0)
    assert scan.scan_time == pytest.approx(0.1)


def test_the_deprecated_input_transport_still_selects_compressed_input_with_a_warning(rclpy_context, capfd):
    node = DepthNode(estimator=DepthEstimator(PlaneBackend(), CARD), context=rclpy_context, namespace="old_name",
                     parameter_overrides=[Parameter("input_transport", value="compressed")])
    try:
        assert node._settings.image_transport == "compressed"
        assert node._image_sub.topic_name == "/old_name/image/compressed"
        assert node._info_sub.topic_name == "/old_name/camera_info"
    finally:
        node.destroy_node()
    err = capfd.readouterr().err
    assert "'input_transport' is deprecated: set 'image_transport' instead" in err


def test_an_explicit_parameter_wins_over_its_alias(rclpy_context, capfd):
    node = DepthNode(estimator=DepthEstimator(PlaneBackend(), CARD), context=rclpy_context, namespace="alias_both",
                     parameter_overrides=[Parameter("range_max", value=5.0), Parameter("scan.range_max", value=7.0)])
    try:
        assert node._settings.scan_range_max == 7.0
    finally:
        node.destroy_node()
    assert "both 'range_max' and 'scan.range_max' are set" in capfd.readouterr().err


class Camera:
    """A camera driver's publishers on absolute topics, and a subscriber to the node's outputs."""

    def __init__(self, context, image_topic, info_topic, outputs_ns):
        self.node = rclpy.create_node("camera_driver", context=context)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = self.node.create_publisher(Image, image_topic, qos)
        self.info_pub = self.node.create_publisher(CameraInfo, info_topic, qos)
        self.points = []
        self.node.create_subscription(PointCloud2, f"{outputs_ns}/points", self.points.append, qos)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)

    def exchange(self, depth_node, attempts=40):
        self.executor.add_node(depth_node)
        try:
            for i in range(attempts):
                self.info_pub.publish(info_msg(float(i + 1)))
                self.image_pub.publish(image_msg(float(i + 1)))
                for _ in range(10):
                    self.executor.spin_once(timeout_sec=0.05)
                if self.points:
                    return self.points[-1]
            raise AssertionError("no points: the node did not pair the image with the camera's CameraInfo")
        finally:
            self.executor.remove_node(depth_node)

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()


@pytest.mark.parametrize("remaps, expected_info", [
    # Only the image remapped: camera_info is its sibling, as image_transport's CameraSubscriber pairs them.
    (["-r", "image:=/pair_a/color/image_raw"], "/pair_a/color/camera_info"),
    # camera_info remapped too: the remap wins.
    (["-r", "image:=/pair_b/color/image_raw", "-r", "camera_info:=/pair_b/calib/info"], "/pair_b/calib/info"),
])
def test_camera_info_is_the_image_topics_sibling_unless_remapped(rclpy_context, remaps, expected_info):
    node = DepthNode(estimator=DepthEstimator(PlaneBackend(), CARD), context=rclpy_context, namespace="pairing",
                     cli_args=["--ros-args", *remaps])
    camera = Camera(rclpy_context, remaps[1].split(":=")[1], expected_info, "/pairing")
    try:
        assert node._info_sub.topic_name == expected_info
        points = camera.exchange(node)
        assert points.header.frame_id == "camera_optical_frame"
    finally:
        camera.close()
        node.destroy_node()


def test_depth_and_its_camera_info_are_image_transport_siblings(rclpy_context):
    node = DepthNode(estimator=DepthEstimator(PlaneBackend(), CARD), context=rclpy_context, namespace="front")
    try:
        published = dict(node.get_publisher_names_and_types_by_node("mde_depth", "/front"))
        assert published["/front/depth/image"] == ["sensor_msgs/msg/Image"]
        assert published["/front/depth/camera_info"] == ["sensor_msgs/msg/CameraInfo"]
        assert "/front/depth" not in published
    finally:
        node.destroy_node()


def test_discovery_stays_local_on_humble_and_iron_plus_without_deprecation_warnings():
    assert localhost_discovery_env({"ROS_DISTRO": "humble"}) == {"ROS_LOCALHOST_ONLY": "1",
                                                                 "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    for environ in ({"ROS_DISTRO": "jazzy"}, {"ROS_DISTRO": "kilted"}, {}):
        assert localhost_discovery_env(environ) == {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    # The installed (Iron+) rcl: what the suite sets starts a node silently; ROS_LOCALHOST_ONLY would warn.
    code = "import rclpy; rclpy.init(); n = rclpy.create_node('discovery_probe'); n.destroy_node(); rclpy.shutdown()"
    env = {k: v for k, v in os.environ.items() if k not in ("ROS_LOCALHOST_ONLY", "ROS_DISTRO")}
    env.update(localhost_discovery_env(env))
    ours = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert ours.returncode == 0 and "[WARN]" not in ours.stderr, ours.stderr
    if hasattr(rclpy.node.Node, POST_SET_PARAMETERS):  # Iron+ rcl: the Humble variable draws a warning
        both = subprocess.run([sys.executable, "-c", code], env=dict(env, ROS_LOCALHOST_ONLY="1"),
                              capture_output=True, text=True, timeout=60)
        assert "ROS_LOCALHOST_ONLY is deprecated" in both.stderr
