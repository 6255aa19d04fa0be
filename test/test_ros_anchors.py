"""Scale anchors in a live graph: a DepthNode fed by real rclpy publishers of Image, CameraInfo,
Range and PointCloud2; it publishes anchored depth, depth/confidence and /diagnostics over rclpy.

The model is mis-scaled on purpose: a test-double backend sees a wall 2 m away as 4 m (x2).
"""
import array
import collections
import dataclasses
import math
import time
from types import SimpleNamespace

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField, Range

from mde_ros.inference import Backend
from mde_ros.models.card import ModelCard
from mde_ros.pipeline.estimator import DepthEstimator
from mde_ros.ros.depth_node import DepthNode, StartupError
from mde_ros.ros.shutdown import BackgroundSpin

WIDTH, HEIGHT = 64, 48
FX, FY, CX, CY = 40.0, 40.0, 31.5, 23.5
TRUE_M, MODEL_FACTOR = 2.0, 2.0
FRAME = "camera_optical_frame"
CARD = ModelCard(name="wall", architecture="external", input_height=24, input_width=32, min_depth=0.1, max_depth=20.0)


class MisScaledWall(Backend):
    """Test double: a fronto-parallel wall at TRUE_M, reported x MODEL_FACTOR."""

    name = "mis-scaled-wall"

    def infer(self, batch):
        n, _, h, w = batch.shape
        return np.full((n, 1, h, w), TRUE_M * MODEL_FACTOR, np.float32)

    def describe(self):
        return {"backend": self.name, "device": "cpu", "precision": "fp32"}


def stamp(t):
    return rclpy.time.Time(nanoseconds=int(round(t * 1e9))).to_msg()


def image(t):
    rgb = np.random.default_rng(int(t * 1000)).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    msg = Image(height=HEIGHT, width=WIDTH, encoding="rgb8", step=WIDTH * 3, data=rgb.tobytes())
    msg.header.stamp, msg.header.frame_id = stamp(t), FRAME
    return msg


def info(t):
    msg = CameraInfo(width=WIDTH, height=HEIGHT, distortion_model="plumb_bob")
    msg.header.stamp, msg.header.frame_id = stamp(t), FRAME
    msg.k = [FX, 0.0, CX, 0.0, FY, CY, 0.0, 0.0, 1.0]
    msg.p = [FX, 0.0, CX, 0.0, 0.0, FY, CY, 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg


def range_msg(t, reading=TRUE_M, frame="range_link", limits=(0.1, 8.0)):
    msg = Range(radiation_type=Range.INFRARED, field_of_view=0.1, min_range=limits[0], max_range=limits[1],
                range=float(reading))
    msg.header.stamp, msg.header.frame_id = stamp(t), frame
    return msg


def cloud_msg(t, xyz, frame=FRAME):
    xyz = np.asarray(xyz, "<f4")
    msg = PointCloud2(height=1, width=len(xyz), is_bigendian=False, point_step=12, row_step=12 * len(xyz),
                      is_dense=True)
    msg.fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, n in enumerate("xyz")]
    msg.data = array.array("B", xyz.tobytes())
    msg.header.stamp, msg.header.frame_id = stamp(t), frame
    return msg


def wall_points(n=20, z=TRUE_M):
    rng = np.random.default_rng(0)
    u, v = rng.uniform(2, WIDTH - 3, n), rng.uniform(2, HEIGHT - 3, n)
    return np.stack([(u - CX) / FX * z, (v - CY) / FY * z, np.full(n, z)], axis=1)


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {predicate}")


class RelativeWall(Backend):
    """Test double with an affine-invariant output (relative inverse depth): 3 / TRUE_M - 0.2 everywhere."""

    name = "relative-wall"

    def infer(self, batch):
        n, _, h, w = batch.shape
        return np.full((n, 1, h, w), 3.0 / TRUE_M - 0.2, np.float32)

    def describe(self):
        return {"backend": self.name, "device": "cpu", "precision": "fp32"}


class Graph:
    def __init__(self, context, namespace, params, backend=None, card=CARD):
        overrides = [Parameter(k, value=v) for k, v in params.items()]
        self.node = DepthNode(estimator=DepthEstimator(backend or MisScaledWall(), card), context=context,
                              namespace=namespace, parameter_overrides=overrides)
        self.probe = rclpy.create_node("camera", namespace=namespace, context=context)
        self.fqn = f"/{namespace}/mde_depth"
        self.received = collections.defaultdict(list)
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        for topic, kind in (("depth/image", Image), ("depth/confidence", Image)):
            self.probe.create_subscription(kind, topic, lambda m, t=topic: self.received[t].append(m), reliable)
        self.probe.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, reliable)
        self.probe.create_subscription(DiagnosticArray, "depth/scale",
                                       lambda m: self.received["depth/scale"].append(m), reliable)
        self.pubs = {"image": self.probe.create_publisher(Image, "image", reliable),
                     "camera_info": self.probe.create_publisher(CameraInfo, "camera_info", reliable),
                     "range": self.probe.create_publisher(Range, "range", reliable),
                     "anchor_points": self.probe.create_publisher(PointCloud2, "anchor_points", reliable)}
        # The node on its own single-threaded executor (as rclpy.spin runs it), the probe on another.
        self.executors = [SingleThreadedExecutor(context=context), MultiThreadedExecutor(num_threads=2, context=context)]
        self.executors[0].add_node(self.node)
        self.executors[1].add_node(self.probe)
        self.spinners = [BackgroundSpin(e) for e in self.executors]
        wanted = ["image", "camera_info"] + [t for t, key in (("range", "scale.range.enabled"),
                                                              ("anchor_points", "scale.points.enabled")) if params.get(key)]
        wait_for(lambda: all(self.pubs[t].get_subscription_count() for t in wanted))

    def _on_diagnostics(self, msg):
        for status in msg.status:
            if status.name.startswith(self.fqn + ":"):
                self.received["diagnostics"].append({kv.key: kv.value for kv in status.values})

    def scale_for(self, t):
        """The depth/scale message for the image stamped t (once it arrived) as {key: value}."""
        return wait_for(lambda: next(({kv.key: kv.value for kv in m.status[0].values}
                                      for m in self.received["depth/scale"]
                                      if abs(m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 - t) < 1e-6), None))

    def frame(self, t, ranges=(), clouds=(), expect_depth=True):
        """Publish the anchors, then CameraInfo + image stamped t, until the depth for t arrives (or,
        with expect_depth=False, its depth/scale message)."""
        for _ in range(20):
            for msg in ranges:
                self.pubs["range"].publish(msg)
            for msg in clouds:
                self.pubs["anchor_points"].publish(msg)
            self.pubs["camera_info"].publish(info(t))
            # Anchors (and the CameraInfo that places them: the node does not wait for a camera's first
            # CameraInfo) are matched when the frame is processed: let them arrive first.
            time.sleep(0.05)
            self.pubs["image"].publish(image(t))
            try:
                if not expect_depth:
                    return self.scale_for(t)
                return wait_for(lambda: [m for m in self.received["depth/image"]
                                         if abs(m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 - t) < 1e-6],
                                timeout=0.5)[-1]
            except AssertionError:
                continue
        raise AssertionError(f"no depth for stamp {t}")

    def diagnostics(self, predicate):
        return wait_for(lambda: next((v for v in reversed(self.received["diagnostics"]) if predicate(v)), None))

    def close(self):
        for spinner in self.spinners:  # stopped before the nodes are destroyed
            spinner.stop()
        self.node.destroy_node()
        self.probe.destroy_node()


@pytest.fixture
def graph(rclpy_context, request):
    graphs = []

    def make(params, **kwargs):
        graphs.append(Graph(rclpy_context, f"anch_{request.node.name[5:30]}_{len(graphs)}", params, **kwargs))
        return graphs[-1]
    yield make
    for g in graphs:
        g.close()


def depth_of(msg):
    return np.frombuffer(msg.data, np.float32).reshape(msg.height, msg.width)


ANCHORED = {"scale.range.enabled": True, "scale.points.enabled": True, "scale.time_constant": 0.0,
            "scale.range.frame_id": "range_link"}


def test_range_and_points_fix_a_misscaled_model_live(graph):
    g = graph({**ANCHORED, "confidence.enabled": True})
    depth = g.frame(1.0, ranges=[range_msg(1.0)], clouds=[cloud_msg(1.0, wall_points())])
    np.testing.assert_allclose(depth_of(depth), TRUE_M, rtol=1e-3)  # 4 m from the model, anchored to 2 m
    values = g.diagnostics(lambda v: v.get("scale source") == "range+points")
    assert float(values["scale factor"]) == pytest.approx(1 / MODEL_FACTOR, rel=1e-3)
    assert values["scale anchors"] == "21" and 0 < float(values["scale confidence"]) <= 1
    confidence = wait_for(lambda: g.received["depth/confidence"])[-1]
    assert confidence.encoding == "32FC1" and confidence.header.frame_id == FRAME
    assert np.allclose(depth_of(confidence), 1.0)  # a uniform wall: the mirrored prediction agrees


def test_a_relative_model_publishes_metres_once_anchored(graph):
    card = dataclasses.replace(CARD, output="relative_inverse_depth")
    g = graph(ANCHORED, backend=RelativeWall(), card=card)
    depth = g.frame(1.5, ranges=[range_msg(1.5)])  # one reading: scale only (shift 0)
    np.testing.assert_allclose(depth_of(depth), TRUE_M, rtol=1e-3)


def test_points_in_another_frame_use_the_fixed_transform(graph):
    # A lidar 0.5 m behind the camera (its points are 0.5 m farther in its own frame).
    g = graph({"scale.points.enabled": True, "scale.time_constant": 0.0, "scale.points.frame_id": "lidar",
               "scale.points.transform": [0.0, 0.0, -0.5, 0.0, 0.0, 0.0, 1.0]})
    depth = g.frame(2.0, clouds=[cloud_msg(2.0, wall_points() + [0.0, 0.0, 0.5], frame="lidar")])
    np.testing.assert_allclose(depth_of(depth), TRUE_M, rtol=1e-3)


class Tf2RosStandIn:
    """STAND-IN for the tf2_ros module, which cannot be installed here (no PyPI wheel; the node
    feature-detects it). A Buffer answering fixed transforms as tf2's lookup_transform(target, source,
    time) does (TransformStamped-shaped: .transform.rotation x y z w, .transform.translation), raising
    for unknown frames, and a TransformListener that does nothing. It checks the node's side of the
    lookup (which frames, which stamp, quaternion order, the fall-back on a failed lookup); it says
    nothing about tf2 itself, which only a ROS install shows."""

    def __init__(self, transforms):
        standin = self

        class Buffer:
            def lookup_transform(self, target, source, time):
                standin.calls.append((target, source, time.nanoseconds))
                if (target, source) not in transforms:
                    raise LookupError(f"no transform {source} -> {target}")  # tf2's LookupException
                (x, y, z, w), (tx, ty, tz) = transforms[(target, source)]
                return SimpleNamespace(transform=SimpleNamespace(rotation=SimpleNamespace(x=x, y=y, z=z, w=w),
                                                                 translation=SimpleNamespace(x=tx, y=ty, z=tz)))

        class TransformListener:
            def __init__(self, buffer, node):
                standin.listeners.append(node)

        self.Buffer, self.TransformListener = Buffer, TransformListener
        self.calls, self.listeners = [], []


def test_points_in_another_frame_are_placed_through_tf_where_tf2_ros_imports(graph, monkeypatch):
    import mde_ros.ros.anchors as node_anchors

    # The lidar pitched 0.5 rad about the camera's x axis, 0.3 m to the side and 0.5 m behind: p_cam = R p_lidar + t
    # (a rotation that changes z, so a wrong quaternion order or a dropped rotation would show in the scale).
    angle = 0.5
    rotation = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(angle), -math.sin(angle)], [0.0, math.sin(angle), math.cos(angle)]])
    translation = np.array([0.3, 0.0, -0.5])
    tf2 = Tf2RosStandIn({(FRAME, "lidar"): ((math.sin(angle / 2), 0.0, 0.0, math.cos(angle / 2)), tuple(translation))})
    monkeypatch.setattr(node_anchors, "tf2_ros", tf2)
    g = graph({"scale.points.enabled": True, "scale.time_constant": 0.0})
    assert tf2.listeners == [g.node]
    in_lidar = (wall_points() - translation) @ rotation  # R^T (p - t), row-wise
    depth = g.frame(2.5, clouds=[cloud_msg(2.5, in_lidar, frame="lidar")])
    np.testing.assert_allclose(depth_of(depth), TRUE_M, rtol=1e-3)  # placed by TF, anchored to 2 m
    assert (FRAME, "lidar", int(2.5e9)) in tf2.calls  # looked up at the cloud's own stamp

    # A frame TF does not know, and no fixed pose for it: rejected (anchor_frame), never applied (taken
    # as camera-frame points they would scale the wall to 5 m); the factor TF gave is held meanwhile.
    before = g.node._stats.totals()[3]["anchor_frame"]
    depth = g.frame(3.0, clouds=[cloud_msg(3.0, wall_points(z=5.0), frame="map")])
    np.testing.assert_allclose(depth_of(depth), TRUE_M, rtol=1e-3)
    assert g.node._stats.totals()[3]["anchor_frame"] > before
    assert (FRAME, "map", int(3.0e9)) in tf2.calls


def test_bad_anchors_are_ignored_with_warnings_never_applied(graph):
    g = graph(ANCHORED)
    behind = wall_points(3) * [1.0, 1.0, -1.0]
    outside = np.array([[5.0, 0.0, 1.0]])
    cases = [  # (kind, ranges, clouds) for frames 3.0, 3.1, ...
        ("anchor_nan", [range_msg(0, reading=float("nan"))], [cloud_msg(0, [[np.nan, 0.0, 1.0]])]),
        ("anchor_negative", [range_msg(0, reading=-1.0)], []),
        ("anchor_range_limits", [range_msg(0, reading=9.5)], []),  # beyond max_range: no return
        ("anchor_frame", [range_msg(0, frame="sonar_7")], [cloud_msg(0, wall_points(), frame="map")]),
        ("anchor_behind_camera", [], [cloud_msg(0, behind)]),
        ("anchor_outside_image", [], [cloud_msg(0, outside)]),
        ("anchor_stamp", [range_msg(1.0)], []),  # stamped 5 s after the image
    ]
    for i, (kind, ranges, clouds) in enumerate(cases):
        t = 3.0 + 0.1 * i
        for msg in (*ranges, *clouds):
            msg.header.stamp = stamp(t if msg.header.stamp == stamp(0) else t + 5.0)
        depth = g.frame(t, ranges=ranges, clouds=clouds)
        np.testing.assert_array_equal(depth_of(depth), TRUE_M * MODEL_FACTOR)  # exactly the model's own metres
        problems = g.node._stats.totals()[3]
        assert problems[kind] >= 1, (kind, problems)
    values = g.diagnostics(lambda v: "scale factor" in v)
    assert values["scale factor"] == "1 (not anchored)" and values["scale anchors"] == "0"


def test_without_anchor_parameters_nothing_is_subscribed(graph):
    g = graph({})
    assert not g.node._anchors.active
    depth = g.frame(5.0, ranges=[range_msg(5.0)], clouds=[cloud_msg(5.0, wall_points())])
    np.testing.assert_array_equal(depth_of(depth), TRUE_M * MODEL_FACTOR)
    namespace = g.fqn.rsplit("/", 1)[0]
    for topic in ("range", "anchor_points"):
        assert not g.node.get_subscriptions_info_by_topic(f"{namespace}/{topic}")
    assert not g.node.get_publishers_info_by_topic(f"{namespace}/depth/confidence")


def test_bad_anchor_parameters_stop_the_start(rclpy_context):
    with pytest.raises(StartupError, match="scale.range.direction"):
        DepthNode(estimator=DepthEstimator(MisScaledWall(), CARD), context=rclpy_context, namespace="anch_bad",
                  parameter_overrides=[Parameter("scale.range.direction", value=[0.0, 0.0])])
    with pytest.raises(StartupError, match="confidence.threshold"):
        DepthNode(estimator=DepthEstimator(MisScaledWall(), CARD), context=rclpy_context, namespace="anch_bad2",
                  parameter_overrides=[Parameter("confidence.threshold", value=0.5)])


@pytest.mark.parametrize("choice", ["stop", "nan", "hold"])
def test_expired_anchors_follow_on_expiry_and_depth_scale_says_the_regime(graph, choice):
    """Anchored, then the rangefinder goes silent: held for scale.max_age, then on_expiry; never the
    model's own (2x wrong) metres. depth/scale carries each frame's regime, factor and error bound."""
    g = graph({**ANCHORED, "scale.max_age": 0.5, "scale.on_expiry": choice})
    depth = g.frame(10.0, ranges=[range_msg(10.0)])
    np.testing.assert_allclose(depth_of(depth), TRUE_M, rtol=1e-3)
    anchored = g.scale_for(10.0)
    assert anchored["regime"] == "anchored" and float(anchored["factor"]) == pytest.approx(0.5, rel=1e-3)
    assert 0 < float(anchored["error_bound"]) < 1 and anchored["source"] == "range"
    depth = g.frame(10.3)  # no anchor, younger than max_age: held
    np.testing.assert_allclose(depth_of(depth), TRUE_M, rtol=1e-3)
    held = g.scale_for(10.3)
    assert held["regime"] == "held" and float(held["error_bound"]) > float(anchored["error_bound"])
    if choice == "stop":
        expired = g.frame(11.0, expect_depth=False)
        assert expired["regime"] == "stopped"
        time.sleep(0.3)
        assert not [m for m in g.received["depth/image"] if m.header.stamp.sec == 11 and m.header.stamp.nanosec == 0]
    else:
        depth = g.frame(11.0)
        expired = g.scale_for(11.0)
        if choice == "nan":
            assert expired["regime"] == "invalid" and np.isnan(depth_of(depth)).all()
        else:
            assert expired["regime"] == "held"
            np.testing.assert_allclose(depth_of(depth), TRUE_M, rtol=1e-3)
    if choice != "hold":
        g.diagnostics(lambda v: v.get("scale regime") == expired["regime"])
        assert g.node._stats.totals()[3]["scale_expired"] >= 1
    depth = g.frame(11.5, ranges=[range_msg(11.5)])  # the rangefinder is back
    np.testing.assert_allclose(depth_of(depth), TRUE_M, rtol=1e-3)
    assert g.scale_for(11.5)["regime"] == "anchored"


def test_a_range_glitch_with_a_still_prediction_is_not_applied_live(graph):
    g = graph({**ANCHORED, "scale.time_constant": 0.5})
    for i in range(4):
        g.frame(20.0 + 0.1 * i, ranges=[range_msg(20.0 + 0.1 * i)])
    for i in range(4, 8):  # three times too far for four frames; the image and the prediction do not change
        t = 20.0 + 0.1 * i
        depth = g.frame(t, ranges=[range_msg(t, reading=3 * TRUE_M)])
        np.testing.assert_allclose(depth_of(depth), TRUE_M, rtol=0.02)
        assert g.scale_for(t)["event"] == "outlier"
