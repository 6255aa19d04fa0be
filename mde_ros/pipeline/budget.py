"""Per-frame budget: how much one camera message may cost before it is rejected.

A sender controls the size of what it sends (an 8000x6000 PNG of 140 KB decodes to 144 MB and
drives the pipeline to gigabytes) and the text inside it (a 1 MB encoding string, 2 million
distortion coefficients). Everything here is checked BEFORE the expensive work: pixel counts from
the message fields or the compressed header (mde_ros.pipeline.imagecodec), output sizes from the
output configuration. A rejected frame costs no more than the message itself. Pure Python, no ROS.
"""
from __future__ import annotations

from dataclasses import dataclass

from mde_ros.pipeline.preprocess import InputError
from mde_ros.pipeline.text import clip_text

# Safe defaults for cameras up to 4K: 4096x2304 (covers UHD 3840x2160 and DCI 4096x2160).
DEFAULT_MAX_PIXELS = 4096 * 2304
# A raw 4096x2304 rgba8/bgra8 image is 37.7 MB; JPEG/PNG of that size are smaller.
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# depth 32FC1 + organised xyzrgb cloud (32 B/point, PCL's layout) + rgb8 preview of a 4096x2304 frame: 368 MB.
DEFAULT_MAX_OUTPUT_BYTES = 384 * 1024 * 1024
# Sender-controlled text that reaches logs, /diagnostics and outputs (CameraInfo: pipeline.intrinsics).
MAX_FRAME_ID_CHARS = 256  # tf frame ids are short names; longer is garbage, not a frame
MAX_ENCODING_CHARS = 64
CLOUD_POINT_BYTES = 16  # mde_ros.pipeline.geometry.pack_cloud's point_step: xyz
CLOUD_POINT_BYTES_RGB = 32  # xyz + rgb (PCL's PointXYZRGB layout)


class BudgetError(InputError):
    """A frame over the budget; the message names the limit and the parameter that sets it."""



@dataclass(frozen=True)
class FrameBudget:
    """Limits of one frame; 0 disables a limit. The node's `budget.*` parameters."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES

    def check_message(self, nbytes: int, what: str = "image message") -> None:
        """Before looking inside a message: its payload size."""
        if self.max_message_bytes and nbytes > self.max_message_bytes:
            raise BudgetError(f"{what} has {nbytes} bytes, over the budget of {self.max_message_bytes} "
                              "(parameter budget.max_message_bytes)")

    def check_pixels(self, width: int, height: int, what: str = "image") -> None:
        """Before decoding or converting: the pixel count the header declares."""
        if self.max_pixels and int(width) * int(height) > self.max_pixels:
            raise BudgetError(f"{what} is {int(width)}x{int(height)} = {int(width) * int(height)} pixels, over "
                              f"the budget of {self.max_pixels} (parameter budget.max_pixels)")

    def check_outputs(self, nbytes: int) -> None:
        """Before building outputs: their estimated size (output_bytes)."""
        if self.max_output_bytes and nbytes > self.max_output_bytes:
            raise BudgetError(f"outputs of this frame would take {nbytes} bytes, over the budget of "
                              f"{self.max_output_bytes} (parameter budget.max_output_bytes; decimate the cloud "
                              "or turn outputs off)")


def output_bytes(width: int, height: int, *, depth_bytes_per_pixel: int = 4, cloud: bool = True,
                 cloud_decimation: int = 1, cloud_rgb: bool = True, colorized: bool = True) -> int:
    """Bytes of one frame's published outputs at width x height (depth, organised cloud, preview),
    an upper bound computed from the configuration alone."""
    pixels = int(width) * int(height)
    total = pixels * depth_bytes_per_pixel
    if cloud:
        k = max(1, int(cloud_decimation))
        total += -(-int(height) // k) * -(-int(width) // k) * (CLOUD_POINT_BYTES_RGB if cloud_rgb else CLOUD_POINT_BYTES)
    if colorized:
        total += pixels * 3
    return total


def check_frame_id(frame_id: str) -> None:
    """A header frame_id is copied onto every output: refuse garbage instead of republishing it."""
    if len(frame_id) > MAX_FRAME_ID_CHARS:
        raise InputError(f"header.frame_id has {len(frame_id)} characters (at most {MAX_FRAME_ID_CHARS}): "
                         f"{clip_text(frame_id, 40)}")
