"""Metric scale anchoring: correct the network's metres with what the robot already measures.

A monocular network gets the structure of a scene right far more often than its scale. Robots
usually carry some metric cue; this module turns each into constraints "pixel (u, v) is z metres
away" and fits one factor per frame (or scale AND shift in inverse depth for affine-invariant
models), robustly, then smooths it over time:

- a single-beam rangefinder (sensor_msgs/Range): the reading is the nearest return inside its cone,
  so it is compared with the nearest predicted point inside the cone (found from the sensor's pose
  in the camera frame);
- sparse metric points (a lidar, VIO/SLAM map points, a stereo or ToF patch) in the camera frame,
  projected with K;
- a ground plane: the camera's known height above the floor (optionally pitch/roll); the floor is
  fitted in the predicted cloud (RANSAC) and the scale is what makes its distance the known height.

Pure numpy (no rclpy): the node (`ros/anchors.py`), `replay` and `predict` share it. Bad anchors
are never applied: they are counted by reason in `Anchors.rejected` for the caller to warn about.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Sequence

import cv2
import numpy as np

from mde_ros.pipeline.intrinsics import Intrinsics
from mde_ros.pipeline.postprocess import relative_to_depth

SOURCES = ("range", "points", "ground")
# Reasons an anchor is not used (the throttled-warning kinds of the node, counters in summaries).
REJECT_REASONS = ("nan", "negative", "range_limits", "field_of_view", "outside_image", "behind_camera", "stamp",
                  "frame", "no_prediction", "no_floor", "no_intrinsics", "bad_cloud")
MAX_CONE_POINTS = 20_000  # predicted points examined per range reading (stride-subsampled)
MAX_FLOOR_POINTS = 6_000  # predicted points the floor fit samples
MIN_FLOOR_FRACTION = 0.03  # the floor must hold this share of the sampled points (attitude known)
MIN_FLOOR_FRACTION_FREE = 0.10  # without pitch/roll a plane is easier to fake: demand a bigger floor
FULL_FLOOR_FRACTION = 0.2  # a floor this big (share of the points) gets the ground anchor's full weight
FLOOR_RANSAC_ITERATIONS = 200
# A floor has (almost) nothing below it; a table top hiding the floor has the floor, the walls' lower
# parts and the furniture's sides there. Measured on 72 robot-camera views through the demo model and 44
# through an exact-depth wrapper: points > 30 % farther down than the plane are <= 4.4 % of the view under
# real floors and 13-38 % under the table tops (which had given factors x4-x10).
FLOOR_BELOW_MARGIN = 0.3
MAX_BELOW_FLOOR_FRACTION = 0.08
_RNG_SEED = 0  # fixed: the same frame gives the same factor (reproducible replays)


# ---- anchors ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class RangeReading:
    """One sensor_msgs/Range reading placed in the camera's optical frame."""

    reading: float  # metres from the sensor to the nearest return inside the cone
    field_of_view: float  # radians, full cone angle
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)  # sensor position in the camera optical frame (m)
    direction: tuple[float, float, float] = (0.0, 0.0, 1.0)  # beam axis (the Range frame's x) in that frame


@dataclass(frozen=True)
class GroundPrior:
    """The camera's height above a flat floor; pitch (> 0 looks down) and roll (> 0 turns the image
    clockwise) in radians when known (REP 103 body convention, as mde_ros.synthetic.CameraPose)."""

    camera_height: float
    pitch: float | None = None
    roll: float | None = None
    max_tilt: float = math.radians(20.0)  # without pitch/roll: how far the floor may tilt from level
    tolerance: float = 0.03  # floor inlier band, as a fraction of the camera height


@dataclass
class Anchors:
    """The metric cues for one image; anything rejected on the way is counted by reason."""

    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float64))  # Nx3, camera optical frame
    ranges: list[RangeReading] = field(default_factory=list)
    ground: GroundPrior | None = None
    rejected: Counter = field(default_factory=Counter)

    def count(self) -> int:
        """Usable anchors: each point, each range reading, the ground prior."""
        return len(self.points) + len(self.ranges) + (self.ground is not None)

    def __bool__(self) -> bool:
        return self.count() > 0


def range_problem(reading: float, min_range: float, max_range: float, field_of_view: float) -> str | None:
    """Why a Range reading must not be used (a REJECT_REASONS kind), or None.

    Range's own convention: readings outside [min_range, max_range] (including its +-Inf) are not
    measurements."""
    if math.isnan(reading):
        return "nan"
    if reading < 0:
        return "negative"
    if not (min_range <= reading <= max_range) or math.isinf(reading):
        return "range_limits"
    if not (math.isfinite(field_of_view) and 0.0 <= field_of_view < math.pi):
        return "field_of_view"
    return None


def stamp_ok(anchor_ns: int, image_ns: int, tolerance_s: float) -> bool:
    """Whether an anchor was measured close enough in time to describe this image."""
    return abs(anchor_ns - image_ns) <= tolerance_s * 1e9


def transform_points(points: np.ndarray, rotation: np.ndarray | None = None,
                     translation: Sequence[float] | None = None) -> np.ndarray:
    """Points from their frame into the camera frame: R @ p + t (R, t: that frame's pose in the camera's)."""
    points = np.asarray(points, np.float64).reshape(-1, 3)
    if rotation is not None:
        points = points @ np.asarray(rotation, np.float64).T
    if translation is not None:
        points = points + np.asarray(translation, np.float64)
    return points


def quaternion_matrix(x: float, y: float, z: float, w: float) -> np.ndarray:
    """3x3 rotation of a unit quaternion (geometry_msgs order x, y, z, w); normalised first."""
    q = np.array([x, y, z, w], np.float64)
    norm = np.linalg.norm(q)
    if not np.isfinite(norm) or norm < 1e-9:
        raise ValueError(f"not a rotation quaternion: {tuple(q)}")
    x, y, z, w = q / norm
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def project_points(points: np.ndarray, intr: Intrinsics) -> tuple[np.ndarray, np.ndarray, np.ndarray, Counter]:
    """(u, v, z, reasons) of the usable metric points: finite, in front of the camera, inside the image.

    u and v are integer pixel indices (nearest pixel); rejected points are counted by reason."""
    points = np.asarray(points, np.float64).reshape(-1, 3)
    reasons: Counter = Counter()
    finite = np.isfinite(points).all(axis=1)
    reasons["nan"] += int((~finite).sum())
    points = points[finite]
    ahead = points[:, 2] > 1e-6
    reasons["behind_camera"] += int((~ahead).sum())
    points = points[ahead]
    u = np.rint(intr.fx * points[:, 0] / points[:, 2] + intr.cx)
    v = np.rint(intr.fy * points[:, 1] / points[:, 2] + intr.cy)
    inside = (u >= 0) & (u < intr.width) & (v >= 0) & (v < intr.height)
    reasons["outside_image"] += int((~inside).sum())
    return (u[inside].astype(np.intp), v[inside].astype(np.intp), points[inside, 2], +reasons)


def points_from_pixels(pixels: Sequence[tuple[float, float, float]], intr: Intrinsics | None,
                       width: int, height: int) -> tuple[np.ndarray, Counter]:
    """Metric anchors given as (column, row, depth in metres), e.g. predict's --anchor U V Z, as
    camera-frame points. Without intrinsics a nominal pinhole is used: only (u, v, z) matter."""
    intr = intr or Intrinsics(1.0, 1.0, 0.0, 0.0, width, height)
    reasons: Counter = Counter()
    points = []
    for u, v, z in pixels:
        if not all(math.isfinite(c) for c in (u, v, z)):
            reasons["nan"] += 1
        elif z <= 0:
            reasons["negative"] += 1
        elif not (0 <= u <= width - 1 and 0 <= v <= height - 1):
            reasons["outside_image"] += 1
        else:
            points.append(((u - intr.cx) * z / intr.fx, (v - intr.cy) * z / intr.fy, z))
    return np.array(points, np.float64).reshape(-1, 3), +reasons


# ---- per-frame constraints -------------------------------------------------------------------

@dataclass
class _Constraints:
    u: list[np.ndarray] = field(default_factory=list)
    v: list[np.ndarray] = field(default_factory=list)
    z: list[np.ndarray] = field(default_factory=list)
    weight: list[np.ndarray] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def add(self, source: str, u, v, z, weight) -> None:
        u = np.atleast_1d(np.asarray(u, np.intp))
        self.u.append(u)
        self.v.append(np.atleast_1d(np.asarray(v, np.intp)))
        self.z.append(np.atleast_1d(np.asarray(z, np.float64)))
        self.weight.append(np.broadcast_to(np.asarray(weight, np.float64), u.shape).copy())
        self.sources.append(source)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if not self.u:
            empty = np.zeros(0, np.intp)
            return empty, empty, np.zeros(0), np.zeros(0), np.zeros(0, np.intp)
        which = np.concatenate([np.full(len(u), i) for i, u in enumerate(self.u)])
        return (np.concatenate(self.u), np.concatenate(self.v), np.concatenate(self.z),
                np.concatenate(self.weight), which)


def _sampled_cloud(depth: np.ndarray, intr: Intrinsics, max_points: int,
                   rows: slice = slice(None)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Nx3 points, u, v) of the valid predicted pixels on a regular grid of at most ~max_points."""
    height, width = depth.shape
    stride = max(1, int(math.ceil(math.sqrt(height * width / max_points))))
    v, u = np.mgrid[0:height:stride, 0:width:stride]
    v, u = v[rows], u[rows]
    z = depth[v, u].astype(np.float64)
    ok = np.isfinite(z) & (z > 0)
    u, v, z = u[ok], v[ok], z[ok]
    points = np.stack([(u - intr.cx) / intr.fx * z, (v - intr.cy) / intr.fy * z, z], axis=1)
    return points, u, v


def range_scale(reading: RangeReading, depth: np.ndarray, intr: Intrinsics) -> tuple[float, int, int] | str:
    """(scale, u, v) that makes the nearest predicted point inside the cone as far from the sensor as
    the reading, at that point's pixel; or the reason it cannot (a REJECT_REASONS kind).

    With the sensor at the camera's centre one step is exact; an offset sensor makes the cone's
    footprint depend on the scale, so the fixed point s <- s * reading / nearest(s) is iterated."""
    origin = np.asarray(reading.origin, np.float64)
    axis = np.asarray(reading.direction, np.float64)
    norm = np.linalg.norm(axis)
    if not (np.isfinite(origin).all() and np.isfinite(norm) and norm > 0):
        return "nan"
    axis = axis / norm
    # Where the beam's axis meets the reading: must be in front of the camera and inside the image,
    # else the nearest return may be something the camera does not see.
    hit = origin + reading.reading * axis
    if hit[2] <= 1e-6:
        return "behind_camera"
    hu, hv = intr.fx * hit[0] / hit[2] + intr.cx, intr.fy * hit[1] / hit[2] + intr.cy
    if not (0 <= hu <= intr.width - 1 and 0 <= hv <= intr.height - 1):
        return "outside_image"
    points, us, vs = _sampled_cloud(depth, intr, MAX_CONE_POINTS)
    if not len(points):
        return "no_prediction"
    cos_half = math.cos(max(reading.field_of_view, 1e-3) / 2)
    # Only points near the cone can enter it while the scale moves (none can for a sensor at the
    # camera's centre, whose cone does not depend on the scale): keep those, with a 20 degree margin.
    rays = points - origin
    near = rays @ axis >= math.cos(min(reading.field_of_view / 2 + math.radians(20.0), math.pi / 2)) * \
        np.linalg.norm(rays, axis=1)
    points, us, vs = points[near], us[near], vs[near]
    if not len(points):
        return "no_prediction"
    scale = 1.0
    best = -1
    for _ in range(8):
        rays = scale * points - origin
        dist = np.linalg.norm(rays, axis=1)
        inside = rays @ axis >= cos_half * dist
        if not inside.any():
            return "no_prediction"
        candidates = np.flatnonzero(inside)
        best = int(candidates[np.argmin(dist[candidates])])
        new_scale = scale * reading.reading / max(float(dist[best]), 1e-9)
        if abs(new_scale / scale - 1.0) < 1e-6:
            scale = new_scale
            break
        scale = new_scale
    return scale, int(us[best]), int(vs[best])


def _facing(depth: np.ndarray, intr: Intrinsics, us: np.ndarray, vs: np.ndarray, direction: np.ndarray,
            max_angle: float) -> np.ndarray:
    """Whether the predicted surface at each pixel faces `direction` within max_angle (local normals
    from the smoothed depth over a baseline of ~1/40 of the image width), so walls and the sides of
    furniture never count as floor however a plane through them happens to lie."""
    height, width = depth.shape
    valid = np.isfinite(depth) & (depth > 0)
    filled = np.where(valid, depth, 0.0).astype(np.float32)
    k = max(3, (width // 80) * 2 + 1)
    weight = cv2.blur(valid.astype(np.float32), (k, k))
    with np.errstate(invalid="ignore", divide="ignore"):
        smooth = cv2.blur(filled, (k, k)) / weight
    b = max(2, width // 40)

    def point(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        u, v = np.clip(u, 0, width - 1), np.clip(v, 0, height - 1)
        z = smooth[v, u].astype(np.float64)
        return np.stack([(u - intr.cx) / intr.fx * z, (v - intr.cy) / intr.fy * z, z], axis=-1)

    dx = point(us + b, vs) - point(us - b, vs)
    dy = point(us, vs + b) - point(us, vs - b)
    normal = np.cross(dx, dy)
    norm = np.linalg.norm(normal, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.abs(normal @ direction) / norm
    return np.nan_to_num(cos, nan=0.0) >= math.cos(max_angle)


def down_vector(pitch: float, roll: float) -> np.ndarray:
    """Gravity's direction in the camera optical frame for a camera pitched down by `pitch` and
    rolled by `roll` (radians, REP 103 body convention; both 0: optical +y)."""
    cp, sp, cr, sr = math.cos(pitch), math.sin(pitch), math.cos(roll), math.sin(roll)
    ry = np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cr, -sr], [0.0, sr, cr]])
    optical_to_body = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    body_to_world = ry @ rx
    return optical_to_body.T @ body_to_world.T @ np.array([0.0, 0.0, -1.0])


@dataclass(frozen=True)
class FloorFit:
    normal: np.ndarray  # unit, pointing down (away from the camera) in the optical frame
    distance: float  # the camera's distance to the fitted floor in predicted metres
    u: np.ndarray  # pixels of the floor inliers
    v: np.ndarray
    inlier_fraction: float
    disagreement: float = 0.0  # |log| distance ratio of the attitude's plane and the free one (both found)


KNOWN_ATTITUDE_FREE_TILT = math.radians(15.0)  # how far a predicted floor may tilt from the known attitude
TILTED_FLOOR_ANGLE = math.radians(5.0)  # a free plane tilted more than this from the attitude and holding
TILTED_FLOOR_GAIN = 1.2  # this many times the floor points of the attitude's plane is the predicted floor


def fit_floor(depth: np.ndarray, intr: Intrinsics, prior: GroundPrior) -> FloorFit | None:
    """The floor in the predicted cloud: the lowest plane that holds a large share of the points.

    With pitch and roll the floor's normal is known and only its distance is searched (then the
    median height of the floor points); without, 3-point RANSAC keeps planes within max_tilt of level
    and the winner is refined in inverse depth along the pixel rays (_plane_from_rays). Tables and
    shelves are planes too: of the planes with at least half the best inlier count, the one farthest
    below the camera wins, and a plane with much of the scene below it is a table or box top hiding the
    floor: no floor, not a guess. Deterministic (fixed seed).

    A network's floor can be tilted against the true one (measured up to ~9 degrees on real frames):
    with pitch and roll known and no floor along them, the predicted floor is fitted freely within
    KNOWN_ATTITUDE_FREE_TILT of the known attitude and its own distance is used (fit the predicted floor,
    then align its distance to the known height). Only then: where the attitude's plane holds a floor it
    is the better estimate (measured through the demo model, whose floors tilt by errors of 1-6 degrees:
    AbsRel 0.095 along the attitude vs 0.18 with the free plane preferred)."""
    points, us, vs = _sampled_cloud(depth, intr, MAX_FLOOR_POINTS)
    if len(points) < 10:
        return None
    known = prior.pitch is not None or prior.roll is not None
    nominal = down_vector(prior.pitch or 0.0, prior.roll or 0.0)
    floor = _fit_floor(depth, intr, prior, points, us, vs, nominal, known)
    if known and (floor is None or _tilt_of(floor, depth, intr, nominal) > TILTED_FLOOR_ANGLE):
        # the predicted floor may be tilted against the attitude: fit its own plane too (the free fit
        # costs ~10x the attitude's, so only when the attitude's inliers themselves lie on a tilted plane;
        # a lower trigger (2-3.5 deg) also switched a demo-model view whose floor is wrong, AbsRel 0.095 -> 0.14)
        free = _fit_floor(depth, intr, replace(prior, max_tilt=KNOWN_ATTITUDE_FREE_TILT), points, us, vs, nominal,
                          False)
        if free is not None and (floor is None or (
                float(free.normal @ nominal) < math.cos(TILTED_FLOOR_ANGLE)
                and free.inlier_fraction > TILTED_FLOOR_GAIN * floor.inlier_fraction)):
            floor = replace(free, disagreement=0.0 if floor is None else abs(math.log(floor.distance / free.distance)))
        elif free is not None:
            floor = replace(floor, disagreement=abs(math.log(floor.distance / free.distance)))
    return floor


def _tilt_of(floor: FloorFit, depth: np.ndarray, intr: Intrinsics, nominal: np.ndarray) -> float:
    """Angle (radians) between `nominal` and the plane through the floor's own inlier pixels (fitted in
    inverse depth along their rays, _plane_from_rays); 0 when it cannot be fitted."""
    z = depth[floor.v, floor.u].astype(np.float64)
    rays = np.stack([(floor.u - intr.cx) / intr.fx, (floor.v - intr.cy) / intr.fy, np.ones(len(z))], axis=1)
    ok = np.isfinite(z) & (z > 0)
    refined = _plane_from_rays(rays[ok], z[ok], floor.normal / floor.distance) if ok.sum() >= 3 else None
    if refined is None:
        return 0.0
    return float(math.acos(min(1.0, abs(float(refined[0] @ nominal)))))


def _fit_floor(depth: np.ndarray, intr: Intrinsics, prior: GroundPrior, points: np.ndarray, us: np.ndarray,
               vs: np.ndarray, nominal: np.ndarray, known: bool) -> FloorFit | None:
    rng = np.random.default_rng(_RNG_SEED)
    tol = prior.tolerance
    candidates: list[tuple[int, float, np.ndarray]] = []  # (inliers, distance, normal)
    heights = points @ nominal
    facing = _facing(depth, intr, us, vs, nominal, prior.max_tilt + math.radians(20.0) if not known
                     else math.radians(25.0))
    n_points, cloud = len(points), points
    points, heights, us, vs = points[facing], heights[facing], us[facing], vs[facing]
    below = np.flatnonzero(heights > 0)
    if len(below) < 3:
        return None
    if known:
        levels = heights[rng.choice(below, size=min(len(below), 64), replace=False)]
        counts = (np.abs(heights[:, None] - levels[None, :]) <= tol * levels[None, :]).sum(axis=0)
        candidates = [(int(n), float(h), nominal) for n, h in zip(counts, levels)]
    else:  # all hypotheses at once: three points each, normals within max_tilt of level
        a, b, c = (points[i] for i in rng.choice(below, size=(FLOOR_RANSAC_ITERATIONS, 3)).T)
        normals = np.cross(b - a, c - a)
        norms = np.linalg.norm(normals, axis=1)
        ok = norms > 1e-12
        normals = normals[ok] / norms[ok, None]
        normals *= np.where(normals @ nominal < 0, -1.0, 1.0)[:, None]
        levels = np.einsum("ij,ij->i", normals, a[ok])
        ok = (normals @ nominal >= math.cos(prior.max_tilt)) & (levels > 0)
        normals, levels = normals[ok], levels[ok]
        if len(levels):
            counts = (np.abs(points @ normals.T - levels[None, :]) <= tol * levels[None, :]).sum(axis=0)
            candidates = [(int(n), float(h), normal) for n, h, normal in zip(counts, levels, normals)]
    if not candidates:
        return None
    best_count, _, best_normal = max(candidates, key=lambda c: c[0])
    if best_count < MIN_FLOOR_FRACTION * n_points:
        return None
    cos_parallel = math.cos(math.radians(5.0))
    _, h, normal = max((c for c in candidates if c[0] >= 0.5 * best_count and c[2] @ best_normal >= cos_parallel),
                       key=lambda c: c[1])
    band = tol * h
    rays = None if known else points / points[:, 2:3]
    for _ in range(5):  # refine on the inliers: inverse-depth IRLS (free normal) or the median height
        residual = points @ normal - h
        near = np.abs(residual) <= 3 * tol * h  # the band adapts to the prediction's own scatter
        band = float(np.clip(2.5 * 1.4826 * np.median(np.abs(residual[near])), tol * h, 3 * tol * h))
        inliers = np.abs(residual) <= band
        if known:
            h = float(np.median(heights[inliers]))
            continue
        refined = _plane_from_rays(rays[inliers], points[inliers, 2], normal / h)
        if refined is None:
            break
        r_normal, r_h = refined
        if r_normal @ nominal < math.cos(prior.max_tilt):
            break
        normal, h = r_normal, r_h
    inliers = np.abs(points @ normal - h) <= band
    if inliers.sum() < (MIN_FLOOR_FRACTION if known else MIN_FLOOR_FRACTION_FREE) * n_points:
        return None  # checked on the refined plane, whose band follows the prediction's scatter
    if np.count_nonzero(cloud @ normal > (1.0 + FLOOR_BELOW_MARGIN) * h) > MAX_BELOW_FLOOR_FRACTION * n_points:
        return None  # much of the scene lies below this plane: a table or box top, the floor is out of view
    return FloorFit(normal, h, us[inliers], vs[inliers], float(inliers.sum() / n_points))


def _plane_from_rays(rays: np.ndarray, z: np.ndarray, guess: np.ndarray) -> tuple[np.ndarray, float] | None:
    """(unit normal, distance) of the plane through the points z * rays, fitted where the noise is:
    a plane n.p = h is 1/z = a.q with a = n / h and q = (x/z, y/z, 1) the pixel's ray, exact; only the
    depth z is noisy. So a comes from weighted least squares of 1/z on q (weights z*^2 from the previous
    plane `guess` = n / h, so the residual is a relative depth error). A total least-squares fit of the
    3D points instead treats the noise as isotropic: a depth error moves a far floor point mostly
    sideways along its ray, which biased the tilt (measured 0.3-1 deg at 3 % depth noise)."""
    expected = rays @ guess  # 1 / z* on the previous plane
    ok = expected > 1e-9
    if ok.sum() < 3:
        return None
    w = 1.0 / expected[ok]  # sqrt of the weight z*^2
    a = np.linalg.lstsq(rays[ok] * w[:, None], w / z[ok], rcond=None)[0]
    norm = float(np.linalg.norm(a))
    if not norm > 0:
        return None
    return a / norm, 1.0 / norm


# ---- robust fit --------------------------------------------------------------------------------

@dataclass(frozen=True)
class FrameFit:
    """One frame's anchoring: depth_metric = scale * depth (metric models) or
    1 / (scale * relative + shift) (affine-invariant inverse depth)."""

    scale: float
    shift: float
    sources: tuple[str, ...]  # those with at least one inlier
    n_anchors: int  # anchors that produced a constraint (before outlier rejection)
    n_inliers: int
    confidence: float  # 0..1: 1 - the fit's predicted relative scale error (ERROR_QUANTILE bound)
    spread: float  # robust relative spread of the inlier residuals
    variance: float = 0.0  # predicted variance of log(scale / the frame's best single factor)
    u: np.ndarray | None = field(default=None, compare=False, repr=False)  # inlier pixels (prediction stability)
    v: np.ndarray | None = field(default=None, compare=False, repr=False)
    scale_only: bool = False  # an affine-invariant model fitted with too little to fix the shift (held)

    @property
    def error_bound(self) -> float:
        return error_bound(self.variance)


# The predicted relative scale error is the two-sided 90 % bound of a log-normal error with the
# fit's variance: |scale / best - 1| <= exp(1.645 sigma) - 1 nine times out of ten.
ERROR_QUANTILE = 1.645
SYSTEMATIC_ERROR = 0.02  # log-scale error no number of anchors removes (spatially correlated model error)
MAX_EFFECTIVE_POINTS = 30  # neighbouring anchors share the model's local error: more do not count fully
_PRIOR_WEIGHT = 4.0  # pseudo-anchors of the prior per-pixel error when the spread is measured


RANGE_CONE_WIDENING_DEG = 30.0


def error_bound(variance: float) -> float:
    """Relative scale error bound (90 %) of a log-scale variance."""
    return math.expm1(ERROR_QUANTILE * math.sqrt(max(variance, 0.0)))


def confidence_of(variance: float) -> float:
    """The published confidence: 1 - the predicted relative error bound, in 0..1 (monotone in it)."""
    return float(min(1.0, max(0.0, 1.0 - error_bound(variance))))


def fit_variance(counts: dict[str, int], spread: float, config: "AnchoringConfig", scale_only: bool = False,
                 ground_disagreement: float = 0.0, range_cone: float = 0.0) -> float:
    """Predicted variance of a frame fit's log scale against the frame's best single factor.

    Each constraint carries the model's error at its pixel (config.model_error, or the measured
    spread of the points when there are enough to measure it, shrunk towards the prior) plus the
    sensor's own noise; sources combine by inverse variance; neighbouring points share the model's
    local error (at most MAX_EFFECTIVE_POINTS count) and SYSTEMATIC_ERROR never averages out. An
    affine-invariant model whose shift could not be fitted carries the prior error once more."""
    information = 0.0
    n_points = counts.get("points", 0)
    if n_points:
        sigma2 = config.model_error ** 2
        if n_points >= 3 and math.isfinite(spread):
            sigma2 = (n_points * spread ** 2 + _PRIOR_WEIGHT * sigma2) / (n_points + _PRIOR_WEIGHT)
        information += min(n_points, MAX_EFFECTIVE_POINTS) / (sigma2 + config.points_noise ** 2)
    if counts.get("range", 0):  # a wide cone's nearest return falls on edges and floor: measured 1.9x the
        # error of a 2 degree cone at 30 degrees (p90 of single frames through the demo model 0.30 vs 0.17)
        widen = 1.0 + math.degrees(range_cone) / RANGE_CONE_WIDENING_DEG
        information += counts["range"] / (config.model_error ** 2 * widen + config.range_noise ** 2)
    if counts.get("ground", 0):
        information += 1.0 / (config.ground_error ** 2 + ground_disagreement ** 2)
    if information <= 0:
        return float("inf")
    variance = 1.0 / information + SYSTEMATIC_ERROR ** 2
    if scale_only:
        variance += config.model_error ** 2
    return variance


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])


def _inliers(residuals: np.ndarray, weights: np.ndarray, min_tolerance: float) -> np.ndarray:
    """MAD gate around the weighted median: |r - med| <= max(3 sigma, min_tolerance)."""
    centre = _weighted_median(residuals, weights)
    sigma = 1.4826 * _weighted_median(np.abs(residuals - centre), weights)
    return np.abs(residuals - centre) <= max(3.0 * sigma, min_tolerance)


def _fit_scale(pred: np.ndarray, z: np.ndarray, weight: np.ndarray, min_tolerance: float):
    """Median of log ratios with a MAD gate, then the weighted mean of the inliers (IRLS, 2 passes)."""
    logs = np.log(z / pred)
    inliers = _inliers(logs, weight, min_tolerance)
    for _ in range(2):
        log_scale = float(np.average(logs[inliers], weights=weight[inliers]))
        inliers = np.abs(logs - log_scale) <= max(min_tolerance, 3.0 * 1.4826 * _weighted_median(
            np.abs(logs[inliers] - log_scale), weight[inliers]))
    log_scale = float(np.average(logs[inliers], weights=weight[inliers]))
    spread = float(np.sqrt(np.average((logs[inliers] - log_scale) ** 2, weights=weight[inliers])))
    return math.exp(log_scale), 0.0, inliers, spread


def _fit_affine(rel: np.ndarray, z: np.ndarray, weight: np.ndarray, min_tolerance: float,
                shift_prior: float = 0.0):
    """1/z = a * rel + b by weighted least squares with outlier rejection on the relative residual.

    Fewer than two distinct relative values cannot fix a shift: scale only, shift held at the prior
    (reported: the last value returned is True).""" 
    target = 1.0 / z
    distinct = len(rel) >= 2 and float(np.ptp(rel)) > 1e-6 * max(float(np.abs(rel).max()), 1e-12)
    inliers = np.ones(len(rel), bool)
    a, b = 1.0, shift_prior
    for _ in range(4):
        w = weight[inliers]
        if distinct and np.ptp(rel[inliers]) > 0 and inliers.sum() >= 2:
            design = np.stack([rel[inliers], np.ones(int(inliers.sum()))], axis=1) * np.sqrt(w)[:, None]
            a, b = np.linalg.lstsq(design, target[inliers] * np.sqrt(w), rcond=None)[0]
        else:
            a = float(np.sum(w * rel[inliers] * (target[inliers] - shift_prior)) /
                      max(float(np.sum(w * rel[inliers] ** 2)), 1e-30))
            b = shift_prior
        residual = (a * rel + b) / target - 1.0  # relative error of the inverse depth ~ of depth
        new = _inliers(residual, weight, min_tolerance) & np.isfinite(residual)
        if (new == inliers).all():
            break
        inliers = new if new.any() else inliers
    residual = (a * rel + b) / target - 1.0
    spread = float(np.sqrt(np.average(residual[inliers] ** 2, weights=weight[inliers])))
    return float(a), float(b), inliers, spread, not distinct


EXPIRY_CHOICES = ("hold", "decay", "stop", "nan")


@dataclass(frozen=True)
class AnchoringConfig:
    """How anchors are weighed, filtered over time and expire (the node's `scale.*` parameters)."""

    range_weight: float = 5.0  # one range reading counts as this many sparse points (in one frame's joint fit)
    ground_weight: float = 5.0  # the ground plane, likewise
    inlier_tolerance: float = 0.05  # residuals within this (relative) are never outliers
    time_constant: float = 0.5  # s: the filter follows an accepted change at least this fast; 0: at once
    jump_threshold: float = 0.3  # a change of the factor beyond this (relative) is never taken from one frame
    max_age: float = 2.0  # s the factor is held after the anchors stop; then on_expiry
    min_confidence: float = 0.0  # per-frame fits less confident than this (1 - error bound) are not used
    on_expiry: str = "stop"  # after max_age: hold | decay (to the model's metres, time constant max_age) | stop | nan
    model_error: float = 0.15  # prior relative error of the model at one pixel against its best single factor
    ground_error: float = 0.08  # relative error of a ground-plane fit
    range_noise: float = 0.02  # a rangefinder's relative noise
    points_noise: float = 0.01  # a metric point's relative noise
    drift: float = 0.05  # relative change of the true factor per sqrt(second) while the view stays
    scene_change: float = 0.1  # median relative change of the prediction at the anchors: a new view
    glitch_frames: int = 15  # frames an anchor disagreement must persist, without a new view, to be believed

    def __post_init__(self) -> None:
        for name in ("range_weight", "ground_weight", "inlier_tolerance", "time_constant", "max_age",
                     "range_noise", "points_noise", "drift"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"scale.{name} must be a finite number >= 0, got {value}")
        for name in ("jump_threshold", "model_error", "ground_error", "scene_change"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"scale.{name} must be > 0, got {value}")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"scale.min_confidence must be in 0..1, got {self.min_confidence}")
        if self.on_expiry not in EXPIRY_CHOICES:
            raise ValueError(f"scale.on_expiry must be one of {', '.join(EXPIRY_CHOICES)}, got {self.on_expiry!r}")
        if not (isinstance(self.glitch_frames, int) and self.glitch_frames >= 1):
            raise ValueError(f"scale.glitch_frames must be an integer >= 1, got {self.glitch_frames}")


def fit_frame(depth: np.ndarray | None, intr: Intrinsics | None, anchors: Anchors,
              config: AnchoringConfig = AnchoringConfig(), relative: np.ndarray | None = None,
              prior: tuple[float, float] | None = None) -> FrameFit | None:
    """The frame's robust factor from its anchors, or None (no usable anchor: reasons are added to
    `anchors.rejected`).

    `depth` is the model's metric depth; for an affine-invariant model pass `relative` (inverse
    depth up to scale and shift) instead: scale and shift are fitted in inverse depth. Range and
    ground constraints need a depth map, so for a relative model they are found on the depth of
    `prior` (the smoothed scale, shift) or of the point-only fit, and the fit is repeated once."""
    if intr is None or not intr.is_valid():
        if anchors.count():
            anchors.rejected["no_intrinsics"] += anchors.count()
        return None
    image = relative if relative is not None else depth
    if image is None or image.shape != (intr.height, intr.width):
        raise ValueError(f"depth of shape {None if image is None else image.shape} does not match "
                         f"intrinsics {intr.width}x{intr.height}")
    if relative is None:
        return _fit_pass(depth, intr, anchors, config, None, None)
    first = None
    if prior is None:
        first = _fit_pass(None, intr, replace(anchors, ranges=[], ground=None, rejected=Counter()),
                          config, relative, None)
        prior = (first.scale, first.shift) if first is not None else (1.0, 0.0)
    fit = _fit_pass(relative_depth(relative, *prior), intr, anchors, config, relative, prior)
    if fit is not None and (anchors.ranges or anchors.ground is not None):
        fit = _fit_pass(relative_depth(relative, fit.scale, fit.shift), intr,
                        replace(anchors, rejected=Counter()), config, relative, (fit.scale, fit.shift)) or fit
    return fit


EDGE_SCALE = 0.05  # |log| depth change across 2 pixels at which a point's weight halves
POINT_ABSOLUTE_NOISE = 0.02  # metres: a lidar's range noise, which matters for near points
DENSE_CLOUD_POINTS = 100  # a cloud this large is a scan: its points are weighted by the edge they sit on


def point_weights(prediction: np.ndarray | None, u: np.ndarray, v: np.ndarray, z: np.ndarray,
                  config: "AnchoringConfig") -> np.ndarray:
    """Weights of metric points by what makes one less reliable than another:

    - distance: a lidar's noise is roughly absolute (POINT_ABSOLUTE_NOISE), so a near point's relative
      error grows as 1/z; weights 1 / (model_error^2 + (noise / z)^2), normalised;
    - angle: a point on a surface seen at a grazing angle, or on a depth edge, lands where the predicted
      depth changes fast, so a small offset between the sensor and the camera (or the network's soft
      edges) puts it on the wrong depth. The predicted log-depth change across 2 pixels (the larger of
      the two directions, dilated by one pixel) down-weights it: 1 / (1 + (change / EDGE_SCALE)^2).
      Measured on 16-row lidar scans through the demo model (30 views): mean scale error 2.6 % -> 2.2 %;
      on 20 random points it cost as much in some views, so it applies to scans (DENSE_CLOUD_POINTS+)."""
    z = np.asarray(z, np.float64)
    weight = 1.0 / (config.model_error ** 2 + (POINT_ABSOLUTE_NOISE / np.maximum(z, 1e-3)) ** 2)
    weight = weight / weight.max() if len(weight) and np.isfinite(weight).all() else np.ones(len(z))
    if prediction is None or len(z) < DENSE_CLOUD_POINTS:
        return weight
    height, width = prediction.shape
    uu, vv = np.asarray(u, np.intp), np.asarray(v, np.intp)

    def log_at(du: np.ndarray, dv: np.ndarray) -> np.ndarray:  # only the pixels needed, not the whole map
        values = np.abs(prediction[np.clip(vv + dv, 0, height - 1), np.clip(uu + du, 0, width - 1)].astype(np.float64))
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(np.isfinite(values) & (values > 0), np.log(values), np.nan)

    change = np.zeros(len(uu))
    for du, dv in ((1, 0), (0, 1)):
        for off in (-1, 0, 1):  # dilate by one pixel across the direction
            step = np.abs(log_at(du + off * dv, dv + off * du) - log_at(-du + off * dv, -dv + off * du))
            change = np.maximum(change, np.nan_to_num(step, nan=0.0))
    return weight / (1.0 + (change / EDGE_SCALE) ** 2)


def relative_depth(relative: np.ndarray, scale: float, shift: float) -> np.ndarray:
    """Metres from affine-invariant inverse depth: 1 / (scale * relative + shift); <= 0 -> NaN
    (postprocess.relative_to_depth, the one conversion)."""
    return relative_to_depth(relative, scale, shift)


def _fit_pass(depth: np.ndarray | None, intr: Intrinsics, anchors: Anchors, config: AnchoringConfig,
              relative: np.ndarray | None, prior: tuple[float, float] | None) -> FrameFit | None:
    constraints = _Constraints()
    n_anchors = 0
    ground_disagreement = 0.0
    cones: list[float] = []
    if len(anchors.points):
        u, v, z, reasons = project_points(anchors.points, intr)
        anchors.rejected.update(reasons)
        if len(u):
            constraints.add("points", u, v, z, point_weights(relative if relative is not None else depth, u, v, z,
                                                             config))
    if depth is not None:
        for reading in anchors.ranges:
            found = range_scale(reading, depth, intr)
            if isinstance(found, str):
                anchors.rejected[found] += 1
                continue
            scale, u, v = found
            constraints.add("range", u, v, scale * float(depth[v, u]), config.range_weight)
            cones.append(reading.field_of_view)
        if anchors.ground is not None:
            floor = fit_floor(depth, intr, anchors.ground)
            if floor is None:
                anchors.rejected["no_floor"] += 1
            else:
                ground_disagreement = floor.disagreement
                scale = anchors.ground.camera_height / floor.distance
                weight = config.ground_weight * min(1.0, floor.inlier_fraction / FULL_FLOOR_FRACTION)
                if relative is None:  # one constraint: every floor pixel says the same ratio
                    constraints.add("ground", floor.u[:1], floor.v[:1], scale * depth[floor.v[:1], floor.u[:1]],
                                    weight)
                else:  # floor pixels at many distances also pin down the shift
                    pick = np.linspace(0, len(floor.u) - 1, min(len(floor.u), 50)).astype(np.intp)
                    uu, vv = floor.u[pick], floor.v[pick]
                    constraints.add("ground", uu, vv, scale * depth[vv, uu], weight / len(pick))
    u, v, z, weight, which = constraints.arrays()
    if not len(u):
        return None
    pred = (relative if relative is not None else depth)[v, u].astype(np.float64)
    usable = np.isfinite(pred) & (pred > 0 if relative is None else np.isfinite(pred)) & np.isfinite(z) & (z > 0)
    for i, source in enumerate(constraints.sources):
        lost = int((~usable[which == i]).sum())
        if lost:
            anchors.rejected["no_prediction"] += lost
        n_anchors += int(usable[which == i].sum()) if source == "points" else int(usable[which == i].any())
    if not usable.any():
        return None
    pred, z, weight, which = pred[usable], z[usable], weight[usable], which[usable]
    scale_only = False
    if relative is None:
        scale, shift, inliers, spread = _fit_scale(pred, z, weight, config.inlier_tolerance)
    else:
        scale, shift, inliers, spread, scale_only = _fit_affine(pred, z, weight, config.inlier_tolerance,
                                                                prior[1] if prior else 0.0)
        if not scale > 0:
            anchors.rejected["no_prediction"] += 1
            return None
    sources = tuple(sorted({constraints.sources[i] for i in np.unique(which[inliers])}, key=SOURCES.index))
    counts: Counter = Counter()
    for i, source in enumerate(constraints.sources):  # points count one by one, a range or floor once
        mine = inliers & (which == i)
        counts[source] += int(np.count_nonzero(mine)) if source == "points" else int(mine.any())
    variance = fit_variance(counts, spread, config, scale_only, ground_disagreement,
                            float(np.mean(cones)) if cones else 0.0)
    keep = np.flatnonzero(usable)[inliers]
    return FrameFit(scale, shift, sources, n_anchors, int(inliers.sum()), confidence_of(variance), spread,
                    variance, u[keep], v[keep], scale_only)
