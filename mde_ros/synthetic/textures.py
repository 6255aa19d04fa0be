"""Photographic textures for the synthetic scenes, from the images scikit-image ships in its wheel.

Only images that load without a network (the ones inside the skimage package, not the ones
fetched by pooch) are used, so scenes render offline. Each photograph becomes a seamless tile:
a square crop mirrored into 2x2 quadrants, with a mip pyramid so that distant surfaces are
filtered instead of aliased. A tile has a physical size in metres, so texture scale on screen is a
real depth cue.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

TILE = 256                      # texels per tile side (power of two: wrapping is a bit mask)
MIP_LEVELS = 6                  # 256, 128, 64, 32, 16, 8
MIP_OFFSETS = np.cumsum([0] + [(TILE >> level) ** 2 for level in range(MIP_LEVELS)]).astype(np.int32)
TEXELS_PER_TILE_BLOCK = int(MIP_OFFSETS[-1])   # texels of one texture with all its mip levels


@dataclass(frozen=True)
class TextureSpec:
    """A photograph from skimage.data and what it plausibly is in a room."""
    loader: str                 # skimage.data function name
    tile_metres: float          # physical side of one (mirrored) tile
    roles: tuple[str, ...]      # "wall", "floor", "ceiling", "object", "poster"


# Surfaces read as plaster (moon), brick, carpet (grass), terrazzo (gravel); photographs as posters,
# prints and labels on furniture. skimage's horse (a binary silhouette) and the pooch-only images
# (eagle, lily, kidney, skin, ...) are not used.
TEXTURES: dict[str, TextureSpec] = {
    "brick": TextureSpec("brick", 1.6, ("wall", "floor", "object")),
    "gravel": TextureSpec("gravel", 1.0, ("wall", "floor", "object")),
    "grass": TextureSpec("grass", 1.2, ("floor", "object")),
    "moon": TextureSpec("moon", 3.0, ("wall", "ceiling", "floor")),
    "camera": TextureSpec("camera", 1.2, ("object", "poster")),
    "coins": TextureSpec("coins", 0.5, ("object", "poster")),
    "text": TextureSpec("text", 0.6, ("object", "wall", "poster")),
    "clock": TextureSpec("clock", 0.6, ("object", "poster")),
    "coffee": TextureSpec("coffee", 0.8, ("object", "poster")),
    "chelsea": TextureSpec("chelsea", 0.8, ("object", "poster")),
    "astronaut": TextureSpec("astronaut", 1.0, ("object", "poster")),
    "rocket": TextureSpec("rocket", 1.0, ("object", "poster")),
    "hubble_deep_field": TextureSpec("hubble_deep_field", 1.5, ("poster",)),
    "immunohistochemistry": TextureSpec("immunohistochemistry", 0.8, ("object", "floor")),
}


def textures_for(role: str) -> list[str]:
    """Texture names usable for a role, in a fixed order (scene generation depends on it)."""
    names = [name for name, spec in TEXTURES.items() if role in spec.roles]
    if not names:
        raise ValueError(f"no texture for role {role!r}; roles are wall, floor, ceiling, object, poster")
    return names


@functools.lru_cache(maxsize=None)
def texture_pyramid(name: str) -> np.ndarray:
    """All mip levels of a seamless tile, flattened: (TEXELS_PER_TILE_BLOCK, 3) float32 in [0, 1].

    Level l (side TILE >> l) starts at MIP_OFFSETS[l], row-major. Loaded once per process.
    """
    if name not in TEXTURES:
        raise ValueError(f"unknown texture {name!r}; available: {', '.join(TEXTURES)}")
    tile = _seamless_tile(_load_photo(TEXTURES[name].loader))
    levels = [tile]
    for _ in range(1, MIP_LEVELS):
        t = levels[-1]
        levels.append(0.25 * (t[0::2, 0::2] + t[1::2, 0::2] + t[0::2, 1::2] + t[1::2, 1::2]))
    pyramid = np.concatenate([level.reshape(-1, 3) for level in levels])
    pyramid.setflags(write=False)
    return pyramid


@functools.lru_cache(maxsize=None)
def texture_mean(name: str) -> np.ndarray:
    """Mean RGB of a texture's full-resolution tile, (3,) float32."""
    return texture_pyramid(name)[:TILE * TILE].mean(axis=0, dtype=np.float64).astype(np.float32)


def _load_photo(loader: str) -> np.ndarray:
    """RGB float32 in [0, 1] from skimage.data, grey images replicated to three channels."""
    import skimage.data

    image = np.asarray(getattr(skimage.data, loader)())
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return image[:, :, :3].astype(np.float32) / 255.0


def _seamless_tile(photo: np.ndarray) -> np.ndarray:
    """Centre square crop, resized to half a tile and mirrored 2x2: it wraps without seams (a seam
    would be a straight edge the network could mistake for geometry)."""
    h, w = photo.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    half = cv2.resize(photo[top:top + side, left:left + side], (TILE // 2, TILE // 2),
                      interpolation=cv2.INTER_AREA)
    upper = np.concatenate([half, half[:, ::-1]], axis=1)
    return np.ascontiguousarray(np.concatenate([upper, upper[::-1]], axis=0))
