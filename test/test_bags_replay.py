"""Offline replay: a real bag through the real pipeline (tiny ONNX model on onnxruntime) into a real bag."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from mde_ros.bags import fixtures
from mde_ros.bags.fixtures import CAMERA_INFO_TOPIC, FRAME_ID, IMAGE_TOPIC, image_array, read_topic
from mde_ros.bags.io import (BagError, ConnectionCopier, bag_storage, create_writer, deserialize, open_reader,
                             stamp_ns, topic_counts, typestore, write_bag)
from mde_ros.bags.messages import intrinsics_from_camera_info
from mde_ros.bags.replay import load_estimator, run_replay
from mde_ros.pipeline.outputs import OutputConfig, build_outputs

N_FRAMES = 6
OUTPUTS = {"depth": "/camera/depth/image", "depth_camera_info": "/camera/depth/camera_info",
           "points": "/camera/points", "scan": "/camera/scan", "colorized": "/camera/depth/colorized"}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return fixtures.export_test_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="module")
def estimator(model):
    return load_estimator(model, "onnxruntime")


@pytest.fixture(scope="module", params=["mcap", "sqlite3"])
def bag(request, tmp_path_factory) -> Path:
    return fixtures.write_fixture_bag(tmp_path_factory.mktemp("in") / f"approach_{request.param}", request.param,
                                      n_frames=N_FRAMES)


def _rewrite(src: Path, dst: Path, keep: Callable[[str, int, bytes], bytes | None]) -> Path:
    """Copy a bag message by message; `keep(topic, index on topic, data)` returns the data to write or None."""
    writer = create_writer(dst, bag_storage(src))
    copy = ConnectionCopier(writer)
    seen: dict[str, int] = {}
    with open_reader(src) as reader:
        for conn, timestamp, data in reader.messages():
            index = seen[conn.topic] = seen.get(conn.topic, -1) + 1
            new = keep(conn.topic, index, bytes(data))
            if new is not None:
                writer.write(copy(conn), timestamp, new)
    writer.close()
    return dst


def _rebuild(src: Path, dst: Path, edit: Callable[[str, object], tuple[str, object] | None]) -> Path:
    """A new bag from decoded messages: `edit(topic, msg)` returns the (topic, msg) to write or None."""
    def records():
        with open_reader(src) as reader:
            for conn, timestamp, data in reader.messages():
                edited = edit(conn.topic, deserialize(data, conn.msgtype))
                if edited is not None:
                    yield edited[0], timestamp, edited[1]
    return write_bag(dst, bag_storage(src), records())


def test_replay_adds_the_node_outputs_and_keeps_the_input(bag, estimator, tmp_path):
    out = tmp_path / "out"
    summary = run_replay(bag, out, estimator=estimator, summary_path=tmp_path / "summary.json", progress=False)

    assert bag_storage(out) == bag_storage(bag)
    counts = topic_counts(out)
    assert {name: counts[name] for name in OUTPUTS.values()} == {name: N_FRAMES for name in OUTPUTS.values()}
    for topic in (IMAGE_TOPIC, CAMERA_INFO_TOPIC, fixtures.GROUND_TRUTH_TOPIC):  # copied unchanged
        assert [(t, d) for t, _, d in read_topic(out, topic)] == [(t, d) for t, _, d in read_topic(bag, topic)]

    images = read_topic(bag, IMAGE_TOPIC)
    for topic in OUTPUTS.values():
        published = read_topic(out, topic)
        assert [t for t, _, _ in published] == [t for t, _, _ in images]  # the image's receive time
        assert [stamp_ns(m.header) for _, m, _ in published] == [stamp_ns(m.header) for _, m, _ in images]
        # images and cloud in the camera's optical frame, the scan in its body twin (REP 103), as the node
        frame = "camera_color_frame" if topic == OUTPUTS["scan"] else FRAME_ID
        assert {m.header.frame_id for _, m, _ in published} == {frame}

    depth = image_array(read_topic(out, OUTPUTS["depth"])[-1][1])
    assert depth.shape == (fixtures.HEIGHT, fixtures.WIDTH) and depth.dtype == np.float32
    assert np.isfinite(depth).mean() > 0.9
    source_info = read_topic(bag, CAMERA_INFO_TOPIC)[0][1]
    depth_info = read_topic(out, OUTPUTS["depth_camera_info"])[0][1]
    assert np.array_equal(depth_info.k, source_info.k) and depth_info.distortion_model == "plumb_bob"
    cloud = read_topic(out, OUTPUTS["points"])[0][1]
    assert (cloud.height, cloud.width) == (fixtures.HEIGHT, fixtures.WIDTH)
    assert len(read_topic(out, OUTPUTS["scan"])[0][1].ranges) == fixtures.WIDTH

    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert summary["frames_in_bag"] == summary["frames"] == summary["processed"] == N_FRAMES
    assert summary["dropped"] == 0
    assert summary["image_topic"] == IMAGE_TOPIC and summary["camera_info_topic"] == CAMERA_INFO_TOPIC
    assert summary["output_topics"] == OUTPUTS
    assert (summary["model"], summary["backend"]) == ("tiny_test_depth", "onnxruntime")
    assert summary["skipped"] == {} and summary["outputs_skipped"] == {} and summary["read_error"] is None
    assert summary["throughput_fps"] > 0
    for stage in ("decode", "preprocess", "network", "postprocess", "depth", "cloud", "scan", "write", "total"):
        p = summary["latency_ms"][stage]
        assert 0 <= p["p50"] <= p["p90"] <= p["p99"]


def test_replay_runs_the_same_pipeline_as_the_node(bag, estimator, tmp_path):
    """Each depth message is exactly DepthEstimator.estimate + build_outputs of the recorded frame."""
    out = tmp_path / "out"
    run_replay(bag, out, estimator=estimator, progress=False)
    infos = {stamp_ns(m.header): m for _, m, _ in read_topic(bag, CAMERA_INFO_TOPIC)}
    for (_, image, _), (_, depth_msg, _) in zip(read_topic(bag, IMAGE_TOPIC), read_topic(out, OUTPUTS["depth"])):
        rgb = image_array(image)
        intr = intrinsics_from_camera_info(infos[stamp_ns(image.header)], rgb.shape[1], rgb.shape[0])
        expected = build_outputs(estimator.estimate(rgb, intr), rgb, OutputConfig(), estimator.min_depth,
                                 estimator.max_depth)
        assert bytes(depth_msg.data) == bytes(expected.depth.data)


def test_replay_is_deterministic(bag, model, tmp_path):
    """Same bag + model + backend -> identical message bytes (fresh sessions, one intra-op thread)."""
    outs = []
    for run in ("a", "b"):
        run_replay(bag, tmp_path / run, model=model, backend="onnxruntime", progress=False)
        outs.append({topic: [(t, d) for t, _, d in read_topic(tmp_path / run, topic)] for topic in OUTPUTS.values()})
    assert outs[0] == outs[1]


def test_output_storage_prefix_and_16bit_depth_can_be_chosen(bag, estimator, tmp_path):
    other = "sqlite3" if bag_storage(bag) == "mcap" else "mcap"
    config = OutputConfig(depth_encoding="16UC1", cloud_enabled=False, scan_enabled=False)
    summary = run_replay(bag, tmp_path / "out", estimator=estimator, storage=other, output_prefix="/mde",
                         output_config=config, progress=False)
    assert bag_storage(tmp_path / "out") == other
    counts = topic_counts(tmp_path / "out")
    assert counts["/mde/depth/image"] == N_FRAMES and counts["/mde/points"] == 0 and counts["/mde/scan"] == 0
    depth = read_topic(tmp_path / "out", "/mde/depth/image")[0][1]
    assert depth.encoding == "16UC1" and image_array(depth).max() > 0
    assert summary["outputs_skipped"] == {}


def test_output_topics_that_exist_in_the_input_are_refused(bag, estimator, tmp_path):
    """A RealSense bag has its own /camera/depth/camera_info: no silent mixing of two depth sources."""
    # Re-publish the colour CameraInfo as the camera's "own" depth CameraInfo.
    realsense = tmp_path / "realsense"
    writer = create_writer(realsense, bag_storage(bag))
    copy = ConnectionCopier(writer)
    with open_reader(bag) as reader:
        for conn, timestamp, data in reader.messages():
            writer.write(copy(conn), timestamp, data)
            if conn.topic == CAMERA_INFO_TOPIC:
                writer.write(copy(conn._replace(topic="/camera/depth/camera_info")), timestamp, data)
    writer.close()
    with pytest.raises(BagError, match="--output-prefix") as err:
        run_replay(realsense, tmp_path / "out", estimator=estimator, progress=False)
    assert "/camera/depth/camera_info" in str(err.value)
    assert not (tmp_path / "out").exists()
    summary = run_replay(realsense, tmp_path / "out", estimator=estimator, output_prefix="/mde", progress=False)
    assert summary["processed"] == N_FRAMES


def test_a_missing_topic_names_the_topics_present(bag, estimator, tmp_path):
    with pytest.raises(BagError, match="/camera/rgb/image_raw is not in the bag") as err:
        run_replay(bag, tmp_path / "out", estimator=estimator, image_topic="/camera/rgb/image_raw", progress=False)
    assert IMAGE_TOPIC in str(err.value) and fixtures.GROUND_TRUTH_TOPIC in str(err.value)
    assert not (tmp_path / "out").exists()


def test_a_corrupt_message_is_skipped_and_counted(bag, estimator, tmp_path, caplog):
    damaged = _rewrite(bag, tmp_path / "damaged",
                       lambda topic, i, data: data[: len(data) // 2] if topic == IMAGE_TOPIC and i == 2 else data)
    with caplog.at_level(logging.WARNING, logger="mde_ros.bags.replay"):
        summary = run_replay(damaged, tmp_path / "out", estimator=estimator, progress=False)
    assert summary["frames"] == N_FRAMES and summary["processed"] == N_FRAMES - 1
    assert summary["skipped"] == {"corrupt_message": 1} and summary["dropped"] == 1
    assert "corrupt image" in caplog.text
    counts = topic_counts(tmp_path / "out")
    assert counts[IMAGE_TOPIC] == N_FRAMES  # the damaged message is still copied as recorded
    assert counts[OUTPUTS["depth"]] == N_FRAMES - 1
    skipped_stamp = [t for t, _, _ in read_topic(bag, IMAGE_TOPIC)][2]
    assert skipped_stamp not in [t for t, _, _ in read_topic(tmp_path / "out", OUTPUTS["depth"])]


def test_images_without_camera_info_still_get_depth(bag, estimator, tmp_path):
    no_info = _rewrite(bag, tmp_path / "no_info", lambda topic, i, data: None if topic == CAMERA_INFO_TOPIC else data)
    summary = run_replay(no_info, tmp_path / "out", estimator=estimator, progress=False)
    assert summary["camera_info_topic"] is None
    assert summary["processed"] == N_FRAMES and summary["outputs_skipped"] == {"no_camera_info": N_FRAMES}
    counts = topic_counts(tmp_path / "out")
    assert counts[OUTPUTS["depth"]] == counts[OUTPUTS["colorized"]] == N_FRAMES
    assert counts[OUTPUTS["points"]] == counts[OUTPUTS["scan"]] == counts[OUTPUTS["depth_camera_info"]] == 0


def test_compressed_images_are_replayed(bag, estimator, tmp_path):
    import cv2

    def to_jpeg(topic, msg):
        if topic != IMAGE_TOPIC:
            return topic, msg
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image_array(msg), cv2.COLOR_RGB2BGR))
        assert ok
        compressed = typestore().types["sensor_msgs/msg/CompressedImage"](
            header=msg.header, format="rgb8; jpeg compressed bgr8", data=jpeg.ravel())
        return IMAGE_TOPIC + "/compressed", compressed

    compressed = _rebuild(bag, tmp_path / "jpeg", to_jpeg)
    summary = run_replay(compressed, tmp_path / "out", estimator=estimator, progress=False)
    assert summary["image_topic"] == IMAGE_TOPIC + "/compressed"
    assert summary["camera_info_topic"] == CAMERA_INFO_TOPIC and summary["processed"] == N_FRAMES
    assert topic_counts(tmp_path / "out")[OUTPUTS["points"]] == N_FRAMES


def test_camera_info_is_paired_within_the_sync_tolerance(bag, estimator, tmp_path):
    """As the node does: the CameraInfo must be stamped within sync_tolerance of the image (here 20 ms off)."""
    def shift(topic, msg):
        if topic == CAMERA_INFO_TOPIC:
            msg.header.stamp.nanosec += 20_000_000
        return topic, msg

    shifted = _rebuild(bag, tmp_path / "shifted", shift)
    strict = run_replay(shifted, tmp_path / "strict", estimator=estimator, sync_tolerance=0.01, progress=False)
    assert strict["outputs_skipped"] == {"camera_info_unsynced": N_FRAMES}
    assert topic_counts(tmp_path / "strict")[OUTPUTS["points"]] == 0
    loose = run_replay(shifted, tmp_path / "loose", estimator=estimator, progress=False)  # default 0.05 s
    assert loose["outputs_skipped"] == {} and topic_counts(tmp_path / "loose")[OUTPUTS["points"]] == N_FRAMES


def test_a_truncated_mcap_is_a_clear_error(tmp_path, estimator):
    bag = fixtures.write_fixture_bag(tmp_path / "cut", "mcap", n_frames=3)
    mcap = next(bag.glob("*.mcap"))
    os.truncate(mcap, mcap.stat().st_size - 1000)
    with pytest.raises(BagError, match="truncated or corrupt") as err:
        run_replay(bag, tmp_path / "out", estimator=estimator, progress=False)
    assert str(bag) in str(err.value) and "mcap recover" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_a_corrupt_db3_still_replays_its_readable_messages(tmp_path, estimator, caplog):
    bag = fixtures.write_fixture_bag(tmp_path / "db", "sqlite3", n_frames=12)
    db3 = next(bag.glob("*.db3"))
    size = db3.stat().st_size
    with db3.open("r+b") as f:  # wipe pages in the second half: later messages become unreadable
        f.seek(int(size * 0.6))
        f.write(b"\xa5" * 16384)
    with caplog.at_level(logging.WARNING, logger="mde_ros.bags.replay"):
        summary = run_replay(bag, tmp_path / "out", estimator=estimator, progress=False)
    assert summary["read_error"] and "malformed" in summary["read_error"]
    assert summary["frames_in_bag"] == 12 and 0 < summary["processed"] < 12
    assert "damaged part of the bag" in caplog.text
    assert topic_counts(tmp_path / "out")[OUTPUTS["depth"]] == summary["processed"]


def test_cli_replays_and_reports(bag, model, tmp_path, capsys):
    from mde_ros.cli import main

    out, summary = tmp_path / "cli_out", tmp_path / "cli.json"
    code = main(["replay", str(bag), "--out", str(out), "--model", str(model), "--backend", "onnxruntime",
                 "--no-progress", "--summary", str(summary), "--no-colorized"])
    assert code == 0
    assert f"{N_FRAMES}/{N_FRAMES} frames -> {out}" in capsys.readouterr().out
    assert topic_counts(out)[OUTPUTS["colorized"]] == 0
    assert json.loads(summary.read_text())["processed"] == N_FRAMES
    assert main(["replay", str(tmp_path / "nope"), "--model", str(model), "--no-progress"]) == 1
    assert "bag not found" in capsys.readouterr().err


def test_replay_records_the_node_health_findings(bag, model, tmp_path):
    """The node's per-frame health (pipeline.health, via the shared frame step) lands in the summary: a
    depth range the scene is mostly outside of is `depth_mostly_invalid` on every frame."""
    from mde_ros.pipeline.estimator import EstimatorConfig
    from mde_ros.pipeline.health import frame_findings

    narrow = load_estimator(model, "onnxruntime", config=EstimatorConfig(min_depth=0.1, max_depth=0.2))
    summary = run_replay(bag, tmp_path / "out", estimator=narrow, progress=False)
    assert summary["findings"] == {"depth_mostly_invalid": N_FRAMES}
    assert summary["valid_fraction"]["mean"] < 0.5
    assert any("depth_mostly_invalid" in w for w in summary["warnings"])
    # ... and exactly the node's finding for the same depth
    depth = image_array(read_topic(tmp_path / "out", OUTPUTS["depth"])[0][1])
    fraction, findings = frame_findings(depth, 0.1, 0.2, 1.0, None, narrow.card)
    assert [f.kind for f in findings] == ["depth_mostly_invalid"]

    normal = run_replay(bag, tmp_path / "normal", estimator=load_estimator(model, "onnxruntime"), progress=False)
    assert normal["findings"] == {} and normal["valid_fraction"]["mean"] > 0.9


def test_a_new_output_is_one_row_of_the_output_table(bag, estimator, tmp_path, monkeypatch):
    """Issue 19's measure: an output = its algorithm + one OUTPUTS row (+ an adapter for a new message type).
    A row added here (a mono8 mask of usable depth) reaches the replayed bag with no other change."""
    from mde_ros.pipeline import outputs

    def valid_mask(frame):
        return outputs.pack_image((np.isfinite(frame.marked) * 255).astype(np.uint8), "mono8")

    row = outputs.OutputSpec("valid_mask", "depth/valid_mask", outputs.IMAGE, "image", valid_mask, "usable depth")
    monkeypatch.setattr(outputs, "OUTPUTS", (*outputs.OUTPUTS, row))
    monkeypatch.setitem(outputs.BY_KEY, row.key, row)
    summary = run_replay(bag, tmp_path / "out", estimator=estimator, progress=False)
    assert summary["output_topics"]["valid_mask"] == "/camera/depth/valid_mask"
    masks = read_topic(tmp_path / "out", "/camera/depth/valid_mask")
    depths = read_topic(tmp_path / "out", OUTPUTS["depth"])
    assert len(masks) == len(depths) == N_FRAMES
    for (_, mask, _), (_, depth, _) in zip(masks, depths):
        assert mask.encoding == "mono8" and mask.header == depth.header
        assert np.array_equal(np.asarray(mask.data).reshape(depth.height, depth.width) > 0,
                              np.isfinite(image_array(depth)))


def test_the_writer_thread_hands_a_write_error_to_the_reading_loop_without_blocking():
    """A writer that fails (stand-in for a full disk; the real one is test_bags_interrupted's file size
    limit) stops the writing: the next put raises its error, close() drains and raises it, never hangs."""
    from mde_ros.bags.replay import _Stats, _WriterThread

    class FailingWriter:  # stand-in: a storage that fails on its third write
        def __init__(self):
            self.written = 0

        def write(self, conn, timestamp, data):
            self.written += 1
            if self.written == 3:
                raise OSError(28, "No space left on device")

    writer = FailingWriter()
    sink = _WriterThread(writer, lambda conn: conn, _Stats())
    with pytest.raises(OSError, match="No space"):
        for i in range(10 * _WriterThread.QUEUE_ITEMS):
            sink.copy("conn", i, b"x")
    with pytest.raises(OSError, match="No space"):
        sink.close()
    assert writer.written == 3
