"""What every reader shares: the sample dict, validity masking, transforms, file reading, splits."""
from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from mde_ros.fileio import read_image
from training.transforms import Compose, Frame, build_transforms

SPLITS = ("train", "val", "test")
COMMON_KEYS = ("name", "root", "input_size", "min_depth", "max_depth", "augment", "limit")
NO_INTRINSICS = (math.nan, math.nan, math.nan, math.nan)


class DatasetError(ValueError):
    """The dataset on disk or its config is wrong; the message says what and where."""


@dataclass
class RawSample:
    """A sample as read from disk, before masking and transforms."""

    image: np.ndarray                               # HxWx3 uint8 RGB
    depth: np.ndarray                               # HxW float metres; 0, NaN or inf = invalid
    intrinsics: Sequence[float] = NO_INTRINSICS     # fx, fy, cx, cy at this resolution
    # (top, left, full_height, full_width) when the reader cut this sample out of a larger frame (KITTI's
    # kb_crop): the evaluation crop (garg) is defined on the full frame, as BTS applies it.
    window: tuple[int, int, int, int] | None = None


class DepthDataset(Dataset, abc.ABC):
    """Base of every reader. Items are dicts::

        image       float32 (3,H,W) RGB in [0, 1], not normalised (the model wrapper applies the card's mean/std)
        depth       float32 (1,H,W) metres, 0 where invalid
        valid       bool    (1,H,W): finite and in (min_depth, max_depth]: training keeps GT equal to
                            max_depth (DenseDepth's saturated 8-bit 255 = 10 m); evaluation drops it
                            (strict range rule, mde_ros.metrics.gt_in_range)
        intrinsics  float32 [fx, fy, cx, cy] at (H, W); NaN when the camera is unknown
        index       int
        gt_depth    float32 (1,h,w) val/test only: the ground truth at its OWN resolution (h, w), as
        gt_valid    bool    (1,h,w) read (and cropped by the reader), before any resize: what is scored
        gt_window   int64   [top, left, full_h, full_w]: where (h, w) sits in the frame the eval crop is for

    (H, W) is ``input_size`` for every split. Random augmentation (train split only) draws from
    torch's generator, so ``torch.manual_seed`` and DataLoader worker seeding make runs repeatable.
    """

    #: config keys this reader accepts besides COMMON_KEYS
    KEYS: tuple[str, ...] = ()

    def __init__(self, cfg: dict, split: str):
        if split not in SPLITS:
            raise DatasetError(f"split must be one of {list(SPLITS)}, got {split!r}")
        unknown = sorted(set(cfg) - set(COMMON_KEYS) - set(self.KEYS))
        if unknown:
            raise DatasetError(f"unknown data key(s) {unknown} for dataset {cfg.get('name')!r}; "
                               f"allowed: {sorted(set(COMMON_KEYS) | set(self.KEYS))}")
        if "input_size" not in cfg or "max_depth" not in cfg:
            raise DatasetError("data config needs input_size [h, w] and max_depth (metres)")
        self.cfg = cfg
        self.split = split
        self.min_depth = float(cfg.get("min_depth", 1e-3))
        self.max_depth = float(cfg["max_depth"])
        self.transform: Compose = build_transforms(cfg, split)
        self._limit = cfg.get("limit")

    @abc.abstractmethod
    def num_items(self) -> int:
        """Number of samples on disk for this split (before ``limit``)."""

    @abc.abstractmethod
    def load(self, index: int) -> RawSample:
        """Read sample ``index`` from disk."""

    @abc.abstractmethod
    def name(self, index: int) -> str:
        """A stable, human-readable id of sample ``index`` (file stem, frame id...)."""

    def __len__(self) -> int:
        count = self.num_items()
        return count if self._limit is None else min(count, int(self._limit))

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        index = index % len(self)
        raw = self.load(index)
        native = self.to_frame(raw)
        frame = self.transform(native, self._rng())
        valid = frame.valid & (frame.depth > 0)
        item = {
            "image": torch.from_numpy(np.ascontiguousarray(frame.image.transpose(2, 0, 1), dtype=np.float32)),
            "depth": torch.from_numpy(np.ascontiguousarray(np.where(valid, frame.depth, 0), dtype=np.float32)[None]),
            "valid": torch.from_numpy(np.ascontiguousarray(valid)[None]),
            "intrinsics": torch.tensor(frame.intrinsics, dtype=torch.float32),
            "index": index,
        }
        if self.split != "train":
            # The evaluation protocol scores at the ground truth's own resolution (BTS/AdaBins/DA-V2).
            item["gt_depth"] = torch.from_numpy(np.ascontiguousarray(native.depth, dtype=np.float32)[None])
            item["gt_valid"] = torch.from_numpy(np.ascontiguousarray(native.valid)[None])
            item["gt_window"] = torch.tensor(raw.window or (0, 0, *native.depth.shape), dtype=torch.int64)
        return item

    def to_frame(self, raw: RawSample) -> Frame:
        """Mask invalid depth (0 / NaN / inf / outside the range) and convert the image to [0, 1]."""
        image, depth = raw.image, np.asarray(raw.depth, dtype=np.float32)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise DatasetError(f"reader returned image {image.shape} {image.dtype}, expected HxWx3 uint8")
        if depth.shape != image.shape[:2]:
            raise DatasetError(f"depth {depth.shape} and image {image.shape[:2]} sizes differ")
        with np.errstate(invalid="ignore"):
            valid = np.isfinite(depth) & (depth > self.min_depth) & (depth <= self.max_depth)
        return Frame(image.astype(np.float32) / 255.0, np.where(valid, depth, 0).astype(np.float32), valid,
                     np.asarray(raw.intrinsics, dtype=np.float64))

    def _rng(self) -> np.random.Generator:
        if self.split != "train":
            return np.random.default_rng(0)
        return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))


def worker_init(worker_id: int) -> None:
    """DataLoader worker_init_fn: one thread per worker (N workers x M OpenCV/torch threads oversubscribe)."""
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def chunk_indices(n: int, chunk_size: int | None, seed: int, epoch: int) -> list[list[int]]:
    """The epoch's shuffled indices cut into chunks trained one after another (curriculum).

    Every index appears exactly once per epoch; the order depends only on (seed, epoch), so a
    resumed run sees the same chunks. ``chunk_size`` None or >= n gives one chunk.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if chunk_size is not None and chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive or None, got {chunk_size}")
    order = np.random.default_rng([int(seed), int(epoch)]).permutation(n).tolist()
    size = n if not chunk_size else int(chunk_size)
    return [order[start:start + size] for start in range(0, n, max(size, 1))]


def holdout_split(items: Sequence, split: str, val_fraction: float, seed: int = 0,
                  groups: Sequence[str] | None = None) -> list:
    """Carve a validation set out of a training list for datasets without an official one.

    The hold-out is a seeded random subset, so train and val never overlap and stay the same across
    runs. With ``groups`` (one scene name per item) whole scenes are held out, never single frames:
    neighbouring frames of one video are near-duplicates, and a val frame whose neighbour is in train
    measures memory, not generalisation. ``val_fraction`` is then the share of scenes.
    """
    if not 0 < val_fraction < 1:
        raise DatasetError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if groups is None:
        # At least one val item, but never the whole list (a one-image folder still trains).
        count = min(max(1, int(round(len(items) * val_fraction))), max(0, len(items) - 1))
        held = set(np.random.default_rng(seed).permutation(len(items))[:count].tolist())
        keep = (lambda i: i in held) if split == "val" else (lambda i: i not in held)
        return [item for i, item in enumerate(items) if keep(i)]
    if len(groups) != len(items):
        raise DatasetError(f"{len(groups)} scene names for {len(items)} items")
    scenes = sorted(set(groups))
    count = max(1, int(round(len(scenes) * val_fraction)))
    if count >= len(scenes):
        raise DatasetError(f"val_fraction={val_fraction} of {len(scenes)} scene(s) leaves no training scene")
    held_scenes = {scenes[i] for i in np.random.default_rng(seed).permutation(len(scenes))[:count].tolist()}
    return scene_split(items, groups, split, held_scenes)


def scene_split(items: Sequence, groups: Sequence[str], split: str, val_scenes: Iterable[str]) -> list:
    """Items of the named scenes for ``val``, the others for ``train`` (BTS's scene-list idea)."""
    val_scenes = set(val_scenes)
    if split == "val":
        return [item for item, group in zip(items, groups) if group in val_scenes]
    return [item for item, group in zip(items, groups) if group not in val_scenes]


def read_scene_list(value: str | Sequence[str], root: Path) -> list[str]:
    """``val_scenes``: a list of scene names, or a text file (relative to root) with one scene per line."""
    if isinstance(value, str):
        path = require_file(root / value, "scene list (data.val_scenes)")
        return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise DatasetError(f"data.val_scenes must be a list of scene names or a file, got {value!r}")
    return list(value)


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DatasetError(f"{what} not found: {path}")
    return path


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{what} not found: {path}")
    return path


def read_rgb(path: Path) -> np.ndarray:
    """mde_ros.fileio.read_image (HxWx3 uint8 RGB; grey and 16-bit converted), failures as DatasetError."""
    try:
        return read_image(path)
    except (FileNotFoundError, ValueError) as exc:
        raise DatasetError(str(exc)) from exc


def read_unchanged(path: Path) -> np.ndarray:
    """An image with its stored bit depth (8/16-bit PNG, float TIFF) and its first channel only."""
    data = cv2.imread(str(require_file(path, "depth map")), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise DatasetError(f"cannot decode depth map {path}")
    return data[..., 0] if data.ndim == 3 else data


def root_of(cfg: dict) -> Path:
    if not cfg.get("root"):
        raise DatasetError(f"data.root is required for dataset {cfg.get('name')!r}")
    return require_dir(Path(cfg["root"]).expanduser(), f"data.root of dataset {cfg.get('name')!r}")
