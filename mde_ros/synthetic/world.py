"""A wider synthetic world for training: table-tops (0.2-1 m), rooms and halls (to 10 m and beyond),
seen through a random camera per view, with exact depth.

Opt-in: ``render_frame`` / ``approach_sequence`` (fixtures, tests, demo) are untouched. What varies:

* scene kind: ``tabletop`` (a table top as the floor of a small backdrop box, 4-14 small objects),
  ``room`` (3-7 m, furniture) or ``hall`` (7-14 m x 6-11 m, 3-5 m high, more furniture, pillars);
* lighting (light position, colour temperature, ambient level) and materials (texture, tint,
  contrast, tiling scale) per scene;
* the camera per view (:func:`random_camera`): a sensor aspect (4:3, 16:9, 3:2, 5:4, 1:1) and a
  horizontal field of view, rendered DIRECTLY at the network size, as the node sees a real camera
  after resizing (fx, cx scale with width, fy, cy with height). The intrinsics recorded with a view
  are therefore the focal length at network resolution, what camera-aware rescale needs.

A scene is built once (:func:`make_world_scene`, deterministic per seed) and re-posed for many views
(:func:`render_world_view`): building and texturing a scene costs several renders, a view ~10-20 ms at
320x320 on one core. Camera effects (noise, blur, exposure, JPEG) are applied later, to the image
only (``training.camera_effects``), so depth stays exact.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mde_ros.pipeline.intrinsics import Intrinsics
from mde_ros.synthetic.scenes import (Box, CameraPose, Cylinder, Item, Scene, SceneFrame, Sphere, _RoomBuilder,
                                      _random_material, _FURNITURE, _FURNITURE_WEIGHTS)

WORLD_KINDS = ("tabletop", "room", "hall")
DEFAULT_KIND_WEIGHTS = {"tabletop": 0.3, "room": 0.45, "hall": 0.25}
ASPECTS = (4 / 3, 16 / 9, 3 / 2, 5 / 4, 1.0)      # width / height of the simulated sensor
DEFAULT_HFOV_DEG = (45.0, 90.0)
_SCENE_STREAM, _VIEW_STREAM = 100, 101           # rng streams, apart from scenes.py's 0-3


def _rng(*parts: int) -> np.random.Generator:
    if any(int(p) < 0 for p in parts):
        raise ValueError(f"seeds must be non-negative integers, got {parts}")
    return np.random.default_rng([int(p) for p in parts])


def random_camera(rng: np.random.Generator, width: int, height: int,
                  hfov_deg: tuple[float, float] = DEFAULT_HFOV_DEG) -> Intrinsics:
    """A random real camera (aspect, horizontal FOV, principal point off by <= 3 %) resized to width x height.

    fx = (width / 2) / tan(hfov / 2); the vertical FOV follows from the sensor's aspect (square pixels
    natively), so a 16:9 camera squeezed to a square network input has fy < fx, as in the node.
    """
    lo, hi = (float(v) for v in hfov_deg)
    if not 1.0 <= lo <= hi < 170.0:
        raise ValueError(f"hfov_deg must be [lo, hi] degrees within [1, 170), got {hfov_deg}")
    hfov = math.radians(float(rng.uniform(lo, hi)))
    aspect = float(ASPECTS[int(rng.integers(len(ASPECTS)))])
    tan_h = math.tan(hfov / 2)
    tan_v = tan_h / aspect
    fx, fy = (width / 2) / tan_h, (height / 2) / tan_v
    cx = (width - 1) / 2 + float(rng.uniform(-0.03, 0.03)) * width
    cy = (height - 1) / 2 + float(rng.uniform(-0.03, 0.03)) * height
    return Intrinsics(fx=fx, fy=fy, cx=cx, cy=cy, width=int(width), height=int(height))


def scene_kind(seed: int, weights: dict[str, float] | None = None) -> str:
    """The kind of scene ``seed`` builds (deterministic per seed and weights)."""
    weights = DEFAULT_KIND_WEIGHTS if weights is None else weights
    unknown = sorted(set(weights) - set(WORLD_KINDS))
    if unknown or not weights or min(weights.values()) < 0 or sum(weights.values()) <= 0:
        raise ValueError(f"kind weights must be non-negative over {list(WORLD_KINDS)} with a positive sum, "
                         f"got {weights}")
    names = [k for k in WORLD_KINDS if weights.get(k, 0) > 0]
    p = np.array([weights[k] for k in names], float)
    return str(names[int(_rng(seed, _SCENE_STREAM, 1).choice(len(names), p=p / p.sum()))])


def make_world_scene(seed: int, kind: str | None = None, weights: dict[str, float] | None = None) -> Scene:
    """A scene of ``kind`` (default: drawn from ``weights`` by seed), the same for the same seed."""
    kind = kind or scene_kind(seed, weights)
    if kind not in WORLD_KINDS:
        raise ValueError(f"scene kind must be one of {list(WORLD_KINDS)}, got {kind!r}")
    rng = _rng(seed, _SCENE_STREAM)
    return _tabletop(rng) if kind == "tabletop" else _furnished(rng, kind)


def _lighting(rng: np.random.Generator, size) -> dict:
    """Light position anywhere in the upper part of the space, warm to cool, dim to bright ambient."""
    sx, sy, sz = size
    light = (float(rng.uniform(0.1, 0.9) * sx), float(rng.uniform(0.1, 0.9) * sy),
             float(sz * rng.uniform(0.55, 0.95)))
    warmth = float(rng.uniform(-0.2, 0.2))
    return {"light": light, "light_colour": (1.0 + warmth, 1.0 + 0.2 * warmth, 1.0 - warmth),
            "ambient": float(rng.uniform(0.15, 0.6))}


def _furnished(rng: np.random.Generator, kind: str) -> Scene:
    if kind == "room":
        size = (float(rng.uniform(3.0, 7.0)), float(rng.uniform(3.0, 7.0)), float(rng.uniform(2.3, 3.2)))
        target = int(rng.integers(3, min(14, 3 + int(size[0] * size[1] / 3)) + 1))
    else:
        size = (float(rng.uniform(7.0, 14.0)), float(rng.uniform(6.0, 11.0)), float(rng.uniform(3.0, 5.0)))
        target = int(rng.integers(8, 26))
    wall = _random_material(rng, "wall", brightness=(0.5, 1.0), saturation=0.35, contrast=(0.2, 1.0))
    floor = _random_material(rng, "floor", brightness=(0.25, 0.9), saturation=0.5, contrast=(0.3, 1.0))
    ceiling = _random_material(rng, "ceiling", brightness=(0.7, 1.0), saturation=0.1, contrast=(0.1, 0.4))
    builder = _RoomBuilder(rng, size)
    for _ in range(120):
        if builder.furniture_count >= target:
            break
        builder.try_add(str(rng.choice(_FURNITURE, p=_FURNITURE_WEIGHTS)))
    for _ in range(int(rng.integers(0, 5))):
        builder.try_add("poster")
    return Scene(size=size, items=tuple(builder.items), wall=wall, floor=floor, ceiling=ceiling,
                 **_lighting(rng, size))


def _tabletop(rng: np.random.Generator) -> Scene:
    """A table top (the floor, z = 0) inside a backdrop box 0.8-1.6 m wide, small objects standing on it."""
    size = (float(rng.uniform(0.8, 1.6)), float(rng.uniform(0.8, 1.6)), float(rng.uniform(0.7, 1.2)))
    wall = _random_material(rng, "wall", brightness=(0.4, 1.0), saturation=0.4, contrast=(0.2, 1.0))
    table = _random_material(rng, "object", brightness=(0.3, 0.95), saturation=0.6, contrast=(0.3, 1.0))
    ceiling = _random_material(rng, "ceiling", brightness=(0.7, 1.0), saturation=0.1, contrast=(0.1, 0.4))
    items: list[Item] = []
    taken: list[tuple[float, float, float, float]] = []
    target = int(rng.integers(4, 15))
    for _ in range(80):
        if len(items) >= target:
            break
        part, (x0, y0, x1, y1) = _small_object(rng, size)
        if any(x0 < b[2] + 0.01 and b[0] < x1 + 0.01 and y0 < b[3] + 0.01 and b[1] < y1 + 0.01 for b in taken):
            continue
        taken.append((x0, y0, x1, y1))
        items.append(Item("object", _random_material(rng, "object", (0.3, 1.0), 0.8, (0.4, 1.0)), (part,)))
    return Scene(size=size, items=tuple(items), wall=wall, floor=table, ceiling=ceiling, **_lighting(rng, size))


def _small_object(rng: np.random.Generator, size):
    """A box, can or ball of a few centimetres, away from the backdrop's walls."""
    sx, sy, _ = size
    x, y = float(rng.uniform(0.15, sx - 0.15)), float(rng.uniform(0.15, sy - 0.15))
    shape = int(rng.integers(3))
    if shape == 0:
        a, b, h = (float(v) for v in (rng.uniform(0.015, 0.12), rng.uniform(0.015, 0.12), rng.uniform(0.02, 0.3)))
        return Box((x - a, y - b, 0.0), (x + a, y + b, h)), (x - a, y - b, x + a, y + b)
    if shape == 1:
        r, h = float(rng.uniform(0.02, 0.08)), float(rng.uniform(0.04, 0.3))
        return Cylinder((x, y), r, 0.0, h), (x - r, y - r, x + r, y + r)
    r = float(rng.uniform(0.02, 0.1))
    return Sphere((x, y, r), r), (x - r, y - r, x + r, y + r)


def world_pose(scene: Scene, kind: str, rng: np.random.Generator, intrinsics: Intrinsics,
               attempts: int = 30) -> CameraPose:
    """A camera pose for ``kind``: rooms and halls as scenes.Scene.random_pose; a table-top camera
    0.1-0.6 m above the tallest object, looking down at an object from 0.2-1 m."""
    if kind != "tabletop":
        try:
            return scene.random_pose(rng, intrinsics)
        except RuntimeError:
            # A crowded room can leave no free, far-enough spot in random_pose's 40 tries; a training
            # worker must not die for it (seen on the H200 benchmark): search ten times longer.
            return scene.random_pose(rng, intrinsics, attempts=400)
    sx, sy, sz = scene.size
    top = max([item.bounds()[1][2] for item in scene.items] + [0.0])
    targets = [0.5 * (lo + hi) for lo, hi in (item.bounds() for item in scene.items)] or [np.array([sx / 2, sy / 2, 0.0])]
    check = intrinsics.scaled(max(8, intrinsics.width // 4), max(6, intrinsics.height // 4))
    best, best_score = None, -math.inf
    for _ in range(attempts):
        z = float(min(sz - 0.05, top + rng.uniform(0.1, 0.6)))
        xy = np.array([rng.uniform(0.05, sx - 0.05), rng.uniform(0.05, sy - 0.05)])
        target = targets[int(rng.integers(len(targets)))] + rng.normal(0.0, 0.05, 3)
        to_target = target - np.array([xy[0], xy[1], z])
        reach = math.hypot(to_target[0], to_target[1])
        pose = CameraPose((float(xy[0]), float(xy[1]), z), yaw=math.atan2(to_target[1], to_target[0]),
                          pitch=float(np.clip(math.atan2(-to_target[2], max(reach, 1e-3)), 0.2, 1.4)),
                          roll=float(np.clip(rng.normal(0.0, 0.05), -0.15, 0.15)))
        depth = scene.depth(pose, check)
        median = float(np.median(depth))
        score = -abs(median - 0.55) - 5.0 * max(0.0, 0.1 - float(depth.min()))
        if 0.2 <= median <= 1.0 and depth.min() >= 0.1:
            return pose
        if score > best_score:
            best, best_score = pose, score
    return best


@dataclass(frozen=True)
class WorldView:
    """One rendered view: the frame (rgb, exact depth, intrinsics at this size, pose) and its scene kind."""
    frame: SceneFrame
    kind: str
    scene_seed: int
    view: int


def render_world_view(scene_seed: int, view: int, width: int, height: int, *, scene: Scene | None = None,
                      kind: str | None = None, weights: dict[str, float] | None = None,
                      hfov_deg: tuple[float, float] = DEFAULT_HFOV_DEG) -> WorldView:
    """View ``view`` of scene ``scene_seed`` through its own random camera, rendered at width x height.

    Pass ``scene`` (the cached ``make_world_scene(scene_seed, kind, weights)``) to skip rebuilding it.
    Deterministic in (scene_seed, view, width, height, hfov_deg).
    """
    kind = kind or scene_kind(scene_seed, weights)
    scene = scene if scene is not None else make_world_scene(scene_seed, kind)
    rng = _rng(scene_seed, _VIEW_STREAM, view)
    intr = random_camera(rng, width, height, hfov_deg)
    pose = world_pose(scene, kind, rng, intr)
    return WorldView(scene.render(pose, intr), kind, int(scene_seed), int(view))
