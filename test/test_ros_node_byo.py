"""The depth node with bring-your-own ONNX exports (real onnxruntime, real rclpy): a relative model
publishes only `depth/relative`, never metres; a Depth-Anything-3 (ika layout) sky output becomes +Inf
(REP 117) or NaN as the `sky_depth` parameter says."""
import numpy as np
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

import byo_exports as bx
from mde_ros.modelfiles import load_estimator
from mde_ros.models.presets import card_for_preset
from mde_ros.models.card import card_path_for
from test_ros_node import HEIGHT, WIDTH, depth_array, rig, stamp_of  # noqa: F401  (rig is a fixture)


def load(path, preset):
    card_for_preset(preset, path).save(card_path_for(path))
    return load_estimator(path, backend="onnxruntime", intra_op_threads=1)


def listen(r, topic):
    reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    r.probe.create_subscription(Image, topic, lambda m: r.received[topic].append(m), reliable)


def sky_image(t):
    rgb = np.full((HEIGHT, WIDTH, 3), 120, np.uint8)
    rgb[:HEIGHT // 3] = (90, 160, 235)
    msg = Image(height=HEIGHT, width=WIDTH, encoding="rgb8", step=WIDTH * 3, data=rgb.tobytes())
    msg.header.stamp, msg.header.frame_id = stamp_of(t), "camera_optical_frame"
    return msg


def test_a_relative_model_publishes_depth_relative_and_no_metres(rig, tmp_path):
    est = load(bx.export_midas_small(tmp_path / "model-small.onnx", size=(64, 64)), "midas-v2.1-small")
    r = rig(backend=est.backend, card=est.card)
    listen(r, "depth/relative")
    r.exchange(1.0, need=("depth/relative",))
    msg = r.with_stamp("depth/relative", 1.0)[-1]
    assert (msg.encoding, msg.width, msg.height, msg.header.frame_id) == ("32FC1", WIDTH, HEIGHT,
                                                                          "camera_optical_frame")
    relative = depth_array(msg)
    assert np.isfinite(relative).all() and relative.std() > 0
    r.exchange(2.0, need=("depth/relative",))
    for topic in ("depth/image", "points", "scan"):
        assert not r.received[topic], f"{topic} published metres from a relative model"


@pytest.mark.parametrize("sky_depth, check", [("too_far", np.isposinf), ("invalid", np.isnan)])
def test_the_sky_output_marks_depth_as_the_parameter_says(rig, tmp_path, sky_depth, check):
    est = load(bx.export_da3_ika(tmp_path / "DA3METRIC-LARGE.onnx", size=(28, 42)), "depth-anything-3-metric-ika")
    r = rig(backend=est.backend, card=est.card, params={"sky_depth": sky_depth})
    out = r.exchange(3.0, image=sky_image(3.0))
    depth = depth_array(out["depth/image"])
    assert check(depth[:HEIGHT // 3 - 3, 3:-3]).all()  # the stand-in's sky head blurs the image border
    assert not check(depth[HEIGHT // 3 + 3:]).any()


def test_a_card_that_does_not_fit_its_model_stops_the_node_with_one_clear_message(tmp_path):
    from test_ros_node import start_node_process

    path = bx.export_da3_ika(tmp_path / "DA3METRIC-LARGE.onnx", size=(28, 42))
    card = card_for_preset("depth-anything-3-metric-ika", path)
    card.sky_output = "sky_mask"
    card.save(card_path_for(path))
    process = start_node_process("-p", f"model:={path}", "-p", "backend:=onnxruntime")
    output, _ = process.communicate(timeout=30)
    assert process.returncode != 0
    assert "sky_output 'sky_mask'" in output and "Traceback" not in output
