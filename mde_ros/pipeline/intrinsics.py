"""Pinhole intrinsics and their scaling to the network resolution."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Sequence

# NYU Depth V2 colour camera (NYU toolbox), at 640x480.
NYU_FX, NYU_FY, NYU_CX, NYU_CY = 518.8579, 519.4696, 325.5824, 253.7362
NYU_WIDTH, NYU_HEIGHT = 640, 480


@dataclass(frozen=True)
class Intrinsics:
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def from_k(cls, k: Sequence[float], width: int, height: int) -> "Intrinsics":
        """Build from a row-major 3x3 K (CameraInfo.k)."""
        values = [float(v) for v in k]
        if len(values) != 9:
            raise ValueError(f"K must have 9 values, got {len(values)}")
        return cls(fx=values[0], fy=values[4], cx=values[2], cy=values[5], width=int(width), height=int(height))

    def k(self) -> list[float]:
        return [self.fx, 0.0, self.cx, 0.0, self.fy, self.cy, 0.0, 0.0, 1.0]

    def p(self) -> list[float]:
        """3x4 row-major projection (CameraInfo.p) of this camera as a rectified monocular one."""
        return [self.fx, 0.0, self.cx, 0.0, 0.0, self.fy, self.cy, 0.0, 0.0, 0.0, 1.0, 0.0]

    def is_valid(self) -> bool:
        """An all-zero K (a real failure mode of some drivers) silently breaks clouds: reject it."""
        return (
            all(math.isfinite(v) for v in (self.fx, self.fy, self.cx, self.cy))
            and self.fx > 0
            and self.fy > 0
            and self.width > 0
            and self.height > 0
        )

    def scaled(self, width: int, height: int) -> "Intrinsics":
        """Intrinsics of the same camera after resizing the image to (width, height).

        Per-axis scaling as image_proc's resize does (cx * sx, not width / 2), so a stretched
        network input keeps its own focal lengths per axis.
        """
        sx = width / self.width
        sy = height / self.height
        return replace(self, fx=self.fx * sx, cx=self.cx * sx, fy=self.fy * sy, cy=self.cy * sy,
                       width=int(width), height=int(height))

    @classmethod
    def nyu(cls, width: int = NYU_WIDTH, height: int = NYU_HEIGHT) -> "Intrinsics":
        """The NYU Depth V2 colour camera, scaled to (width, height)."""
        return cls(NYU_FX, NYU_FY, NYU_CX, NYU_CY, NYU_WIDTH, NYU_HEIGHT).scaled(width, height)


# A CameraInfo at another resolution than its image is scaled only when both axes scale alike
# (the image was resized without updating the info); anything else is a mismatched pairing.
ASPECT_TOLERANCE = 0.01


class CameraInfoError(ValueError):
    """A CameraInfo that cannot describe the image; `kind` names the problem for diagnostics."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def intrinsics_from_camera_info(info: Any, width: int, height: int) -> Intrinsics:
    """Intrinsics of a width x height image described by a CameraInfo (any object with k, width, height
    and optionally d, distortion_model, binning_x/y, roi: rclpy's or rosbags' message).

    REP 104: K is the calibration at the full sensor resolution (info.width x info.height); the image
    the camera sends is the ROI (in unbinned sensor pixels) divided by the binning, so the principal
    point moves by the ROI offset and every pixel quantity is divided by the binning, as
    image_geometry's PinholeCameraModel does. An image of yet another resolution is taken as resized
    (scaled per axis) when its aspect ratio agrees; otherwise CameraInfoError, so no wrong cloud is
    published. Implausible K (skew beyond half a pixel, K[8] != 1, a principal point far outside the
    sensor) is refused with the field named.
    """
    if len(info.k) != 9:
        raise CameraInfoError("camera_info_invalid", f"CameraInfo K has {len(info.k)} values (need 9); "
                              "treating it as missing")
    k = [float(v) for v in info.k]
    if not any(k):
        raise CameraInfoError("camera_info_zero_k",
                              "CameraInfo K is all zero (uncalibrated driver?): an all-zero K silently "
                              "breaks point clouds in other stacks; treating it as missing")
    if info.width <= 0 or info.height <= 0:
        raise CameraInfoError("camera_info_invalid",
                              f"CameraInfo has no resolution ({info.width}x{info.height}); treating it as missing")
    problems = camera_info_field_problems(k, getattr(info, "d", ()), getattr(info, "distortion_model", ""),
                                          int(info.width), int(info.height))
    problems += sensor_window_problems(info)
    if problems:
        raise CameraInfoError("camera_info_invalid", "CameraInfo " + "; ".join(problems) + "; treating it as missing")
    image_k, _, image_width, image_height = image_matrices(info)
    return at_image_resolution(Intrinsics.from_k(image_k, image_width, image_height), width, height)


# Sender-controlled arrays and strings a CameraInfo carries into the published depth/camera_info.
MAX_DISTORTION_COEFFS = 14  # OpenCV's full model (k1..k6, p1, p2, s1..s4, tx, ty) is the largest in use
MAX_DISTORTION_MODEL_CHARS = 64
_K_FIELDS = {"fx": 0, "cx": 2, "fy": 4, "cy": 5}
# How far outside the sensor a principal point may lie, as a fraction of the sensor's size beyond each
# edge: shift lenses move it off-centre, but half an image outside is a wrong field (cx = 1e5), not optics.
MAX_PRINCIPAL_POINT_OUTSIDE = 0.5
# Skew moves a pixel by K[1] * (v - cy) / fy columns; the pipeline's pinhole has none, so a skew that
# moves any row by more than this many pixels is refused rather than silently dropped.
MAX_SKEW_SHIFT_PX = 0.5
# Binning beyond this is not a camera setting (image sensors bin 2x2..8x8; 64 leaves room).
MAX_BINNING = 64


def principal_point_problems(cx: float, cy: float, width: int, height: int, what: str = "K") -> list[str]:
    """The principal point must lie on the sensor or near it (MAX_PRINCIPAL_POINT_OUTSIDE)."""
    problems = []
    for name, value, size, index in (("cx", cx, width, 2), ("cy", cy, height, 5)):
        low, high = -MAX_PRINCIPAL_POINT_OUTSIDE * size, (1 + MAX_PRINCIPAL_POINT_OUTSIDE) * size
        if math.isfinite(value) and size > 0 and not low <= value <= high:
            field = f"K {name}={value:g} (K[{index}])" if what == "K" else f"{what}{name} {value:g}"
            problems.append(f"{field} is far outside the {width}x{height} image (allowed {low:g}..{high:g})")
    return problems


def camera_info_field_problems(k: Sequence[float], d: Sequence[float] = (), distortion_model: str = "",
                               width: int = 0, height: int = 0) -> list[str]:
    """Each unusable CameraInfo field by name ("K cx=nan (K[2]) is not finite"), so a NaN cx is
    not reported as a bad focal length; empty when K, D and the model name are usable. With the
    calibration's width and height the principal point is also checked against the sensor."""
    problems = []
    for name, index in _K_FIELDS.items():
        value = float(k[index])
        if not math.isfinite(value):
            problems.append(f"K {name}={value} (K[{index}]) is not finite")
        elif name in ("fx", "fy") and value <= 0:
            problems.append(f"K {name}={value} (K[{index}]) must be > 0")
    for index in (3, 6, 7):
        if float(k[index]) != 0.0:
            problems.append(f"K[{index}]={float(k[index]):g} must be 0 (K is [fx s cx; 0 fy cy; 0 0 1])")
    if not (math.isfinite(float(k[8])) and abs(float(k[8]) - 1.0) <= 1e-9):
        problems.append(f"K[8]={float(k[8]):g} must be 1 (K is [fx s cx; 0 fy cy; 0 0 1])")
    skew, fy = float(k[1]), float(k[4])
    if not math.isfinite(skew):
        problems.append(f"K skew={skew} (K[1]) is not finite")
    elif skew and not problems and height > 0 and abs(skew) * height / fy > MAX_SKEW_SHIFT_PX:
        problems.append(f"K skew={skew:g} (K[1]) moves pixels by up to {abs(skew) * height / fy:.1f} px: "
                        "this pipeline's pinhole model has no skew (rectify the image first)")
    if not problems and width > 0 and height > 0:
        problems += principal_point_problems(float(k[2]), float(k[5]), width, height)
    if len(d) > MAX_DISTORTION_COEFFS:
        problems.append(f"D has {len(d)} values (no distortion model has more than {MAX_DISTORTION_COEFFS})")
    elif not all(math.isfinite(float(v)) for v in d):
        problems.append("D has non-finite values: " + str([float(v) for v in d]))
    if len(distortion_model) > MAX_DISTORTION_MODEL_CHARS:
        problems.append(f"distortion_model has {len(distortion_model)} characters (at most "
                        f"{MAX_DISTORTION_MODEL_CHARS}): {distortion_model[:40]!r}...")
    return problems


def _binning(info: Any) -> tuple[int, int]:
    """REP 104: binning 0 means the same as 1 (no binning)."""
    return max(1, int(getattr(info, "binning_x", 0) or 0)), max(1, int(getattr(info, "binning_y", 0) or 0))


def _roi(info: Any) -> tuple[int, int, int, int]:
    """(x_offset, y_offset, width, height) in full-resolution sensor pixels; an all-zero ROI is the
    full sensor (REP 104)."""
    roi = getattr(info, "roi", None)
    if roi is None:
        return 0, 0, int(info.width), int(info.height)
    values = tuple(int(getattr(roi, name, 0) or 0) for name in ("x_offset", "y_offset", "width", "height"))
    return values if any(values) else (0, 0, int(info.width), int(info.height))


def sensor_window_problems(info: Any) -> list[str]:
    """Binning and ROI that cannot describe a window of this sensor, each field by name."""
    problems = []
    bx, by = _binning(info)
    for name, value in (("binning_x", bx), ("binning_y", by)):
        if value > MAX_BINNING:
            problems.append(f"{name}={value} is not a binning (at most {MAX_BINNING})")
    x, y, w, h = _roi(info)
    if w <= 0 or h <= 0:
        problems.append(f"roi {w}x{h} at ({x}, {y}) is empty")
    elif x + w > info.width or y + h > info.height:
        problems.append(f"roi {w}x{h} at ({x}, {y}) extends past the {info.width}x{info.height} sensor")
    elif not problems and (w // bx == 0 or h // by == 0):
        problems.append(f"roi {w}x{h} binned {bx}x{by} leaves no pixel")
    return problems


def camera_info_image_size(info: Any) -> tuple[int, int]:
    """(width, height) of the image a CameraInfo describes: its ROI divided by its binning (REP 104)."""
    bx, by = _binning(info)
    _, _, w, h = _roi(info)
    return w // bx, h // by


def image_matrices(info: Any) -> tuple[list[float], list[float], int, int]:
    """(K, P, width, height) of the image the camera sends, from a CameraInfo whose K and P are for
    the full sensor (REP 104): the ROI offset moves the principal point, binning divides every pixel
    quantity (fx, skew, cx, Tx per column; fy, cy, Ty per row), as image_geometry's PinholeCameraModel."""
    bx, by = _binning(info)
    x, y, _, _ = _roi(info)
    width, height = camera_info_image_size(info)
    k = [float(v) for v in info.k]
    k[2] -= x
    k[5] -= y
    k = [v / s for v, s in zip(k, (bx, bx, bx, by, by, by, 1, 1, 1))]
    p_in = getattr(info, "p", None)
    p = [float(v) for v in p_in] if p_in is not None and len(p_in) == 12 else Intrinsics.from_k(k, 1, 1).p()
    if p_in is not None and len(p_in) == 12:
        p[2] -= x * p[10]
        p[6] -= y * p[10]
        p = [v / s for v, s in zip(p, (bx, bx, bx, bx, by, by, by, by, 1, 1, 1, 1))]
    return k, p, width, height


def at_image_resolution(intr: Intrinsics, width: int, height: int) -> Intrinsics:
    """A calibration for a width x height image: as is, or scaled per axis when only the resolution
    differs (the image was resized, its calibration was not); CameraInfoError for another aspect ratio."""
    if (intr.width, intr.height) == (width, height):
        return intr
    sx, sy = width / intr.width, height / intr.height
    if abs(sx - sy) > ASPECT_TOLERANCE * max(sx, sy):
        raise CameraInfoError("camera_info_resolution",
                              f"CameraInfo is for {intr.width}x{intr.height} but the image is {width}x{height} "
                              "(different aspect ratio): not the camera of this image; treating it as missing")
    return intr.scaled(width, height)


def camera_info_matrices(intr: Intrinsics, template: Any | None = None) -> tuple[list[float], list[float]]:
    """(K, P) for the CameraInfo published with an image that `intr` describes.

    With the camera's own CameraInfo (`template`), its K and P for the image the camera sent (ROI and
    binning applied, image_matrices) scaled per axis to intr's resolution, so P keeps the camera's
    Tx/Ty; without one, intr's pinhole. The published CameraInfo then has binning 0 and no ROI
    (published_window): its K is already that of the published image, and a consumer must not apply
    the camera's ROI or binning a second time.
    """
    if template is None:
        return intr.k(), intr.p()
    k_image, p_image, width, height = image_matrices(template)
    if width <= 0 or height <= 0:  # a template the checks refuse (intrinsics_from_camera_info)
        return intr.k(), intr.p()
    sx, sy = intr.width / width, intr.height / height
    k = [v * s for v, s in zip(k_image, (sx, sx, sx, sy, sy, sy, 1.0, 1.0, 1.0))]
    p = [v * s for v, s in zip(p_image, (sx, sx, sx, sx, sy, sy, sy, sy, 1.0, 1.0, 1.0, 1.0))]
    return k, p
