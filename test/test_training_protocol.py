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


# ------------------------------------------------------------------------------ training runs

def tiny_recipe(scenes: Path, **train_extra) -> dict:
    return {
        "model": {"name": "unet_resnet18",
                  "kwargs": {"encoder_depth": 3, "decoder_channels": [32, 16, 8], "max_depth": 10.0}},
        "data": {"name": "folder", "root": str(scenes), "input_size": [48, 64], "max_depth": 10.0, "augment": {}},
        "loss": {"name": "l1"},
        "optim": {"name": "adamw", "lr": 3.0e-3},
        "schedule": {"name": "none"},
        "train": {"epochs": 1, "batch_size": 8, "num_workers": 0, "seed": 0, "device": "cpu",
                  "tensorboard": False, **train_extra},
    }


def write_recipe(path: Path, scenes: Path, **train_extra) -> Path:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(tiny_recipe(scenes, **train_extra)))
    return path


@pytest.fixture(scope="module")
def scenes(tmp_path_factory, render_folder_dataset) -> Path:
    return render_folder_dataset(tmp_path_factory.mktemp("scenes"), {"train": 16, "val": 4, "test": 4}, 64, 48)


@pytest.fixture(scope="module")
def moved_run(tmp_path_factory, render_folder_dataset):
    """A one-epoch run whose data folder was moved afterwards: only data.root=NEW finds it again."""
    from training.train import main as train_main

    directory = tmp_path_factory.mktemp("moved")
    render_folder_dataset(directory / "data_then", {"train": 8, "val": 2, "test": 3}, 64, 48)
    recipe = write_recipe(directory / "tiny.yaml", directory / "data_then")
    assert train_main([str(recipe), f"output_dir={directory / 'run'}"]) == 0
    (directory / "data_then").rename(directory / "data_now")
    return directory / "run", directory / "data_now"


def test_evaluate_accepts_overrides_between_options_as_its_epilog_shows(moved_run, tmp_path, capsys):
    from training.evaluate import build_parser
    from training.evaluate import main as evaluate_main

    run, data_now = moved_run
    assert "--split test data.root=" in build_parser().epilog           # the example this test follows
    out = tmp_path / "eval"
    assert evaluate_main([str(run / "best.pt"), "--split", "test", f"data.root={data_now}", "--out", str(out)]) == 0
    assert (out / "metrics.json").is_file()
    assert evaluate_main([str(run / "best.pt"), "--split", "test", "--out", str(out)]) == 2   # old root: clear error
    assert "data_then" in capsys.readouterr().err


def test_export_model_accepts_overrides(moved_run, tmp_path, capsys):
    from mde_ros.models.card import load_card_for
    from training.export_model import main as export_main

    run, data_now = moved_run
    stem = tmp_path / "tiny"
    assert export_main([str(run), "--out", str(stem), "--no-onnx", "--evaluate-split", "test",
                        f"data.root={data_now}", "eval.crop=eigen"]) == 0
    card = load_card_for(stem.with_suffix(".pt"))
    assert card.metrics["split"] == "test" and card.metrics["protocol"]["crop"] == "eigen"
    assert card.provenance["config"]["data"]["root"] == str(data_now)
    assert export_main([str(run), "--out", str(stem), "--no-onnx", "model.kwargs.max_depth=20"]) == 2
    assert "model section" in capsys.readouterr().err


def read_config(run: Path) -> dict:
    import yaml

    return yaml.safe_load((run / "config.yaml").read_text())


def test_resume_refuses_a_changed_config_naming_the_keys_or_applies_it_when_asked(tmp_path, scenes, capsys):
    from training.checkpoint import load_checkpoint
    from training.train import main as train_main

    recipe, run = write_recipe(tmp_path / "tiny.yaml", scenes), tmp_path / "run"
    assert train_main([str(recipe), f"output_dir={run}"]) == 0
    # Overrides after --resume parse (intermixed); a changed lr is refused with the key named.
    assert train_main([str(recipe), "--resume", f"output_dir={run}", "train.epochs=2", "optim.lr=1e-5"]) == 2
    err = capsys.readouterr().err
    assert "optim.lr (0.003 -> 1e-05)" in err and "--apply-changes" in err
    assert read_config(run)["optim"]["lr"] == 3.0e-3 and read_config(run)["train"]["epochs"] == 1
    assert load_checkpoint(run / "last.pt")["epoch"] == 0

    # Raising the epochs is the documented way to extend a run: no flag needed.
    assert train_main([str(recipe), "--resume", f"output_dir={run}", "train.epochs=2"]) == 0
    assert load_checkpoint(run / "last.pt")["epoch"] == 1 and read_config(run)["train"]["epochs"] == 2

    # Asked explicitly: the new lr is what the optimizer uses AND what is recorded.
    assert train_main([str(recipe), "--resume", "--apply-changes", f"output_dir={run}", "train.epochs=3",
                       "optim.lr=1e-5", "optim.weight_decay=0.05"]) == 0
    state = load_checkpoint(run / "last.pt")
    assert state["epoch"] == 2
    assert {g["lr"] for g in state["optimizer"]["param_groups"]} == {1e-5}
    assert {g["weight_decay"] for g in state["optimizer"]["param_groups"]} == {0.05}
    assert read_config(run)["optim"]["lr"] == 1e-5 and state["config"]["optim"]["lr"] == 1e-5
    changed = state["provenance"]["resumed_with_changes"]
    assert changed[0]["epoch"] == 2 and changed[0]["changes"]["optim.lr"] == [3.0e-3, 1e-5]

    # What cannot change in a resumed run is refused even when asked.
    assert train_main([str(recipe), "--resume", "--apply-changes", f"output_dir={run}", "train.epochs=4",
                       "model.kwargs.max_depth=20"]) == 2
    assert "model.kwargs.max_depth" in capsys.readouterr().err


def test_config_yaml_is_not_rewritten_when_the_run_fails_before_starting(tmp_path, scenes, capsys):
    from training.train import main as train_main

    recipe, run = write_recipe(tmp_path / "tiny.yaml", scenes), tmp_path / "run"
    assert train_main([str(recipe), f"output_dir={run}"]) == 0
    before = (run / "config.yaml").read_bytes()
    assert train_main([str(recipe), "--resume", f"output_dir={run}", "train.epochs=2",
                       f"data.root={tmp_path / 'nowhere'}"]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert (run / "config.yaml").read_bytes() == before
    fresh = tmp_path / "fresh"
    assert train_main([str(recipe), f"output_dir={fresh}", f"data.root={tmp_path / 'nowhere'}"]) == 2
    assert not (fresh / "config.yaml").exists()


def test_tensorboard_keeps_the_checkpoints_epoch_when_resuming(tmp_path, scenes):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from training.config import load_config
    from training.train import train

    recipe = write_recipe(tmp_path / "tiny.yaml", scenes, tensorboard=True, vis_samples=0)
    cfg = load_config(recipe, [f"output_dir={tmp_path / 'run'}", "train.epochs=2"])
    train(cfg)
    train({**cfg, "train": {**cfg["train"], "epochs": 3}}, resume=True)
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    steps = [e.step for e in events.Scalars("val/rmse")]
    assert steps == [2, 4, 6]      # 2 steps per epoch; epoch 2's point (step 4) survives the resume


def test_best_checkpoint_is_written_before_last(tmp_path, scenes, monkeypatch):
    import training.train as train_module
    from training.config import load_config

    written = []
    real = train_module.save_checkpoint

    def recording(state, path):
        written.append(Path(path).name)
        return real(state, path)

    monkeypatch.setattr(train_module, "save_checkpoint", recording)
    cfg = load_config(write_recipe(tmp_path / "tiny.yaml", scenes), [f"output_dir={tmp_path / 'run'}"])
    train_module.train(cfg)
    assert written == ["best.pt", "last.pt"]     # first epoch always improves


def test_progress_is_logged_when_stderr_is_not_a_terminal(tmp_path, scenes, caplog):
    from training.config import load_config
    from training.train import train

    cfg = load_config(write_recipe(tmp_path / "tiny.yaml", scenes, progress_every=1),
                      [f"output_dir={tmp_path / 'run'}"])
    with caplog.at_level("INFO", logger="training.train"):
        train(cfg)                                   # pytest captures stderr: not a terminal
    lines = [r.getMessage() for r in caplog.records if "steps/s" in r.getMessage()]
    assert [line.split(": step ")[1].split(" ")[0] for line in lines] == ["1/2", "2/2"]
    assert lines[0].startswith("phase main epoch 1/1") and "loss" in lines[0]


def test_progress_report_schedule():
    from training.progress import report_due

    assert not report_due(3, 100, now=10.0, last_time=0.0, every_steps=None, every_seconds=30.0)
    assert report_due(3, 100, now=31.0, last_time=0.0, every_steps=None, every_seconds=30.0)
    assert report_due(50, 100, now=1.0, last_time=0.0, every_steps=25, every_seconds=None)
    assert not report_due(51, 100, now=1.0, last_time=0.0, every_steps=25, every_seconds=None)
    assert report_due(100, 100, now=1.0, last_time=0.0, every_steps=None, every_seconds=None)   # last step


def test_ddp_backend_follows_the_training_device_not_the_machine():
    from training.train import ddp_backend

    assert ddp_backend("cpu", cuda_available=True) == "gloo"       # the H200 failure of issue 14
    assert ddp_backend("cpu", cuda_available=False) == "gloo"
    assert ddp_backend("cuda", cuda_available=True) == "nccl"
    assert ddp_backend("cuda:1", cuda_available=True) == "nccl"
    assert ddp_backend("auto", cuda_available=True) == "nccl"
    assert ddp_backend("auto", cuda_available=False) == "gloo"


def test_missing_imagenet_weights_hint_says_yaml_null(tmp_path, monkeypatch):
    from mde_ros.models.resnet import resolve_encoder_weights
    from training.config import load_config

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    with pytest.raises(FileNotFoundError) as excinfo:
        resolve_encoder_weights("resnet34", "imagenet")
    assert "model.kwargs.encoder_weights=null" in str(excinfo.value)
    recipe = write_recipe(tmp_path / "tiny.yaml", tmp_path)           # and that override does what it says
    assert load_config(recipe, ["model.kwargs.encoder_weights=null"])["model"]["kwargs"]["encoder_weights"] is None


# ------------------------------------------------------------------------------ recipes

RECIPES = Path(__file__).resolve().parent.parent / "training" / "configs"


def test_kaggle_recipe_trains_on_the_layout_it_documents(tmp_path):
    """root/train/{images,depths} (8-bit, 255 = depth_max) + root/test/images, no val/ folder."""
    from training.config import load_config
    from training.train import train

    rng = np.random.default_rng(0)
    for split, n in (("train", 10), ("test", 2)):
        (tmp_path / split / "images").mkdir(parents=True)
        if split == "train":
            (tmp_path / split / "depths").mkdir()
        for i in range(n):
            cv2.imwrite(str(tmp_path / split / "images" / f"{i:04d}.png"), rng.integers(0, 255, (72, 72, 3), np.uint8))
            if split == "train":
                cv2.imwrite(str(tmp_path / split / "depths" / f"{i:04d}.png"), rng.integers(1, 255, (72, 72), np.uint8))
    cfg = load_config(RECIPES / "kaggle_resnet50.yaml", [
        f"data.root={tmp_path}", "data.input_size=[64, 64]", "train.epochs=1", "train.batch_size=3",
        "train.num_workers=0", "train.device=cpu", "train.tensorboard=false", "model.kwargs.encoder_weights=null",
        f"output_dir={tmp_path / 'run'}"])
    train_set, val_set = build_dataset(cfg["data"], "train"), build_dataset(cfg["data"], "val")
    assert (len(train_set), len(val_set)) == (9, 1)                   # val_fraction 0.1 of train/
    assert not {train_set.name(i) for i in range(9)} & {val_set.name(0)}
    summary = train(cfg)
    assert Path(summary["best_checkpoint"]).is_file() and math.isfinite(summary["best_metric"])


def test_kitti_bts_split_lines_parse_and_load(tmp_path):
    """BTS/AdaBins's eigen files: image path, GT path (or None), focal length."""
    drive = "2011_09_26_drive_0002_sync"
    gt = np.zeros((20, 30), np.uint16)
    gt[3, 4] = int(7.25 * 256)
    for camera, frame in (("image_02", 5), ("image_03", 6), ("image_02", 7)):
        folder = tmp_path / "raw" / "2011_09_26" / drive / camera / "data"
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{frame:010d}.jpg"), np.full((20, 30, 3), 30 * frame, np.uint8))
    for camera, frame, sub in (("image_02", 5, "train"), ("image_03", 6, "val")):
        folder = tmp_path / "depth" / sub / drive / "proj_depth" / "groundtruth" / camera
        folder.mkdir(parents=True)
        cv2.imwrite(str(folder / f"{frame:010d}.png"), gt)
    (tmp_path / "eigen_test_files_with_gt.txt").write_text(
        f"2011_09_26/{drive}/image_02/data/0000000005.jpg {drive}/proj_depth/groundtruth/image_02/0000000005.png "
        "721.5377\n"
        f"2011_09_26/{drive}/image_03/data/0000000006.jpg {drive}/proj_depth/groundtruth/image_03/0000000006.png "
        "721.5377\n"
        f"2011_09_26/{drive}/image_02/data/0000000007.jpg None 721.5377\n")
    cfg = {"name": "kitti", "root": str(tmp_path), "input_size": [20, 30], "max_depth": 80.0,
           "split_files": {"test": "eigen_test_files_with_gt.txt"}}
    test = build_dataset(cfg, "test")
    assert len(test) == 2                                    # the None line has no ground truth: dropped
    assert [test.name(i) for i in range(2)] == [f"{drive}/image_02/0000000005", f"{drive}/image_03/0000000006"]
    sample = test[1]
    assert float(sample["depth"][0, 3, 4]) == 7.25 and int(sample["valid"].sum()) == 1
    assert abs(float(sample["image"].mean()) - 180 / 255) < 0.02              # the .jpg named by the line
    every = build_dataset({**cfg, "require_depth": False}, "test")
    assert len(every) == 3 and not every[2]["valid"].any()


def test_dpt_recipe_matches_its_seed():
    from training.config import load_config

    cfg = load_config(RECIPES / "cityscapes_dpt.yaml")
    assert cfg["data"]["input_size"] == [224, 224] and cfg["model"]["kwargs"]["img_size"] == 224
    assert cfg["schedule"]["warmup_epochs"] == 3 and cfg["train"]["early_stopping_patience"] == 10


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_recipe_says_which_split_selects_checkpoints(path):
    assert "selects checkpoints" in path.read_text() or "selected on" in path.read_text()


def test_garg_crop_is_laid_on_the_full_frame_when_kitti_is_kb_cropped(tmp_path):
    """BTS: the kb-cropped prediction goes back into the 375x1242 frame, then the Garg crop of that frame."""
    drive = "2011_09_26_drive_0002_sync"
    folder = tmp_path / "raw" / "2011_09_26" / drive / "image_02" / "data"
    folder.mkdir(parents=True)
    cv2.imwrite(str(folder / "0000000000.png"), np.zeros((375, 1242, 3), np.uint8))
    gt = np.zeros((375, 1242), np.uint16)
    # Garg on 375x1242: rows 153:371, cols 44:1197. Garg on the 352x1216 window would be full rows 166:372,
    # cols 56:1185: the first two points are inside the frame's crop but outside the window's.
    for row, col in ((160, 600), (300, 1190), (300, 600)):
        gt[row, col] = 4 * 256
    gt_folder = tmp_path / "depth" / drive / "proj_depth" / "groundtruth" / "image_02"
    gt_folder.mkdir(parents=True)
    cv2.imwrite(str(gt_folder / "0000000000.png"), gt)
    (tmp_path / "split.txt").write_text(f"2011_09_26/{drive} 0 l\n")
    cfg = {"data": {"name": "kitti", "root": str(tmp_path), "input_size": [22, 76], "max_depth": 80.0,
                    "kb_crop": True, "split_files": {"test": "split.txt"}},
           "eval": {"crop": "garg", "min_depth": 1e-3, "max_depth": 80.0}}
    test_set = build_dataset(cfg["data"], "test")
    assert test_set[0]["gt_window"].tolist() == [23, 13, 375, 1242]
    result = evaluate(DepthModel(ConstantDepth(4.0, max_depth=80.0)), test_set, cfg, num_vis=0, verbose=False)
    assert result["metrics"]["n_valid"] == 3 and result["metrics"]["abs_rel"] == pytest.approx(0.0, abs=1e-6)
