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


# ---- REP 104: ROI and binning (image_geometry's PinholeCameraModel semantics) ----------------------

def camera_info(k=K, width=640, height=480, binning=(0, 0), roi=(0, 0, 0, 0), p=None):
    return SimpleNamespace(
        k=list(k), width=width, height=height, binning_x=binning[0], binning_y=binning[1],
        roi=SimpleNamespace(x_offset=roi[0], y_offset=roi[1], width=roi[2], height=roi[3]),
        p=p if p is not None else [k[0], 0.0, k[2], -25.0, 0.0, k[4], k[5], 0.0, 0.0, 0.0, 1.0, 0.0],
        d=[0.0] * 5, distortion_model="plumb_bob")


# Sensor 640x480, K = fx 500, fy 510, cx 330, cy 250. Each row: binning, ROI (x, y, w, h) in sensor pixels,
# the image the node receives (w, h), and (fx, fy, cx, cy) computed by hand:
#   ROI then binning: cx' = (cx - x) / bx, fx' = fx / bx; then a resize of the received image by s: * s.
GEOMETRY_TABLE = [
    # binning, roi, image, expected (fx, fy, cx, cy)
    ((0, 0), (0, 0, 0, 0), (640, 480), (500.0, 510.0, 330.0, 250.0)),          # full sensor
    ((1, 1), (0, 0, 640, 480), (640, 480), (500.0, 510.0, 330.0, 250.0)),      # explicit full ROI, binning 1
    ((0, 0), (160, 120, 320, 240), (320, 240), (500.0, 510.0, 170.0, 130.0)),  # the ROI: offset, not scaled
    ((2, 2), (0, 0, 0, 0), (320, 240), (250.0, 255.0, 165.0, 125.0)),          # binning 2 divides
    ((2, 2), (160, 120, 320, 240), (160, 120), (250.0, 255.0, 85.0, 65.0)),    # ROI then binning
    ((2, 1), (0, 0, 0, 0), (320, 480), (250.0, 510.0, 165.0, 250.0)),          # per-axis binning
    ((0, 0), (100, 40, 400, 300), (200, 150), (250.0, 255.0, 115.0, 105.0)),  # ROI, then resized by 1/2
    ((2, 2), (160, 120, 320, 240), (320, 240), (500.0, 510.0, 170.0, 130.0)),  # ROI + binning 2, resized x2
    ((4, 4), (0, 0, 0, 0), (80, 60), (62.5, 63.75, 41.25, 31.25)),           # binning 4, resized 1/2
]


@pytest.mark.parametrize("binning, roi, image, expected", GEOMETRY_TABLE)
def test_roi_binning_and_resize_give_the_hand_computed_intrinsics(binning, roi, image, expected):
    from mde_ros.pipeline.intrinsics import camera_info_matrices

    intr = intrinsics_from_camera_info(camera_info(binning=binning, roi=roi), *image)
    assert (intr.fx, intr.fy, intr.cx, intr.cy) == pytest.approx(expected)
    assert (intr.width, intr.height) == image
    # The published depth CameraInfo: K and P of the published image (here at half the image's size),
    # so a consumer that applies REP 104 with binning 0 and no ROI gets the same camera back.
    half = intr.scaled(image[0] // 2, image[1] // 2)
    k, p = camera_info_matrices(half, camera_info(binning=binning, roi=roi))
    assert k == pytest.approx(half.k())
    assert [p[0], p[2], p[5], p[6]] == pytest.approx([half.fx, half.cx, half.fy, half.cy])
    assert p[3] == pytest.approx(-25.0 / max(1, binning[0]) * half.width / (
        (roi[2] or 640) // max(1, binning[0])))  # Tx follows the columns' scale


def test_a_camera_info_with_roi_is_not_scaled_like_a_resized_image():
    """The issue's case: 640x480 CameraInfo, ROI (160,120,320,240), 320x240 image: fx stays 500
    (scaling would give 250 and half the depth after camera-aware rescale)."""
    intr = intrinsics_from_camera_info(camera_info(roi=(160, 120, 320, 240)), 320, 240)
    assert (intr.fx, intr.cx) == (500.0, 170.0)


@pytest.mark.parametrize("change, field", [
    ({"k": [500.0, 0, 1e5, 0, 510.0, 250.0, 0, 0, 1]}, r"K cx=100000 \(K\[2\]\) is far outside"),
    ({"k": [500.0, 0, 330.0, 0, 510.0, -400.0, 0, 0, 1]}, r"K cy=-400 \(K\[5\]\) is far outside"),
    ({"k": [500.0, 0, 330.0, 0, 510.0, 250.0, 0, 0, 0]}, r"K\[8\]=0 must be 1"),
    ({"k": [500.0, 0, 330.0, 0, 510.0, 250.0, 0, 0, 2]}, r"K\[8\]=2 must be 1"),
    ({"k": [500.0, 0, 330.0, 0, 510.0, 250.0, 1, 0, 1]}, r"K\[6\]=1 must be 0"),
    ({"k": [500.0, 5.0, 330.0, 0, 510.0, 250.0, 0, 0, 1]}, r"K skew=5 \(K\[1\]\) moves pixels by up to 4.7 px"),
    ({"roi": (400, 0, 320, 240)}, r"roi 320x240 at \(400, 0\) extends past the 640x480 sensor"),
    ({"binning": (1000, 1)}, r"binning_x=1000 is not a binning"),
])
def test_implausible_camera_info_is_refused_with_the_field_named(change, field):
    with pytest.raises(CameraInfoError, match=field) as error:
        intrinsics_from_camera_info(camera_info(**change), 640, 480)
    assert error.value.kind == "camera_info_invalid"


def test_sub_pixel_skew_is_accepted_and_kept_in_the_published_k():
    from mde_ros.pipeline.intrinsics import camera_info_matrices

    k = [500.0, 0.2, 330.0, 0, 510.0, 250.0, 0, 0, 1]  # moves rows by at most 0.19 px
    intr = intrinsics_from_camera_info(camera_info(k=k, binning=(2, 2)), 320, 240)
    assert intr.fx == 250.0
    assert camera_info_matrices(intr, camera_info(k=k, binning=(2, 2)))[0][1] == pytest.approx(0.1)


def test_a_shift_lens_principal_point_off_centre_is_accepted():
    k = [500.0, 0, 700.0, 0, 510.0, -100.0, 0, 0, 1]  # outside the 640x480 image, within half its size
    assert intrinsics_from_camera_info(camera_info(k=k), 640, 480).cx == 700.0
