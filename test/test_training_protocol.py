"""The standard evaluation protocol (BTS / AdaBins / Depth-Anything-V2 metric_depth) and the training
CLI / recipe defects of issue 14, each on real files, real training steps and real subprocesses."""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from mde_ros.metrics import depth_metrics, mean_metrics
from training.datasets import DatasetError, build_dataset
from training.evaluate import evaluate
from training.model_wrapper import DepthModel

pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py: one torch thread


class ConstantDepth(nn.Module):
    """A 'network' that answers the same depth everywhere: its upsampled prediction is exact."""

    def __init__(self, depth: float, max_depth: float = 10.0):
        super().__init__()
        self.depth, self.max_depth = depth, max_depth
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x[:, :1], self.depth) + 0 * self.anchor


def write_sparse_folder(root: Path, n: int, height: int, width: int, fill: float = 0.07, seed: int = 0) -> list:
    """A folder dataset (split layout) with KITTI-like sparse depth in metres (.npy, 0 = no point)."""
    rng = np.random.default_rng(seed)
    depths = []
    for split in ("train", "test"):
        (root / split / "images").mkdir(parents=True)
        (root / split / "depths").mkdir(parents=True)
        for i in range(n):
            image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
            depth = np.where(rng.uniform(size=(height, width)) < fill,
                             rng.uniform(0.5, 9.0, (height, width)), 0.0).astype(np.float32)
            cv2.imwrite(str(root / split / "images" / f"f{i:03d}.png"), image)
            np.save(root / split / "depths" / f"f{i:03d}.npy", depth)
            if split == "test":
                depths.append(depth)
    return depths


def test_metrics_are_computed_at_the_ground_truths_resolution(tmp_path):
    native_h, native_w, net_h, net_w = 60, 80, 12, 16
    depths = write_sparse_folder(tmp_path, 3, native_h, native_w)
    cfg = {"data": {"name": "folder", "root": str(tmp_path), "input_size": [net_h, net_w], "max_depth": 10.0,
                    "depth_units": "m"},
           "eval": {"crop": "none", "min_depth": 1e-3, "max_depth": 10.0}}
    test_set = build_dataset(cfg["data"], "test")
    result = evaluate(DepthModel(ConstantDepth(2.0)), test_set, cfg, num_vis=1, verbose=False)

    expected = mean_metrics(depth_metrics(np.full_like(d, 2.0), d, d > 0, 1e-3, 10.0) for d in depths)
    assert result["metrics"]["n_valid"] == sum(int((d > 0).sum()) for d in depths)   # every native GT point
    assert result["metrics"]["n_valid"] > 10 * net_h * net_w * 0.07
    assert result["metrics"]["abs_rel"] == pytest.approx(expected["abs_rel"], rel=1e-6)
    assert result["metrics"]["rmse"] == pytest.approx(expected["rmse"], rel=1e-6)
    assert result["visuals"][0].shape[:2] == (native_h, 4 * native_w)
    assert result["protocol"]["resolution"].startswith("ground truth")
    assert result["protocol"]["valid"] == "min_depth < gt < max_depth"


def test_nan_predictions_are_scored_by_evaluate():
    class NaNDepth(ConstantDepth):
        def forward(self, x):
            out = super().forward(x)
            out[..., : x.shape[-1] // 2] = math.nan
            return out

    cfg = {"data": {"name": "synthetic", "input_size": [24, 32], "max_depth": 10.0, "num_samples": 2},
           "eval": {"crop": "none", "min_depth": 1e-3, "max_depth": 10.0}}
    test_set = build_dataset(cfg["data"], "test")
    clean = evaluate(DepthModel(ConstantDepth(2.0)), test_set, cfg, num_vis=0, verbose=False)["metrics"]
    broken = evaluate(DepthModel(NaNDepth(2.0)), test_set, cfg, num_vis=0, verbose=False)["metrics"]
    assert broken["n_valid"] == clean["n_valid"]          # the NaN half is not dropped from the mask...
    assert broken["abs_rel"] > clean["abs_rel"]            # ...it is scored (as min_depth) and costs


# ----------------------------------------------------------------------- NYU scene hold-out

def write_nyu_csv_layout(root: Path, scenes: dict[str, int], height: int = 12, width: int = 16) -> None:
    """DenseDepth's extracted layout: data/nyu2_train/<scene>/<n>.jpg + .png (8-bit), CSV lists."""
    lines = []
    for scene, frames in scenes.items():
        folder = root / "data" / "nyu2_train" / scene
        folder.mkdir(parents=True)
        for n in range(1, frames + 1):
            cv2.imwrite(str(folder / f"{n}.jpg"), np.full((height, width, 3), 10 * n, np.uint8))
            cv2.imwrite(str(folder / f"{n}.png"), np.full((height, width), 100, np.uint8))
            lines.append(f"data/nyu2_train/{scene}/{n}.jpg,data/nyu2_train/{scene}/{n}.png")
    (root / "data" / "nyu2_train.csv").write_text("\n".join(lines) + "\n")
    (root / "data" / "nyu2_test").mkdir(parents=True)
    cv2.imwrite(str(root / "data" / "nyu2_test" / "0_colors.png"), np.zeros((height, width, 3), np.uint8))
    cv2.imwrite(str(root / "data" / "nyu2_test" / "0_depth.png"), np.full((height, width), 2000, np.uint16))
    (root / "data" / "nyu2_test.csv").write_text("data/nyu2_test/0_colors.png,data/nyu2_test/0_depth.png\n")


NYU_CSV_SCENES = {f"{kind}_{k:04d}_out": 6 for kind in ("bedroom", "kitchen", "office") for k in range(1, 5)}


def scenes_of(dataset) -> set[str]:
    return {dataset.name(i).split("/")[0] for i in range(len(dataset))}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nyu_csv_hold_out_is_by_scene_never_by_frame(tmp_path, seed):
    write_nyu_csv_layout(tmp_path, NYU_CSV_SCENES)
    cfg = {"name": "nyu_csv", "root": str(tmp_path), "input_size": [12, 16], "max_depth": 10.0,
           "val_fraction": 0.25, "split_seed": seed}
    train, val = build_dataset(cfg, "train"), build_dataset(cfg, "val")
    assert len(train) + len(val) == 6 * len(NYU_CSV_SCENES)
    assert len(scenes_of(val)) == 3 and len(val) == 3 * 6          # 25 % of 12 scenes, every frame of each
    assert not scenes_of(val) & scenes_of(train)


def test_nyu_csv_val_scenes_list_or_file(tmp_path):
    write_nyu_csv_layout(tmp_path, NYU_CSV_SCENES)
    (tmp_path / "val_scenes.txt").write_text("# BTS-style scene list\nkitchen_0002_out\noffice_0004_out\n")
    base = {"name": "nyu_csv", "root": str(tmp_path), "input_size": [12, 16], "max_depth": 10.0}
    for scenes in (["kitchen_0002_out", "office_0004_out"], "val_scenes.txt"):
        val = build_dataset({**base, "val_scenes": scenes}, "val")
        train = build_dataset({**base, "val_scenes": scenes}, "train")
        assert scenes_of(val) == {"kitchen_0002_out", "office_0004_out"} and len(val) == 12
        assert len(train) == 6 * 10 and not scenes_of(train) & scenes_of(val)
    with pytest.raises(DatasetError, match="living_room_9999_out"):
        build_dataset({**base, "val_scenes": ["living_room_9999_out"]}, "val")
    assert len(build_dataset(base, "val")) == 1                     # default: val IS the test split
