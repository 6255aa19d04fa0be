"""The depth node as a managed (lifecycle) node, driven by real lifecycle service calls from another node
(as nav2's lifecycle manager or `ros2 lifecycle set` drive it): configure loads the model and creates the
topics, activate starts publishing, deactivate stops, cleanup unloads, shutdown ends. rclpy.lifecycle has
the same API on Humble (checked against the humble branch of ros2/rclpy) and Jazzy (run here)."""
import collections
import os
import subprocess
import sys

import numpy as np
import pytest
import rclpy
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from mde_ros.pipeline.estimator import DepthEstimator
from mde_ros.processes import interrupt
from mde_ros.ros.depth_node import ManagedDepthNode
from mde_ros.ros.shutdown import BackgroundSpin
from test_ros_node import CARD, PLANE_M, ROOT, PlaneBackend, image_msg, info_msg, seconds_of, tiny_onnx_model, wait_for

RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


class Manager:
    """Another node: a camera, a depth subscriber, and the lifecycle clients of node `fqn`."""

    def __init__(self, context, namespace, fqn):
        self.node = rclpy.create_node("manager", namespace=namespace, context=context)
        self.received = collections.defaultdict(list)
        self.node.create_subscription(Image, "depth/image", lambda m: self.received["depth"].append(m), RELIABLE)
        self.image_pub = self.node.create_publisher(Image, "image", RELIABLE)
        self.info_pub = self.node.create_publisher(CameraInfo, "camera_info", RELIABLE)
        self.change = self.node.create_client(ChangeState, f"{fqn}/change_state")
        self.get = self.node.create_client(GetState, f"{fqn}/get_state")
        self.executor = MultiThreadedExecutor(2, context=context)
        self.executor.add_node(self.node)
        self.spinner = BackgroundSpin(self.executor)

    def call(self, client, request, timeout=30.0):
        assert client.wait_for_service(timeout_sec=timeout), f"no service {client.srv_name}"
        future = client.call_async(request)
        wait_for(future.done, timeout=timeout)
        return future.result()

    def state(self):
        return self.call(self.get, GetState.Request()).current_state.id

    def transition(self, transition_id):
        return self.call(self.change, ChangeState.Request(transition=Transition(id=transition_id))).success

    def depth_for(self, t, expect=True, attempts=20):
        """Publish the camera frame stamped t; its depth message (None when expect=False and none came)."""
        got = lambda: next((m for m in self.received["depth"] if abs(seconds_of(m.header) - t) < 1e-6), None)  # noqa: E731
        for _ in range(attempts if expect else 3):
            self.info_pub.publish(info_msg(t))
            self.image_pub.publish(image_msg(t))
            try:
                return wait_for(got, timeout=0.5)
            except AssertionError:
                continue
        assert not expect, f"no depth for {t}"
        return None

    def publishers(self, topic):
        return self.node.count_publishers(topic)

    def close(self):
        self.spinner.stop()
        self.node.destroy_node()


@pytest.fixture
def managed(rclpy_context, request):
    made = []

    def make(params, estimator="plane"):
        namespace = f"lc_{request.node.name[5:28]}_{len(made)}"
        est = DepthEstimator(PlaneBackend(), CARD) if estimator == "plane" else None
        node = ManagedDepthNode(estimator=est, context=rclpy_context, namespace=namespace,
                                parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
        executor = SingleThreadedExecutor(context=rclpy_context)
        executor.add_node(node)
        spinner = BackgroundSpin(executor)  # the node spins before its manager starts, as before
        manager = Manager(rclpy_context, namespace, node.get_fully_qualified_name())
        made.append((node, spinner, manager))
        return node, manager
    yield make
    for node, spinner, manager in made:
        manager.close()
        spinner.stop()
        node.destroy_node()


def test_configure_activate_deactivate_cleanup_from_another_node(managed):
    node, m = managed({"lifecycle": True})
    assert m.state() == State.PRIMARY_STATE_UNCONFIGURED
    assert node._estimator is None and m.publishers("depth/image") == 0  # nothing loaded, no topics yet

    assert m.transition(Transition.TRANSITION_CONFIGURE)
    assert m.state() == State.PRIMARY_STATE_INACTIVE
    assert node._estimator is not None
    wait_for(lambda: m.publishers("depth/image") == 1)
    assert m.depth_for(1.0, expect=False) is None  # configured, not active: no output

    assert m.transition(Transition.TRANSITION_ACTIVATE)
    assert m.state() == State.PRIMARY_STATE_ACTIVE
    depth = m.depth_for(2.0)
    np.testing.assert_allclose(np.frombuffer(depth.data, np.float32), PLANE_M, rtol=1e-6)

    assert m.transition(Transition.TRANSITION_DEACTIVATE)
    assert m.state() == State.PRIMARY_STATE_INACTIVE
    assert m.depth_for(3.0, expect=False) is None
    assert m.transition(Transition.TRANSITION_ACTIVATE)  # and back, with the model still loaded
    m.depth_for(4.0)

    assert m.transition(Transition.TRANSITION_DEACTIVATE)
    assert m.transition(Transition.TRANSITION_CLEANUP)
    assert m.state() == State.PRIMARY_STATE_UNCONFIGURED
    assert node._estimator is None
    wait_for(lambda: m.publishers("depth/image") == 0)  # outputs removed with the model

    assert m.transition(Transition.TRANSITION_CONFIGURE)  # a second life
    assert m.transition(Transition.TRANSITION_ACTIVATE)
    m.depth_for(5.0)
    assert m.transition(Transition.TRANSITION_ACTIVE_SHUTDOWN)
    assert m.state() == State.PRIMARY_STATE_FINALIZED


def test_a_model_that_cannot_load_fails_configure_and_stays_unconfigured(managed):
    node, m = managed({"lifecycle": True, "model": "/nonexistent/model.onnx"}, estimator=None)
    assert m.state() == State.PRIMARY_STATE_UNCONFIGURED  # constructing did not try to load it
    assert not m.transition(Transition.TRANSITION_CONFIGURE)
    assert m.state() == State.PRIMARY_STATE_UNCONFIGURED and node._estimator is None


def test_without_lifecycle_the_node_starts_active_and_offers_no_lifecycle_services(managed):
    node, m = managed({})
    m.depth_for(1.0)
    services = dict(node.get_service_names_and_types_by_node(node.get_name(), node.get_namespace()))
    assert not any(name.endswith("/change_state") for name in services)


def test_the_node_process_waits_for_its_lifecycle_manager(rclpy_context, tmp_path):
    """`mde-ros node` / `ros2 run ... --ros-args -p lifecycle:=true`, driven like nav2 drives it."""
    model = tiny_onnx_model(tmp_path, 3.0)
    process = subprocess.Popen([sys.executable, "-m", "mde_ros.ros.depth_node", "--ros-args", "--params-file",
                                str(ROOT / "config" / "depth.yaml"), "-p", f"model:={model}", "-p",
                                "backend:=onnxruntime", "-p", "lifecycle:=true", "-r", "__ns:=/lc_proc"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ))
    m = Manager(rclpy_context, "lc_proc", "/lc_proc/mde_depth")
    try:
        assert m.state() == State.PRIMARY_STATE_UNCONFIGURED
        assert m.transition(Transition.TRANSITION_CONFIGURE)
        assert m.transition(Transition.TRANSITION_ACTIVATE)
        depth = m.depth_for(1.0, attempts=60)
        np.testing.assert_allclose(np.frombuffer(depth.data, np.float32), 3.0, rtol=1e-6)
        assert m.transition(Transition.TRANSITION_DEACTIVATE)
        assert m.transition(Transition.TRANSITION_CLEANUP)
        assert process.poll() is None
    finally:
        m.close()
        output = interrupt(process)
    assert process.returncode == 0, output
    assert "unknown parameter" not in output and "Traceback" not in output, output
