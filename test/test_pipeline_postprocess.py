"""Network output -> metres, intrinsics at network resolution, camera-aware rescale, resize back."""
import math

import numpy as np
import pytest

from mde_ros.models.card import ModelCard
from mde_ros.pipeline.intrinsics import Intrinsics
from mde_ros.pipeline.postprocess import (camera_rescale_factor, clamp_depth, network_intrinsics, raw_to_depth,
                                          to_camera_resolution)
from mde_ros.pipeline.preprocess import resize_info

CAMERA = Intrinsics(fx=500.0, fy=480.0, cx=330.0, cy=250.0, width=640, height=480)


def card(**kwargs) -> ModelCard:
    kwargs.setdefault("input_height", 320)
    kwargs.setdefault("input_width", 320)
    return ModelCard(name="test", architecture="external", **kwargs)


def test_metric_depth_is_scale_times_raw_plus_shift():
    raw = np.array([1.0, 2.0, -1.0, 0.0, np.nan, np.inf], np.float32)
    depth = raw_to_depth(raw, card(output="metric_depth", output_scale=2.0, output_shift=0.5))
    assert depth.dtype == np.float32
    np.testing.assert_array_equal(depth[:2], [2.5, 4.5])
    # raw 0 -> 0.5 m is a valid depth; -1 -> -1.5 m is not
    assert np.isnan(depth[2]) and depth[3] == 0.5 and np.isnan(depth[4]) and np.isnan(depth[5])


def test_inverse_depth_is_one_over_affine_raw():
    raw = np.array([0.5, 0.25, 0.0, -0.1], np.float32)
    depth = raw_to_depth(raw, card(output="inverse_depth", output_scale=1.0, output_shift=0.0))
    np.testing.assert_array_equal(depth[:2], [2.0, 4.0])
    assert np.isnan(depth[2]) and np.isnan(depth[3])
    shifted = raw_to_depth(np.array([1.0], np.float32), card(output="inverse_depth", output_scale=2.0,
                                                             output_shift=0.5))
    np.testing.assert_allclose(shifted, [1 / 2.5])


def test_disparity_is_scale_over_raw():
    raw = np.array([50.0, 25.0, 0.0, -3.0], np.float32)
    depth = raw_to_depth(raw, card(output="disparity", output_scale=100.0))  # baseline * fx = 100
    np.testing.assert_array_equal(depth[:2], [2.0, 4.0])
    assert np.isnan(depth[2:]).all()


def test_raw_to_depth_does_not_modify_its_input():
    raw = np.array([-1.0, 1.0], np.float32)
    raw_to_depth(raw, card())
    np.testing.assert_array_equal(raw, [-1.0, 1.0])


def test_stretch_scales_intrinsics_per_axis():
    net = network_intrinsics(CAMERA, resize_info(480, 640, 320, 320, "stretch"))
    assert (net.width, net.height) == (320, 320)
    assert net.fx == pytest.approx(500 * 0.5) and net.cx == pytest.approx(330 * 0.5)
    assert net.fy == pytest.approx(480 * 2 / 3) and net.cy == pytest.approx(250 * 2 / 3)


def test_letterbox_scales_uniformly_and_shifts_by_the_padding():
    net = network_intrinsics(CAMERA, resize_info(480, 640, 320, 320, "letterbox"))
    assert net.fx == pytest.approx(250.0) and net.fy == pytest.approx(240.0)
    assert net.cx == pytest.approx(165.0) and net.cy == pytest.approx(125.0 + 40)


def test_network_intrinsics_reject_a_different_image_size():
    with pytest.raises(ValueError, match="intrinsics are for 640x480 but the image is 320x240"):
        network_intrinsics(CAMERA, resize_info(240, 320, 320, 320))


def test_rescale_is_the_focal_ratio_at_network_resolution():
    # Camera with twice the training focal length: everything looks twice as big -> depth x2.
    training = card(train_focal_px=125.0)
    net = network_intrinsics(CAMERA, resize_info(480, 640, 320, 320))
    assert camera_rescale_factor(net, training) == pytest.approx(250.0 / 125.0)


def test_rescale_is_one_when_a_focal_length_is_unknown():
    net = network_intrinsics(CAMERA, resize_info(480, 640, 320, 320))
    assert camera_rescale_factor(net, card()) == 1.0
    assert camera_rescale_factor(None, card(train_focal_px=100.0)) == 1.0
    zero_k = Intrinsics(0.0, 0.0, 0.0, 0.0, 320, 320)
    assert camera_rescale_factor(zero_k, card(train_focal_px=100.0)) == 1.0


def test_stretch_back_to_camera_resolution_keeps_a_plane_exact():
    info = resize_info(480, 640, 320, 320, "stretch")
    depth = to_camera_resolution(np.full((320, 320), 2.5, np.float32), info)
    assert depth.shape == (480, 640) and depth.dtype == np.float32
    np.testing.assert_array_equal(depth, 2.5)


def test_letterbox_padding_is_cropped_away():
    info = resize_info(480, 640, 320, 320, "letterbox")
    depth_net = np.full((320, 320), 99.0, np.float32)  # padding rows: garbage the network made up
    depth_net[40:280] = np.linspace(1.0, 4.0, 240, dtype=np.float32)[:, None]
    depth = to_camera_resolution(depth_net, info)
    assert depth.shape == (480, 640)
    assert depth.max() <= 4.0 and depth.min() >= 1.0
    assert depth[0, 0] == pytest.approx(1.0, abs=0.02) and depth[-1, -1] == pytest.approx(4.0, abs=0.02)


def test_half_resolution_network_output_is_handled():
    info = resize_info(480, 640, 320, 320, "letterbox")
    depth_net = np.full((160, 160), 99.0, np.float32)
    depth_net[20:140] = 3.0
    np.testing.assert_array_equal(to_camera_resolution(depth_net, info), 3.0)


def test_to_camera_resolution_needs_a_2d_map():
    with pytest.raises(ValueError, match="HxW"):
        to_camera_resolution(np.zeros((1, 1, 320, 320), np.float32), resize_info(480, 640, 320, 320))


def test_clamp_clips_into_range_and_keeps_nan():
    clamped = clamp_depth(np.array([0.01, 1.0, 20.0, np.nan, math.inf]), 0.1, 10.0)
    assert clamped.dtype == np.float32
    np.testing.assert_array_equal(clamped[:3], [np.float32(0.1), 1.0, 10.0])
    assert np.isnan(clamped[3]) and clamped[4] == 10.0


@pytest.mark.parametrize("mode, torch_mode, align", [("linear", "bilinear", False),
                                                     ("linear_align_corners", "bilinear", True),
                                                     ("cubic", "bicubic", False)])
@pytest.mark.parametrize("size", [(37, 53), (120, 90)])  # up and down
def test_output_resize_matches_torch_interpolate(mode, torch_mode, align, size):
    """The card's output_interpolation reproduces the families' own F.interpolate calls (DA-V2 bilinear
    align_corners=True, MiDaS bicubic) on a rough map, where the rules differ most."""
    torch = pytest.importorskip("torch")
    from mde_ros.pipeline.postprocess import resize_output

    raw = np.random.default_rng(0).uniform(0.5, 2.0, (64, 80)).astype(np.float32)
    ours = resize_output(raw, size[1], size[0], mode)
    theirs = torch.nn.functional.interpolate(torch.from_numpy(raw)[None, None], size, mode=torch_mode,
                                             align_corners=align)[0, 0].numpy()
    tolerance = 2e-3 if (mode == "cubic" and size[0] < 64) else 1e-4  # OpenCV and torch differ in cubic downscaling
    assert np.max(np.abs(ours - theirs) / theirs) < tolerance
    if mode != "linear":  # and the rules do differ on such a map
        plain = resize_output(raw, size[1], size[0], "linear")
        assert np.max(np.abs(plain - theirs) / theirs) > 10 * tolerance
