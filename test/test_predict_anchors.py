"""`mde-ros predict --anchor U V Z --camera-height H`: the shipped ONNX model on synthetic images with
exact depth, its output anchored per image; the factor is printed per image."""
import re

import cv2
import numpy as np
import pytest

from mde_ros import cli
from mde_ros.fileio import write_camera_info_yaml
from mde_ros.metrics import depth_metrics
from mde_ros.synthetic import render_frame


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    folder = tmp_path_factory.mktemp("predict_anchors")
    frame = render_frame(31, 160, 120)
    cv2.imwrite(str(folder / "view.png"), cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR))
    write_camera_info_yaml(folder / "cam.yaml", frame.intrinsics)
    return folder, frame


def test_anchors_rescale_each_image_and_the_factor_is_printed(scene, tmp_path, capsys):
    folder, frame = scene
    assert cli.main(["predict", str(folder / "view.png"), "--out", str(tmp_path / "raw"), "--backend", "onnxruntime",
                     "--camera-info", str(folder / "cam.yaml")]) == 0
    raw = np.load(tmp_path / "raw" / "view_depth.npy")
    assert "view.png: scale" not in capsys.readouterr().out
    rng = np.random.default_rng(0)
    valid = np.argwhere(np.isfinite(frame.depth))
    rows, cols = valid[rng.choice(len(valid), 20, replace=False)].T
    # Metric truth x 0.5: the anchors say everything is half as far as the model thinks (a mis-scaled world).
    args = [a for v, u in zip(rows, cols) for a in ("--anchor", str(u), str(v), f"{0.5 * frame.depth[v, u]:.6f}")]
    assert cli.main(["predict", str(folder / "view.png"), "--out", str(tmp_path / "anchored"), "--backend",
                     "onnxruntime", "--camera-info", str(folder / "cam.yaml"), *args]) == 0
    out = capsys.readouterr().out
    factor = float(re.search(r"view\.png: scale x([0-9.]+) \(points, 20 anchors", out).group(1))
    anchored = np.load(tmp_path / "anchored" / "view_depth.npy")
    np.testing.assert_allclose(anchored, raw * np.float32(factor), rtol=1e-4)  # printed with 4 decimals
    truth = 0.5 * frame.depth
    ok = np.isfinite(raw) & np.isfinite(truth)
    median_scaled = depth_metrics(raw * np.median(truth[ok]) / np.median(raw[ok]), truth)["abs_rel"]
    assert depth_metrics(anchored, truth)["abs_rel"] <= median_scaled + 0.02


def test_anchor_outside_an_image_is_ignored_with_a_note(scene, tmp_path, capsys):
    folder, _ = scene
    assert cli.main(["predict", str(folder / "view.png"), "--out", str(tmp_path), "--backend", "onnxruntime",
                     "--anchor", "900", "10", "2.0"]) == 0
    assert "view.png: not anchored (no usable anchor; ignored: outside_image x1)" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--anchor", "10", "10", "-1"], "--anchor 10 10 -1"),
    (["--anchor", "10", "nan", "1"], "need a pixel U, V >= 0"),
    (["--camera-height", "0"], "--camera-height must be > 0"),
    (["--camera-pitch", "0.1"], "need --camera-height"),
])
def test_bad_anchor_options_are_one_line_errors(scene, tmp_path, capsys, args, message):
    folder, _ = scene
    assert cli.main(["predict", str(folder / "view.png"), "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not (tmp_path / "o").exists()
