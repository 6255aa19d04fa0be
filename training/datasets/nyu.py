"""NYU Depth V2: the official labelled .mat and the extracted (DenseDepth) CSV layout.

Both hold 640x480 frames of the Kinect colour camera, so samples carry the NYU toolbox intrinsics.

Which split selects checkpoints: NYU has no official validation split. By default (no
``val_fraction``, no ``val_scenes``) the val split IS the test split, which is what BTS, AdaBins and
DenseDepth monitor: numbers reported on test are then selected on test (say so when you report
them; training logs it). For an honest hold-out, carve val out of the TRAINING scenes, whole scenes
at a time (neighbouring video frames are near-duplicates): ``val_scenes`` (a list, or a text file
with one scene name per line, BTS's scene-list idea) or ``val_fraction`` (a seeded share of the
training scenes, ``split_seed``). The scene of a frame is its folder in the CSV layout
(``living_room_0038_out``) and the ``scenes`` entry of the labelled .mat.
"""
from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Callable

import numpy as np

from mde_ros.pipeline.intrinsics import Intrinsics
from training.datasets.base import (
    DatasetError, DepthDataset, RawSample, holdout_split, read_rgb, read_scene_list, read_unchanged, require_file,
    root_of, scene_split,
)

log = logging.getLogger("training.datasets.nyu")

# DenseDepth's nyu_data.zip: 8-bit training depth where 255 is 10 m, 16-bit test depth in millimetres.
UINT8_FULL_SCALE_M = 10.0
DEPTH_ENCODINGS = ("auto", "uint8_10m", "uint16_mm")
# BTS and AdaBins evaluate the labelled .mat on the Kinect's raw depth (holes = invalid); the in-painted
# ``depths`` (Levin colorisation) invents depth where the sensor saw none and scores differently.
DEFAULT_DEPTH_KEY = "rawDepths"
DEPTH_KEYS = ("rawDepths", "depths")


def nyu_intrinsics(height: int, width: int) -> tuple[float, float, float, float]:
    intr = Intrinsics.nyu(width, height)
    return intr.fx, intr.fy, intr.cx, intr.cy


def holds_out_val(cfg: dict) -> bool:
    """True when val is carved out of the training scenes; False when val is the test split."""
    return bool(cfg.get("val_scenes")) or float(cfg.get("val_fraction", 0.0)) > 0


def _select(split: str, train: list, test: list, cfg: dict, root: Path,
            train_scenes: Callable[[], list[str]]) -> list:
    if split == "test":
        return test
    if not holds_out_val(cfg):
        if split == "val":
            log.info("NYU: the val split is the test split (%d frames): checkpoints are selected on test, as "
                     "BTS/DenseDepth do; set data.val_scenes or data.val_fraction for a scene hold-out", len(test))
            return test
        return train
    scenes = train_scenes()
    if cfg.get("val_scenes"):
        names = read_scene_list(cfg["val_scenes"], root)
        unknown = sorted(set(names) - set(scenes))
        if unknown:
            raise DatasetError(f"data.val_scenes names scene(s) not in the training split: {unknown[:5]}")
        return scene_split(train, scenes, split, names)
    return holdout_split(train, split, float(cfg["val_fraction"]), int(cfg.get("split_seed", 0)), groups=scenes)


class NYUMatDataset(DepthDataset):
    """``nyu_depth_v2_labeled.mat`` (MATLAB v7.3 = HDF5, read with h5py).

    Keys: ``mat_file`` (default nyu_depth_v2_labeled.mat, relative to root), ``splits_file`` (default
    splits.mat: the official trainNdxs (795) / testNdxs (654, the Eigen test split), 1-based), or
    ``split_files: {train: txt, test: txt}`` with one 1-based index per line; ``depth_key``:
    ``rawDepths`` (default: the Kinect's measured depth, holes = 0 = invalid, what BTS and AdaBins
    score) or ``depths`` (in-painted, dense; numbers on it are not comparable with theirs);
    ``val_scenes``, ``val_fraction``, ``split_seed`` (scene hold-out, module docstring).

    MATLAB stores arrays column-major, so h5py sees images as (N, 3, W, H) and depths as (N, W, H).
    """

    KEYS = ("mat_file", "splits_file", "split_files", "depth_key", "val_fraction", "val_scenes", "split_seed")

    def __init__(self, cfg: dict, split: str):
        super().__init__(cfg, split)
        root = root_of(cfg)
        self.mat_path = require_file(root / cfg.get("mat_file", "nyu_depth_v2_labeled.mat"), "NYU labelled .mat")
        self.depth_key = cfg.get("depth_key", DEFAULT_DEPTH_KEY)
        if self.depth_key not in DEPTH_KEYS:
            raise DatasetError(f"data.depth_key must be one of {list(DEPTH_KEYS)}, got {self.depth_key!r}")
        train, test = self._official_split(root, cfg)
        self._h5 = None
        self._h5_pid = None
        self.indices = _select(split, train, test, cfg, root,  # 0-based rows of the .mat
                               lambda: [self.scene_names()[i] for i in train])
        with self._open() as h5:
            for key in ("images", self.depth_key):
                if key not in h5:
                    raise DatasetError(f"{self.mat_path} has no '{key}' dataset (keys: {sorted(h5)})")
            count = h5["images"].shape[0]
        bad = [i + 1 for i in self.indices if not 0 <= i < count]
        if bad:
            raise DatasetError(f"split indices {bad[:5]} (1-based) exceed the {count} images in {self.mat_path}")

    def _official_split(self, root: Path, cfg: dict) -> tuple[list[int], list[int]]:
        files = cfg.get("split_files")
        if files:
            return (_read_index_file(root / files["train"]) if "train" in files else [],
                    _read_index_file(root / files["test"]) if "test" in files else [])
        path = root / cfg.get("splits_file", "splits.mat")
        if not path.is_file():
            raise DatasetError(
                f"NYU split file not found: {path}. Put the official splits.mat (trainNdxs/testNdxs) "
                "there, or set data.split_files: {train: ..., test: ...} (one 1-based index per line)")
        mat = _load_mat(path)
        for key in ("trainNdxs", "testNdxs"):
            if key not in mat:
                raise DatasetError(f"{path} has no '{key}' (keys: {sorted(k for k in mat if not k.startswith('__'))})")
        return ([int(i) - 1 for i in np.asarray(mat["trainNdxs"]).ravel()],
                [int(i) - 1 for i in np.asarray(mat["testNdxs"]).ravel()])

    def scene_names(self) -> list[str]:
        """The ``scenes`` cell array of the labelled .mat (one name per row, e.g. 'kitchen_0028b')."""
        with self._open() as h5:
            if "scenes" not in h5:
                raise DatasetError(f"{self.mat_path} has no 'scenes' entry: a scene hold-out (data.val_scenes / "
                                   "val_fraction) needs it; use split_files instead")
            refs = np.asarray(h5["scenes"]).ravel()
            return ["".join(chr(int(c)) for c in np.asarray(h5[ref]).ravel()) for ref in refs]

    def _open(self):
        import h5py

        return h5py.File(self.mat_path, "r")

    def _file(self):
        # h5py handles do not survive fork: each DataLoader worker opens its own.
        if self._h5 is None or self._h5_pid != os.getpid():
            self._h5, self._h5_pid = self._open(), os.getpid()
        return self._h5

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_h5"] = state["_h5_pid"] = None
        return state

    def num_items(self) -> int:
        return len(self.indices)

    def name(self, index: int) -> str:
        return f"{self.indices[index] + 1:04d}"

    def load(self, index: int) -> RawSample:
        h5 = self._file()
        row = self.indices[index]
        image = np.ascontiguousarray(np.asarray(h5["images"][row]).transpose(2, 1, 0))  # (3,W,H) -> (H,W,3)
        depth = np.ascontiguousarray(np.asarray(h5[self.depth_key][row], dtype=np.float32).T)  # (W,H) -> (H,W)
        return RawSample(image.astype(np.uint8), depth, nyu_intrinsics(*depth.shape))


class NYUCsvDataset(DepthDataset):
    """The extracted layout of DenseDepth's nyu_data.zip: ``data/nyu2_train.csv`` / ``data/nyu2_test.csv``
    with lines ``data/nyu2_train/<scene>/1.jpg,data/nyu2_train/<scene>/1.png`` (paths relative to root).

    Keys: ``train_csv``, ``test_csv`` (defaults above), ``depth_encoding``: ``auto`` (by PNG dtype),
    ``uint8_10m`` (value / 255 * 10 m, the training PNGs) or ``uint16_mm`` (value / 1000, the test PNGs);
    ``val_scenes``, ``val_fraction``, ``split_seed`` (scene hold-out: the scene is the image's folder).
    """

    KEYS = ("train_csv", "test_csv", "depth_encoding", "val_fraction", "val_scenes", "split_seed")

    def __init__(self, cfg: dict, split: str):
        super().__init__(cfg, split)
        self.root = root_of(cfg)
        self.encoding = cfg.get("depth_encoding", "auto")
        if self.encoding not in DEPTH_ENCODINGS:
            raise DatasetError(f"data.depth_encoding must be one of {list(DEPTH_ENCODINGS)}, got {self.encoding!r}")
        need_train = split == "train" or (split == "val" and holds_out_val(cfg))
        train = self._read_csv(cfg.get("train_csv", "data/nyu2_train.csv")) if need_train else []
        test = self._read_csv(cfg.get("test_csv", "data/nyu2_test.csv")) if not need_train else []
        self.pairs = _select(split, train, test, cfg, self.root, lambda: [csv_scene(image) for image, _ in train])

    def _read_csv(self, relative: str) -> list[tuple[str, str]]:
        path = require_file(self.root / relative, "NYU CSV list")
        pairs = []
        with open(path, newline="") as stream:
            for number, row in enumerate(csv.reader(stream), start=1):
                if not row or not "".join(row).strip():
                    continue
                if len(row) != 2:
                    raise DatasetError(f"{path}:{number}: expected 'image,depth', got {row!r}")
                pairs.append((row[0].strip(), row[1].strip()))
        if not pairs:
            raise DatasetError(f"{path} lists no samples")
        return pairs

    def num_items(self) -> int:
        return len(self.pairs)

    def name(self, index: int) -> str:
        image = Path(self.pairs[index][0])
        return f"{image.parent.name}/{image.stem}"

    def load(self, index: int) -> RawSample:
        image_rel, depth_rel = self.pairs[index]
        image = read_rgb(self.root / image_rel)
        depth = decode_nyu_png(read_unchanged(self.root / depth_rel), self.encoding, self.root / depth_rel)
        return RawSample(image, depth, nyu_intrinsics(*depth.shape))


def csv_scene(image_path: str) -> str:
    """The scene of a CSV-layout frame: its folder (``data/nyu2_train/living_room_0038_out/37.jpg``)."""
    return Path(image_path).parent.name


def decode_nyu_png(data: np.ndarray, encoding: str, path: Path) -> np.ndarray:
    if encoding == "auto":
        encoding = {np.dtype(np.uint8): "uint8_10m", np.dtype(np.uint16): "uint16_mm"}.get(data.dtype)
        if encoding is None:
            raise DatasetError(f"{path}: depth PNG dtype {data.dtype} is neither uint8 nor uint16; "
                               "set data.depth_encoding")
    if encoding == "uint8_10m":
        return data.astype(np.float32) / 255.0 * UINT8_FULL_SCALE_M
    return data.astype(np.float32) / 1000.0


def _load_mat(path: Path) -> dict:
    """splits.mat is MATLAB v5 (scipy); v7.3 files are HDF5 (h5py)."""
    import scipy.io

    try:
        return scipy.io.loadmat(str(path))
    except NotImplementedError:  # v7.3
        import h5py

        with h5py.File(path, "r") as h5:
            return {key: np.asarray(h5[key]) for key in h5.keys()}


def _read_index_file(path: Path) -> list[int]:
    text = require_file(path, "NYU split file").read_text().split()
    try:
        return [int(token) - 1 for token in text]
    except ValueError as exc:
        raise DatasetError(f"{path}: expected one 1-based integer index per line ({exc})") from exc
