"""Intrinsics and the CameraInfo checks shared by the node and the bag tool (no ROS types needed)."""
from types import SimpleNamespace

import pytest

from mde_ros.pipeline.intrinsics import CameraInfoError, Intrinsics, intrinsics_from_camera_info


def info(k, width=640, height=480):
    return SimpleNamespace(k=k, width=width, height=height)


K = [500.0, 0.0, 330.0, 0.0, 510.0, 250.0, 0.0, 0.0, 1.0]


def test_k_round_trip_and_validity():
    intr = Intrinsics.from_k(K, 640, 480)
    assert (intr.fx, intr.fy, intr.cx, intr.cy) == (500.0, 510.0, 330.0, 250.0)
    assert intr.k() == K
    assert intr.is_valid()
    assert not Intrinsics.from_k([0.0] * 9, 640, 480).is_valid()
    with pytest.raises(ValueError, match="9 values"):
        Intrinsics.from_k(K[:4], 640, 480)


def test_scaling_is_per_axis_and_keeps_the_principal_point_ratio():
    scaled = Intrinsics.from_k(K, 640, 480).scaled(320, 320)
    assert scaled.fx == pytest.approx(250.0) and scaled.cx == pytest.approx(165.0)
    assert scaled.fy == pytest.approx(510.0 * 320 / 480) and scaled.cy == pytest.approx(250.0 * 320 / 480)
    assert (scaled.width, scaled.height) == (320, 320)


def test_nyu_camera_scales_with_the_image():
    half = Intrinsics.nyu(320, 240)
    assert half.fx == pytest.approx(518.8579 / 2) and half.cy == pytest.approx(253.7362 / 2)


def test_camera_info_same_resolution_and_half_resolution():
    assert intrinsics_from_camera_info(info(K), 640, 480) == Intrinsics.from_k(K, 640, 480)
    half = intrinsics_from_camera_info(info(K), 320, 240)
    assert (half.fx, half.cx, half.width) == (250.0, 165.0, 320)


@pytest.mark.parametrize("bad, kind", [
    (info([0.0] * 9), "camera_info_zero_k"),
    (info(K, 0, 0), "camera_info_invalid"),
    (info([-1.0, 0, 320, 0, 500, 240, 0, 0, 1]), "camera_info_invalid"),
    (info(K, 640, 640), "camera_info_resolution"),
])
def test_camera_info_rejections_name_their_kind(bad, kind):
    with pytest.raises(CameraInfoError) as error:
        intrinsics_from_camera_info(bad, 640, 480)
    assert error.value.kind == kind
