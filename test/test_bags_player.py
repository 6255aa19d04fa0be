"""The bag player on real rclpy publishers/subscribers, and a live DepthNode fed by it vs. offline replay."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from mde_ros.bags import fixtures
from mde_ros.bags.fixtures import CAMERA_INFO_TOPIC, GROUND_TRUTH_TOPIC, IMAGE_TOPIC, read_topic
from mde_ros.bags.io import BagError, deserialize, stamp_ns
from mde_ros.bags.player import play_bag
from mde_ros.ros.shutdown import BackgroundSpin

N_FRAMES = 6


@pytest.fixture(scope="module")
def bag(tmp_path_factory) -> Path:
    return fixtures.write_fixture_bag(tmp_path_factory.mktemp("in") / "approach", "mcap", n_frames=N_FRAMES)


@pytest.fixture(scope="module")
def ros():
    """A private context with one executor spinning in the background."""
    context = rclpy.Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    spinner = BackgroundSpin(executor)
    yield context, executor
    spinner.stop()
    rclpy.shutdown(context=context)


class Listener:
    """Raw (serialized) subscriptions that record what arrives and when."""

    def __init__(self, ros, topics: dict[str, type], reliable: bool = True) -> None:
        context, self.executor = ros
        self.node = rclpy.create_node(f"bag_test_listener_{id(self)}", context=context)
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE if reliable
                         else ReliabilityPolicy.BEST_EFFORT)
        self.received: dict[str, list[tuple[float, bytes]]] = {topic: [] for topic in topics}
        for topic, msg_type in topics.items():
            self.node.create_subscription(msg_type, topic, self._callback(topic), qos, raw=True)
        self.executor.add_node(self.node)

    def _callback(self, topic: str):
        return lambda data: self.received[topic].append((time.monotonic(), bytes(data)))

    def wait_for(self, topic: str, count: int, timeout: float = 5.0) -> list[tuple[float, bytes]]:
        deadline = time.monotonic() + timeout
        while len(self.received[topic]) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.received[topic]

    def close(self) -> None:
        self.executor.remove_node(self.node)
        self.node.destroy_node()


@pytest.fixture
def player(ros):
    node = rclpy.create_node("bag_test_player", context=ros[0])
    yield node
    node.destroy_node()


def test_every_message_is_published_unchanged_with_scaled_timing(bag, ros, player):
    listener = Listener(ros, {IMAGE_TOPIC: Image, CAMERA_INFO_TOPIC: CameraInfo})
    try:
        stats = play_bag(bag, node=player, rate=2.0, delay=0.5)
        assert stats.published == {IMAGE_TOPIC: N_FRAMES, CAMERA_INFO_TOPIC: N_FRAMES, GROUND_TRUTH_TOPIC: N_FRAMES}
        assert stats.loops == 1 and not stats.stopped
        images = listener.wait_for(IMAGE_TOPIC, N_FRAMES)
        infos = listener.wait_for(CAMERA_INFO_TOPIC, N_FRAMES)
    finally:
        listener.close()
    assert [data for _, data in images] == [data for _, _, data in read_topic(bag, IMAGE_TOPIC)]
    assert [data for _, data in infos] == [data for _, _, data in read_topic(bag, CAMERA_INFO_TOPIC)]
    recorded_span = (N_FRAMES - 1) * fixtures.PERIOD_NS / 1e9
    played_span = images[-1][0] - images[0][0]
    assert recorded_span / 2 * 0.8 < played_span < recorded_span  # rate 2: half the recorded spacing


def test_topics_remap_and_start_offset(bag, ros, player):
    listener = Listener(ros, {"/replayed/image": Image, IMAGE_TOPIC: Image})
    try:
        # The first image is received 5 ms after the bag starts (its CameraInfo): 0.25 s skips three.
        stats = play_bag(bag, node=player, topics=[IMAGE_TOPIC], remap={IMAGE_TOPIC: "/replayed/image"},
                         start_offset=0.25, rate=5.0, delay=0.5)
        replayed = listener.wait_for("/replayed/image", 3)
        time.sleep(0.2)
    finally:
        listener.close()
    assert stats.published == {IMAGE_TOPIC: 3}
    assert [data for _, data in replayed] == [data for _, _, data in read_topic(bag, IMAGE_TOPIC)[3:]]
    assert listener.received[IMAGE_TOPIC] == []


def test_loop_runs_until_stopped(bag, ros, player):
    listener = Listener(ros, {IMAGE_TOPIC: Image})
    stop = threading.Event()
    result = {}
    worker = threading.Thread(target=lambda: result.update(stats=play_bag(
        bag, node=player, topics=[IMAGE_TOPIC], rate=10.0, loop=True, delay=0.5, stop=stop)))
    worker.start()
    try:
        listener.wait_for(IMAGE_TOPIC, 2 * N_FRAMES + 1)
        stop.set()
        worker.join(timeout=2.0)
    finally:
        stop.set()
        listener.close()
    assert not worker.is_alive()
    stats = result["stats"]
    assert stats.stopped and stats.loops >= 2 and stats.published[IMAGE_TOPIC] > 2 * N_FRAMES
    assert IMAGE_TOPIC not in {publisher.topic_name for publisher in player.publishers}  # cleaned up


def test_bad_requests_are_refused(bag, player):
    with pytest.raises(BagError, match="not in") as err:
        play_bag(bag, node=player, topics=["/camera/nope"])
    assert IMAGE_TOPIC in str(err.value)
    with pytest.raises(ValueError, match="rate"):
        play_bag(bag, node=player, rate=0.0)


def test_cli_plays_with_its_own_node(bag, ros, capsys):
    from mde_ros.cli import main

    listener = Listener(ros, {"/cli/image": Image})
    try:
        code = main(["play", str(bag), "--topics", IMAGE_TOPIC, "--remap", f"{IMAGE_TOPIC}:=/cli/image",
                     "--rate", "5", "--delay", "1.5"])
        received = listener.wait_for("/cli/image", N_FRAMES)
    finally:
        listener.close()
    assert code == 0 and f"published {N_FRAMES} messages on 1 topics" in capsys.readouterr().out
    assert len(received) == N_FRAMES
    assert main(["play", str(bag), "--remap", "oops"]) == 2


def test_live_node_publishes_what_offline_replay_writes(bag, ros, player, tmp_path):
    """Same bag, same model and backend: the node's depth equals the replayed bag's, stamp by stamp."""
    from mde_ros.bags.replay import load_estimator, run_replay
    from mde_ros.ros.depth_node import DepthNode

    model = fixtures.export_test_model(tmp_path / "tiny.onnx")
    offline = run_replay(bag, tmp_path / "offline", model=model, backend="onnxruntime", progress=False)
    expected = {stamp_ns(m.header): m for _, m, _ in read_topic(tmp_path / "offline", offline["output_topics"]["depth"])}

    context, executor = ros
    node = DepthNode(estimator=load_estimator(model, "onnxruntime"), context=context, namespace="/camera")
    executor.add_node(node)
    listener = Listener(ros, {"/camera/depth/image": Image})
    try:
        # Slow playback: the node keeps only the newest frame, so it must never fall behind.
        play_bag(bag, node=player, topics=[IMAGE_TOPIC, CAMERA_INFO_TOPIC], rate=0.5, delay=1.0,
                 remap={IMAGE_TOPIC: "/camera/image", CAMERA_INFO_TOPIC: "/camera/camera_info"})
        live = listener.wait_for("/camera/depth/image", N_FRAMES, timeout=3.0)
    finally:
        listener.close()
        executor.remove_node(node)
        node.destroy_node()
    assert len(live) >= N_FRAMES - 1, "the node dropped frames at a slow playback rate"
    for _, data in live:
        msg = deserialize(data, "sensor_msgs/msg/Image")
        reference = expected[stamp_ns(msg.header)]
        assert msg.header.frame_id == reference.header.frame_id
        assert (msg.encoding, msg.height, msg.width) == (reference.encoding, reference.height, reference.width)
        assert bytes(msg.data) == bytes(reference.data)
