"""rosbag2 reading/writing with the real rosbags Reader/Writer, topic auto-detection, bad bags."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from mde_ros.bags.io import (BagError, OutputTopics, bag_storage, create_writer, deserialize, detect_topics,
                             list_topics, open_reader, stamp_ns, write_bag)
from mde_ros.bags.messages import camera_info_msg, image_msg, make_header
from mde_ros.pipeline.intrinsics import Intrinsics
from mde_ros.pipeline.outputs import pack_image

STAMP = 1_700_000_000


def _image(encoding: str, stamp: int, frame: str = "cam", width: int = 8, height: int = 6):
    arrays = {"rgb8": np.full((height, width, 3), stamp % 251, np.uint8), "mono8": np.zeros((height, width), np.uint8),
              "16UC1": np.full((height, width), 1234, "<u2"), "32FC1": np.full((height, width), 1.5, "<f4")}
    return image_msg(pack_image(arrays[encoding], encoding), make_header(stamp, 250, frame))


def _info(stamp: int, frame: str = "cam"):
    return camera_info_msg(Intrinsics(7.0, 7.0, 3.5, 2.5, 8, 6), make_header(stamp, 250, frame))


def _compressed(stamp: int):
    import cv2

    ok, jpeg = cv2.imencode(".jpg", np.zeros((6, 8, 3), np.uint8))
    assert ok
    from mde_ros.bags.io import typestore

    return typestore().types["sensor_msgs/msg/CompressedImage"](
        header=make_header(stamp, 0, "cam"), format="rgb8; jpeg compressed bgr8", data=jpeg.ravel())


def _bag(path: Path, topics: dict[str, str], storage: str = "mcap", frames: int = 2) -> Path:
    """A bag with `frames` messages per topic; topics: name -> encoding, 'info' or 'compressed'."""
    def records():
        for i in range(frames):
            for name, kind in topics.items():
                stamp = STAMP + i
                msg = (_info(stamp) if kind == "info" else _compressed(stamp) if kind == "compressed"
                       else _image(kind, stamp))
                yield name, stamp * 1_000_000_000 + len(name), msg
    return write_bag(path, storage, records())


def _detect(path: Path, **names):
    with open_reader(path) as reader:
        return detect_topics(list_topics(reader), **names)


@pytest.mark.parametrize("storage, suffix", [("mcap", ".mcap"), ("sqlite3", ".db3")])
def test_written_bag_reads_back_in_both_storages(tmp_path, storage, suffix):
    path = _bag(tmp_path / "bag", {"/cam/image_raw": "rgb8", "/cam/camera_info": "info"}, storage, frames=3)
    files = sorted(p.name for p in path.iterdir())
    assert "metadata.yaml" in files and any(f.endswith(suffix) for f in files)
    assert bag_storage(path) == storage
    with open_reader(path) as reader:
        topics = {t.name: t for t in list_topics(reader)}
        assert topics["/cam/image_raw"].msgtype == "sensor_msgs/msg/Image"
        assert topics["/cam/image_raw"].encoding == "rgb8"
        assert topics["/cam/camera_info"].count == 3
        received = [(c.topic, t, deserialize(d, c.msgtype)) for c, t, d in reader.messages()]
    assert [t for _, t, _ in received] == sorted(t for _, t, _ in received)
    images = [m for topic, _, m in received if topic == "/cam/image_raw"]
    assert [stamp_ns(m.header) for m in images] == [(STAMP + i) * 1_000_000_000 + 250 for i in range(3)]
    assert images[2].header.frame_id == "cam"
    assert np.array_equal(images[2].data, _image("rgb8", STAMP + 2).data)
    infos = [m for topic, _, m in received if topic == "/cam/camera_info"]
    assert list(infos[0].k) == [7.0, 0.0, 3.5, 0.0, 7.0, 2.5, 0.0, 0.0, 1.0]


def test_single_pair_is_detected_without_names(tmp_path):
    path = _bag(tmp_path / "bag", {"/cam/image_raw": "rgb8", "/cam/camera_info": "info"})
    assert _detect(path) == ("/cam/image_raw", "/cam/camera_info")


def test_realsense_bag_picks_the_colour_pair(tmp_path):
    path = _bag(tmp_path / "bag", {
        "/camera/color/image_raw": "rgb8", "/camera/color/camera_info": "info",
        "/camera/depth/image_rect_raw": "16UC1", "/camera/depth/camera_info": "info",
        "/camera/aligned_depth_to_color/image_raw": "16UC1", "/camera/aligned_depth_to_color/camera_info": "info",
        "/camera/infra1/image_rect_raw": "mono8", "/camera/infra1/camera_info": "info",
    }, storage="sqlite3")
    assert _detect(path) == ("/camera/color/image_raw", "/camera/color/camera_info")
    # Naming only the image still pairs it with the CameraInfo beside it.
    assert _detect(path, image_topic="/camera/infra1/image_rect_raw") == (
        "/camera/infra1/image_rect_raw", "/camera/infra1/camera_info")


def test_two_colour_cameras_are_ambiguous(tmp_path):
    path = _bag(tmp_path / "bag", {"/left/image_raw": "rgb8", "/right/image_raw": "rgb8",
                                   "/left/camera_info": "info", "/right/camera_info": "info"})
    with pytest.raises(BagError, match="several camera image topics") as err:
        _detect(path)
    assert "/left/image_raw" in str(err.value) and "/right/image_raw" in str(err.value)
    assert "--image-topic" in str(err.value)
    assert _detect(path, image_topic="/right/image_raw") == ("/right/image_raw", "/right/camera_info")


def test_camera_info_far_from_the_image_is_ambiguous_when_several(tmp_path):
    path = _bag(tmp_path / "bag", {"/cam/image_raw": "rgb8", "/a/camera_info": "info", "/b/camera_info": "info"})
    with pytest.raises(BagError, match="--camera-info-topic") as err:
        _detect(path)
    assert "/a/camera_info" in str(err.value) and "/b/camera_info" in str(err.value)
    assert _detect(path, camera_info_topic="/b/camera_info") == ("/cam/image_raw", "/b/camera_info")


def test_compressed_image_and_missing_camera_info(tmp_path):
    path = _bag(tmp_path / "bag", {"/cam/image_raw/compressed": "compressed", "/gt/depth": "32FC1"})
    assert _detect(path) == ("/cam/image_raw/compressed", None)


def test_named_topics_that_are_absent_list_what_is_there(tmp_path):
    path = _bag(tmp_path / "bag", {"/cam/image_raw": "rgb8", "/cam/camera_info": "info"})
    with pytest.raises(BagError, match="/nope is not in the bag") as err:
        _detect(path, image_topic="/nope")
    assert "/cam/image_raw (sensor_msgs/msg/Image, rgb8, 2 msgs)" in str(err.value)
    with pytest.raises(BagError, match="of type sensor_msgs/msg/Image"):
        _detect(path, camera_info_topic="/cam/image_raw")


def test_depth_only_bag_has_no_camera_image(tmp_path):
    path = _bag(tmp_path / "bag", {"/camera/depth/image_rect_raw": "16UC1", "/camera/depth/camera_info": "info"})
    with pytest.raises(BagError, match="no colour image topic") as err:
        _detect(path)
    assert "/camera/depth/image_rect_raw" in str(err.value)


@pytest.mark.parametrize("image_topic, prefix, depth, points", [
    ("/camera/color/image_raw", None, "/camera/depth/image", "/camera/points"),
    ("/cam/image_raw", None, "/cam/depth/image", "/cam/points"),
    ("/image_raw", None, "/depth/image", "/points"),
    ("/cam/image_raw/compressed", None, "/cam/depth/image", "/cam/points"),
    ("/camera/color/image_raw", "mde", "/mde/depth/image", "/mde/points"),
])
def test_output_topics_follow_the_camera_namespace(image_topic, prefix, depth, points):
    topics = OutputTopics.for_image_topic(image_topic, prefix)
    assert (topics.depth, topics.points) == (depth, points)
    assert topics.depth_camera_info == depth.removesuffix("/image") + "/camera_info"
    assert topics.colorized == depth.removesuffix("/image") + "/colorized"
    assert topics.scan == points.replace("points", "scan")


def test_unreadable_bags_say_what_is_wrong(tmp_path):
    with pytest.raises(BagError, match="bag not found"):
        with open_reader(tmp_path / "missing"):
            pass
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagError, match="metadata.yaml is missing"):
        with open_reader(tmp_path / "empty"):
            pass
    path = _bag(tmp_path / "bag", {"/cam/image_raw": "rgb8"}, frames=4)
    mcap = next(path.glob("*.mcap"))
    os.truncate(mcap, mcap.stat().st_size // 2)
    with pytest.raises(BagError, match="truncated or corrupt") as err:
        with open_reader(path):
            pass
    assert str(path) in str(err.value)
    with pytest.raises(BagError, match="already exists"):
        create_writer(path, "mcap")
    with pytest.raises(BagError, match="not supported"):
        create_writer(tmp_path / "new", "bag1")
