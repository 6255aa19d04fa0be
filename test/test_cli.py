"""The `mde-ros` commands end to end: real files, real onnxruntime sessions."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mde_ros import fileio
from mde_ros.cli import main
from mde_ros.metrics import depth_metrics, mean_metrics
from mde_ros.models.card import ModelCard
from mde_ros.models.export import export_onnx
from mde_ros.pipeline.intrinsics import Intrinsics
from mde_ros.synthetic import approach_sequence, render_frame

PLANE_M = 2.0
TRAIN_FOCAL = 50.0  # px at the 48x64 network input


class ConstantDepth(nn.Module):
    """A test-double network: a fronto-parallel plane at PLANE_M, whatever the image."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = nn.Parameter(torch.tensor(PLANE_M))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return image[:, :1] * 0.0 + self.depth


@pytest.fixture(scope="module")
def plane_model(tmp_path_factory) -> Path:
    card = ModelCard(name="plane", architecture="external", input_height=48, input_width=64,
                     min_depth=0.1, max_depth=10.0, train_focal_px=TRAIN_FOCAL)
    return export_onnx(ConstantDepth(), card, tmp_path_factory.mktemp("model") / "plane.onnx")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("images")
    return [fileio.write_image(folder / f"scene_{seed}.png", render_frame(seed, 128, 96).rgb) for seed in (1, 2)]


def read_ply(path: Path) -> np.ndarray:
    data = path.read_bytes()
    header, body = data.split(b"end_header\n", 1)
    count = int(next(l for l in header.decode().splitlines() if l.startswith("element vertex")).split()[-1])
    record = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")])
    return np.frombuffer(body, dtype=record, count=count)


def test_predict_writes_depth_preview_and_cloud_per_image(plane_model, images, tmp_path, capsys):
    out = tmp_path / "out"
    # fx such that the network sees the training focal length: no rescale.
    fx = TRAIN_FOCAL * 128 / 64
    code = main(["predict", *map(str, images), "--model", str(plane_model), "--backend", "onnxruntime",
                 "--fx", str(fx), "--cx", "60", "--cy", "50", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    for image in images:
        stem = out / image.stem
        depth_mm = fileio.read_depth_png16(stem.with_name(stem.name + "_depth.png"))
        assert depth_mm.shape == (96, 128)
        np.testing.assert_allclose(depth_mm, PLANE_M, atol=1e-3)
        np.testing.assert_allclose(np.load(stem.with_name(stem.name + "_depth.npy")), PLANE_M, atol=1e-5)
        preview = fileio.read_image(stem.with_name(stem.name + "_depth_color.png"))
        assert preview.shape[1] == 128 and preview.shape[0] > 96  # the scale bar is appended below
        points = read_ply(stem.with_name(stem.name + ".ply"))
        assert len(points) == 96 * 128
        np.testing.assert_allclose(points["z"], PLANE_M, atol=1e-5)
        # depth_image_proc: X = (u - cx) * d / fx, with the given principal point (not width / 2).
        assert points["x"].min() == pytest.approx((0 - 60) * PLANE_M / fx, abs=1e-4)
        assert points["y"].max() == pytest.approx((95 - 50) * PLANE_M / fx, abs=1e-4)


def test_predict_rescales_for_a_camera_with_another_focal_length(plane_model, images, tmp_path):
    # A camera_info YAML at twice the image size with twice the training focal length at the network:
    # depth x f_camera / f_training = x2.
    yaml = fileio.write_camera_info_yaml(tmp_path / "cam.yaml", Intrinsics(
        fx=4 * TRAIN_FOCAL * 2, fy=4 * TRAIN_FOCAL * 2, cx=128.0, cy=96.0, width=256, height=192))
    out = tmp_path / "out"
    assert main(["predict", str(images[0]), "--model", str(plane_model), "--backend", "onnxruntime",
                 "--camera-info", str(yaml), "--out", str(out)]) == 0
    depth = np.load(out / f"{images[0].stem}_depth.npy")
    np.testing.assert_allclose(depth, 2 * PLANE_M, atol=1e-5)
    assert main(["predict", str(images[0]), "--model", str(plane_model), "--backend", "onnxruntime",
                 "--camera-info", str(yaml), "--no-rescale", "--out", str(out)]) == 0
    np.testing.assert_allclose(np.load(out / f"{images[0].stem}_depth.npy"), PLANE_M, atol=1e-5)


def test_predict_ignores_a_camera_info_of_another_aspect_ratio(plane_model, images, tmp_path, capsys):
    # The images are 128x96 (4:3); a 16:9 calibration is not their camera's: no stretched K, no rescale.
    yaml = fileio.write_camera_info_yaml(tmp_path / "wide.yaml", Intrinsics(
        fx=4 * TRAIN_FOCAL * 2, fy=4 * TRAIN_FOCAL * 2, cx=128.0, cy=72.0, width=256, height=144))
    out = tmp_path / "out"
    assert main(["predict", str(images[0]), "--model", str(plane_model), "--backend", "onnxruntime",
                 "--camera-info", str(yaml), "--out", str(out)]) == 0
    assert "different aspect ratio" in capsys.readouterr().err
    np.testing.assert_allclose(np.load(out / f"{images[0].stem}_depth.npy"), PLANE_M, atol=1e-5)
    assert not (out / f"{images[0].stem}.ply").exists()


def test_predict_reports_unreadable_files_and_still_processes_the_rest(plane_model, images, tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    out = tmp_path / "out"
    code = main(["predict", str(broken), str(images[0]), "--model", str(plane_model), "--out", str(out)])
    assert code == 1
    assert "broken.png" in capsys.readouterr().err
    assert (out / f"{images[0].stem}_depth.png").exists()
    assert not (out / "broken_depth.png").exists()


def test_predict_names_a_missing_model(images, tmp_path, capsys):
    missing = tmp_path / "nowhere.onnx"
    assert main(["predict", str(images[0]), "--model", str(missing), "--out", str(tmp_path)]) == 1
    assert str(missing) in capsys.readouterr().err


def test_demo_runs_the_sequence_and_reports_metrics_against_exact_depth(plane_model, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--model", str(plane_model), "--backend", "onnxruntime", "--frames", "3",
                 "--width", "64", "--height", "48", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 3 and summary["backend"] == "onnxruntime"
    frames = approach_sequence(7, 3, 64, 48)
    expected = mean_metrics([depth_metrics(
        np.full_like(f.depth, PLANE_M * Intrinsics.nyu(64, 48).fx / TRAIN_FOCAL), f.depth,
        min_depth=0.1, max_depth=10.0) for f in frames])
    for key in ("abs_rel", "rmse", "delta1"):
        assert summary["metrics_vs_exact_depth"][key] == pytest.approx(expected[key], rel=1e-4)
    assert len(list((out / "depth").glob("*.png"))) == 3
    assert len(list((out / "points").glob("*.ply"))) == 2
    assert "frames/s" in capsys.readouterr().out


def test_export_writes_a_verified_onnx_with_its_card(tmp_path, capsys):
    from mde_ros.models import build_model, save_bundle

    model = build_model("unet_plain", base_channels=4, depth=2)
    card = ModelCard(name="tiny_unet", architecture="unet_plain", arch_kwargs={"base_channels": 4, "depth": 2},
                     input_height=32, input_width=32)
    bundle = save_bundle(tmp_path / "tiny.pt", model, card)
    assert main(["export", str(bundle), "--out", str(tmp_path / "tiny.onnx")]) == 0
    assert (tmp_path / "tiny.onnx").exists() and (tmp_path / "tiny.card.json").exists()
    assert "max |diff|" in capsys.readouterr().out


def test_unknown_bench_section_is_a_usage_error(capsys):
    assert main(["bench", "--sections", "nope"]) == 2
    assert "unknown sections" in capsys.readouterr().err
