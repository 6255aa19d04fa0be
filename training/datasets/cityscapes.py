"""Cityscapes: metric depth from the released stereo disparity.

Layout under ``root`` (the official packages leftImg8bit_trainvaltest, disparity_trainvaltest,
camera_trainvaltest unpacked side by side)::

    leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    disparity/<split>/<city>/<city>_<seq>_<frame>_disparity.png   uint16; d = (v - 1) / 256 for v > 0, 0 invalid
    camera/<split>/<city>/<city>_<seq>_<frame>_camera.json        extrinsic.baseline, intrinsic.fx/fy/u0/v0

depth = baseline * fx / d (metres); pixels beyond ``max_depth`` (80 m in the recipes) are invalid.
Key: ``crop_bottom`` (rows removed at the bottom, e.g. 200 to drop the ego-vehicle bonnet whose
disparity is wrong; default 0).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from training.datasets.base import (
    DatasetError, DepthDataset, RawSample, read_rgb, read_unchanged, require_dir, require_file, root_of,
)

IMAGE_SUFFIX = "_leftImg8bit.png"


def disparity_to_depth(raw: np.ndarray, baseline: float, fx: float) -> np.ndarray:
    """Cityscapes disparity PNG -> depth in metres (0 where the disparity is invalid)."""
    raw = raw.astype(np.float32)
    disparity = np.where(raw > 0, (raw - 1.0) / 256.0, 0.0)
    with np.errstate(divide="ignore"):
        return np.where(disparity > 0, baseline * fx / np.where(disparity > 0, disparity, 1.0), 0.0).astype(np.float32)


def read_camera(path: Path) -> tuple[float, float, float, float, float]:
    """(baseline, fx, fy, u0, v0) from a Cityscapes ``*_camera.json``."""
    try:
        camera = json.loads(require_file(path, "Cityscapes camera file").read_text())
        intrinsic, extrinsic = camera["intrinsic"], camera["extrinsic"]
        return (float(extrinsic["baseline"]), float(intrinsic["fx"]), float(intrinsic["fy"]),
                float(intrinsic["u0"]), float(intrinsic["v0"]))
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: expected extrinsic.baseline and intrinsic.fx/fy/u0/v0 ({exc!r})") from exc


class CityscapesDataset(DepthDataset):
    KEYS = ("crop_bottom",)

    def __init__(self, cfg: dict, split: str):
        super().__init__(cfg, split)
        self.root = root_of(cfg)
        image_dir = require_dir(self.root / "leftImg8bit" / split, f"Cityscapes {split} images")
        self.images = sorted(image_dir.glob(f"*/*{IMAGE_SUFFIX}"))
        if not self.images:
            raise DatasetError(f"no *{IMAGE_SUFFIX} files under {image_dir}/<city>/")
        self.crop_bottom = int(cfg.get("crop_bottom", 0))

    def _sibling(self, image: Path, kind: str, suffix: str) -> Path:
        prefix = image.name[: -len(IMAGE_SUFFIX)]
        return self.root / kind / self.split / image.parent.name / f"{prefix}_{suffix}"

    def num_items(self) -> int:
        return len(self.images)

    def name(self, index: int) -> str:
        return self.images[index].name[: -len(IMAGE_SUFFIX)]

    def load(self, index: int) -> RawSample:
        image_path = self.images[index]
        image = read_rgb(image_path)
        disparity_path = self._sibling(image_path, "disparity", "disparity.png")
        raw = read_unchanged(disparity_path)
        if raw.dtype != np.uint16:
            raise DatasetError(f"{disparity_path}: Cityscapes disparity must be uint16 PNG, got {raw.dtype}")
        baseline, fx, fy, u0, v0 = read_camera(self._sibling(image_path, "camera", "camera.json"))
        depth = disparity_to_depth(raw, baseline, fx)
        if self.crop_bottom:
            image, depth = image[: -self.crop_bottom], depth[: -self.crop_bottom]
        return RawSample(np.ascontiguousarray(image), np.ascontiguousarray(depth), (fx, fy, u0, v0))
