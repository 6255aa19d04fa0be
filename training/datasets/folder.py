"""Your own data: an ``images/`` folder and a ``depths/`` folder matched by file stem.

Layouts (the first that exists wins)::

    root/<split>/images/*.{png,jpg,jpeg}   root/<split>/depths/<stem>.{png,npy,tif,tiff}
    root/images/...                        root/depths/...   (one pool; see split_files / val_fraction)

In the split layout without a ``root/val/`` folder (the Kaggle competition's train/ + test/), val is
carved out of ``root/train/`` exactly as out of a pool (``split_files.val`` or ``val_fraction``), and
the train split is the rest of train/, so the two never share an image.

A split without a ``depths/`` folder (a competition's test set) yields samples with no valid pixel;
the train split must have depth. Keys:

* ``depth_units``: ``auto`` (uint16 PNG -> mm, uint8 PNG -> normalized255, float .npy/.tif -> m),
  ``mm`` (value / 1000), ``m`` (value as is), ``normalized255`` (value / 255 * ``depth_max``: the
  Kaggle seed's 8-bit grayscale maps, brighter = farther), ``kitti256`` (value / 256).
* ``depth_max``: metres that 255 stands for with normalized255 (default: max_depth).
* ``intrinsics``: [fx, fy, cx, cy] of the camera at the images' native size (default unknown: NaN).
* ``split_files: {split: txt}`` with one stem per line (pool layout; a ``val`` list alone makes train
  the rest), else ``val_fraction`` (default 0.1) holds out a seeded share of the pool as val
  (``split_seed``; by frame: list val stems yourself when frames come in near-duplicate runs); the
  pool layout has no test split unless a split file names one.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from training.datasets.base import (
    NO_INTRINSICS, DatasetError, DepthDataset, RawSample, holdout_split, read_rgb, read_unchanged, require_dir,
    require_file, root_of,
)

log = logging.getLogger("training.datasets.folder")

IMAGE_EXTS = (".png", ".jpg", ".jpeg")
DEPTH_EXTS = (".png", ".npy", ".tif", ".tiff")
DEPTH_UNITS = ("auto", "mm", "m", "normalized255", "kitti256")


class FolderDataset(DepthDataset):
    KEYS = ("depth_units", "depth_max", "intrinsics", "split_files", "val_fraction", "split_seed")

    def __init__(self, cfg: dict, split: str):
        super().__init__(cfg, split)
        root = root_of(cfg)
        self.units = cfg.get("depth_units", "auto")
        if self.units not in DEPTH_UNITS:
            raise DatasetError(f"data.depth_units must be one of {list(DEPTH_UNITS)}, got {self.units!r}")
        self.depth_max = float(cfg.get("depth_max") or self.max_depth)
        intrinsics = cfg.get("intrinsics")
        if intrinsics is not None and len(intrinsics) != 4:
            raise DatasetError(f"data.intrinsics must be [fx, fy, cx, cy], got {intrinsics!r}")
        self.intrinsics = tuple(float(v) for v in intrinsics) if intrinsics else NO_INTRINSICS

        base, carve = self.layout(root, split)
        image_dir = require_dir(base / "images", f"folder dataset images for split '{split}'")
        images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        if not images:
            raise DatasetError(f"no {'/'.join(IMAGE_EXTS)} images in {image_dir}")
        if carve:
            images = self._pool_split(images, root, cfg, split)
        self.images = images
        self.depths = self._match_depths(base / "depths", images, split)

    @staticmethod
    def layout(root: Path, split: str) -> tuple[Path, bool]:
        """(folder holding images/ and depths/, whether ``split`` is carved out of it)."""
        has = lambda name: (root / name / "images").is_dir()  # noqa: E731
        if not has("train"):
            return (root / split, False) if has(split) else (root, True)      # pool layout
        if split in ("train", "val") and not has("val"):
            if split == "val":
                log.info("folder: no %s: val is held out of %s", root / "val", root / "train")
            return root / "train", True
        return root / split, False

    @staticmethod
    def _pool_split(images: list[Path], root: Path, cfg: dict, split: str) -> list[Path]:
        files = cfg.get("split_files") or {}
        if split in files:
            stems = set(require_file(root / files[split], f"folder {split} split file").read_text().split())
            chosen = [p for p in images if p.stem in stems]
            missing = sorted(stems - {p.stem for p in chosen})
            if missing:
                raise DatasetError(f"{files[split]} names images not in {root / 'images'}: {missing[:5]}")
            return chosen
        if split == "test":
            raise DatasetError(f"no test split in {root}: make {root}/test/images (and depths) or set "
                               "data.split_files.test")
        if split == "train" and "val" in files:   # the val list is held out; train is the rest
            held = set(require_file(root / files["val"], "folder val split file").read_text().split())
            return [p for p in images if p.stem not in held]
        return holdout_split(images, split, float(cfg.get("val_fraction", 0.1)), int(cfg.get("split_seed", 0)))

    @staticmethod
    def _match_depths(depth_dir: Path, images: list[Path], split: str) -> list[Path | None]:
        if not depth_dir.is_dir():
            if split == "train":
                raise DatasetError(f"training needs depth maps: {depth_dir} does not exist")
            return [None] * len(images)
        by_stem: dict[str, Path] = {}
        for path in sorted(depth_dir.iterdir()):
            if path.suffix.lower() in DEPTH_EXTS:
                if path.stem in by_stem:
                    raise DatasetError(f"two depth maps for '{path.stem}': {by_stem[path.stem].name}, {path.name}")
                by_stem[path.stem] = path
        missing = [p.name for p in images if p.stem not in by_stem]
        if missing:
            raise DatasetError(f"{len(missing)} image(s) have no depth map in {depth_dir} "
                               f"(matched by stem, {'/'.join(DEPTH_EXTS)}): {missing[:5]}")
        return [by_stem[p.stem] for p in images]

    def num_items(self) -> int:
        return len(self.images)

    def name(self, index: int) -> str:
        return self.images[index].stem

    def load(self, index: int) -> RawSample:
        image = read_rgb(self.images[index])
        path = self.depths[index]
        if path is None:
            depth = np.zeros(image.shape[:2], np.float32)
        else:
            depth = self.decode(np.load(path) if path.suffix.lower() == ".npy" else read_unchanged(path), path)
            if depth.shape != image.shape[:2]:
                raise DatasetError(f"{path} is {depth.shape[1]}x{depth.shape[0]} but "
                                   f"{self.images[index].name} is {image.shape[1]}x{image.shape[0]}")
        return RawSample(image, depth, self.intrinsics)

    def decode(self, data: np.ndarray, path: Path) -> np.ndarray:
        data = np.squeeze(np.asarray(data))
        if data.ndim != 2:
            raise DatasetError(f"{path}: depth must be a single-channel HxW map, got shape {data.shape}")
        units = self.units
        if units == "auto":
            units = {"u2": "mm", "u1": "normalized255"}.get(data.dtype.str[1:], "m" if data.dtype.kind == "f" else None)
            if units is None:
                raise DatasetError(f"{path}: cannot guess the units of {data.dtype} depth; set data.depth_units")
        values = data.astype(np.float32)
        if units == "mm":
            return values / 1000.0
        if units == "normalized255":
            return values / 255.0 * self.depth_max
        if units == "kitti256":
            return values / 256.0
        return values
