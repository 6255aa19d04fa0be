"""Evaluation and export of a (briefly) trained model: metrics.json, range table, panels, model card,
and the exported bundle/ONNX running through the node's DepthEstimator with the same depth."""
from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from mde_ros.metrics import METRIC_KEYS
from mde_ros.models.card import ModelCard, load_card_for
from mde_ros.pipeline.estimator import DepthEstimator
from mde_ros.pipeline.intrinsics import Intrinsics
from training.__main__ import main as training_main
from training.checkpoint import load_checkpoint
from training.config import load_config
from training.datasets import build_dataset
from training.evaluate import evaluate, load_for_eval
from training.evaluate import main as evaluate_main
from training.export_model import export
from training.export_model import main as export_main
from training.submission import encode_depth, read_submission
from training.train import train

NATIVE_W, NATIVE_H = 128, 96    # rendered size; the dataset resizes to the network's 64x48
NET_H, NET_W = 48, 64
COUNTS = {"train": 16, "val": 4, "test": 6}
RANGES = ("0-1m", "1-3m", "3-5m", "5m+")

pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py: one torch thread


@pytest.fixture(scope="module")
def scenes(tmp_path_factory, render_folder_dataset) -> Path:
    """A folder dataset of rendered scenes with exact depth (uint16 mm PNG), NYU camera at 128x96."""
    return render_folder_dataset(tmp_path_factory.mktemp("scenes"), COUNTS, NATIVE_W, NATIVE_H)


@pytest.fixture(scope="module")
def run(tmp_path_factory, scenes):
    """A two-epoch training run whose recipe also asks export for a Kaggle-style submission."""
    directory = tmp_path_factory.mktemp("run")
    nyu = Intrinsics.nyu(NATIVE_W, NATIVE_H)
    recipe = {
        "model": {"name": "unet_resnet18",
                  "kwargs": {"encoder_depth": 3, "decoder_channels": [32, 16, 8], "max_depth": 10.0}},
        "data": {"name": "folder", "root": str(scenes), "input_size": [NET_H, NET_W], "max_depth": 10.0,
                 "intrinsics": [nyu.fx, nyu.fy, nyu.cx, nyu.cy]},
        "loss": {"name": "l1"},
        "optim": {"name": "adamw", "lr": 1.0e-3},
        "train": {"epochs": 2, "batch_size": 8, "num_workers": 0, "device": "cpu", "tensorboard": False},
        "export": {"submission": {"images": str(scenes / "test" / "images")}},
        "output_dir": str(directory / "out"),
    }
    (directory / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    cfg = load_config(directory / "recipe.yaml")
    summary = train(cfg)
    return cfg, summary, directory / "recipe.yaml"


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    cfg, summary, _ = run
    return export(summary["output_dir"], tmp_path_factory.mktemp("export") / "tiny_depth")


def test_evaluate_writes_metrics_json_range_table_and_panels(run, tmp_path, capsys):
    cfg, summary, _ = run
    test_set = build_dataset(cfg["data"], "test")
    result = evaluate(summary["best_checkpoint"], test_set, cfg, out_dir=tmp_path)

    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert set(METRIC_KEYS) <= set(saved["metrics"]) and saved["metrics"]["n_images"] == COUNTS["test"]
    assert all(math.isfinite(saved["metrics"][k]) for k in METRIC_KEYS)
    assert set(saved["metrics_by_range"]) == set(RANGES)
    assert saved["protocol"] == {"crop": "none", "min_depth": 1e-3, "max_depth": 10.0, "median_scaling": False,
                                 "pred_clipped_to_range": True, "averaging": "per image",
                                 "resolution": "ground truth (prediction resized up, bilinear)",
                                 "valid": "min_depth < gt < max_depth",
                                 "non_finite_prediction": "NaN -> min_depth, +-inf clipped to the range"}
    # Every valid GT pixel at the GT's own resolution (128x96, not the network's 64x48) is scored once,
    # and lands in exactly one range bin.
    valid_pixels = sum(int((test_set[i]["gt_valid"] & (test_set[i]["gt_depth"] < 10.0)).sum())
                       for i in range(len(test_set)))
    assert test_set[0]["gt_depth"].shape[-2:] == (NATIVE_H, NATIVE_W)
    assert saved["metrics"]["n_valid"] == valid_pixels
    assert sum(r["n_valid"] for r in saved["metrics_by_range"].values()) == valid_pixels

    table = capsys.readouterr().out
    assert all(label in table for label in RANGES) and "abs_rel" in table and "rmse" in table

    panels = sorted(tmp_path.glob("vis_*.png"))
    assert len(panels) == 4
    panel = cv2.imread(str(panels[0]))
    assert panel.shape == (NATIVE_H, 4 * NATIVE_W, 3)  # image | GT | prediction | |error|, at the GT's size
    assert not np.array_equal(panel[:, NATIVE_W:2 * NATIVE_W], panel[:, 2 * NATIVE_W:3 * NATIVE_W])
    assert result["metrics"]["rmse"] == pytest.approx(saved["metrics"]["rmse"])


def test_eigen_crop_scores_only_the_crop(run):
    cfg, summary, _ = run
    test_set = build_dataset(cfg["data"], "test")
    full = evaluate(summary["best_checkpoint"], test_set, cfg, num_vis=0, verbose=False)
    cropped = evaluate(summary["best_checkpoint"], test_set, {**cfg, "eval": {**cfg["eval"], "crop": "eigen"}},
                       num_vis=0, verbose=False)
    assert cropped["protocol"]["crop"] == "eigen"
    assert 0.5 * full["metrics"]["n_valid"] < cropped["metrics"]["n_valid"] < full["metrics"]["n_valid"]


def test_export_writes_bundle_onnx_and_a_complete_card(run, exported):
    cfg, summary, _ = run
    assert {"bundle", "onnx", "card", "submission"} <= set(exported)
    card = ModelCard.load(exported["card"])
    assert load_card_for(exported["onnx"]).to_dict() == card.to_dict()  # sidecar and ONNX metadata agree
    assert card.architecture == "unet_resnet18" and card.arch_kwargs == cfg["model"]["kwargs"]
    assert (card.input_height, card.input_width) == (NET_H, NET_W)
    assert card.output == "metric_depth" and card.max_depth == 10.0
    # NYU's fx (518.8579 px at 640 wide) at the 64-px-wide network input, through the dataset's resize.
    assert card.train_focal_px == pytest.approx(518.8579 * NET_W / 640, rel=1e-5)
    best = load_checkpoint(summary["best_checkpoint"])
    assert card.metrics["split"] == "val" and card.metrics["rmse"] == best["val_metrics"]["rmse"]
    provenance = card.provenance
    assert provenance["dataset"] == "folder" and provenance["config"] == cfg
    assert provenance["epoch"] == best["epoch"] and provenance["command"] and provenance["trained"]
    assert "git_commit" in provenance


def test_exported_model_gives_the_training_models_depth_through_the_node_pipeline(run, exported):
    cfg, summary, _ = run
    model, _ = load_for_eval(summary["best_checkpoint"])
    model.eval()
    sample = build_dataset(cfg["data"], "test")[0]
    rgb = (sample["image"].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)  # exact: images are 8-bit
    with torch.no_grad():
        expected = model(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255)[0, 0].numpy()

    for path, backend, tolerance in ((exported["onnx"], "onnxruntime", 1e-4), (exported["bundle"], "torch", 1e-5)):
        estimator = DepthEstimator.from_model(path, backend=backend)
        result = estimator.estimate(rgb, Intrinsics.nyu(NET_W, NET_H))  # the training camera: no rescale
        assert result.rescale == pytest.approx(1.0, abs=1e-6)
        np.testing.assert_allclose(result.depth, expected, atol=tolerance, rtol=0, err_msg=backend)

    # A camera with twice the focal length sees the same pixels twice as far (camera-aware rescale).
    nyu = Intrinsics.nyu(NET_W, NET_H)
    narrow = Intrinsics(2 * nyu.fx, 2 * nyu.fy, nyu.cx, nyu.cy, NET_W, NET_H)
    result = DepthEstimator.from_model(exported["onnx"], backend="onnxruntime").estimate(rgb, narrow)
    np.testing.assert_allclose(result.depth, 2 * expected, rtol=1e-4, atol=1e-4)


def test_evaluating_the_bundle_matches_evaluating_the_checkpoint(run, exported):
    """Same normalisation in the exported card as in training's wrapper: identical scores."""
    cfg, summary, _ = run
    test_set = build_dataset(cfg["data"], "test")
    from_checkpoint = evaluate(summary["best_checkpoint"], test_set, cfg, num_vis=0, verbose=False)
    from_bundle = evaluate(exported["bundle"], test_set, cfg, num_vis=0, verbose=False)
    for key in METRIC_KEYS:
        assert from_bundle["metrics"][key] == pytest.approx(from_checkpoint["metrics"][key], rel=1e-5, abs=1e-7)


def test_export_writes_the_configured_submission(exported, scenes):
    """export.submission: the exported model's predictions for the test images, in the seed's CSV format."""
    ids, image_ids, pixels = read_submission(exported["submission"])
    assert image_ids == [f"scene{i:03d}" for i in range(COUNTS["test"])]
    estimator = DepthEstimator.from_model(exported["onnx"], backend="onnxruntime")
    for image_id, row in zip(image_ids, pixels):
        bgr = cv2.imread(str(scenes / "test" / "images" / f"{image_id}.png"))
        depth = estimator.estimate(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).depth
        assert np.array_equal(row, encode_depth(depth, estimator.card.max_depth)), image_id


def test_cli_evaluate_and_export(run, tmp_path, capsys):
    cfg, summary, recipe = run
    out = tmp_path / "eval"
    assert evaluate_main([summary["output_dir"], "--split", "val", "--out", str(out), "--num-vis", "1"]) == 0
    assert json.loads((out / "metrics.json").read_text())["metrics"]["n_images"] == COUNTS["val"]
    assert len(list(out.glob("vis_*.png"))) == 1

    stem = tmp_path / "cli_model"
    assert export_main([summary["best_checkpoint"], "--out", str(stem), "--no-onnx", "--train-focal-px", "300",
                        "--evaluate-split", "test"]) == 0
    card = load_card_for(stem.with_suffix(".pt"))
    assert card.train_focal_px == 300.0 and card.metrics["split"] == "test"
    assert set(card.metrics["by_range"]) == set(RANGES)
    assert not stem.with_suffix(".onnx").exists()

    # A bundle carries no dataset config: evaluate asks for the recipe, then works with it.
    assert evaluate_main([str(stem.with_suffix(".pt")), "--split", "test", "--out", str(tmp_path / "b")]) == 2
    assert "--config" in capsys.readouterr().err
    assert evaluate_main([str(stem.with_suffix(".pt")), "--config", str(recipe), "--split", "test",
                          "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "metrics.json").is_file()

    assert evaluate_main([str(tmp_path / "missing.pt")]) == 2
    assert "not found" in capsys.readouterr().err
    assert training_main(["bogus"]) == 2
    assert "unknown command 'bogus'" in capsys.readouterr().err
