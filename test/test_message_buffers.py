"""Outputs built in place into the buffer their message takes (pipeline.buffers, issue 20).

Every message must be byte for byte what it was when outputs were `tobytes()` copies converted with
`array.array("B", data)`: references are built here from the pure functions' own arrays, and both go
through rclpy's real serialisation (serialize_message / deserialize_message; Fast CDR leaves alignment
padding uninitialised, so payloads are found in the stream and messages compared after the round trip).
"""
import array

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from std_msgs.msg import Header

from mde_ros.pipeline.buffers import message_buffer
from mde_ros.pipeline.colorize import colorize
from mde_ros.pipeline.estimator import DepthResult
from mde_ros.pipeline.geometry import backproject
from mde_ros.pipeline.outputs import OutputConfig, build_outputs, mark_out_of_range, pack_image
from mde_ros.ros import messages
from mde_ros.synthetic import render_frame

MIN_DEPTH, MAX_DEPTH = 0.3, 6.0


def frame_result(seed=3, width=96, height=72):
    frame = render_frame(seed, width, height)
    depth = frame.depth.copy()
    depth[5:9, 10:20] = np.nan  # invalid, too near and too far pixels: every REP 117 mark
    depth[20:22, :] = 0.1
    depth[30:31, :] = 9.0
    return frame, DepthResult(depth, frame.intrinsics, 1.0, {}, [], None, None)


def reference_cloud(marked, intr, rgb):
    """The PointCloud2 bytes of depth_image_proc's layout, from backproject (not pack_cloud)."""
    points = backproject(marked, intr)
    if rgb is None:
        records = np.zeros(points.shape[:2], np.dtype({"names": ["x", "y", "z"], "formats": ["<f4"] * 3,
                                                       "offsets": [0, 4, 8], "itemsize": 16}))
    else:
        records = np.zeros(points.shape[:2], np.dtype({"names": ["x", "y", "z", "rgb"],
                                                       "formats": ["<f4", "<f4", "<f4", "<u4"],
                                                       "offsets": [0, 4, 8, 16], "itemsize": 32}))
        r, g, b = (rgb[:, :, i].astype(np.uint32) for i in range(3))
        records["rgb"] = (r << 16) | (g << 8) | b
    records["x"], records["y"], records["z"] = points[:, :, 0], points[:, :, 1], points[:, :, 2]
    return records.tobytes()


def wire(msg):
    return bytes(serialize_message(msg))


@pytest.mark.parametrize("cloud_rgb", [True, False])
def test_every_message_is_byte_identical_to_the_copying_path(cloud_rgb):
    frame, result = frame_result()
    config = OutputConfig(cloud_rgb=cloud_rgb)
    outputs = build_outputs(result, frame.rgb, config, MIN_DEPTH, MAX_DEPTH)
    header = Header(frame_id="camera_optical_frame")
    marked = mark_out_of_range(result.depth, MIN_DEPTH, MAX_DEPTH)
    references = {
        "depth": (messages.image_msg(outputs.depth, header), marked.astype("<f4").tobytes()),
        "colorized": (messages.image_msg(outputs.colorized, header),
                      colorize(result.depth, MIN_DEPTH, MAX_DEPTH).tobytes()),
        "points": (messages.point_cloud_msg(outputs.cloud, header),
                   reference_cloud(marked, frame.intrinsics, frame.rgb if cloud_rgb else None)),
    }
    for name, (msg, expected) in references.items():
        assert isinstance(msg.data, array.array) and msg.data.typecode == "B"
        before = type(msg)()  # the old path: the same fields, data converted from a bytes copy
        for slot in msg.get_fields_and_field_types():
            setattr(before, slot, getattr(msg, slot))
        before.data = array.array("B", expected)
        # Fast CDR leaves alignment padding uninitialised, so the streams are compared field by field
        # after a real round trip, and the payload bytes as they stand in the stream.
        assert len(wire(msg)) == len(wire(before)), name
        assert expected in wire(msg), name
        back = deserialize_message(serialize_message(msg), type(msg))
        assert back == deserialize_message(serialize_message(before), type(before)) == before, name
        assert bytes(back.data) == expected, name


def test_messages_take_the_output_buffer_without_a_copy():
    frame, result = frame_result()
    outputs = build_outputs(result, frame.rgb, OutputConfig(), MIN_DEPTH, MAX_DEPTH)
    header = Header()
    assert messages.image_msg(outputs.depth, header).data is outputs.depth.data
    assert messages.image_msg(outputs.colorized, header).data is outputs.colorized.data
    assert messages.point_cloud_msg(outputs.cloud, header).data is outputs.cloud.data
    # the scratch-built unorganised cloud too: compressed straight into its message buffer
    loose = build_outputs(result, frame.rgb, OutputConfig(cloud_organized=False), MIN_DEPTH, MAX_DEPTH)
    assert isinstance(loose.cloud.data, array.array) and len(loose.cloud.data) == loose.cloud.row_step


def test_buffers_are_reused_per_size_only_once_nothing_holds_them():
    frame, result = frame_result(seed=3)
    _, other = frame_result(seed=4)
    kept = build_outputs(result, frame.rgb, OutputConfig(), MIN_DEPTH, MAX_DEPTH)
    kept_bytes = {k: bytes(v.data) for k, v in (("depth", kept.depth), ("cloud", kept.cloud),
                                                 ("colorized", kept.colorized))}
    second = build_outputs(other, frame.rgb, OutputConfig(), MIN_DEPTH, MAX_DEPTH)
    # a kept frame is never overwritten by the next one
    assert bytes(kept.depth.data) == kept_bytes["depth"] != bytes(second.depth.data)
    assert bytes(kept.cloud.data) == kept_bytes["cloud"] and bytes(kept.colorized.data) == kept_bytes["colorized"]
    # once published and dropped, the next frame of the same size is built in the same buffer
    buffer_id = id(second.cloud.data)
    del second
    third = build_outputs(result, frame.rgb, OutputConfig(), MIN_DEPTH, MAX_DEPTH)
    assert id(third.cloud.data) == buffer_id
    assert bytes(third.cloud.data) == kept_bytes["cloud"]  # every byte rewritten (stale contents gone)
    # another resolution gets a buffer of its size
    small_frame, small = frame_result(width=48, height=36)
    assert len(build_outputs(small, small_frame.rgb, OutputConfig(), MIN_DEPTH, MAX_DEPTH).depth.data) == 48 * 36 * 4


def test_pack_image_copies_once_into_a_reusable_buffer():
    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    packed = pack_image(rgb[:, ::-1], "rgb8", "test_image")  # any layout: rows packed, C order
    assert packed.step == 15 and bytes(packed.data) == np.ascontiguousarray(rgb[:, ::-1]).tobytes()
    assert message_buffer("test_image", 60) is not packed.data  # still held: a new one
