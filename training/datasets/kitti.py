"""KITTI Eigen split: raw images with the depth benchmark's sparse ground truth.

Layout under ``root``::

    raw/2011_09_26/calib_cam_to_cam.txt
    raw/2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.png   (image_03 for 'r')
    depth/{train,val}/2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02/0000000069.png
        (or depth/2011_09_26_drive_0002_sync/proj_depth/...; uint16 PNG, metres = value / 256, 0 = no point)

Split files use monodepth2's line format ``2011_09_26/2011_09_26_drive_0002_sync 0000000069 l`` or
BTS/AdaBins's ``2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.png
2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02/0000000069.png 721.5377`` (image path under
the raw folder, GT path under the depth folder or its train/ val/ subfolders, or ``None``, then the
focal length, which is ignored: the intrinsics come from the calibration file).
Keys: ``split_files: {train, val, test}`` (paths relative to root), ``image_dir`` (raw), ``depth_dir``
(depth), ``image_ext`` (png; jpg for monodepth2's converted copies), ``kb_crop`` (crop every frame to the
352x1216 bottom-centre window of the KITTI benchmark, as BTS/AdaBins do), ``require_depth`` (true: lines
whose ground truth PNG is missing are dropped; about 45 of the 697 Eigen test frames have none).
Intrinsics come from ``P_rect_02`` / ``P_rect_03`` of the drive date's calib_cam_to_cam.txt (NaN if absent).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.datasets.base import (
    NO_INTRINSICS, DatasetError, DepthDataset, RawSample, read_rgb, read_unchanged, require_file, root_of,
)
from training.transforms import Frame, crop

KITTI_DEPTH_SCALE = 256.0
KB_CROP_HEIGHT, KB_CROP_WIDTH = 352, 1216
SIDES = {"l": "image_02", "r": "image_03"}
CAMERA_OF = {"image_02": "02", "image_03": "03"}


@dataclass(frozen=True)
class KittiItem:
    date: str
    drive: str
    frame: str
    camera: str                   # image_02 | image_03
    image_ext: str | None = None  # from a BTS line's image path (else data.image_ext)
    depth_rel: str | None = None  # a BTS line's GT path, relative to the depth folder ("None": no GT)


def parse_split_line(line: str, where: str) -> KittiItem:
    """One line of a monodepth2 (``date/drive frame l|r``) or BTS (``image_path gt_path focal``) split file."""
    parts = line.split()
    if len(parts) == 3 and "/data/" in parts[0]:
        return _parse_bts_line(parts, line, where)
    if len(parts) != 3 or parts[2] not in SIDES or "/" not in parts[0]:
        raise DatasetError(f"{where}: expected '<date>/<drive>_sync <frame> l|r' (monodepth2) or "
                           f"'<date>/<drive>/image_0X/data/<frame>.png <gt path or None> <focal>' (BTS), got {line!r}")
    date, drive = parts[0].split("/", 1)
    try:
        frame = f"{int(parts[1]):010d}"
    except ValueError:
        raise DatasetError(f"{where}: frame {parts[1]!r} is not an integer") from None
    return KittiItem(date, drive, frame, SIDES[parts[2]])


def _parse_bts_line(parts: list[str], line: str, where: str) -> KittiItem:
    image = Path(parts[0])
    pieces = image.parts
    if len(pieces) != 5 or pieces[2] not in CAMERA_OF or pieces[3] != "data":
        raise DatasetError(f"{where}: BTS image path must be '<date>/<drive>/image_02|image_03/data/<frame>.<ext>', "
                           f"got {parts[0]!r}")
    try:
        frame = f"{int(image.stem):010d}"
        float(parts[2])
    except ValueError:
        raise DatasetError(f"{where}: expected an integer frame and a focal length in {line!r}") from None
    return KittiItem(pieces[0], pieces[1], frame, pieces[2], image_ext=image.suffix.lstrip(".") or None,
                     depth_rel=parts[1])


def read_calib_intrinsics(path: Path, camera: str) -> tuple[float, float, float, float]:
    """fx, fy, cx, cy of the rectified camera from KITTI's calib_cam_to_cam.txt (``P_rect_0X``)."""
    key = f"P_rect_{CAMERA_OF[camera]}:"
    for line in path.read_text().splitlines():
        if line.startswith(key):
            values = [float(v) for v in line[len(key):].split()]
            if len(values) != 12:
                raise DatasetError(f"{path}: {key} needs 12 values, got {len(values)}")
            return values[0], values[5], values[2], values[6]
    raise DatasetError(f"{path} has no {key[:-1]} line")


class KittiDataset(DepthDataset):
    KEYS = ("split_files", "image_dir", "depth_dir", "image_ext", "kb_crop", "require_depth")

    def __init__(self, cfg: dict, split: str):
        super().__init__(cfg, split)
        self.root = root_of(cfg)
        files = cfg.get("split_files") or {}
        if split not in files:
            raise DatasetError(f"KITTI needs data.split_files.{split} (a monodepth2-style list, e.g. "
                               "splits/eigen/test_files.txt)")
        self.image_root = self.root / cfg.get("image_dir", "raw")
        self.depth_root = self.root / cfg.get("depth_dir", "depth")
        self.image_ext = str(cfg.get("image_ext", "png")).lstrip(".")
        self.kb_crop = bool(cfg.get("kb_crop", False))
        list_path = require_file(self.root / files[split], f"KITTI {split} split file")
        items = [parse_split_line(line, f"{list_path}:{n}")
                 for n, line in enumerate(list_path.read_text().splitlines(), start=1) if line.strip()]
        if cfg.get("require_depth", True):
            items = [item for item in items if self.depth_path(item) is not None]
            if not items:
                raise DatasetError(f"no ground-truth PNG found under {self.depth_root} for any line of {list_path}")
        self.items = items
        self._calib: dict[tuple[str, str], tuple[float, float, float, float]] = {}

    def image_path(self, item: KittiItem) -> Path:
        ext = item.image_ext or self.image_ext
        return self.image_root / item.date / item.drive / item.camera / "data" / f"{item.frame}.{ext}"

    def depth_path(self, item: KittiItem) -> Path | None:
        if item.depth_rel == "None":
            return None
        tail = (Path(item.depth_rel) if item.depth_rel else
                Path(item.drive) / "proj_depth" / "groundtruth" / item.camera / f"{item.frame}.png")
        for candidate in (self.depth_root / "train" / tail, self.depth_root / "val" / tail, self.depth_root / tail):
            if candidate.is_file():
                return candidate
        return None

    def _intrinsics(self, date: str, camera: str) -> tuple[float, float, float, float]:
        key = (date, camera)
        if key not in self._calib:
            path = self.image_root / date / "calib_cam_to_cam.txt"
            self._calib[key] = read_calib_intrinsics(path, camera) if path.is_file() else NO_INTRINSICS
        return self._calib[key]

    def num_items(self) -> int:
        return len(self.items)

    def name(self, index: int) -> str:
        item = self.items[index]
        return f"{item.drive}/{item.camera}/{item.frame}"

    def load(self, index: int) -> RawSample:
        item = self.items[index]
        image = read_rgb(self.image_path(item))
        depth_path = self.depth_path(item)
        if depth_path is None:
            depth = np.zeros(image.shape[:2], np.float32)
        else:
            data = read_unchanged(depth_path)
            if data.dtype != np.uint16:
                raise DatasetError(f"{depth_path}: KITTI ground truth must be uint16 PNG, got {data.dtype}")
            depth = data.astype(np.float32) / KITTI_DEPTH_SCALE
        if depth.shape != image.shape[:2]:
            raise DatasetError(f"{depth_path} is {depth.shape} but its image is {image.shape[:2]}")
        intrinsics = self._intrinsics(item.date, item.camera)
        if not self.kb_crop:
            return RawSample(image, depth, intrinsics)
        height, width = depth.shape
        if height < KB_CROP_HEIGHT or width < KB_CROP_WIDTH:
            raise DatasetError(f"{self.image_path(item)} is {width}x{height}, smaller than the "
                               f"{KB_CROP_WIDTH}x{KB_CROP_HEIGHT} kb_crop")
        top, left = height - KB_CROP_HEIGHT, (width - KB_CROP_WIDTH) // 2
        frame = crop(Frame(image, depth, depth > 0, np.asarray(intrinsics, np.float64)),
                     top, left, KB_CROP_HEIGHT, KB_CROP_WIDTH)
        return RawSample(np.ascontiguousarray(frame.image), np.ascontiguousarray(frame.depth), tuple(frame.intrinsics),
                         window=(top, left, height, width))
