"""Topic and frame names the way ROS users know them (image_transport, camera drivers, REP 103).

Pure string functions, no rclpy: the node and `mde-ros replay` both name their topics and the
scan's frame with them, so a bag replayed offline looks like the live node's output.
"""
from __future__ import annotations

import posixpath

from mde_ros.pipeline.outputs import BY_KEY

# Outputs, relative to the node's namespace: an image and its sibling camera_info (REP 118,
# realsense-ros layout `depth/image_rect_raw` + `depth/camera_info`), so an image_transport
# CameraSubscriber (depth_image_proc, depthimage_to_laserscan) pairs them by itself.
# The names themselves are the output table's (mde_ros.pipeline.outputs.OUTPUTS).
DEPTH_IMAGE = BY_KEY["depth"].topic
DEPTH_CAMERA_INFO = BY_KEY["depth_camera_info"].topic
DEPTH_COLORIZED = BY_KEY["colorized"].topic
POINTS = BY_KEY["points"].topic
SCAN = BY_KEY["scan"].topic
# Names before 0.2: `depth` was a sibling of `camera_info`, not of `depth/camera_info`.
RENAMED_OUTPUTS = {"depth": DEPTH_IMAGE}

OPTICAL = "_optical"
SCAN_TIME_S = 0.033  # depthimage_to_laserscan's scan_time default, seconds between scans


def sibling_topic(image_topic: str, name: str = "camera_info") -> str:
    """image_transport's rule: `/cam/color/image_raw` -> `/cam/color/camera_info`; a transport
    suffix (`/cam/image_raw/compressed`) belongs to the image, not to the camera's namespace."""
    topic = image_topic.rstrip("/")
    if posixpath.basename(topic) in ("compressed", "compressedDepth", "theora", "zstd"):
        topic = posixpath.dirname(topic)
    return posixpath.join(posixpath.dirname(topic) or "/", name)


def body_frame(optical_frame: str) -> str | None:
    """The body-convention frame (x forward, y left, z up) camera drivers pair with an optical frame:
    `camera_color_optical_frame` -> `camera_color_frame`, `front_optical` -> `front`. None when the
    name has no `_optical` part, so the caller decides (and says) what to use instead."""
    if OPTICAL not in optical_frame:
        return None
    head, _, tail = optical_frame.rpartition(OPTICAL)
    body = head + tail
    return body if body.strip("/_") else None


def scan_frame(image_frame: str, output_frame: str = "") -> tuple[str, bool]:
    """(frame_id of a LaserScan made from an image in `image_frame`, whether that was a guess).

    A LaserScan is a planar body-convention message: its angles turn about z (up), positive to the
    left (depthimage_to_laserscan). `output_frame` wins when set; else the optical frame's body twin;
    else (no `_optical` in the name, e.g. a simulator that stamps images with `camera_link`) the
    image's own frame, assumed to be a body frame already: a guess the caller should warn about.
    """
    if output_frame:
        return output_frame, False
    body = body_frame(image_frame)
    if body is not None:
        return body, False
    return image_frame, True
