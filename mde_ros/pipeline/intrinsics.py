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
    """Intrinsics of a width x height image described by a CameraInfo (any object with k, width, height:
    rclpy's or rosbags' message).

    A CameraInfo at another resolution is scaled per axis when the aspect ratios agree (what
    image_proc's resize does to K); otherwise CameraInfoError, so no wrong cloud is published.
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
    problems = camera_info_field_problems(k, getattr(info, "d", ()), getattr(info, "distortion_model", ""))
    if problems:
        raise CameraInfoError("camera_info_invalid", "CameraInfo " + "; ".join(problems) + "; treating it as missing")
    intr = Intrinsics.from_k(k, info.width, info.height)
    return at_image_resolution(intr, width, height)


# Sender-controlled arrays and strings a CameraInfo carries into the published depth/camera_info.
MAX_DISTORTION_COEFFS = 14  # OpenCV's full model (k1..k6, p1, p2, s1..s4, tx, ty) is the largest in use
MAX_DISTORTION_MODEL_CHARS = 64
_K_FIELDS = {"fx": 0, "cx": 2, "fy": 4, "cy": 5}


def camera_info_field_problems(k: Sequence[float], d: Sequence[float] = (), distortion_model: str = "") -> list[str]:
    """Each unusable CameraInfo field by name ("K cx=nan (K[2]) is not finite"), so a NaN cx is
    not reported as a bad focal length; empty when K, D and the model name are usable."""
    problems = []
    for name, index in _K_FIELDS.items():
        value = float(k[index])
        if not math.isfinite(value):
            problems.append(f"K {name}={value} (K[{index}]) is not finite")
        elif name in ("fx", "fy") and value <= 0:
            problems.append(f"K {name}={value} (K[{index}]) must be > 0")
    if len(d) > MAX_DISTORTION_COEFFS:
        problems.append(f"D has {len(d)} values (no distortion model has more than {MAX_DISTORTION_COEFFS})")
    elif not all(math.isfinite(float(v)) for v in d):
        problems.append("D has non-finite values: " + str([float(v) for v in d]))
    if len(distortion_model) > MAX_DISTORTION_MODEL_CHARS:
        problems.append(f"distortion_model has {len(distortion_model)} characters (at most "
                        f"{MAX_DISTORTION_MODEL_CHARS}): {distortion_model[:40]!r}...")
    return problems


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

    With the camera's own CameraInfo (`template`: any object with k, p, width, height), its K and P
    scaled per axis to intr's resolution, so P keeps the camera's Tx/Ty; without one, intr's pinhole.
    """
    if template is None:
        return intr.k(), intr.p()
    sx, sy = intr.width / template.width, intr.height / template.height
    k = [float(v) * s for v, s in zip(template.k, (sx, sx, sx, sy, sy, sy, 1.0, 1.0, 1.0))]
    p = [float(v) * s for v, s in zip(template.p, (sx, sx, sx, sx, sy, sy, sy, sy, 1.0, 1.0, 1.0, 1.0))]
    return k, p
