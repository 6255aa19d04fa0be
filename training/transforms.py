"""Paired augmentations: one geometric change applied to image, depth and valid mask alike, with the
intrinsics moved to match, so a pixel still back-projects to the same 3-D point afterwards.

Conventions (the same as ``mde_ros.pipeline.intrinsics``):

* Pixel centres sit at integer coordinates ``0 .. W-1``.
* Resize scales per axis like image_proc's resize: ``fx, cx *= sx`` and ``fy, cy *= sy`` with
  ``sx = W_new / W_old`` (the half-pixel shift of exact centre alignment is ignored, as image_proc does).
* Crop at ``(top, left)``: ``cx -= left``, ``cy -= top``; focal lengths are unchanged.
* Horizontal flip: pixel ``x`` moves to ``W-1-x``, so ``cx' = W-1-cx``. The flipped image shows the
  mirrored scene (``X -> -X``); depth values are unchanged.
* Depth and the valid mask are resampled with nearest neighbour (centre-aligned) so sparse ground truth
  (KITTI) is never blended with its zeros; the image is resampled with area (shrink) or bilinear.
* Colour jitter touches the image only.

Zooming (random resized crop) changes the effective focal length: the intrinsics follow, the metric
depth values do not. Keep its scale range narrow for metric training, or use the intrinsics
(``train_focal_px``, camera-aware rescale) to compensate.

``build_transforms(data_cfg, split)`` composes the chain from ``data_cfg["augment"]``::

    augment:
      random_resized_crop: {scale: [0.6, 1.0], ratio: [0.75, 1.333]}  # crop, then resize to input_size
      random_crop: {resize: [h, w]}  # or: resize to [h, w] (omit: keep size), then crop input_size
      hflip: 0.5                      # probability
      color_jitter: {brightness: 0.2, contrast: 0.2, saturation: 0.2, hue: 0.02}

Only the train split is augmented; every split ends at exactly ``input_size``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import cv2
import numpy as np

AUGMENT_KEYS = ("random_resized_crop", "random_crop", "hflip", "color_jitter")


@dataclass
class Frame:
    """One sample while it is being transformed (numpy, HWC)."""

    image: np.ndarray       # HxWx3 float32 RGB in [0, 1]
    depth: np.ndarray       # HxW float32 metres, 0 where invalid
    valid: np.ndarray       # HxW bool
    intrinsics: np.ndarray  # float64 [fx, fy, cx, cy]; NaN when unknown

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


Transform = Callable[[Frame, np.random.Generator], Frame]


def resize(frame: Frame, height: int, width: int) -> Frame:
    if (height, width) == (frame.height, frame.width):
        return frame
    shrink = height <= frame.height and width <= frame.width
    image = cv2.resize(frame.image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    depth = cv2.resize(frame.depth, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)
    valid = cv2.resize(frame.valid.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST_EXACT) > 0
    sx, sy = width / frame.width, height / frame.height
    fx, fy, cx, cy = frame.intrinsics
    return Frame(np.clip(image, 0.0, 1.0), depth, valid, np.array([fx * sx, fy * sy, cx * sx, cy * sy]))


def crop(frame: Frame, top: int, left: int, height: int, width: int) -> Frame:
    if top < 0 or left < 0 or top + height > frame.height or left + width > frame.width or height <= 0 or width <= 0:
        raise ValueError(f"crop (top={top}, left={left}, {height}x{width}) does not fit a "
                         f"{frame.height}x{frame.width} sample")
    rows, cols = slice(top, top + height), slice(left, left + width)
    fx, fy, cx, cy = frame.intrinsics
    return Frame(frame.image[rows, cols], frame.depth[rows, cols], frame.valid[rows, cols],
                 np.array([fx, fy, cx - left, cy - top]))


def hflip(frame: Frame) -> Frame:
    fx, fy, cx, cy = frame.intrinsics
    return Frame(frame.image[:, ::-1], frame.depth[:, ::-1], frame.valid[:, ::-1],
                 np.array([fx, fy, frame.width - 1 - cx, cy]))


class Compose:
    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    def __call__(self, frame: Frame, rng: np.random.Generator) -> Frame:
        for transform in self.transforms:
            frame = transform(frame, rng)
        return frame

    def __repr__(self) -> str:
        return f"Compose({self.transforms})"


@dataclass(frozen=True)
class Resize:
    height: int
    width: int

    def __call__(self, frame: Frame, rng: np.random.Generator) -> Frame:
        return resize(frame, self.height, self.width)


@dataclass(frozen=True)
class Crop:
    """A fixed crop (e.g. KITTI's benchmark crop), before any random augmentation."""

    top: int
    left: int
    height: int
    width: int

    def __call__(self, frame: Frame, rng: np.random.Generator) -> Frame:
        return crop(frame, self.top, self.left, self.height, self.width)


@dataclass(frozen=True)
class RandomCrop:
    height: int
    width: int

    def __call__(self, frame: Frame, rng: np.random.Generator) -> Frame:
        if self.height > frame.height or self.width > frame.width:
            raise ValueError(f"random crop {self.height}x{self.width} is larger than the "
                             f"{frame.height}x{frame.width} sample; set augment.random_crop.resize larger")
        top = int(rng.integers(0, frame.height - self.height + 1))
        left = int(rng.integers(0, frame.width - self.width + 1))
        return crop(frame, top, left, self.height, self.width)


@dataclass(frozen=True)
class RandomResizedCrop:
    """torchvision's RandomResizedCrop (area fraction ``scale``, absolute aspect ``ratio``), paired."""

    height: int
    width: int
    scale: tuple[float, float] = (0.5, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def __call__(self, frame: Frame, rng: np.random.Generator) -> Frame:
        top, left, h, w = self._window(frame.height, frame.width, rng)
        return resize(crop(frame, top, left, h, w), self.height, self.width)

    def _window(self, height: int, width: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            aspect = math.exp(rng.uniform(*log_ratio))
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
        aspect = min(max(width / height, self.ratio[0]), self.ratio[1])  # fallback: central crop
        w, h = (width, int(round(width / aspect))) if width / height < aspect else (int(round(height * aspect)), height)
        h, w = min(h, height), min(w, width)
        return (height - h) // 2, (width - w) // 2, h, w


@dataclass(frozen=True)
class RandomHorizontalFlip:
    p: float = 0.5

    def __call__(self, frame: Frame, rng: np.random.Generator) -> Frame:
        return hflip(frame) if rng.uniform() < self.p else frame


@dataclass(frozen=True)
class ColorJitter:
    """Photometric jitter of the image only (depth is geometry). Factors as in torchvision:
    brightness/contrast/saturation multiply by U(1-x, 1+x); hue rotates chroma by U(-h, h) turns
    in YIQ space (a cheap hue shift that needs no HSV round trip)."""

    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0

    def __post_init__(self) -> None:
        for name in ("brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise ValueError(f"color_jitter.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.hue <= 0.5:
            raise ValueError(f"color_jitter.hue must be in [0, 0.5] turns, got {self.hue}")

    def __call__(self, frame: Frame, rng: np.random.Generator) -> Frame:
        image = frame.image.astype(np.float32)
        if self.brightness:
            image = image * _factor(rng, self.brightness)
        if self.contrast:
            mean = float(_gray(image).mean())
            image = (image - mean) * _factor(rng, self.contrast) + mean
        if self.saturation:
            gray = _gray(image)[..., None]
            image = (image - gray) * _factor(rng, self.saturation) + gray
        if self.hue:
            image = _rotate_hue(image, rng.uniform(-self.hue, self.hue) * 2 * math.pi)
        return replace(frame, image=np.clip(image, 0.0, 1.0).astype(np.float32))


_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float32)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ).astype(np.float32)


def _factor(rng: np.random.Generator, amount: float) -> float:
    return float(rng.uniform(max(0.0, 1.0 - amount), 1.0 + amount))


def _gray(image: np.ndarray) -> np.ndarray:
    return image @ _RGB_TO_YIQ[0]


def _rotate_hue(image: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    rotation = np.array([[1, 0, 0], [0, c, -s], [0, s, c]], np.float32)
    return image @ (_YIQ_TO_RGB @ rotation @ _RGB_TO_YIQ).T


def build_transforms(data_cfg: dict, split: str) -> Compose:
    """The chain for ``split``: augmentations from ``data_cfg["augment"]`` on train, then exactly input_size."""
    height, width = (int(v) for v in data_cfg["input_size"])
    if split != "train":
        return Compose([Resize(height, width)])
    augment = dict(data_cfg.get("augment") or {})
    unknown = sorted(set(augment) - set(AUGMENT_KEYS))
    if unknown:
        raise ValueError(f"unknown data.augment key(s) {unknown}; allowed: {list(AUGMENT_KEYS)}")
    rrc, rcrop = augment.get("random_resized_crop"), augment.get("random_crop")
    if rrc and rcrop:
        raise ValueError("data.augment: use random_resized_crop or random_crop, not both")
    chain: list[Transform] = []
    if rrc:
        rrc = {} if rrc is True else dict(rrc)
        extra = sorted(set(rrc) - {"scale", "ratio"})
        if extra:
            raise ValueError(f"unknown data.augment.random_resized_crop key(s) {extra}; allowed: scale, ratio")
        chain.append(RandomResizedCrop(height, width, tuple(rrc.get("scale", (0.5, 1.0))),
                                       tuple(rrc.get("ratio", (3 / 4, 4 / 3)))))
    elif rcrop:
        rcrop = {} if rcrop is True else dict(rcrop)
        extra = sorted(set(rcrop) - {"resize"})
        if extra:
            raise ValueError(f"unknown data.augment.random_crop key(s) {extra}; allowed: resize")
        if rcrop.get("resize"):
            chain.append(Resize(*(int(v) for v in rcrop["resize"])))
        chain.append(RandomCrop(height, width))
    else:
        chain.append(Resize(height, width))
    if augment.get("hflip"):
        chain.append(RandomHorizontalFlip(float(augment["hflip"])))
    if augment.get("color_jitter"):
        jitter = dict(augment["color_jitter"])
        extra = sorted(set(jitter) - {"brightness", "contrast", "saturation", "hue"})
        if extra:
            raise ValueError(f"unknown data.augment.color_jitter key(s) {extra}; "
                             "allowed: brightness, contrast, saturation, hue")
        chain.append(ColorJitter(**jitter))
    return Compose(chain)
