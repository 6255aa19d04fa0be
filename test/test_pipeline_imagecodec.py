"""Compressed images: header before decoding, format field, truncation/corruption, budget, text limits."""
import struct
import zlib

import cv2
import numpy as np
import pytest

from mde_ros.pipeline.budget import BudgetError, FrameBudget, check_frame_id, output_bytes
from mde_ros.pipeline.imagecodec import (codec_of_format, decode_compressed, message_to_rgb, read_header,
                                         read_image_file)
from mde_ros.pipeline.intrinsics import CameraInfoError, camera_info_field_problems, intrinsics_from_camera_info
from mde_ros.pipeline.preprocess import InputError, image_from_buffer
from mde_ros.pipeline.text import clip_text

RGB = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)


def encode(ext, image=RGB, params=()):
    return cv2.imencode(ext, cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image,
                        list(params))[1].tobytes()


def big_black_png(width, height):
    """A valid all-black RGB PNG of any size, built row by row (never the whole image in memory)."""
    deflate = zlib.compressobj(9)
    row = b"\x00" * (1 + 3 * width)
    body = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def test_header_is_read_without_decoding():
    png = read_header(encode(".png"))
    assert (png.codec, png.width, png.height, png.channels, png.bit_depth) == ("png", 64, 48, 3, 8)
    jpeg = read_header(encode(".jpg"))
    assert (jpeg.codec, jpeg.width, jpeg.height, jpeg.channels, jpeg.bit_depth) == ("jpeg", 64, 48, 3, 8)
    progressive = read_header(encode(".jpg", params=(cv2.IMWRITE_JPEG_PROGRESSIVE, 1)))
    assert (progressive.width, progressive.height) == (64, 48)
    assert read_header(encode(".png", np.zeros((5, 7), np.uint16))).bit_depth == 16
    with pytest.raises(InputError, match="not a JPEG or PNG"):
        read_header(encode(".bmp"))


def test_good_jpeg_and_png_decode_to_rgb():
    np.testing.assert_array_equal(decode_compressed(encode(".png"), "png"), RGB)
    smooth = np.dstack([*np.meshgrid(np.arange(64) * 4, np.arange(48) * 5), np.full((48, 64), 90)]).astype(np.uint8)
    jpeg = decode_compressed(encode(".jpg", smooth, (cv2.IMWRITE_JPEG_QUALITY, 95)), "bgr8; jpeg compressed bgr8")
    assert jpeg.shape == smooth.shape and np.abs(jpeg.astype(int) - smooth).mean() < 3  # RGB order kept
    assert decode_compressed(encode(".png"), "rgb8; png compressed bgr8").shape == RGB.shape
    assert decode_compressed(encode(".jpg") + b"\x00" * 16, "").shape == RGB.shape  # zero padding is fine


@pytest.mark.parametrize("image_format, message", [
    ("16UC1; png compressed", "not an 8-bit colour"),
    ("32FC1; compressedDepth", "compressed depth"),
    ("16UC1; compressedDepth png", "compressed depth"),
    ("bmp", "not JPEG or PNG"),
    ("tiff", "not JPEG or PNG"),
    ("x" * 1_000_000, "1000000 characters"),
])
def test_format_field_refuses_depth_and_other_formats(image_format, message):
    with pytest.raises(InputError, match=message) as error:
        codec_of_format(image_format)
    assert len(str(error.value)) < 400


def test_other_payloads_and_mismatches_are_refused():
    with pytest.raises(InputError, match="not a JPEG or PNG"):
        decode_compressed(encode(".bmp"), "")
    with pytest.raises(InputError, match="says jpeg but the data is a PNG"):
        decode_compressed(encode(".png"), "jpeg")
    with pytest.raises(InputError, match="16-bit greyscale PNG"):
        decode_compressed(encode(".png", np.full((5, 7), 1000, np.uint16)), "png")


def test_truncated_and_corrupt_images_are_refused_with_the_codec_message(capfd):
    jpeg, png = encode(".jpg"), encode(".png")
    with pytest.raises(InputError, match="truncated JPEG"):
        decode_compressed(jpeg[: len(jpeg) // 2])
    with pytest.raises(InputError, match="truncated PNG"):
        decode_compressed(png[: len(png) // 2])
    # Damaged entropy-coded data that libjpeg still "decodes" (with a warning on stderr): refused.
    damaged = bytearray(jpeg)
    start = jpeg.index(b"\xff\xda") + 20
    damaged[start:start + 40] = b"\xff\xd0" * 20
    with pytest.raises(InputError, match="corrupt JPEG.*(Corrupt|Premature)"):
        decode_compressed(bytes(damaged))
    bad_crc = bytearray(png)
    bad_crc[60] ^= 0xFF
    with pytest.raises(InputError, match="corrupt PNG"):
        decode_compressed(bytes(bad_crc))
    # The codecs' own stderr lines were captured into the errors, not printed.
    assert "Corrupt JPEG" not in capfd.readouterr().err


def test_pixel_budget_is_checked_from_the_header_before_decoding():
    huge = big_black_png(8000, 6000)
    assert len(huge) < 300_000  # 144 MB of pixels in a tiny file
    with pytest.raises(BudgetError, match="8000x6000 = 48000000 pixels.*budget.max_pixels"):
        decode_compressed(huge, "png")
    with pytest.raises(BudgetError, match="budget.max_message_bytes"):
        decode_compressed(encode(".png"), "png", FrameBudget(max_message_bytes=100))
    assert decode_compressed(encode(".png"), "png", FrameBudget(max_pixels=0)).shape == RGB.shape  # 0: no limit
    with pytest.raises(BudgetError, match="budget.max_pixels"):
        decode_compressed(encode(".png"), "png", FrameBudget(max_pixels=64 * 48 - 1))


class Msg:
    class header:
        frame_id = "camera_optical_frame"

    def __init__(self, **fields):
        self.__dict__.update(fields)


def test_raw_messages_are_checked_against_the_budget_and_frame_id_before_conversion():
    msg = Msg(data=RGB.tobytes(), width=64, height=48, encoding="rgb8", step=192)
    np.testing.assert_array_equal(message_to_rgb(msg, False), RGB)
    with pytest.raises(BudgetError, match="budget.max_pixels"):
        message_to_rgb(msg, False, FrameBudget(max_pixels=1000))
    msg.header = type("H", (), {"frame_id": "f" * 1_000_000})
    with pytest.raises(InputError, match="1000000 characters") as error:
        message_to_rgb(msg, False)
    assert len(str(error.value)) < 200
    check_frame_id("camera_optical_frame")
    with pytest.raises(InputError) as error:
        image_from_buffer(RGB.tobytes(), 48, 64, "e" * 1_000_000, 192)
    assert len(str(error.value)) < 400 and "1000000 characters" in str(error.value)


def test_output_budget_estimate_follows_the_configuration():
    assert output_bytes(640, 480) == 640 * 480 * (4 + 32 + 3)  # xyzrgb cloud: PCL's 32-byte points
    assert output_bytes(640, 480, cloud_rgb=False) == 640 * 480 * (4 + 16 + 3)
    assert output_bytes(640, 480, cloud=False, colorized=False, depth_bytes_per_pixel=2) == 640 * 480 * 2
    assert output_bytes(641, 481, cloud_decimation=2, colorized=False) == 641 * 481 * 4 + 321 * 241 * 32
    assert output_bytes(4096, 2304) <= FrameBudget().max_output_bytes  # the defaults fit a 4K camera
    FrameBudget().check_pixels(3840, 2160)
    with pytest.raises(BudgetError):
        FrameBudget().check_outputs(output_bytes(8000, 6000))


def test_clip_text():
    assert clip_text("abc") == "'abc'"
    clipped = clip_text("x" * 10_000, 20)
    assert clipped.startswith("'" + "x" * 20 + "'") and "10000 characters" in clipped and len(clipped) < 60


def test_read_image_file_refuses_truncated_files(tmp_path):
    (tmp_path / "good.jpg").write_bytes(encode(".jpg"))
    (tmp_path / "cut.jpg").write_bytes(encode(".jpg")[:300])
    (tmp_path / "img.bmp").write_bytes(encode(".bmp"))
    assert read_image_file(tmp_path / "good.jpg").shape == RGB.shape
    np.testing.assert_array_equal(read_image_file(tmp_path / "img.bmp"), RGB)  # other file formats: as before
    with pytest.raises(InputError, match="truncated JPEG"):
        read_image_file(tmp_path / "cut.jpg")
    with pytest.raises(FileNotFoundError):
        read_image_file(tmp_path / "missing.png")


class Info:
    def __init__(self, k, d=(0.0,) * 5, width=64, height=48, distortion_model="plumb_bob"):
        self.k, self.d, self.width, self.height, self.distortion_model = k, d, width, height, distortion_model


def test_camera_info_problems_are_named_per_field():
    k = [40.0, 0, 30.0, 0, 42.0, 20.0, 0, 0, 1]
    assert camera_info_field_problems(k) == []
    nan_cx = list(k)
    nan_cx[2] = float("nan")
    with pytest.raises(CameraInfoError, match=r"K cx=nan \(K\[2\]\) is not finite") as error:
        intrinsics_from_camera_info(Info(nan_cx), 64, 48)
    assert "fx" not in str(error.value)
    negative_fy = list(k)
    negative_fy[4] = -5.0
    assert camera_info_field_problems(negative_fy) == ["K fy=-5.0 (K[4]) must be > 0"]
    with pytest.raises(CameraInfoError, match="D has 2000000 values") as error:
        intrinsics_from_camera_info(Info(k, d=np.zeros(2_000_000)), 64, 48)
    assert len(str(error.value)) < 300
    with pytest.raises(CameraInfoError, match="distortion_model has 100000 characters"):
        intrinsics_from_camera_info(Info(k, distortion_model="p" * 100_000), 64, 48)
    assert intrinsics_from_camera_info(Info(k, d=[0.1] * 8, distortion_model="rational_polynomial"), 64, 48).cx == 30


# ---- EXIF orientation (issue 22) -------------------------------------------------------------------

def with_exif_orientation(jpeg: bytes, orientation: int, big_endian: bool = False) -> bytes:
    """The JPEG with an APP1 Exif segment (IFD0: Orientation) after SOI, as cameras and phones write it."""
    order = ">" if big_endian else "<"
    import struct

    tiff = (b"MM" if big_endian else b"II") + struct.pack(order + "HI", 42, 8)
    tiff += struct.pack(order + "H", 1) + struct.pack(order + "HHIHH", 0x0112, 3, 1, orientation, 0)
    tiff += struct.pack(order + "I", 0)
    payload = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def orientation_test_jpeg():
    """A 64x48 JPEG whose quadrants have different colours (any turn or mirror shows)."""
    image = np.zeros((48, 64, 3), np.uint8)
    image[:24, :32] = (255, 0, 0)
    image[:24, 32:] = (0, 255, 0)
    image[24:, :32] = (0, 0, 255)
    image[24:, 32:] = (255, 255, 0)
    return image, cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_camera_frames_are_decoded_in_sensor_order_whatever_their_exif_orientation(orientation):
    """image_transport's decoders give the stored pixel order, which is what the CameraInfo describes.
    Before: orientation 6 was refused on every frame ("decoded to 48x64, its header says 64x48")."""
    from mde_ros.pipeline.imagecodec import decode_compressed, exif_orientation

    _, plain = orientation_test_jpeg()
    tagged = with_exif_orientation(plain, orientation, big_endian=orientation % 2 == 0)
    assert exif_orientation(tagged) == orientation
    np.testing.assert_array_equal(decode_compressed(tagged, "jpeg"), decode_compressed(plain, "jpeg"))
    from types import SimpleNamespace

    msg = SimpleNamespace(format="jpeg", data=tagged, header=SimpleNamespace(frame_id="camera_optical_frame"))
    assert message_to_rgb(msg, True).shape == (48, 64, 3)  # the node's and replay's decode
    image, _ = orientation_test_jpeg()  # PNG's eXIf chunk, which OpenCV 5 applies too
    np.testing.assert_array_equal(decode_compressed(png_with_exif_orientation(image, orientation), "png"), image)


def png_with_exif_orientation(image, orientation):
    """A PNG with an eXIf chunk (PNG 1.5) after IHDR."""
    import struct

    png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()
    tiff = b"II" + struct.pack("<HI", 42, 8) + struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1,
                                                                                 orientation, 0) + struct.pack("<I", 0)
    chunk = struct.pack(">I", len(tiff)) + b"eXIf" + tiff + struct.pack(">I", zlib.crc32(b"eXIf" + tiff))
    return png[:33] + chunk + png[33:]


@pytest.mark.parametrize("codec", ["jpeg", "png"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_photos_are_turned_upright_as_opencv_and_photo_viewers_do(tmp_path, orientation, codec):
    """predict's files: the EXIF orientation applied (OpenCV's own imread, which honours EXIF, is the
    reference) and said in a note."""
    image, plain = orientation_test_jpeg()
    path = tmp_path / ("photo.jpg" if codec == "jpeg" else "photo.png")
    path.write_bytes(with_exif_orientation(plain, orientation) if codec == "jpeg"
                     else png_with_exif_orientation(image, orientation))
    notes = []
    upright = read_image_file(path, notes=notes)
    reference = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(upright, reference)
    assert bool(notes) == (orientation != 1)
    if orientation == 6:
        assert notes == ["EXIF orientation 6: rotated 90 degrees clockwise to upright (48x64)"]
