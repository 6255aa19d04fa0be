"""Camera buffers -> RGB -> normalised network input."""
import numpy as np
import pytest

from mde_ros.models.card import ModelCard
from mde_ros.pipeline.preprocess import (SUPPORTED_ENCODINGS, InputError, image_from_buffer, preprocess,
                                         resize_info, to_rgb)

RNG = np.random.default_rng(3)
RGB = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)


def card(height=320, width=320, **kwargs) -> ModelCard:
    return ModelCard(name="test", architecture="external", input_height=height, input_width=width, **kwargs)


def encode(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """The HxWxC pixel layout a camera driver sends for `encoding`."""
    alpha = np.full(rgb.shape[:2] + (1,), 200, np.uint8)
    return {
        "rgb8": rgb,
        "bgr8": rgb[:, :, ::-1],
        "rgba8": np.concatenate([rgb, alpha], axis=2),
        "bgra8": np.concatenate([rgb[:, :, ::-1], alpha], axis=2),
    }[encoding]


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_colour_encodings_round_trip_to_rgb(encoding):
    pixels = np.ascontiguousarray(encode(RGB, encoding))
    image = image_from_buffer(pixels.tobytes(), 5, 7, encoding, step=7 * pixels.shape[2])
    np.testing.assert_array_equal(to_rgb(image, encoding), RGB)


def test_mono8_is_replicated_to_three_channels():
    grey = RGB[:, :, 0].copy()
    image = image_from_buffer(grey.tobytes(), 5, 7, "mono8", step=7)
    assert image.shape == (5, 7)
    rgb = to_rgb(image, "mono8")
    assert rgb.shape == (5, 7, 3)
    for channel in range(3):
        np.testing.assert_array_equal(rgb[:, :, channel], grey)


def test_padded_step_is_skipped_without_copying():
    step = 7 * 3 + 11  # driver pads each row with 11 bytes
    rows = np.full((5, step), 0xEE, np.uint8)
    rows[:, :21] = RGB[:, :, ::-1].reshape(5, 21)
    data = bytearray(rows.tobytes())
    image = image_from_buffer(data, 5, 7, "bgr8", step)
    assert np.shares_memory(image, np.frombuffer(data, np.uint8))
    np.testing.assert_array_equal(to_rgb(image, "bgr8"), RGB)


def test_rgb8_buffer_is_a_view_and_to_rgb_does_not_copy():
    data = bytearray(RGB.tobytes())
    image = image_from_buffer(data, 5, 7, "rgb8", 21)
    assert to_rgb(image, "rgb8") is image
    data[0] = (int(RGB[0, 0, 0]) + 1) % 256
    assert image[0, 0, 0] == data[0]


@pytest.mark.parametrize("args, message", [
    ((b"\0" * 70, 5, 7, "16UC1", 14), "unsupported image encoding '16UC1'"),
    ((b"\0" * 35, 5, 7, "bayer_rggb8", 7), "unsupported image encoding"),
    ((b"\0" * 100, 5, 7, "rgb8", 20), "step 20 is smaller than width * channels = 7 * 3 = 21"),
    ((b"\0" * 104, 5, 7, "rgb8", 21), "image data has 104 bytes but step * height = 21 * 5 = 105"),
    ((b"\0" * 106, 5, 7, "rgb8", 21), "106 bytes"),
    ((b"", 0, 7, "rgb8", 21), "outside 1..16384"),
    ((b"", 5, 0, "rgb8", 0), "outside 1..16384"),
    ((b"\0" * 3 * 16385, 1, 16385, "rgb8", 3 * 16385), "outside 1..16384"),
])
def test_bad_buffers_raise_input_error_saying_why(args, message):
    with pytest.raises(InputError, match=message.replace("*", r"\*").replace(".", r"\.")):
        image_from_buffer(*args)


def test_input_error_is_a_value_error_and_lists_supported_encodings():
    with pytest.raises(ValueError) as info:
        image_from_buffer(b"", 1, 1, "yuv422", 2)
    for encoding in SUPPORTED_ENCODINGS:
        assert encoding in str(info.value)


@pytest.mark.parametrize("image, encoding", [
    (np.zeros((4, 4, 3), np.uint16), "rgb8"),
    (np.zeros((4, 4, 4), np.uint8), "rgb8"),
    (np.zeros((4, 4, 3), np.uint8), "mono8"),
    (np.zeros((4, 4), np.uint8), "bgra8"),
])
def test_to_rgb_rejects_images_that_do_not_match_their_encoding(image, encoding):
    with pytest.raises(InputError):
        to_rgb(image, encoding)


def test_stretch_normalises_with_the_card_mean_and_std():
    colour = np.array([255, 51, 0], np.uint8)
    rgb = np.broadcast_to(colour, (480, 640, 3)).copy()
    mean, std = (0.5, 0.25, 0.125), (0.25, 0.5, 2.0)
    batch, info = preprocess(rgb, card(256, 320, mean=mean, std=std), "stretch")
    assert batch.shape == (1, 3, 256, 320) and batch.dtype == np.float32 and batch.flags.c_contiguous
    expected = [(1.0 - 0.5) / 0.25, (0.2 - 0.25) / 0.5, (0.0 - 0.125) / 2.0]
    for channel in range(3):
        np.testing.assert_allclose(batch[0, channel], expected[channel], rtol=0, atol=1e-6)
    assert (info.content_top, info.content_left, info.content_height, info.content_width) == (0, 0, 256, 320)
    assert (info.src_height, info.src_width, info.net_height, info.net_width) == (480, 640, 256, 320)


def test_letterbox_keeps_aspect_and_pads_with_the_mean_colour():
    rgb = np.full((480, 640, 3), 255, np.uint8)
    batch, info = preprocess(rgb, card(320, 320), "letterbox")
    # 640x480 scaled by 0.5 -> 320x240, centred: 40 padding rows above and below.
    assert (info.content_top, info.content_left, info.content_height, info.content_width) == (40, 0, 240, 320)
    assert info.scale_x == info.scale_y == 0.5
    np.testing.assert_array_equal(batch[0, :, :40], 0.0)
    np.testing.assert_array_equal(batch[0, :, 280:], 0.0)
    mean, std = np.array(card().mean), np.array(card().std)
    np.testing.assert_allclose(batch[0, :, 40:280].mean(axis=(1, 2)), (1 - mean) / std, rtol=1e-6)


def test_letterbox_of_a_portrait_image_pads_the_sides():
    info = resize_info(640, 480, 320, 320, "letterbox")
    assert (info.content_top, info.content_left, info.content_height, info.content_width) == (0, 40, 320, 240)


def test_downscaling_averages_instead_of_aliasing():
    # Every 4th column white: an area average gives 255/4 everywhere; point sampling would miss it.
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[:, 3::4] = 255
    batch, _ = preprocess(rgb, card(16, 16, mean=(0, 0, 0), std=(1, 1, 1)))
    np.testing.assert_allclose(batch[0], 0.25, atol=1 / 255)


def test_upscaling_interpolates_linearly():
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[:, 1] = 255
    batch, _ = preprocess(rgb, card(4, 8, mean=(0, 0, 0), std=(1, 1, 1)))
    row = batch[0, 0, 0]
    assert row[0] == 0 and row[-1] == 1 and np.all(np.diff(row) >= 0) and 0 < row[4] < 1


def test_preprocess_rejects_non_rgb_and_unknown_policy():
    with pytest.raises(InputError, match="HxWx3 uint8"):
        preprocess(np.zeros((8, 8), np.uint8), card())
    with pytest.raises(InputError, match="unknown resize policy 'crop'"):
        preprocess(np.zeros((8, 8, 3), np.uint8), card(), "crop")


def test_a_padded_buffer_view_preprocesses_like_a_contiguous_image():
    step = 64 * 3 + 13
    data = np.random.default_rng(5).integers(0, 256, step * 40, dtype=np.uint8).tobytes()
    view = to_rgb(image_from_buffer(data, 40, 64, "rgb8", step), "rgb8")
    assert not view.flags.c_contiguous
    np.testing.assert_array_equal(preprocess(view, card(32, 48))[0],
                                  preprocess(np.ascontiguousarray(view), card(32, 48))[0])


@pytest.mark.parametrize("src, expected", [
    ((480, 640), (518, 686)),    # cameras up to 4:1 are sized as Depth-Anything does, unclamped
    ((1080, 1920), (518, 924)),
    ((16, 4096), (56, 16576)),   # thin strips: clamped to 4x the card's pixels, multiples of 14 kept
    ((16, 16384), (28, 33152)),
    ((1, 16384), (14, 76664)),   # shorter side at one multiple: the longer side gets what remains
])
def test_keep_aspect_network_input_is_bounded_by_the_card_size(src, expected):
    from mde_ros.pipeline.preprocess import KEEP_ASPECT_MAX_AREA_FACTOR, resize_info

    info = resize_info(*src, 518, 518, "keep_aspect", "shorter", 14)
    assert (info.net_height, info.net_width) == expected
    assert info.net_height % 14 == 0 and info.net_width % 14 == 0
    assert info.net_height * info.net_width <= KEEP_ASPECT_MAX_AREA_FACTOR * 518 * 518


def test_midas_minimal_resize_matches_its_transform():
    """resize_side 'minimal' (MiDaS v3.1's Resize(resize_method="minimal")): the axis scale nearer 1,
    aspect kept, sides rounded to the multiple, no bound; as MiDaS's get_size computes it."""
    pytest.importorskip("torch")
    import byo_exports as bx

    from mde_ros.pipeline.preprocess import keep_aspect_size

    for src in ((240, 360), (480, 640), (720, 1280), (384, 384), (100, 900), (1000, 300)):
        assert keep_aspect_size(*src, 384, 384, "minimal", 32) == bx.midas_resize_size(*src, 384, 384, 32, "minimal")
