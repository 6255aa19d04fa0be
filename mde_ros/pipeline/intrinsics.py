"""Pinhole intrinsics and their scaling to the network resolution."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

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
