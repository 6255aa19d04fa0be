"""`mde-ros replay` with scale anchors: a rosbag2 bag (rosbags writer) holding Image, CameraInfo, Range
and PointCloud2 of a synthetic approach with exact depth, replayed with the shipped ONNX model whose
card output is scaled x2 (a real, deliberately mis-scaled model on onnxruntime)."""
import dataclasses
import json
import math

import numpy as np
import pytest

from mde_ros import cli
from mde_ros.bags.anchors import ReplayAnchors
from mde_ros.bags.fixtures import read_topic, image_array
from mde_ros.bags.io import stamp_ns, typestore, write_bag
from mde_ros.bags.messages import camera_info_msg, image_msg, make_header
from mde_ros.bags.replay import load_estimator, run_replay
from mde_ros.metrics import depth_metrics
from mde_ros.pipeline.anchor_inputs import AnchorSettings
from mde_ros.pipeline.anchoring import AnchoringConfig
from mde_ros.pipeline.outputs import pack_image
from mde_ros.pipeline.refine import RefineConfig
from mde_ros.synthetic import approach_sequence

IMAGE, INFO, RANGE, POINTS, TRUTH = ("/camera/color/image_raw", "/camera/color/camera_info", "/range",
                                     "/lidar/points", "/ground_truth/depth")
FRAME = "camera_color_optical_frame"
N_FRAMES, W, H = 6, 160, 120
START = 1_700_000_000 * 10**9
PERIOD = 100_000_000
FOV = 0.1
MODEL_FACTOR = 2.0


def range_reading(truth, intr):
    """The exact nearest distance inside a FOV cone along the optical axis (a rangefinder at the camera)."""
    u = (np.arange(W)[None, :] - intr.cx) / intr.fx
    v = (np.arange(H)[:, None] - intr.cy) / intr.fy
    dist = truth * np.sqrt(1 + u ** 2 + v ** 2)
    inside = 1 / np.sqrt(1 + u ** 2 + v ** 2) >= math.cos(FOV / 2)
    return float(np.nanmin(dist[inside]))


def cloud(header, xyz):
    types = typestore().types
    fields = [types["sensor_msgs/msg/PointField"](name=n, offset=4 * i, datatype=7, count=1) for i, n in enumerate("xyz")]
    data = np.frombuffer(np.asarray(xyz, "<f4").tobytes(), np.uint8)
    return types["sensor_msgs/msg/PointCloud2"](header=header, height=1, width=len(xyz), fields=fields,
                                                is_bigendian=False, point_step=12, row_step=12 * len(xyz), data=data,
                                                is_dense=True)


def range_msg(header, reading, limits=(0.1, 8.0)):
    return typestore().types["sensor_msgs/msg/Range"](header=header, radiation_type=1, field_of_view=FOV,
                                                       min_range=limits[0], max_range=limits[1], range=reading,
                                                       variance=0.0)


@pytest.fixture(scope="module")
def anchor_bag(tmp_path_factory):
    frames = approach_sequence(11, n_frames=N_FRAMES, width=W, height=H)
    rng = np.random.default_rng(0)
    records = []
    for i, frame in enumerate(frames):
        t = START + i * PERIOD
        header = make_header(t // 10**9, t % 10**9, FRAME)
        intr, truth = frame.intrinsics, frame.depth
        valid = np.argwhere(np.isfinite(truth))
        v, u = valid[rng.choice(len(valid), 20, replace=False)].T
        z = truth[v, u]
        xyz = np.stack([(u - intr.cx) / intr.fx * z, (v - intr.cy) / intr.fy * z, z], axis=1)
        # Bad ones, to be ignored: frame 0 gets a NaN reading, frame 1 one beyond max_range, every frame a
        # cloud in a frame nobody knows; frames 2.. get the exact reading.
        reading = {0: float("nan"), 1: 9.0}.get(i, range_reading(truth, intr))
        records += [(RANGE, t + 2_000_000, range_msg(make_header(t // 10**9, t % 10**9, "range_link"), reading)),
                    (POINTS, t + 2_500_000, cloud(make_header(t // 10**9, t % 10**9, "map"), xyz)),
                    (POINTS, t + 3_000_000, cloud(header, xyz)),
                    (INFO, t + 4_000_000, camera_info_msg(intr, header)),
                    (IMAGE, t + 5_000_000, image_msg(pack_image(frame.rgb, "rgb8"), header)),
                    (TRUTH, t + 6_000_000, image_msg(pack_image(truth, "32FC1"), header))]
    path = tmp_path_factory.mktemp("anchors") / "approach_anchored"
    return write_bag(path, "mcap", records)


@pytest.fixture(scope="module")
def misscaled():
    estimator = load_estimator(None, "onnxruntime")
    estimator.card = dataclasses.replace(estimator.card, output_scale=estimator.card.output_scale * MODEL_FACTOR)
    return estimator


def abs_rel(bag, truth):
    values = [depth_metrics(np.where(np.isfinite(image_array(m)), image_array(m), np.nan), truth[stamp_ns(m.header)])
              ["abs_rel"] for _, m, _ in read_topic(bag, "/camera/depth/image")]
    return float(np.mean(values))


def test_replay_anchors_a_misscaled_model_to_range_and_points(anchor_bag, misscaled, tmp_path):
    truth = ground_truth_of(anchor_bag)
    raw = run_replay(anchor_bag, tmp_path / "raw", estimator=misscaled, progress=False, image_topic=IMAGE)
    assert "scale" not in raw
    anchors = ReplayAnchors(range_topic=RANGE, points_topic=POINTS,
                            settings=AnchorSettings(range_frame="range_link", stamp_tolerance=0.05),
                            refine=RefineConfig(anchoring=AnchoringConfig(time_constant=0.0)))
    summary = run_replay(anchor_bag, tmp_path / "anchored", estimator=misscaled, progress=False, image_topic=IMAGE,
                         anchors=anchors, summary_path=tmp_path / "summary.json")
    scale = json.loads((tmp_path / "summary.json").read_text())["scale"]
    assert scale == json.loads(json.dumps(summary["scale"]))
    assert scale["frames_anchored"] == N_FRAMES
    # frames 0-1 have no usable reading; afterwards both sources, each gated on its own record (on this
    # approach the model's scale moves frame to frame, so one source may be left out of a frame)
    assert set(scale["sources"]) <= {"points", "range", "range+points"} and sum(scale["sources"].values()) == N_FRAMES
    assert scale["sources"].get("range+points", 0) >= N_FRAMES - 3 and "range" not in [
        f["source"] for f in scale["per_frame"][:2]]
    assert 0.3 < scale["factor"]["median"] < 0.8  # undoes most of the x2
    assert scale["regimes"] == {"anchored": N_FRAMES}
    assert scale["rejected"] == {"frame": N_FRAMES, "nan": 1, "range_limits": 1}  # never applied
    assert [f["anchors"] for f in scale["per_frame"]] == [20, 20] + [21] * (N_FRAMES - 2)
    raw_abs_rel, anchored_abs_rel = abs_rel(tmp_path / "raw", truth), abs_rel(tmp_path / "anchored", truth)
    assert raw_abs_rel > 0.5 and anchored_abs_rel < 0.5 * raw_abs_rel
    # depth/scale, as the node publishes it (the output table's row): one per image, the summary's factors
    assert "scale" not in raw["output_topics"] and summary["output_topics"]["scale"] == "/camera/depth/scale"
    written = read_topic(tmp_path / "anchored", "/camera/depth/scale")
    assert [stamp_ns(m.header) for _, m, _ in written] == [f["stamp_ns"] for f in scale["per_frame"]]
    for (_, msg, _), frame in zip(written, scale["per_frame"]):
        values = {kv.key: kv.value for kv in msg.status[0].values}
        assert msg.status[0].name == "scale" and values["regime"] == msg.status[0].message == frame["regime"]
        assert float(values["factor"]) == pytest.approx(frame["scale"], rel=1e-5)


def ground_truth_of(bag):
    return {stamp_ns(m.header): image_array(m) for _, m, _ in read_topic(bag, TRUTH)}


def test_replay_cli_with_anchors_temporal_and_confidence(anchor_bag, tmp_path, capsys):
    out = tmp_path / "cli"
    code = cli.main(["replay", str(anchor_bag), "--out", str(out), "--image-topic", IMAGE, "--no-progress",
                     "--backend", "onnxruntime", "--summary", str(tmp_path / "s.json"), "--range-topic", RANGE,
                     "--range-frame", "range_link", "--points-topic", POINTS, "--temporal", "--confidence",
                     "--confidence-threshold", "0.2"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "scale: 6 frames anchored" in printed
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["scale"]["temporal_filter"] and summary["scale"]["confidence_topic"] == "/camera/depth/confidence"
    confidence = read_topic(out, "/camera/depth/confidence")
    assert len(confidence) == N_FRAMES
    for _, msg, _ in confidence:
        values = image_array(msg)
        assert msg.encoding == "32FC1" and ((values >= 0) & (values <= 1)).all()
    for (_, depth, _), (_, conf, _) in zip(read_topic(out, "/camera/depth/image"), confidence):
        assert np.isnan(image_array(depth)[image_array(conf) < 0.2]).all()


@pytest.mark.parametrize("args, message", [
    (["--range-topic", "/nope"], "anchor topic /nope is not in the bag"),
    (["--range-topic", POINTS], "expected sensor_msgs/msg/Range"),
    (["--camera-height", "-1"], "--camera-height must be > 0"),
    (["--confidence-threshold", "0.5"], "needs the confidence enabled"),
])
def test_replay_cli_bad_anchor_options_are_one_line_errors(anchor_bag, tmp_path, capsys, args, message):
    code = cli.main(["replay", str(anchor_bag), "--out", str(tmp_path / "x"), "--image-topic", IMAGE,
                     "--no-progress", "--backend", "onnxruntime", *args])
    err = capsys.readouterr().err
    assert code != 0 and message in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()
