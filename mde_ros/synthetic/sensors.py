"""Simulated metric sensors on exact synthetic depth: what tests and `mde-ros stability` anchor with.

Stand-ins for real sensors, named as such: a single-beam rangefinder that reports the nearest
return inside its cone (sensor_msgs/Range's definition), a multi-row lidar (rows of points at fixed
elevation angles, every few degrees of azimuth), random sparse metric points; each with relative
Gaussian noise. Glitches (a reading multiplied for some frames) and dropouts are applied by the
caller. Pure numpy.
"""
from __future__ import annotations

import math

import numpy as np

from mde_ros.pipeline.anchoring import RangeReading
from mde_ros.pipeline.intrinsics import Intrinsics


def camera_points(depth: np.ndarray, intr: Intrinsics) -> np.ndarray:
    """HxWx3 camera-frame points of a depth map (NaN where invalid)."""
    v, u = np.mgrid[0:depth.shape[0], 0:depth.shape[1]]
    z = np.where(np.isfinite(depth) & (depth > 0), depth, np.nan).astype(np.float64)
    return np.stack([(u - intr.cx) / intr.fx * z, (v - intr.cy) / intr.fy * z, z], axis=-1)


def range_reading(depth: np.ndarray, intr: Intrinsics, field_of_view: float,
                  origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
                  direction: tuple[float, float, float] = (0.0, 0.0, 1.0), noise: float = 0.0,
                  rng: np.random.Generator | None = None) -> RangeReading | None:
    """The nearest return inside the cone (full angle `field_of_view`, radians) among the visible
    surface points, with relative noise; None when no visible point lies in the cone."""
    axis = np.asarray(direction, np.float64)
    axis = axis / np.linalg.norm(axis)
    rays = camera_points(depth, intr).reshape(-1, 3) - np.asarray(origin, np.float64)
    dist = np.linalg.norm(rays, axis=1)
    with np.errstate(invalid="ignore"):
        inside = (rays @ axis) >= math.cos(max(field_of_view, 1e-3) / 2) * dist
    inside &= np.isfinite(dist)
    if not inside.any():
        return None
    reading = float(dist[inside].min())
    if noise and rng is not None:
        reading *= float(math.exp(rng.normal(0.0, noise)))
    return RangeReading(reading, field_of_view, tuple(float(c) for c in origin), tuple(float(c) for c in axis))


def lidar_points(depth: np.ndarray, intr: Intrinsics, rows: int = 16, vertical_fov: float = math.radians(30.0),
                 azimuth_step: float = math.radians(1.0), noise: float = 0.0,
                 rng: np.random.Generator | None = None) -> np.ndarray:
    """Nx3 points of a `rows`-row lidar at the camera's centre (rows evenly over +-vertical_fov/2
    of elevation, one point every azimuth_step), those the camera sees, with relative range noise."""
    height, width = depth.shape
    elevations = np.linspace(-vertical_fov / 2, vertical_fov / 2, rows)
    half = math.atan2(max(intr.cx, width - intr.cx), intr.fx)
    azimuths = np.arange(-half, half, azimuth_step)
    el, az = np.meshgrid(elevations, azimuths, indexing="ij")
    # ray direction in the optical frame: x right, y down, z forward
    dirs = np.stack([np.cos(el) * np.sin(az), -np.sin(el), np.cos(el) * np.cos(az)], axis=-1).reshape(-1, 3)
    u = np.rint(intr.fx * dirs[:, 0] / dirs[:, 2] + intr.cx).astype(np.intp)
    v = np.rint(intr.fy * dirs[:, 1] / dirs[:, 2] + intr.cy).astype(np.intp)
    ok = (u >= 0) & (u < width) & (v >= 0) & (v < height)
    u, v = u[ok], v[ok]
    z = depth[v, u].astype(np.float64)
    good = np.isfinite(z) & (z > 0)
    u, v, z = u[good], v[good], z[good]
    if noise and rng is not None:
        z = z * np.exp(rng.normal(0.0, noise, z.shape))
    return np.stack([(u - intr.cx) / intr.fx * z, (v - intr.cy) / intr.fy * z, z], axis=1)


def sparse_points(depth: np.ndarray, intr: Intrinsics, n: int, rng: np.random.Generator,
                  noise: float = 0.0) -> np.ndarray:
    """n random valid pixels' exact points (VIO/SLAM map points), with relative noise."""
    valid = np.argwhere(np.isfinite(depth) & (depth > 0))
    v, u = valid[rng.choice(len(valid), size=min(n, len(valid)), replace=False)].T
    z = depth[v, u].astype(np.float64)
    if noise:
        z = z * np.exp(rng.normal(0.0, noise, z.shape))
    return np.stack([(u - intr.cx) / intr.fx * z, (v - intr.cy) / intr.fy * z, z], axis=1)


def best_scale(prediction: np.ndarray, truth: np.ndarray) -> float:
    """The frame's best single factor for a prediction: exp(median log(truth / prediction)) over the
    valid pixels (what per-frame median scaling does); the reference for a scale's error."""
    ok = np.isfinite(prediction) & np.isfinite(truth) & (prediction > 0) & (truth > 0)
    return float(np.exp(np.median(np.log(truth[ok] / prediction[ok]))))
