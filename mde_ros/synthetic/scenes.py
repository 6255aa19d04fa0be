"""Procedural indoor scenes with exact metric depth, rendered by vectorised numpy ray casting.

Test, training and demo data only. A scene is a closed room (floor, ceiling, four walls) with
furniture made of axis-aligned boxes, vertical cylinders and spheres, each surface textured with a
photograph at a physical scale (metres -> texels) and lit by one point light (Lambertian, mild
falloff with distance, darkened room corners). Depth is the exact z of the first hit along the
optical axis, so every pixel has finite positive depth.

Frames: world x, y horizontal, z up (REP 103); camera optical frame x right, y down, z forward.
Speed comes from precomputed ray grids, a screen-space bounding rectangle per primitive (each
primitive is tested only against the rays that can hit it) and texture lookup by integer indexing
into one mip-mapped atlas.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from typing import Iterable, Union

import numpy as np

from mde_ros.pipeline.intrinsics import Intrinsics
from mde_ros.synthetic.textures import (MIP_LEVELS, MIP_OFFSETS, TEXELS_PER_TILE_BLOCK, TEXTURES, TILE,
                                        texture_mean, texture_pyramid, textures_for)

DEFAULT_WIDTH, DEFAULT_HEIGHT = 320, 240
HIT_EPSILON = 1e-4                # metres along the ray: no self-hits at the camera
CAMERA_CLEARANCE = 0.35           # metres kept between a sampled camera and walls/furniture
# Surface kinds per pixel: 0/1/2 = plane facing along world x/y/z, 3 = cylinder side, 4 = sphere.
_CYLINDER_SIDE, _SPHERE = 3, 4
_WALL, _FLOOR, _CEILING = 0, 1, 2  # material indices of the room; items' materials follow
_TEXEL_BIAS = 65536.0              # keeps texel coordinates positive, so truncation is floor
_MID_GREY = 0.55
_EXPOSURE = 1.4
_SHADE_CHUNK = 76800               # pixels shaded at a time
_NEAR = 0.05                       # metres: corners closer than this make a primitive span the full image

Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class CameraPose:
    """Camera-to-world pose: position (m) and yaw/pitch/roll (rad) of the camera body.

    yaw turns about world z (0 looks along +x, pi/2 along +y), pitch > 0 looks down, roll > 0 turns
    the image clockwise (right-hand rotations about the body's z, y-left and x-forward axes, REP 103).
    """
    position: Vec3
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0

    def rotation(self) -> np.ndarray:
        """3x3 rotation taking optical-frame vectors (x right, y down, z forward) to the world."""
        cy, sy = math.cos(self.yaw), math.sin(self.yaw)
        cp, sp = math.cos(self.pitch), math.sin(self.pitch)
        cr, sr = math.cos(self.roll), math.sin(self.roll)
        rz = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
        ry = np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])
        rx = np.array([[1.0, 0.0, 0.0], [0.0, cr, -sr], [0.0, sr, cr]])
        optical_to_body = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
        return rz @ ry @ rx @ optical_to_body


@dataclass(frozen=True)
class Material:
    """A photograph tinted and contrast-scaled, tiled at tile_metres per tile (None: the texture's own)."""
    texture: str
    tint: Vec3 = (1.0, 1.0, 1.0)
    contrast: float = 1.0
    tile_metres: float | None = None
    offset: tuple[float, float] = (0.0, 0.0)   # metres: shifts the tiling so surfaces don't align

    def __post_init__(self) -> None:
        if self.texture not in TEXTURES:
            raise ValueError(f"unknown texture {self.texture!r}; available: {', '.join(TEXTURES)}")


@dataclass(frozen=True)
class Box:
    lo: Vec3
    hi: Vec3


@dataclass(frozen=True)
class Cylinder:
    """Vertical cylinder closed at both ends (bottom and top are heights in metres)."""
    centre: tuple[float, float]
    radius: float
    bottom: float
    top: float


@dataclass(frozen=True)
class Sphere:
    centre: Vec3
    radius: float


Primitive = Union[Box, Cylinder, Sphere]


def _bounds(part: Primitive) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(part, Box):
        return np.array(part.lo, float), np.array(part.hi, float)
    if isinstance(part, Cylinder):
        (x, y), r = part.centre, part.radius
        return np.array([x - r, y - r, part.bottom]), np.array([x + r, y + r, part.top])
    c = np.array(part.centre, float)
    return c - part.radius, c + part.radius


def _parts_bounds(parts: Iterable[Primitive]) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned bounding box (lo, hi) of several primitives."""
    los, his = zip(*(_bounds(p) for p in parts))
    return np.min(los, axis=0), np.max(his, axis=0)


@dataclass(frozen=True)
class Item:
    """One piece of furniture (or clutter): its parts share one material."""
    kind: str
    material: Material
    parts: tuple[Primitive, ...]

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return _parts_bounds(self.parts)


@dataclass
class SceneFrame:
    rgb: np.ndarray                 # HxWx3 uint8
    depth: np.ndarray               # HxW float32 metres (z along the optical axis), exact
    intrinsics: Intrinsics
    pose: CameraPose | None = None


@dataclass(frozen=True, eq=False)
class Scene:
    """A closed room [0, sx] x [0, sy] x [0, sz] (metres) with furniture."""
    size: Vec3
    items: tuple[Item, ...] = ()
    wall: Material = Material("moon", (0.9, 0.87, 0.8), 0.5)          # plaster
    floor: Material = Material("gravel", (0.6, 0.5, 0.4), 0.7)        # terrazzo
    ceiling: Material = Material("moon", (0.95, 0.95, 0.95), 0.2)
    light: Vec3 | None = None                  # None: centred 0.3 m below the ceiling
    light_colour: Vec3 = (1.0, 1.0, 1.0)
    ambient: float = 0.35

    def __post_init__(self) -> None:
        if len(self.size) != 3 or min(self.size) <= 0:
            raise ValueError(f"room size must be three positive lengths in metres, got {self.size}")

    # -- rendering -------------------------------------------------------------------------------
    def render(self, pose: CameraPose, intrinsics: Intrinsics | None = None) -> SceneFrame:
        """RGB and exact depth seen from `pose` through a pinhole camera (default NYU-like 320x240)."""
        intr = _check_intrinsics(intrinsics)
        hits = self._compiled.cast(pose, intr)
        rgb = self._compiled.shade(hits, intr)
        return SceneFrame(rgb=rgb, depth=hits.t.reshape(intr.height, intr.width).copy(), intrinsics=intr, pose=pose)

    def depth(self, pose: CameraPose, intrinsics: Intrinsics | None = None) -> np.ndarray:
        """Exact depth only (no shading): cheaper, for pose checks and geometry tests."""
        intr = _check_intrinsics(intrinsics)
        return self._compiled.cast(pose, intr).t.reshape(intr.height, intr.width).copy()

    @functools.cached_property
    def _compiled(self) -> "_CompiledScene":
        return _CompiledScene(self)

    # -- free space (2-D, conservative: footprints of whole items) -------------------------------
    def footprints(self, ignore: Iterable[Item] = ()) -> list[tuple[float, float, float, float]]:
        """(x0, y0, x1, y1) of every item's floor footprint, except the `ignore`d ones."""
        ignored = {id(item) for item in ignore}
        result = []
        for item in self.items:
            if id(item) not in ignored:
                lo, hi = item.bounds()
                result.append((lo[0], lo[1], hi[0], hi[1]))
        return result

    def is_free(self, xy: tuple[float, float], clearance: float = CAMERA_CLEARANCE) -> bool:
        """Whether a camera at xy keeps `clearance` from the walls and every item."""
        x, y = xy
        sx, sy, _ = self.size
        if not (clearance <= x <= sx - clearance and clearance <= y <= sy - clearance):
            return False
        return all(not (x0 - clearance < x < x1 + clearance and y0 - clearance < y < y1 + clearance)
                   for x0, y0, x1, y1 in self.footprints())

    def free_distance(self, xy: tuple[float, float], heading: float, clearance: float = CAMERA_CLEARANCE,
                      ignore: Iterable[Item] = ()) -> float:
        """How far a camera at xy can move along `heading` (rad) keeping `clearance` from walls and items."""
        o = np.array(xy, float)
        d = np.array([math.cos(heading), math.sin(heading)])
        sx, sy, _ = self.size
        with np.errstate(divide="ignore"):
            inv = 1.0 / d
        walls = np.maximum((clearance - o) * inv, (np.array([sx, sy]) - clearance - o) * inv).min()
        best = max(0.0, float(walls))
        for x0, y0, x1, y1 in self.footprints(ignore):
            lo = np.array([x0, y0]) - clearance
            hi = np.array([x1, y1]) + clearance
            with np.errstate(invalid="ignore"):
                t1, t2 = (lo - o) * inv, (hi - o) * inv
            near = np.nanmax(np.minimum(t1, t2))
            far = np.nanmin(np.maximum(t1, t2))
            if near <= far and far > 0:
                best = min(best, max(0.0, float(near)))
        return best

    def random_pose(self, rng: np.random.Generator, intrinsics: Intrinsics | None = None,
                    attempts: int = 40) -> CameraPose:
        """A plausible handheld/robot camera pose: free of furniture, not staring into a surface."""
        intr = _check_intrinsics(intrinsics)
        check = intr.scaled(max(8, intr.width // 4), max(6, intr.height // 4))
        sx, sy, sz = self.size
        # Look at furniture or into the room, as people and robots do, rather than at a bare wall.
        targets = [0.5 * (lo + hi) for lo, hi in (item.bounds() for item in self.items if item.kind != "poster")]
        targets.append(np.array([sx / 2, sy / 2, 0.5]))
        best, best_score = None, -math.inf
        for _ in range(attempts):
            xy = (rng.uniform(CAMERA_CLEARANCE, sx - CAMERA_CLEARANCE), rng.uniform(CAMERA_CLEARANCE, sy - CAMERA_CLEARANCE))
            z = rng.uniform(0.3, min(1.8, sz - 0.4))
            target = targets[int(rng.integers(len(targets)))]
            to_target = target - np.array([xy[0], xy[1], z])
            reach = math.hypot(to_target[0], to_target[1])
            pose = CameraPose((xy[0], xy[1], z), yaw=math.atan2(to_target[1], to_target[0]) + rng.normal(0.0, 0.35),
                              pitch=float(np.clip(math.atan2(-to_target[2], reach) + rng.normal(0.0, 0.1), -0.3, 0.6)),
                              roll=float(np.clip(rng.normal(0.0, 0.03), -0.1, 0.1)))
            if not self.is_free(xy) or reach < 1.0:
                continue
            depth = self.depth(pose, check)
            nearest, median = float(depth.min()), float(np.median(depth))
            if nearest >= 0.3 and median >= 1.0:
                return pose
            score = min(nearest / 0.3, median / 1.0)
            if score > best_score:
                best, best_score = pose, score
        if best is None:
            raise RuntimeError("no free camera position in this scene; the room is full of furniture")
        return best


def _check_intrinsics(intrinsics: Intrinsics | None) -> Intrinsics:
    intr = Intrinsics.nyu(DEFAULT_WIDTH, DEFAULT_HEIGHT) if intrinsics is None else intrinsics
    if not intr.is_valid():
        raise ValueError(f"invalid intrinsics {intr}: fx, fy must be positive and finite, width/height positive")
    return intr


@functools.lru_cache(maxsize=16)
def _ray_grid(intr: Intrinsics) -> np.ndarray:
    """(2, H, W) float32 x and y of optical-frame rays with z = 1, so the hit distance t is the depth.
    Pixel (u, v) is looked up at its integer coordinates, as depth_image_proc back-projects."""
    u = (np.arange(intr.width, dtype=np.float64) - intr.cx) / intr.fx
    v = (np.arange(intr.height, dtype=np.float64) - intr.cy) / intr.fy
    grid = np.empty((2, intr.height, intr.width), dtype=np.float32)
    grid[0] = u[None, :]
    grid[1] = v[:, None]
    grid.setflags(write=False)
    return grid


@dataclass
class _Hits:
    """First hit per pixel (flat arrays of H*W) plus the rays that produced them."""
    origin: np.ndarray              # (3,) float32
    d: np.ndarray                   # (3, N) float32 world ray directions (optical z = 1)
    t: np.ndarray                   # (N,) float32 depth
    kind: np.ndarray                # (N,) int8 surface kind
    material: np.ndarray            # (N,) int32 material index
    curved: np.ndarray              # (N,) int32 index into the curved-primitive tables (-1: planar)

    def part(self, pixels: slice) -> "_Hits":
        return _Hits(self.origin, self.d[:, pixels], self.t[pixels], self.kind[pixels], self.material[pixels],
                     self.curved[pixels])


class _CompiledScene:
    """Flat arrays of a Scene for fast casting: primitives, material tables, texture atlas."""

    def __init__(self, scene: Scene) -> None:
        self.size = np.array(scene.size, dtype=np.float32)
        materials = [scene.wall, scene.floor, scene.ceiling]
        # primitives with their material, curved-table index and bounding-box corners (for culling)
        self.boxes: list[tuple[np.ndarray, np.ndarray, int, np.ndarray]] = []
        self.cylinders: list[tuple[Cylinder, int, int, np.ndarray]] = []
        self.spheres: list[tuple[Sphere, int, int, np.ndarray]] = []
        curved_centres, curved_radii, curved_u_scale = [], [], []
        for item in scene.items:
            materials.append(item.material)
            mat = len(materials) - 1
            tpm = _texels_per_metre(item.material)
            for part in item.parts:
                corners = _corners(*_bounds(part))
                if isinstance(part, Box):
                    self.boxes.append((np.array(part.lo, np.float32), np.array(part.hi, np.float32), mat, corners))
                    continue
                index = len(curved_centres)
                if isinstance(part, Cylinder):
                    curved_centres.append((*part.centre, 0.0))
                    self.cylinders.append((part, mat, index, corners))
                else:
                    curved_centres.append(part.centre)
                    self.spheres.append((part, mat, index, corners))
                curved_radii.append(part.radius)
                # a whole number of tiles around the circumference: no seam where the angle wraps
                tiles = max(1, round(2 * math.pi * part.radius * tpm / TILE))
                curved_u_scale.append(tiles * TILE / (2 * math.pi) / tpm)   # metres of texture per radian
        self.curved_centres = np.array(curved_centres, np.float32).reshape(-1, 3)
        self.curved_radii = np.array(curved_radii, np.float32)
        self.curved_u_scale = np.array(curved_u_scale, np.float32)
        self.texels_per_metre = np.array([_texels_per_metre(m) for m in materials], np.float32)
        self.texel_offset_u = np.array([m.offset[0] * tpm + _TEXEL_BIAS
                                        for m, tpm in zip(materials, self.texels_per_metre)], np.float32)
        self.texel_offset_v = np.array([m.offset[1] * tpm + _TEXEL_BIAS
                                        for m, tpm in zip(materials, self.texels_per_metre)], np.float32)
        self.materials = materials
        self.atlas_base = (np.arange(len(materials)) * TEXELS_PER_TILE_BLOCK).astype(np.int32)
        self.light = np.array(scene.light if scene.light is not None
                              else (scene.size[0] / 2, scene.size[1] / 2, scene.size[2] - 0.3), np.float32)
        self.light_colour = np.array(scene.light_colour, np.float32)
        self.ambient = float(scene.ambient)

    # -- geometry --------------------------------------------------------------------------------
    def cast(self, pose: CameraPose, intr: Intrinsics) -> _Hits:
        h, w = intr.height, intr.width
        rotation = pose.rotation()
        origin = np.array(pose.position, np.float64)
        gx, gy = _ray_grid(intr)
        # d = R @ (gx, gy, 1), written out: a 3x3 @ 3xN matmul goes through BLAS and is ~30x slower here.
        r = rotation.astype(np.float32)
        d = np.empty((3, h, w), np.float32)
        for i in range(3):
            np.multiply(gx, r[i, 0], out=d[i])
            d[i] += gy * r[i, 1]
            d[i] += r[i, 2]
        with np.errstate(divide="ignore"):
            inv = 1.0 / d
        ox, oy, oz = (float(v) for v in origin)
        # The room, from inside: the exit of each slab pair, nearest first.
        sx, sy, sz = (float(v) for v in self.size)
        if not (0 < ox < sx and 0 < oy < sy and 0 < oz < sz):
            raise ValueError(f"camera at {pose.position} is outside the room [0, {sx:g}] x [0, {sy:g}] x [0, {sz:g}] m")
        tx = np.maximum(-ox * inv[0], (sx - ox) * inv[0])
        ty = np.maximum(-oy * inv[1], (sy - oy) * inv[1])
        tz = np.maximum(-oz * inv[2], (sz - oz) * inv[2])
        t = np.minimum(np.minimum(tx, ty), tz)
        # Selections by arithmetic on masks: np.where is several times slower on these arrays.
        kind = ((tx != t) * (1 + (ty != t))).astype(np.int8)                 # 0: x wall, 1: y wall, 2: z
        material = ((kind == 2) * (_FLOOR + (d[2] > 0))).astype(np.int32)     # _WALL, _FLOOR or _CEILING
        curved = np.full((h, w), -1, np.int32)
        state = (t, kind, material, curved)

        project = _Projector(rotation, origin, intr)
        for lo, hi, mat, corners in self.boxes:
            window = project.window(corners)
            if window is not None:
                _hit_box(state, window, inv, (ox, oy, oz), lo, hi, mat)
        for cylinder, mat, index, corners in self.cylinders:
            window = project.window(corners)
            if window is not None:
                _hit_cylinder(state, window, d, inv, (ox, oy, oz), cylinder, mat, index)
        for sphere, mat, index, corners in self.spheres:
            window = project.window(corners)
            if window is not None:
                _hit_sphere(state, window, d, (ox, oy, oz), sphere, mat, index)
        return _Hits(origin.astype(np.float32), d.reshape(3, -1), t.reshape(-1), kind.reshape(-1), material.reshape(-1),
                     curved.reshape(-1))

    # -- appearance ------------------------------------------------------------------------------
    @functools.cached_property
    def atlas(self) -> np.ndarray:
        """RGBA texels of all materials packed in uint32: one gather per pixel (np.take on 1-D is the
        fast path). Built on first shading only: depth-only casts (pose checks) don't need it."""
        return np.concatenate([_albedo_texels(m) for m in self.materials]).view(np.uint32).ravel()

    def shade(self, hits: _Hits, intr: Intrinsics) -> np.ndarray:
        """HxWx3 uint8, in chunks of pixels small enough for the temporaries to stay in cache."""
        rgb = np.empty((hits.t.size, 3), np.uint8)
        pixel_scale = 2.0 / (intr.fx + intr.fy)        # metres per pixel at 1 m
        for start in range(0, hits.t.size, _SHADE_CHUNK):
            part = slice(start, start + _SHADE_CHUNK)
            rgb[part] = self._shade_chunk(hits.part(part), pixel_scale)
        return rgb.reshape(intr.height, intr.width, 3)

    def _shade_chunk(self, hits: _Hits, pixel_scale: float) -> np.ndarray:
        t, kind, mat, d = hits.t, hits.kind, hits.material, hits.d
        px, py, pz = (hits.origin[i] + t * d[i] for i in range(3))
        # Normals of planes face the camera: minus the sign of the ray along the plane's axis.
        normal = [((kind == axis) * ((d[axis] < 0) * np.float32(2) - 1)) for axis in range(3)]
        # Texture coordinates in metres: the two in-plane world axes (image "up" along +z).
        u = px + (kind == 0) * (py - px)
        v = (kind == 2) * (py + pz) - pz
        curved = np.flatnonzero(kind >= _CYLINDER_SIDE)
        if curved.size:
            self._curved_surfaces(curved, hits, (px, py, pz), normal, u, v)

        # Mip level from the pixel footprint on the surface, in texels (geometric mean of its axes).
        tpm = self.texels_per_metre.take(mat)
        ray_len2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
        cos_incidence = np.abs(normal[0] * d[0] + normal[1] * d[1] + normal[2] * d[2]) / np.sqrt(ray_len2)
        footprint2 = (t * tpm * pixel_scale) ** 2 * ray_len2 / np.maximum(cos_incidence, 0.02)
        level = np.clip(np.floor(0.5 * np.log2(np.maximum(footprint2, 1e-12)) + 0.5), 0, MIP_LEVELS - 1).astype(np.int32)
        ui = (u * tpm + self.texel_offset_u.take(mat)).astype(np.int32) >> level
        vi = (v * tpm + self.texel_offset_v.take(mat)).astype(np.int32) >> level
        side = TILE >> level
        index = self.atlas_base.take(mat) + MIP_OFFSETS.take(level) + (vi & (side - 1)) * side + (ui & (side - 1))
        albedo = self.atlas.take(index).view(np.uint8).reshape(-1, 4)[:, :3]

        # One point light, Lambertian with a mild inverse-square falloff, plus ambient.
        lx, ly, lz = self.light[0] - px, self.light[1] - py, self.light[2] - pz
        dist2 = lx * lx + ly * ly + lz * lz
        lambert = np.maximum(normal[0] * lx + normal[1] * ly + normal[2] * lz, 0) / np.sqrt(dist2)
        intensity = _EXPOSURE * (self.ambient + lambert / (1.0 + dist2 / 16.0))
        intensity *= self._corner_occlusion(mat, kind, px, py, pz) * np.exp(-0.02 * t)
        return np.minimum(albedo * (intensity[:, None] * self.light_colour), 255)

    def _curved_surfaces(self, idx: np.ndarray, hits: _Hits, points, normal, u, v) -> None:
        """Normals and (angle, height) texture coordinates of cylinder sides and spheres."""
        prim = hits.curved[idx]
        centre, radius = self.curved_centres[prim], self.curved_radii[prim]
        is_sphere = hits.kind[idx] == _SPHERE
        n = [(points[i][idx] - centre[:, i]) / radius for i in range(3)]
        n[2] = np.where(is_sphere, n[2], 0)
        for i in range(3):
            normal[i][idx] = n[i]
        u[idx] = np.arctan2(n[1], n[0]) * self.curved_u_scale[prim]
        v[idx] = np.where(is_sphere, -np.arcsin(np.clip(n[2], -1, 1)) * radius, -points[2][idx])

    def _corner_occlusion(self, mat, kind, px, py, pz) -> np.ndarray:
        """Darken where surfaces meet the room's walls, floor and ceiling (cheap ambient occlusion)."""
        sx, sy, sz = (float(v) for v in self.size)
        room = mat <= _CEILING
        gaps = [np.minimum(px, sx - px), np.minimum(py, sy - py), np.minimum(pz, sz - pz)]
        gaps = [gap + (room & (kind == axis)) * np.float32(1e3) for axis, gap in enumerate(gaps)]   # not its own face
        nearest = np.minimum(np.minimum(gaps[0], gaps[1]), gaps[2])
        return 1.0 - 0.35 * np.exp(-nearest / 0.3)


def _texels_per_metre(material: Material) -> float:
    metres = material.tile_metres if material.tile_metres is not None else TEXTURES[material.texture].tile_metres
    return TILE / metres


def _albedo_texels(material: Material) -> np.ndarray:
    """Tinted, contrast-scaled mip pyramid of one material as uint8 RGBA texels (alpha unused)."""
    pyramid, mean = texture_pyramid(material.texture), texture_mean(material.texture)
    # Photos differ in exposure: bring each to a mid-grey average so the tint alone sets brightness.
    gain = np.clip(_MID_GREY / max(float(mean.mean()), 1e-3), 0.7, 1.6)
    scale = np.float32(255) * gain * np.array(material.tint, np.float32)
    # (mean + contrast * (texel - mean)) * scale, as one multiply-add per texel
    albedo = pyramid * (material.contrast * scale) + (1.0 - material.contrast) * mean * scale + 0.5
    rgba = np.zeros((len(albedo), 4), np.uint8)
    rgba[:, :3] = np.clip(albedo, 0, 255)
    return rgba


def _corners(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])], np.float64)


class _Projector:
    """Screen-space bounding windows of primitives, so each is tested only against its own rays."""

    def __init__(self, rotation: np.ndarray, origin: np.ndarray, intr: Intrinsics) -> None:
        self.rotation, self.origin, self.intr = rotation, origin, intr

    def window(self, corners: np.ndarray) -> tuple[slice, slice] | None:
        intr = self.intr
        cam = (corners - self.origin) @ self.rotation          # world -> optical frame
        z = cam[:, 2]
        if (z <= _NEAR).all():
            return None
        if (z <= _NEAR).any():                                   # straddles the camera plane
            return slice(0, intr.height), slice(0, intr.width)
        u = intr.fx * cam[:, 0] / z + intr.cx
        v = intr.fy * cam[:, 1] / z + intr.cy
        c0, c1 = max(0, math.floor(u.min())), min(intr.width, math.ceil(u.max()) + 1)
        r0, r1 = max(0, math.floor(v.min())), min(intr.height, math.ceil(v.max()) + 1)
        if c0 >= c1 or r0 >= r1:
            return None
        return slice(r0, r1), slice(c0, c1)


def _commit(state, window, t_new, hit, kind, mat: int, curved: int) -> None:
    t, kinds, materials, curveds = (a[window] for a in state)
    np.copyto(t, t_new, where=hit)
    np.copyto(kinds, kind, where=hit, casting="unsafe")
    np.copyto(materials, mat, where=hit)
    np.copyto(curveds, curved, where=hit)


def _hit_box(state, window, inv, origin, lo, hi, mat: int) -> None:
    """Slab test: entry distance and the axis of the entry face."""
    near = []
    far = None
    for axis in range(3):
        inv_a = inv[axis][window]
        t1 = (float(lo[axis]) - origin[axis]) * inv_a
        t2 = (float(hi[axis]) - origin[axis]) * inv_a
        near.append(np.minimum(t1, t2))
        far_a = np.maximum(t1, t2)
        far = far_a if far is None else np.minimum(far, far_a)
    t_near = np.maximum(np.maximum(near[0], near[1]), near[2])
    hit = (t_near <= far) & (t_near > HIT_EPSILON) & (t_near < state[0][window])
    if not hit.any():
        return
    axis = (near[0] != t_near) * (1 + (near[1] != t_near))
    _commit(state, window, t_near, hit, axis, mat, -1)


def _hit_cylinder(state, window, d, inv, origin, cyl: Cylinder, mat: int, index: int) -> None:
    dx, dy, dz = (d[i][window] for i in range(3))
    px, py = origin[0] - cyl.centre[0], origin[1] - cyl.centre[1]
    a = dx * dx + dy * dy
    b = px * dx + py * dy
    c = px * px + py * py - cyl.radius ** 2
    disc = b * b - a * c
    with np.errstate(invalid="ignore", divide="ignore"):
        t_side = (-b - np.sqrt(disc)) / a
    z = origin[2] + t_side * dz
    side = (disc >= 0) & (t_side > HIT_EPSILON) & (z >= cyl.bottom) & (z <= cyl.top)
    t_best = np.where(side, t_side, np.float32(np.inf))
    facing_caps = [cyl.top] if origin[2] > cyl.top else [cyl.bottom] if origin[2] < cyl.bottom else []
    for cap_z in facing_caps:
        t_cap = (cap_z - origin[2]) * inv[2][window]
        cx, cy = px + t_cap * dx, py + t_cap * dy
        cap = (t_cap > HIT_EPSILON) & (cx * cx + cy * cy <= cyl.radius ** 2) & (t_cap < t_best)
        t_best = np.where(cap, t_cap, t_best)
    hit = t_best < state[0][window]
    if hit.any():
        kind = np.where(side & (t_best == t_side), _CYLINDER_SIDE, 2)
        _commit(state, window, t_best, hit, kind, mat, index)


def _hit_sphere(state, window, d, origin, sphere: Sphere, mat: int, index: int) -> None:
    dx, dy, dz = (d[i][window] for i in range(3))
    px, py, pz = (origin[i] - sphere.centre[i] for i in range(3))
    a = dx * dx + dy * dy + dz * dz
    b = px * dx + py * dy + pz * dz
    c = px * px + py * py + pz * pz - sphere.radius ** 2
    disc = b * b - a * c
    with np.errstate(invalid="ignore"):
        t_hit = (-b - np.sqrt(disc)) / a
    hit = (disc >= 0) & (t_hit > HIT_EPSILON) & (t_hit < state[0][window])
    if hit.any():
        _commit(state, window, t_hit, hit, _SPHERE, mat, index)


# ---------------------------------------------------------------------------------------------------
# Procedural scenes


@functools.lru_cache(maxsize=4)
def make_scene(seed: int) -> Scene:
    """A random furnished room, the same for the same seed (3-8 m per side, 2.4-3.2 m high)."""
    rng = _rng(seed, 0)
    size = (float(rng.uniform(3.0, 8.0)), float(rng.uniform(3.0, 8.0)), float(rng.uniform(2.4, 3.2)))
    wall = _random_material(rng, "wall", brightness=(0.7, 1.0), saturation=0.2, contrast=(0.3, 0.8))
    floor = _random_material(rng, "floor", brightness=(0.35, 0.8), saturation=0.4, contrast=(0.5, 1.0))
    ceiling = _random_material(rng, "ceiling", brightness=(0.85, 1.0), saturation=0.05, contrast=(0.1, 0.3))
    builder = _RoomBuilder(rng, size)
    target = int(rng.integers(3, min(12, 3 + int(size[0] * size[1] / 3)) + 1))
    for _ in range(60):
        if builder.furniture_count >= target:
            break
        builder.try_add(str(rng.choice(_FURNITURE, p=_FURNITURE_WEIGHTS)))
    for _ in range(int(rng.integers(0, 4))):
        builder.try_add("poster")
    light = (float(rng.uniform(0.3, 0.7) * size[0]), float(rng.uniform(0.3, 0.7) * size[1]), size[2] - 0.3)
    warmth = float(rng.uniform(-0.08, 0.08))
    return Scene(size=size, items=tuple(builder.items), wall=wall, floor=floor, ceiling=ceiling, light=light,
                 light_colour=(1.0 + warmth, 1.0, 1.0 - warmth), ambient=float(rng.uniform(0.3, 0.45)))


def render_frame(seed: int, width: int = DEFAULT_WIDTH, height: int = DEFAULT_HEIGHT,
                 intrinsics: Intrinsics | None = None, pose: CameraPose | None = None) -> SceneFrame:
    """One frame of make_scene(seed) from a random valid pose (both deterministic by seed).

    intrinsics default to the NYU colour camera scaled to width x height; when given they must be
    for width x height.
    """
    intr = _sized_intrinsics(intrinsics, width, height)
    scene = make_scene(seed)
    if pose is None:
        pose = scene.random_pose(_rng(seed, 1), intr)
    return scene.render(pose, intr)


def _sized_intrinsics(intrinsics: Intrinsics | None, width: int, height: int) -> Intrinsics:
    """The NYU colour camera at width x height, or the given intrinsics if they are for that size."""
    intr = Intrinsics.nyu(width, height) if intrinsics is None else intrinsics
    if (intr.width, intr.height) != (width, height):
        raise ValueError(f"intrinsics are for {intr.width}x{intr.height} but width x height is {width}x{height}; "
                         f"pass matching sizes or intrinsics.scaled({width}, {height})")
    return intr


def camera_path(scene: Scene, n_frames: int, step: float = 0.05, seed: int = 0) -> list[CameraPose]:
    """Poses of a camera walking forward through the room (gentle yaw sway, slight bob), clear of
    furniture for the whole walk. step is metres per frame; it shrinks if the room is too short."""
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    rng = _rng(seed, 2)
    sx, sy, sz = scene.size
    best = None
    for _ in range(200):
        xy = (rng.uniform(CAMERA_CLEARANCE, sx - CAMERA_CLEARANCE), rng.uniform(CAMERA_CLEARANCE, sy - CAMERA_CLEARANCE))
        heading = float(rng.uniform(-math.pi, math.pi))
        if not scene.is_free(xy):
            continue
        room = scene.free_distance(xy, heading)
        if best is None or room > best[2]:
            best = (xy, heading, room)
        if room >= n_frames * step:
            break
    if best is None:
        raise RuntimeError("no free camera position in this scene; the room is full of furniture")
    (x, y), heading, room = best
    step = min(step, room / max(n_frames, 1))
    height = float(rng.uniform(0.4, min(1.5, sz - 0.5)))
    pitch = float(np.clip(rng.normal(0.05, 0.05), -0.1, 0.2))
    sway, phase = float(rng.uniform(0.02, 0.08)), float(rng.uniform(0, 2 * math.pi))
    poses = []
    for i in range(n_frames):
        s = i * step
        poses.append(CameraPose((x + s * math.cos(heading), y + s * math.sin(heading),
                                 height + 0.01 * math.sin(2 * math.pi * i / 12 + phase)),
                                yaw=heading + sway * math.sin(2 * math.pi * i / 40 + phase), pitch=pitch))
    return poses


def approach_sequence(seed: int, n_frames: int = 30, width: int = DEFAULT_WIDTH, height: int = DEFAULT_HEIGHT,
                      intrinsics: Intrinsics | None = None, stop_distance: float = 0.6) -> list[SceneFrame]:
    """Frames of a camera driving straight at a box obstacle: its distance shrinks every frame.

    The obstacle's front face is perpendicular to the optical axis and covers the principal point, so
    depth there is the camera-to-obstacle distance (pose.position tells where the camera was). Uses a
    cabinet or crate of make_scene(seed) with a free corridor in front of it; if none has one, a crate is
    placed against the far wall and the furniture in its corridor removed.
    """
    if n_frames < 2:
        raise ValueError(f"an approach needs n_frames >= 2, got {n_frames}")
    intr = _sized_intrinsics(intrinsics, width, height)
    rng = _rng(seed, 3)
    scene = make_scene(seed)
    plan = _plan_approach(scene, rng, stop_distance) or _clear_approach(scene, rng, stop_distance)
    scene, face_xy, normal, start, camera_z = plan
    yaw = math.atan2(-normal[1], -normal[0])
    frames = []
    for distance in np.linspace(start, stop_distance, n_frames):
        position = (face_xy[0] + normal[0] * distance, face_xy[1] + normal[1] * distance, camera_z)
        frames.append(scene.render(CameraPose(position, yaw=yaw), intr))
    return frames


def _plan_approach(scene: Scene, rng: np.random.Generator, stop: float):
    """An existing cabinet/crate face with room to drive at it: (scene, face point, outward normal,
    start distance, camera height), or None."""
    obstacles = [item for item in scene.items if item.kind in ("cabinet", "crate")]
    for i in rng.permutation(len(obstacles)):
        item = obstacles[i]
        lo, hi = item.bounds()
        if hi[2] < 0.45:
            continue
        on_top = [other for other in scene.items if _inside(other.bounds(), (lo, hi))]
        for side in rng.permutation(4):
            axis, sign = divmod(int(side), 2)
            normal = np.zeros(2)
            normal[axis] = 1.0 if sign else -1.0
            across = 1 - axis
            face = np.empty(2)
            face[axis] = hi[axis] if sign else lo[axis]
            half = 0.5 * (hi[across] - lo[across])
            face[across] = 0.5 * (lo[across] + hi[across]) + rng.uniform(-0.3, 0.3) * half
            room = scene.free_distance(tuple(face + normal * 0.01), math.atan2(normal[1], normal[0]),
                                       ignore=[item, *on_top])
            if room >= stop + 1.0:
                start = min(float(rng.uniform(2.0, 3.5)), room)
                camera_z = float(rng.uniform(0.3, hi[2] - 0.15))
                return scene, (float(face[0]), float(face[1])), (float(normal[0]), float(normal[1])), start, camera_z
    return None


def _clear_approach(scene: Scene, rng: np.random.Generator, stop: float):
    """A crate against the far end of the room's long axis, the corridor to it emptied."""
    size = np.array(scene.size)
    axis = int(np.argmax(size[:2]))
    across = 1 - axis
    crate = np.array([0.7, 0.7, 1.0])
    lo = np.zeros(3)
    lo[axis] = size[axis] - 0.3 - crate[axis]
    lo[across] = 0.5 * size[across] - 0.5 * crate[across]
    hi = lo + crate
    corridor = (0.5 * size[across] - 0.7, 0.5 * size[across] + 0.7)
    kept = []
    for item in scene.items:
        ilo, ihi = item.bounds()
        if ihi[across] < corridor[0] or ilo[across] > corridor[1] or item.kind == "poster":
            kept.append(item)
    crate_item = Item("crate", _random_material(rng, "object", (0.5, 1.0), 0.6, (0.7, 1.0)),
                      (Box(tuple(lo), tuple(hi)),))
    cleared = replace(scene, items=(*kept, crate_item))
    face = np.empty(2)
    face[axis], face[across] = lo[axis], 0.5 * size[across]
    normal = np.zeros(2)
    normal[axis] = -1.0
    start = min(3.0, lo[axis] - CAMERA_CLEARANCE - 0.05)
    return cleared, (float(face[0]), float(face[1])), (float(normal[0]), float(normal[1])), start, \
        float(rng.uniform(0.3, 0.85))


def _inside(inner: tuple[np.ndarray, np.ndarray], outer: tuple[np.ndarray, np.ndarray]) -> bool:
    """Whether a footprint lies within another (clutter standing on a cabinet)."""
    return bool((inner[0][:2] >= outer[0][:2]).all() and (inner[1][:2] <= outer[1][:2]).all())


def _rng(seed: int, stream: int) -> np.random.Generator:
    """Independent streams per purpose, so a pose draw never changes the room of the same seed."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.default_rng([int(seed), stream])


def _random_material(rng: np.random.Generator, role: str, brightness: tuple[float, float], saturation: float,
                     contrast: tuple[float, float]) -> Material:
    names = textures_for(role)
    texture = names[int(rng.integers(len(names)))]
    base = rng.uniform(*brightness)
    tint = tuple(float(base * (1.0 - saturation * c)) for c in rng.uniform(0, 1, 3))
    if role == "object" and texture in _COLOUR_PHOTOS:
        tint = tuple(float(base) for _ in range(3))      # keep a photograph's own colours
    tile = TEXTURES[texture].tile_metres * float(rng.uniform(0.8, 1.25))
    return Material(texture, tint, float(rng.uniform(*contrast)), tile,
                    (float(rng.uniform(0, 5)), float(rng.uniform(0, 5))))


_COLOUR_PHOTOS = {"coffee", "chelsea", "astronaut", "rocket", "immunohistochemistry"}
_FURNITURE = ("table", "cabinet", "shelf", "crate", "stack", "barrel", "pillar", "ball")
_FURNITURE_WEIGHTS = np.array([0.2, 0.18, 0.14, 0.15, 0.08, 0.12, 0.04, 0.09])
_GAP = 0.12          # metres between footprints of neighbouring furniture


class _Frame2D:
    """Local furniture coordinates (a along the front, b away from the wall/anchor, z up) -> world."""

    def __init__(self, origin: tuple[float, float], along: tuple[float, float], out: tuple[float, float]) -> None:
        self.origin, self.along, self.out = np.array(origin), np.array(along), np.array(out)

    def point(self, a: float, b: float) -> np.ndarray:
        return self.origin + a * self.along + b * self.out

    def box(self, a0: float, b0: float, z0: float, a1: float, b1: float, z1: float) -> Box:
        p, q = self.point(a0, b0), self.point(a1, b1)
        lo, hi = np.minimum(p, q), np.maximum(p, q)
        return Box((float(lo[0]), float(lo[1]), float(z0)), (float(hi[0]), float(hi[1]), float(z1)))


class _RoomBuilder:
    """Places furniture without overlaps; each kind is a few primitives in a local frame."""

    def __init__(self, rng: np.random.Generator, size: Vec3) -> None:
        self.rng, self.size = rng, size
        self.items: list[Item] = []
        self.occupied: list[tuple[float, float, float, float]] = []
        self.furniture_count = 0

    def try_add(self, kind: str) -> bool:
        made = getattr(self, f"_make_{kind}")()
        if made is None:
            return False
        footprint, items = made
        x0, y0, x1, y1 = footprint
        sx, sy, _ = self.size
        if x0 < 0 or y0 < 0 or x1 > sx or y1 > sy:
            return False
        if any(x0 < b[2] + _GAP and b[0] < x1 + _GAP and y0 < b[3] + _GAP and b[1] < y1 + _GAP
               for b in self.occupied):
            return False
        if kind != "poster":          # pictures hang above the floor: they don't take floor space
            self.occupied.append(footprint)
            self.furniture_count += 1
        self.items.extend(items)
        return True

    # -- placement -------------------------------------------------------------------------------
    def _against_wall(self, width: float) -> _Frame2D | None:
        sx, sy, _ = self.size
        wall = int(self.rng.integers(4))
        length = sx if wall < 2 else sy
        if width > length - 0.1:
            return None
        start = float(self.rng.uniform(0.05, length - width - 0.05))
        gap = 0.01
        if wall == 0:
            return _Frame2D((start, gap), (1, 0), (0, 1))
        if wall == 1:
            return _Frame2D((start, sy - gap), (1, 0), (0, -1))
        if wall == 2:
            return _Frame2D((gap, start), (0, 1), (1, 0))
        return _Frame2D((sx - gap, start), (0, 1), (-1, 0))

    def _free_standing(self, width: float, depth: float) -> _Frame2D | None:
        sx, sy, _ = self.size
        if self.rng.random() < 0.5:                     # front along x
            along, out, span_x, span_y = (1, 0), (0, 1), width, depth
        else:                                           # front along y
            along, out, span_x, span_y = (0, 1), (1, 0), depth, width
        if span_x > sx - 0.6 or span_y > sy - 0.6:
            return None
        return _Frame2D((float(self.rng.uniform(0.3, sx - 0.3 - span_x)), float(self.rng.uniform(0.3, sy - 0.3 - span_y))),
                        along, out)

    @staticmethod
    def _footprint(parts: Iterable[Primitive]) -> tuple[float, float, float, float]:
        lo, hi = _parts_bounds(parts)
        return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])

    def _material(self, contrast=(0.6, 1.0)) -> Material:
        return _random_material(self.rng, "object", (0.45, 1.0), 0.7, contrast)

    # -- furniture kinds -------------------------------------------------------------------------
    def _make_table(self):
        r = self.rng
        w, d, h = r.uniform(0.8, 1.6), r.uniform(0.6, 0.9), r.uniform(0.7, 0.78)
        frame = self._free_standing(w, d)
        if frame is None:
            return None
        leg, top = 0.05, 0.035
        parts = [frame.box(0, 0, h - top, w, d, h)]
        for a in (0.03, w - 0.03 - leg):
            for b in (0.03, d - 0.03 - leg):
                parts.append(frame.box(a, b, 0, a + leg, b + leg, h - top))
        items = [Item("table", self._material(), tuple(parts))]
        for _ in range(int(r.integers(0, 3))):
            items.append(self._clutter(frame, w, d, h))
        return self._footprint(parts), items

    def _clutter(self, frame: _Frame2D, w: float, d: float, z: float) -> Item:
        """A small object standing on a surface of the piece of furniture in `frame`."""
        r = self.rng
        a, b = r.uniform(0.15, w - 0.15), r.uniform(0.15, d - 0.15)
        centre = frame.point(a, b)
        choice = int(r.integers(3))
        if choice == 0:
            radius = float(r.uniform(0.05, 0.12))
            part = Sphere((float(centre[0]), float(centre[1]), z + radius), radius)
        elif choice == 1:
            radius = float(r.uniform(0.04, 0.1))
            part = Cylinder((float(centre[0]), float(centre[1])), radius, z, z + float(r.uniform(0.08, 0.3)))
        else:
            s = float(r.uniform(0.06, 0.14))
            part = Box((float(centre[0] - s), float(centre[1] - s), z),
                       (float(centre[0] + s), float(centre[1] + s), z + float(r.uniform(0.05, 0.3))))
        return Item("clutter", self._material(), (part,))

    def _make_cabinet(self):
        r = self.rng
        w, d, h = r.uniform(0.5, 1.4), r.uniform(0.4, 0.7), r.uniform(0.6, 1.3)
        frame = self._against_wall(w) if r.random() < 0.8 else self._free_standing(w, d)
        if frame is None:
            return None
        parts = (frame.box(0, 0, 0, w, d, h),)
        items = [Item("cabinet", self._material(), parts)]
        if r.random() < 0.4:
            items.append(self._clutter(frame, w, d, h))
        return self._footprint(parts), items

    def _make_shelf(self):
        r = self.rng
        w, d = r.uniform(0.6, 1.2), r.uniform(0.28, 0.4)
        h = min(r.uniform(1.4, 2.2), self.size[2] - 0.2)
        frame = self._against_wall(w)
        if frame is None:
            return None
        board = 0.025
        parts = [frame.box(0, 0, 0, w, board, h),                       # back
                 frame.box(0, 0, 0, board, d, h), frame.box(w - board, 0, 0, w, d, h),
                 frame.box(0, 0, h - board, w, d, h)]
        levels = np.linspace(0.05, h - board, int(r.integers(4, 6)))[:-1]
        headroom = levels[1] - levels[0] - board - 0.02
        books = []
        for z in levels:
            parts.append(frame.box(board, 0, z, w - board, d, z + board))
            length = r.uniform(0.2, 0.9) * (w - 2 * board)
            start = board + r.uniform(0, w - 2 * board - length)
            books.append(frame.box(start, board, z + board, start + length, d * r.uniform(0.6, 0.9),
                                   z + board + r.uniform(0.5, 0.95) * headroom))
        items = [Item("shelf", self._material(), tuple(parts)), Item("books", self._material(), tuple(books))]
        return self._footprint(parts), items

    def _make_crate(self):
        r = self.rng
        w, d, h = r.uniform(0.35, 0.8), r.uniform(0.35, 0.8), r.uniform(0.3, 0.9)
        frame = self._free_standing(w, d)
        if frame is None:
            return None
        parts = (frame.box(0, 0, 0, w, d, h),)
        return self._footprint(parts), [Item("crate", self._material(), parts)]

    def _make_stack(self):
        r = self.rng
        w, d = r.uniform(0.5, 0.9), r.uniform(0.5, 0.9)
        frame = self._free_standing(w, d) if r.random() < 0.5 else self._against_wall(w)
        if frame is None:
            return None
        parts, z, a0, b0, a1, b1 = [], 0.0, 0.0, 0.0, w, d
        for _ in range(int(r.integers(2, 4))):
            h = r.uniform(0.25, 0.5)
            parts.append(frame.box(a0, b0, z, a1, b1, z + h))
            z += h
            shrink_a, shrink_b = r.uniform(0.03, 0.15, 2) * (a1 - a0), r.uniform(0.03, 0.15, 2) * (b1 - b0)
            a0, a1, b0, b1 = a0 + shrink_a[0], a1 - shrink_a[1], b0 + shrink_b[0], b1 - shrink_b[1]
        return self._footprint(parts), [Item("stack", self._material(), tuple(parts))]

    def _make_barrel(self):
        r = self.rng
        radius, h = r.uniform(0.15, 0.35), r.uniform(0.4, 1.0)
        frame = self._free_standing(2 * radius, 2 * radius) if r.random() < 0.6 else self._against_wall(2 * radius)
        if frame is None:
            return None
        c = frame.point(radius, radius)
        parts = (Cylinder((float(c[0]), float(c[1])), float(radius), 0.0, float(h)),)
        return self._footprint(parts), [Item("barrel", self._material(), parts)]

    def _make_pillar(self):
        r = self.rng
        radius = r.uniform(0.15, 0.3)
        frame = self._free_standing(2 * radius, 2 * radius)
        if frame is None or min(self.size[:2]) < 4.5:
            return None
        c = frame.point(radius, radius)
        parts = (Cylinder((float(c[0]), float(c[1])), float(radius), 0.0, float(self.size[2])),)
        return self._footprint(parts), [Item("pillar", self._material(contrast=(0.2, 0.6)), parts)]

    def _make_ball(self):
        r = self.rng
        radius = r.uniform(0.1, 0.3)
        frame = self._free_standing(2 * radius, 2 * radius)
        if frame is None:
            return None
        c = frame.point(radius, radius)
        parts = (Sphere((float(c[0]), float(c[1]), float(radius)), float(radius)),)
        return self._footprint(parts), [Item("ball", self._material(), parts)]

    def _make_poster(self):
        """A flat picture on a wall (thin box), not in the way of anything."""
        r = self.rng
        w, h = r.uniform(0.4, 1.2), r.uniform(0.3, 0.9)
        frame = self._against_wall(w)
        if frame is None:
            return None
        z0 = float(r.uniform(0.9, max(0.95, self.size[2] - h - 0.3)))
        parts = (frame.box(0, -0.005, z0, w, 0.015, z0 + h),)
        names = textures_for("poster")
        texture = names[int(r.integers(len(names)))]
        tile = max(w, h) * 2.0    # one mirrored quadrant spans the picture: it shows the photograph once
        material = Material(texture, (1.0, 1.0, 1.0), 1.0, tile, (0.0, 0.0))
        return self._footprint(parts), [Item("poster", material, parts)]
