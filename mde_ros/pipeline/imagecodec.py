"""JPEG/PNG camera images -> RGB, checked before and after decoding.

Shared by the node (sensor_msgs/CompressedImage), replay (the same in a bag) and `predict` (files):

* the header is read first (PNG IHDR, JPEG SOFn), so the pixel budget is enforced without
  decoding a single pixel;
* the CompressedImage `format` field is honoured the way compressed_image_transport writes it
  ("jpeg", "png", "bgr8; jpeg compressed bgr8", ...): colour/mono 8-bit JPEG or PNG is accepted,
  depth encodings ("16UC1; png compressed", compressedDepth) and other formats are refused;
* camera frames are decoded in sensor order (EXIF orientation ignored, as image_transport's decoders),
  so they match their CameraInfo; a photo file (`read_image_file`, predict) is turned upright;
* truncated files (no JPEG EOI, no PNG IEND) and corrupt data are refused: libjpeg and libpng print
  their complaints to the process's stderr, so they are captured around the decode and returned
  as the error (the caller throttles it with its other warnings) instead of bypassing the logger.
"""
from __future__ import annotations

import os
import re
import struct
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mde_ros.pipeline.budget import MAX_ENCODING_CHARS, FrameBudget, check_frame_id
from mde_ros.pipeline.preprocess import MAX_SIDE, InputError, image_from_buffer, to_rgb
from mde_ros.pipeline.text import clip_text

CODECS = ("jpeg", "png")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
# Encodings a colour network can take from a compressed stream (compressed_image_transport names).
COLOUR_ENCODINGS = ("rgb8", "bgr8", "mono8", "rgba8", "bgra8", "8UC1", "8UC3", "8UC4")
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD9)}
# Lines libjpeg / libpng / OpenCV's codecs print; anything else captured meanwhile is passed on.
_CODEC_LINE = re.compile(r"JPEG|JFIF|Huffman|marker|SOS|scanline|progression|libpng|grfmt|PNG|Corrupt|"
                         r"Premature|Invalid", re.IGNORECASE)
# Warnings after which the pixels cannot be trusted (the rest, e.g. an unknown JFIF revision, are noted).
_CORRUPT = re.compile(r"Corrupt|Premature|error|incomplete|truncat", re.IGNORECASE)


@dataclass(frozen=True)
class CompressedHeader:
    codec: str  # "jpeg" | "png"
    width: int
    height: int
    channels: int  # 1 grey, 2 grey+alpha, 3 colour, 4 colour+alpha (JPEG: components)
    bit_depth: int  # bits per sample


def sniff_codec(data: bytes | memoryview) -> str | None:
    """"jpeg" / "png" by magic bytes, else None."""
    head = bytes(data[:8])
    if head.startswith(PNG_SIGNATURE):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    return None


def read_header(data: bytes | memoryview) -> CompressedHeader:
    """Size, channels and bit depth from a JPEG's SOF or a PNG's IHDR, without decoding pixels."""
    codec = sniff_codec(data)
    if codec == "png":
        return _png_header(bytes(data[:33]))
    if codec == "jpeg":
        return _jpeg_header(data)
    raise InputError(f"not a JPEG or PNG (starts with {bytes(data[:8])!r})")


def _png_header(head: bytes) -> CompressedHeader:
    if len(head) < 33 or head[12:16] != b"IHDR":
        raise InputError("PNG without an IHDR header (truncated or corrupt)")
    width, height, bit_depth, colour_type = struct.unpack(">IIBB", head[16:26])
    channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(colour_type)
    if channels is None:
        raise InputError(f"PNG with an invalid colour type {colour_type}")
    return CompressedHeader("png", width, height, channels, bit_depth)


def _jpeg_header(data: bytes | memoryview) -> CompressedHeader:
    view = memoryview(data) if not isinstance(data, memoryview) else data
    size, i = len(view), 2
    while i + 4 <= size:
        if view[i] != 0xFF:
            raise InputError(f"corrupt JPEG: no marker at byte {i} before the frame header")
        marker = view[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_STANDALONE:
            i += 2
            continue
        length = (view[i + 2] << 8) | view[i + 3]
        if marker in _JPEG_SOF:
            if i + 10 > size:
                break
            bits, height, width, components = struct.unpack(">BHHB", bytes(view[i + 4:i + 10]))
            return CompressedHeader("jpeg", width, height, components, bits)
        if marker == 0xDA or length < 2:  # scan data before any frame header
            raise InputError("corrupt JPEG: no frame header (SOF) before the image data")
        i += 2 + length
    raise InputError("JPEG without a frame header (SOF): truncated or corrupt")


def codec_of_format(image_format: str) -> str | None:
    """The codec a CompressedImage `format` names ("jpeg"/"png"; None when empty), or InputError
    for what a colour network cannot take: depth encodings, compressedDepth, other formats."""
    text = image_format.strip()
    if not text:
        return None
    shown = clip_text(text, MAX_ENCODING_CHARS)
    lowered = text.lower()
    if "compresseddepth" in lowered:
        raise InputError(f"CompressedImage format {shown} is a compressed depth image: this node needs a colour "
                         "camera (subscribe it to the colour stream's compressed topic)")
    if ";" in text:  # compressed_image_transport: "<encoding>; <codec> compressed [<target encoding>]"
        encoding, _, rest = text.partition(";")
        encoding = encoding.strip()
        if encoding not in COLOUR_ENCODINGS:
            raise InputError(f"CompressedImage format {shown}: encoding {clip_text(encoding, 32)} is not an 8-bit "
                             f"colour or mono image (accepted: {', '.join(COLOUR_ENCODINGS)}); depth and 16-bit "
                             "images cannot be the network's input")
        words = rest.split()
        codec = words[0].lower() if words else ""
    else:
        codec = lowered
    codec = {"jpg": "jpeg"}.get(codec, codec)
    if codec not in CODECS:
        raise InputError(f"CompressedImage format {shown} is not JPEG or PNG (the formats this node decodes)")
    return codec


_STDERR_LOCK = threading.Lock()


# Camera frames are decoded in the sensor's pixel order, as image_transport's decoders (cv_bridge's
# imdecode with IMREAD_IGNORE_ORIENTATION semantics: the JPEG's rows as stored) do: the CameraInfo
# describes those pixels. OpenCV otherwise applies an EXIF orientation (a 320x240 frame with orientation
# 6 came out 240x320 and was refused; orientation 3 came out rotated 180 degrees from its CameraInfo).
SENSOR_ORDER = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION

# EXIF orientation -> what makes the stored pixels upright (what a photo viewer does).
ORIENTATIONS = {
    1: ("as stored", lambda a: a),
    2: ("mirrored left-right", lambda a: a[:, ::-1]),
    3: ("rotated 180 degrees", lambda a: a[::-1, ::-1]),
    4: ("mirrored top-bottom", lambda a: a[::-1, :]),
    5: ("transposed", lambda a: np.swapaxes(a, 0, 1)),
    6: ("rotated 90 degrees clockwise", lambda a: np.rot90(a, -1)),
    7: ("transversed", lambda a: np.rot90(a, 1)[:, ::-1]),
    8: ("rotated 90 degrees counter-clockwise", lambda a: np.rot90(a, 1)),
}


def exif_orientation(data: bytes | memoryview) -> int:
    """The EXIF Orientation (tag 0x0112 of IFD0) of a JPEG (APP1) or PNG (eXIf chunk), 1 (as stored)
    without one or when unreadable."""
    if bytes(data[:8]) == PNG_SIGNATURE:
        return _png_orientation(data)
    data = bytes(data[:65536 + 4]) if len(data) > 65540 else bytes(data)
    if not data.startswith(b"\xff\xd8"):
        return 1
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker, length = data[pos + 1], struct.unpack(">H", data[pos + 2:pos + 4])[0]
        if marker in (0xDA, 0xD9):  # start of scan / end: no more metadata
            return 1
        segment = data[pos + 4:pos + 2 + length]
        if marker == 0xE1 and segment.startswith(b"Exif\x00\x00"):
            return _tiff_orientation(segment[6:])
        pos += 2 + length
    return 1


def _png_orientation(data: bytes | memoryview) -> int:
    """The eXIf chunk's orientation; PNG puts it before the image data (IDAT)."""
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", bytes(data[pos:pos + 8]))
        if kind in (b"IDAT", b"IEND"):
            return 1
        if kind == b"eXIf":
            return _tiff_orientation(bytes(data[pos + 8:pos + 8 + length]))
        pos += 12 + length
    return 1


def _tiff_orientation(tiff: bytes) -> int:
    try:
        order = {b"II": "<", b"MM": ">"}[tiff[:2]]
        (ifd,) = struct.unpack(order + "I", tiff[4:8])
        (count,) = struct.unpack(order + "H", tiff[ifd:ifd + 2])
        for index in range(count):
            entry = tiff[ifd + 2 + 12 * index:ifd + 14 + 12 * index]
            tag, kind = struct.unpack(order + "HH", entry[:4])
            if tag == 0x0112 and kind == 3:
                value = struct.unpack(order + "H", entry[8:10])[0]
                return value if value in ORIENTATIONS else 1
    except (KeyError, struct.error, IndexError):
        pass
    return 1


def _decode_capturing_stderr(buffer: np.ndarray, flags: int = SENSOR_ORDER) -> tuple[np.ndarray | None, list[str]]:
    """cv2.imdecode with file descriptor 2 redirected: (image or None, the codec's messages).

    Lines that are not a codec's (another thread's log line written meanwhile) go on to stderr.
    """
    with _STDERR_LOCK:
        try:
            sys.stderr.flush()
        except (AttributeError, ValueError, OSError):
            pass
        saved = os.dup(2)
        try:
            with tempfile.TemporaryFile() as capture:
                os.dup2(capture.fileno(), 2)
                try:
                    image = cv2.imdecode(buffer, flags)
                finally:
                    os.dup2(saved, 2)
                capture.seek(0)
                text = capture.read().decode("utf-8", "replace")
        finally:
            os.close(saved)
    messages, passed_on = [], []
    for line in text.splitlines():
        if not line.strip():
            continue
        (messages if _CODEC_LINE.search(line) else passed_on).append(line.strip())
    if passed_on:
        os.write(2, ("\n".join(passed_on) + "\n").encode())
    return image, messages


def _check_complete(codec: str, data: bytes | memoryview) -> None:
    if codec == "png":
        if bytes(data[-12:]) != PNG_IEND:
            raise InputError("truncated PNG: it does not end with the IEND chunk")
        return
    tail = bytes(data[-64:]).rstrip(b"\x00")  # some cameras pad JPEGs with zeros
    if not tail.endswith(b"\xff\xd9"):
        raise InputError("truncated JPEG: it does not end with the EOI marker (FFD9)")


def decode_compressed(data: Any, image_format: str = "", budget: FrameBudget | None = None,
                      notes: list[str] | None = None) -> np.ndarray:
    """HxWx3 uint8 RGB of a JPEG/PNG payload; InputError (BudgetError for the budget) says why not.

    `notes` collects harmless codec messages (e.g. an unknown JFIF revision) for the caller to
    log through its throttle; messages that mean damaged pixels reject the image.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        buffer = np.frombuffer(data, dtype=np.uint8)
    else:
        buffer = np.asarray(data, dtype=np.uint8)
    if buffer.size == 0:
        raise InputError("compressed image has no data")
    budget = budget or FrameBudget()
    budget.check_message(buffer.size, "compressed image")
    stated = codec_of_format(image_format)
    raw = buffer.data
    header = read_header(raw)
    if stated is not None and stated != header.codec:
        raise InputError(f"CompressedImage format says {stated} but the data is a {header.codec.upper()}")
    if not (0 < header.width <= MAX_SIDE and 0 < header.height <= MAX_SIDE):
        raise InputError(f"{header.codec.upper()} header declares {header.width}x{header.height} "
                         f"(outside 1..{MAX_SIDE} pixels per side)")
    budget.check_pixels(header.width, header.height, f"{header.codec.upper()} image")
    if header.codec == "png" and header.bit_depth > 8 and header.channels <= 2:
        raise InputError(f"{header.bit_depth}-bit greyscale PNG: a depth image, not a camera image "
                         "(this node needs the colour stream)")
    _check_complete(header.codec, raw)
    bgr, messages = _decode_capturing_stderr(buffer)
    corrupt = [m for m in messages if _CORRUPT.search(m)]
    if bgr is None or corrupt:
        reason = "; ".join(corrupt or messages) or "the decoder refused it"
        raise InputError(f"corrupt {header.codec.upper()} ({buffer.size} bytes): {clip_text(reason, 200)}")
    if notes is not None:
        notes.extend(messages)
    if bgr.shape[:2] != (header.height, header.width):
        raise InputError(f"{header.codec.upper()} decoded to {bgr.shape[1]}x{bgr.shape[0]}, its header says "
                         f"{header.width}x{header.height}")
    return to_rgb(bgr, "bgr8")


def read_image_file(path: str | Path, budget: FrameBudget | None = None,
                    notes: list[str] | None = None) -> np.ndarray:
    """HxWx3 uint8 RGB of an image file (a photo): upright as its EXIF orientation says, as a photo
    viewer shows it (`notes` gets "EXIF orientation 6: rotated 90 degrees clockwise" then), with
    decode_compressed's checks for JPEG/PNG (other formats OpenCV reads, e.g. BMP/TIFF, are decoded as
    they are). FileNotFoundError, InputError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    data = path.read_bytes()
    if sniff_codec(data) is not None:
        rgb = decode_compressed(data, budget=budget)  # sensor order: the header's size is checked
        orientation = exif_orientation(data)
        if orientation != 1:
            what, turn = ORIENTATIONS[orientation]
            rgb = np.ascontiguousarray(turn(rgb))
            if notes is not None:
                notes.append(f"EXIF orientation {orientation}: {what} to upright ({rgb.shape[1]}x{rgb.shape[0]})")
        return rgb
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if bgr is None:
        raise InputError(f"cannot decode {path}: not an image format OpenCV reads (PNG, JPEG, BMP, TIFF, ...)")
    (budget or FrameBudget()).check_pixels(bgr.shape[1], bgr.shape[0])
    return to_rgb(bgr, "bgr8")


def message_to_rgb(msg: Any, compressed: bool, budget: FrameBudget | None = None,
                   notes: list[str] | None = None) -> np.ndarray:
    """HxWx3 uint8 RGB of a sensor_msgs Image / CompressedImage (rclpy's or rosbags' classes: only
    the fields are read), with the budget and the header's frame_id checked before any decoding."""
    budget = budget or FrameBudget()
    check_frame_id(msg.header.frame_id)
    if compressed:
        return decode_compressed(msg.data, msg.format, budget, notes)
    if not (0 < msg.width <= MAX_SIDE and 0 < msg.height <= MAX_SIDE):  # corruption, not a big camera
        raise InputError(f"image size {msg.width}x{msg.height} is outside 1..{MAX_SIDE} pixels per side")
    budget.check_message(len(msg.data), "image message")
    budget.check_pixels(msg.width, msg.height)
    image = image_from_buffer(msg.data, msg.height, msg.width, msg.encoding, msg.step)
    return to_rgb(image, msg.encoding)
