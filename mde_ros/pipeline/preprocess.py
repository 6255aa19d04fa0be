"""Camera image -> network input: encodings, resize policy, normalisation.

Pure numpy/OpenCV. The ROS node hands raw sensor_msgs/Image buffers to `image_from_buffer`, so every
check a malformed message could fail lives here, with a message that says what is wrong.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mde_ros.models.card import RESIZE_POLICIES, RESIZE_SIDES, ModelCard
from mde_ros.pipeline.text import clip_text

SUPPORTED_ENCODINGS = ("rgb8", "bgr8", "mono8", "rgba8", "bgra8")
_INTERPOLATION = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC, "area": cv2.INTER_AREA,
                  "nearest": cv2.INTER_NEAREST}
CHANNELS = {"rgb8": 3, "bgr8": 3, "mono8": 1, "rgba8": 4, "bgra8": 4}
MAX_SIDE = 16384  # larger than any camera; a bigger header is corruption, not an image

_TO_RGB = {
    "bgr8": cv2.COLOR_BGR2RGB,
    "mono8": cv2.COLOR_GRAY2RGB,
    "rgba8": cv2.COLOR_RGBA2RGB,
    "bgra8": cv2.COLOR_BGRA2RGB,
}


class InputError(ValueError):
    """An input image (or its metadata) the pipeline cannot use; the message says why."""


def _check_encoding(encoding: str) -> int:
    if encoding not in CHANNELS:
        raise InputError(f"unsupported image encoding {clip_text(encoding)}: expected one of {SUPPORTED_ENCODINGS} "
                         "(convert depth/bayer/16-bit images before this node, e.g. with image_proc)")
    return CHANNELS[encoding]


def image_from_buffer(data, height: int, width: int, encoding: str, step: int) -> np.ndarray:
    """View a sensor_msgs/Image-style buffer as HxW (mono8) or HxWxC uint8, without copying.

    Row padding (step > width * channels) is skipped by slicing, so the view may be non-contiguous.
    """
    channels = _check_encoding(encoding)
    height, width, step = int(height), int(width), int(step)
    if not (0 < height <= MAX_SIDE and 0 < width <= MAX_SIDE):
        raise InputError(f"image size {width}x{height} is outside 1..{MAX_SIDE} pixels per side")
    row_bytes = width * channels
    if step < row_bytes:
        raise InputError(f"step {step} is smaller than width * channels = {width} * {channels} = {row_bytes} "
                         f"for encoding {encoding!r}")
    flat = np.frombuffer(data, dtype=np.uint8)
    if flat.size != step * height:
        raise InputError(f"image data has {flat.size} bytes but step * height = {step} * {height} = "
                         f"{step * height}")
    rows = flat.reshape(height, step)[:, :row_bytes]
    return rows if channels == 1 else rows.reshape(height, width, channels)


def to_rgb(image: np.ndarray, encoding: str) -> np.ndarray:
    """HxWx3 uint8 RGB. rgb8 input is returned as is (no copy)."""
    channels = _check_encoding(encoding)
    if image.dtype != np.uint8:
        raise InputError(f"{encoding} image must be uint8, got {image.dtype}")
    if channels == 1 and image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    expected_ndim = 2 if channels == 1 else 3
    if image.ndim != expected_ndim or (channels > 1 and image.shape[2] != channels):
        raise InputError(f"{encoding} image must have shape HxW{'' if channels == 1 else f'x{channels}'}, "
                         f"got {image.shape}")
    if encoding == "rgb8":
        return image
    return cv2.cvtColor(image, _TO_RGB[encoding])


@dataclass(frozen=True)
class ResizeInfo:
    """Where the camera image went inside the network input, so outputs and intrinsics can follow.

    The image occupies rows content_top..content_top+content_height and columns
    content_left..content_left+content_width of the network input; the rest (letterbox only) is padding.
    """

    src_height: int
    src_width: int
    net_height: int
    net_width: int
    policy: str
    content_top: int
    content_left: int
    content_height: int
    content_width: int

    @property
    def scale_x(self) -> float:
        return self.content_width / self.src_width

    @property
    def scale_y(self) -> float:
        return self.content_height / self.src_height


def _to_multiple(value: float, multiple: int, min_val: int = 0, max_val: int | None = None) -> int:
    """MiDaS / Depth-Anything `Resize.constrain_to_multiple_of`: round, floor above max, ceil below min."""
    rounded = int(np.round(value / multiple) * multiple)
    if max_val is not None and rounded > max_val:
        rounded = int(np.floor(value / multiple) * multiple)
    if rounded < min_val:
        rounded = int(np.ceil(value / multiple) * multiple)
    return max(rounded, multiple)


# keep_aspect's network input may have at most this many times the card's pixels. Side "shorter" puts
# the shorter side at the card's size, so a thin frame (4096x16) would ask for a 518x132608 input
# (0.8 GB of float32, gigabytes inside the network) from a 196 KB message. Up to 4:1 frames (every
# camera: 16:9, 21:9, 32:9 halves) are unaffected; thinner ones get a proportionally smaller input.
KEEP_ASPECT_MAX_AREA_FACTOR = 4.0


def keep_aspect_size(src_height: int, src_width: int, height: int, width: int, side: str = "shorter",
                     multiple: int = 1, max_pixels: int | None = None) -> tuple[int, int]:
    """(h, w) of a dynamic-shape network input, as Depth-Anything / MiDaS size it.

    side "shorter" (their resize_method 'lower_bound'): the image covers height x width, so with a square
    size the shorter side is at it; "longer" ('upper_bound'): the image fits inside, the longer side at it;
    "minimal" (MiDaS 'minimal'): the aspect kept with whichever axis' scale is nearer 1.
    Both sides are then rounded to `multiple` (14 for ViT patches) with their rounding rule.
    max_pixels (default KEEP_ASPECT_MAX_AREA_FACTOR x height x width): a larger result is scaled down,
    aspect kept, until it fits, so what a frame costs the network is bounded before anything is allocated.
    """
    if side not in RESIZE_SIDES:
        raise InputError(f"unknown resize side {side!r}: expected one of {RESIZE_SIDES}")
    if max_pixels is None:
        max_pixels = int(KEEP_ASPECT_MAX_AREA_FACTOR * height * width)
    scale_h, scale_w = height / src_height, width / src_width
    if side == "minimal":  # MiDaS 'minimal': the scale nearer 1, sides rounded to the multiple, no bound
        scale = scale_w if abs(1 - scale_w) < abs(1 - scale_h) else scale_h
        size = (_to_multiple(scale * src_height, multiple), _to_multiple(scale * src_width, multiple))
    elif side == "shorter":
        scale = max(scale_h, scale_w)
        size = (_to_multiple(scale * src_height, multiple, min_val=height),
                _to_multiple(scale * src_width, multiple, min_val=width))
    else:
        scale = min(scale_h, scale_w)
        size = (_to_multiple(scale * src_height, multiple, max_val=height),
                _to_multiple(scale * src_width, multiple, max_val=width))
    if size[0] * size[1] <= max_pixels:
        return size
    # Clamp: the scale that fits, each side rounded down to the multiple (at least one multiple); a side
    # already at its minimum leaves the other what remains of the budget (extreme strips lose aspect).
    scale = (max_pixels / (src_height * src_width)) ** 0.5
    h = max(multiple, int(scale * src_height // multiple) * multiple)
    w = max(multiple, int(scale * src_width // multiple) * multiple)
    if h * w > max_pixels:
        if h <= w:
            w = max(multiple, int(max_pixels // h // multiple) * multiple)
        else:
            h = max(multiple, int(max_pixels // w // multiple) * multiple)
    return h, w


def resize_info(src_height: int, src_width: int, net_height: int, net_width: int,
                policy: str = "stretch", side: str = "shorter", multiple: int = 1) -> ResizeInfo:
    """The geometry `preprocess` uses, without touching pixels.

    keep_aspect: (net_height, net_width) is the card's size; the network input gets keep_aspect_size's.
    """
    if policy == "keep_aspect":
        height, width = keep_aspect_size(src_height, src_width, net_height, net_width, side, multiple)
        return ResizeInfo(src_height, src_width, height, width, policy, 0, 0, height, width)
    if policy == "stretch":
        return ResizeInfo(src_height, src_width, net_height, net_width, policy, 0, 0, net_height, net_width)
    if policy == "letterbox":
        scale = min(net_width / src_width, net_height / src_height)
        content_w = min(net_width, max(1, round(src_width * scale)))
        content_h = min(net_height, max(1, round(src_height * scale)))
        return ResizeInfo(src_height, src_width, net_height, net_width, policy,
                          (net_height - content_h) // 2, (net_width - content_w) // 2, content_h, content_w)
    raise InputError(f"unknown resize policy {policy!r}: expected one of {RESIZE_POLICIES}")


def resize_image(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """cv2.resize with INTER_AREA when shrinking both axes (no aliasing), INTER_LINEAR otherwise."""
    src_h, src_w = image.shape[:2]
    if (src_w, src_h) == (width, height):
        return image
    shrinking = width <= src_w and height <= src_h
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def normalisation(card: ModelCard) -> tuple[np.ndarray, np.ndarray]:
    """(gain, offset) per input channel: network value = pixel (0..255) * gain + offset.

    value_range scales pixels (1.0: [0, 1]; 255.0: raw); mean/std (in that range) apply only when the
    card normalises outside the graph. Channels (and mean/std) are in the network's order (channel_order).
    """
    if card.normalization == "inside":
        gain = np.full(3, card.value_range / 255.0, np.float32)
        return gain, np.zeros(3, np.float32)
    mean = np.asarray(card.mean, np.float32)
    std = np.asarray(card.std, np.float32)
    return (card.value_range / (255.0 * std)).astype(np.float32), (-mean / std).astype(np.float32)


def pad_input(card: ModelCard) -> np.ndarray:
    """The letterbox padding per network channel, in network input units.

    card.pad_value is an RGB pixel (0..255) normalised like the image; without one, the mean colour
    (0 after an outside normalisation; the graph's mean when it normalises inside).
    """
    gain, offset = normalisation(card)
    if card.pad_value is None:
        return np.asarray(card.mean, np.float32) if card.normalization == "inside" else np.zeros(3, np.float32)
    order = _channel_sources(card)
    return np.asarray([card.pad_value[order[c]] * gain[c] + offset[c] for c in range(3)], np.float32)


def _channel_sources(card: ModelCard) -> tuple[int, int, int]:
    """RGB channel feeding each network input channel."""
    return (2, 1, 0) if card.channel_order == "BGR" else (0, 1, 2)


def _resize(image: np.ndarray, width: int, height: int, interpolation: str) -> np.ndarray:
    if interpolation == "auto":
        return resize_image(image, width, height)
    if image.shape[:2] == (height, width):
        return image
    return cv2.resize(image, (width, height), interpolation=_INTERPOLATION[interpolation])


def preprocess(rgb: np.ndarray, card: ModelCard, policy: str | None = None) -> tuple[np.ndarray, ResizeInfo]:
    """(1,3,h,w) float32 C-contiguous network input, prepared by the card's rules.

    policy None: the card's resize_policy. Letterbox padding is the card's pad_value (a pixel value,
    normalised like the image), by default the mean colour (zero after normalisation).
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InputError(f"expected an HxWx3 uint8 RGB image, got shape {rgb.shape} dtype {rgb.dtype}")
    policy = card.resize_policy if policy is None else policy
    info = resize_info(rgb.shape[0], rgb.shape[1], card.input_height, card.input_width, policy,
                       card.resize_side, card.size_multiple)
    resized = _resize(rgb, info.content_width, info.content_height, card.interpolation)
    gain, offset = normalisation(card)
    order = _channel_sources(card)
    batch = np.zeros((1, 3, info.net_height, info.net_width), np.float32)
    if (info.content_height, info.content_width) != (info.net_height, info.net_width):
        pad = pad_input(card)
        if np.any(pad):
            batch[0] = pad[:, None, None]
    content = batch[0, :, info.content_top:info.content_top + info.content_height,
                    info.content_left:info.content_left + info.content_width]
    for channel, source in enumerate(order):
        np.multiply(resized[:, :, source], gain[channel], out=content[channel], dtype=np.float32)
        content[channel] += offset[channel]
    return batch, info
