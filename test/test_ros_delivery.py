"""Delivery by default (issue 18): the node's Fast DDS profile choice, its QoS and cloud defaults against
real subscribers of the kinds that consume them, and the delivery / node bench sections running.

Delivered fractions themselves are the bench's figures (README, "Delivery"), not asserted here: the
machine is shared and loaded.
"""
import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, PointCloud2

from mde_ros.bags.fixtures import TEST_MODEL
from mde_ros.ros import fastdds
from mde_ros.ros.parameters import SPECS
from mde_ros.pipeline.geometry import depth_to_scan
from mde_ros.pipeline.intrinsics import Intrinsics
from test_ros_node import CX, CY, FX, FY, HEIGHT, PLANE_M, WIDTH, image_msg, info_msg, rig, wait_for  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "config" / "fastdds_large_data.xml"


# ---- which Fast DDS profile the node's process gets --------------------------------------------------

def shipped():
    return SHIPPED


def test_node_uses_the_shipped_profile_unless_the_environment_names_one():
    variables, why = fastdds.profile_environment({}, shipped)
    assert variables == {"FASTDDS_DEFAULT_PROFILES_FILE": str(SHIPPED), "FASTRTPS_DEFAULT_PROFILES_FILE": str(SHIPPED),
                         "RMW_FASTRTPS_USE_QOS_FROM_XML": "1"}  # DYNAMIC history memory is read from XML only then
    assert str(SHIPPED) in why
    for own in ({"FASTDDS_DEFAULT_PROFILES_FILE": "/etc/mine.xml"}, {"FASTRTPS_DEFAULT_PROFILES_FILE": "/x.xml"}):
        variables, why = fastdds.profile_environment(own, shipped)
        assert variables == {} and "environment" in why
    assert fastdds.profile_environment({"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}, shipped)[0] == {}
    assert fastdds.profile_environment({"RMW_IMPLEMENTATION": "rmw_fastrtps_cpp"}, shipped)[0]


def test_profile_choice_true_false_and_path(tmp_path):
    own = {"FASTDDS_DEFAULT_PROFILES_FILE": "/etc/mine.xml"}
    assert fastdds.profile_environment({**own, fastdds.PROFILE_ENV: "true"}, shipped)[0][
        "FASTDDS_DEFAULT_PROFILES_FILE"] == str(SHIPPED)
    assert fastdds.profile_environment({fastdds.PROFILE_ENV: "false"}, shipped)[0] == {}
    xml = tmp_path / "site.xml"
    xml.write_text("<profiles/>")
    assert set(fastdds.profile_environment({fastdds.PROFILE_ENV: str(xml)}, shipped)[0].values()) == {str(xml), "1"}
    with pytest.raises(FileNotFoundError, match="not found"):
        fastdds.profile_environment({fastdds.PROFILE_ENV: "true"}, lambda: None)
    with pytest.raises(FileNotFoundError, match="auto, true, false or an XML path"):
        fastdds.profile_environment({fastdds.PROFILE_ENV: str(tmp_path / "missing.xml")}, shipped)


def test_shipped_profile_is_found_and_sizes_shared_memory_for_camera_frames():
    import xml.etree.ElementTree as ElementTree

    assert fastdds.shipped_profile().resolve() == SHIPPED.resolve()
    ns = {"p": "http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"}
    root = ElementTree.parse(SHIPPED).getroot()
    shm = next(d for d in root.iterfind("p:transport_descriptors/p:transport_descriptor", ns)
               if d.findtext("p:type", namespaces=ns) == "SHM")
    assert int(shm.findtext("p:segment_size", namespaces=ns)) >= 2 * 1280 * 720 * 32  # two full xyzrgb clouds
    participant = root.find("p:participant", ns)
    assert participant.get("is_default_profile") == "true"
    used = {t.text for t in participant.iterfind("p:rtps/p:userTransports/p:transport_id", ns)}
    assert shm.findtext("p:transport_id", namespaces=ns) in used


# ---- defaults against the subscribers that consume them ----------------------------------------------

def test_defaults_are_reliable_input_and_an_obstacle_sized_cloud():
    assert SPECS["qos.reliability"].default == "reliable"
    assert (SPECS["cloud.decimation"].default, SPECS["cloud.organized"].default, SPECS["cloud.rgb"].default) == (
        4, False, False)
    assert SPECS["cloud.max_range"].default > 0


def test_sensor_data_subscriber_gets_the_default_obstacle_cloud(rig):
    """nav2's obstacle / voxel layers subscribe with the sensor-data profile (best effort)."""
    defaults = {name: SPECS[name].default for name in
                ("cloud.decimation", "cloud.organized", "cloud.max_range", "cloud.rgb")}
    r = rig(params=defaults)
    clouds = []
    r.probe.create_subscription(PointCloud2, "points", clouds.append, qos_profile_sensor_data)
    wait_for(lambda: r.node.count_subscribers(f"/{r.namespace}/points") >= 2)
    for attempt in range(20):
        r.info_pub.publish(info_msg(1.0 + attempt))
        r.image_pub.publish(image_msg(1.0 + attempt))
        if clouds:
            break
        time.sleep(0.5)
    wait_for(lambda: clouds, timeout=10.0)
    cloud = clouds[0]
    assert (cloud.height, cloud.point_step, cloud.is_dense) == (1, 16, True)  # unorganised xyz, PCL's PointXYZ
    assert [f.name for f in cloud.fields] == ["x", "y", "z"]
    assert cloud.width == (HEIGHT // 4) * (WIDTH // 4)  # the plane is inside max_range everywhere
    z = np.frombuffer(cloud.data, np.float32).reshape(-1, 4)[:, 2]
    np.testing.assert_allclose(z, PLANE_M, rtol=1e-6)


def test_best_effort_camera_gets_a_warning_that_names_the_parameter(tmp_path):
    """The node process as deployed (default QoS) and a best-effort camera: no silent nothing."""
    from mde_ros.bags.fixtures import export_test_model

    model = export_test_model(tmp_path / "model.onnx")
    namespace = f"/mde_qos_{os.getpid()}"
    node = subprocess.Popen([sys.executable, "-m", "mde_ros.ros.depth_node", "--ros-args", "-r", f"__ns:={namespace}",
                             "-p", f"model:={model}", "-p", "backend:=onnxruntime"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    context = rclpy.context.Context()
    rclpy.init(context=context)
    camera = rclpy.create_node("best_effort_camera", namespace=namespace, context=context)
    try:
        camera.create_publisher(Image, "image", qos_profile_sensor_data)
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline and node.poll() is None and not camera.get_subscriptions_info_by_topic(
                f"{namespace}/image"):
            time.sleep(0.1)
        time.sleep(3.0)  # the node's side of discovery: the incompatible-QoS event
    finally:
        camera.destroy_node()
        rclpy.try_shutdown(context=context)
        node.send_signal(2)
        _, err = node.communicate(timeout=30)
    assert "qos.reliability to best_effort" in err, err[-2000:]


def test_mavlink_scan_convention_reaches_the_scan_topic(rig):
    """scan.convention mavlink (MAVROS obstacle_distance): the same bins, left to right, angles FRD."""
    r = rig(params={"scan.convention": "mavlink"})
    scan = r.exchange(1.0, need=("scan",))["scan"]
    ros = depth_to_scan(np.full((HEIGHT, WIDTH), PLANE_M, np.float32), Intrinsics(FX, FY, CX, CY, WIDTH, HEIGHT))
    assert (scan.angle_min, scan.angle_max) == pytest.approx((-ros.angle_max, -ros.angle_min))
    assert scan.angle_increment == pytest.approx(ros.angle_increment)
    np.testing.assert_allclose(np.asarray(scan.ranges), ros.ranges[::-1], rtol=1e-6)


# ---- the bench sections ------------------------------------------------------------------------------

def test_delivery_bench_prints_delivered_fractions_per_subscriber_kind(capsys):
    from mde_ros.commands.delivery import bench_delivery

    bench_delivery(argparse.Namespace(delivery_frames=5, delivery_sizes="160x120", delivery_profiles="node"))
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| 160x120 | node |")]
    assert [row.split("|")[3].strip() for row in rows] == [
        "reliable", "sensor_data", "node input (reliable, the default)", "node input (qos.reliability best_effort)"]
    reliable = rows[0].split("|")[4:8]
    assert all(float(cell) > 0 for cell in reliable), rows[0]  # every output topic reached the subscriber
    assert float(rows[2].split("|")[8]) > 0 and float(rows[3].split("|")[9]) > 0  # reliable / best-effort camera


def test_node_bench_section_runs_and_reports_late_frames_as_a_result(capsys):
    """A frame whose outputs take longer than --node-timeout is counted as missed, not raised
    (test_bench_node runs the section with real figures)."""
    import re

    from mde_ros.commands.bench_node import bench_node

    bench_node(argparse.Namespace(warmup=0, iters=2, node_timeout=0.0, node_sizes="160x120", model=TEST_MODEL))
    out = capsys.readouterr().out
    missed = re.findall(r"^160x120\s+(?:depth|all).*?(\d+)\s+(\d+)\s*$", out, re.M)
    assert missed == [("0", "2")] * 5, out


def test_launch_file_hands_its_fastdds_profile_argument_to_the_node_process():
    """launch_ros is not installed here: the Node action's additional_env is read from the syntax tree."""
    import ast

    tree = ast.parse((ROOT / "launch" / "depth.launch.py").read_text())
    nodes = [c for c in ast.walk(tree) if isinstance(c, ast.Call) and getattr(c.func, "id", None) == "Node"
             and any(k.arg == "executable" and getattr(k.value, "value", None) == "depth_node" for k in c.keywords)]
    assert len(nodes) == 1
    env = next(k.value for k in nodes[0].keywords if k.arg == "additional_env")
    assert [key.value for key in env.keys] == [fastdds.PROFILE_ENV]
    assert "fastdds_profile" in ast.unparse(env.values[0])
    declared = {c.args[0].value: c for c in ast.walk(tree) if isinstance(c, ast.Call)
                and getattr(c.func, "id", None) == "DeclareLaunchArgument" and isinstance(c.args[0], ast.Constant)}
    default = next(k.value.value for k in declared["fastdds_profile"].keywords if k.arg == "default_value")
    assert default == "auto"
