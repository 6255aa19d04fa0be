"""User errors in the commands end with one clear line and a non-zero exit, never a traceback, and
never a file outside --out or over an earlier output of the same run (shipped model, real files)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from mde_ros.cli import main
from mde_ros.resources import default_model_path

ROOT = Path(__file__).resolve().parents[1]
BAG = ROOT / "test" / "fixtures" / "bags" / "approach_mcap"


@pytest.fixture
def image(tmp_path) -> Path:
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    (tmp_path / "a").mkdir()
    cv2.imwrite(str(tmp_path / "a" / "img.png"), rgb)
    return tmp_path / "a" / "img.png"


def one_line_error(capsys, *expected):
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for text in expected:
        assert text in err, err
    return err


@pytest.mark.parametrize("flags, expected", [
    (["--fx", "0"], "--fx must be a focal length in pixels within 0..1e+07, got 0.0"),
    (["--fx", "-500"], "got -500.0"),
    (["--fx", "nan"], "got nan"),
    (["--fx", "500", "--fy", "inf"], "--fy must be"),
    (["--fx", "500", "--cx", "nan"], "--cx must be a finite"),
    (["--cy", "3"], "need --fx"),
])
def test_predict_checks_camera_arguments_before_writing_anything(image, tmp_path, capsys, flags, expected):
    out = tmp_path / "out"
    assert main(["predict", str(image), "--out", str(out), *flags]) == 2
    one_line_error(capsys, expected)
    assert not out.exists()


def test_predict_names_a_corrupt_onnx_and_a_card_with_wrong_types(image, tmp_path, capsys):
    card = json.loads(default_model_path().with_name("mde_demo_unet_r18.card.json").read_text())
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not a protobuf")
    (tmp_path / "corrupt.card.json").write_text(json.dumps(card))
    assert main(["predict", str(image), "--model", str(corrupt), "--out", str(tmp_path / "o1")]) == 1
    one_line_error(capsys, "cannot load model", "corrupt.onnx")

    for key, value in (("min_depth", "0.1"), ("mean", 0.5), ("input_width", 1.5), ("train_focal_px", [1])):
        model = tmp_path / f"typed_{key}.onnx"
        model.write_bytes(default_model_path().read_bytes())
        model.with_name(model.stem + ".card.json").write_text(json.dumps({**card, key: value}))
        assert main(["predict", str(image), "--model", str(model), "--out", str(tmp_path / "o2")]) == 1
        one_line_error(capsys, f"model card key '{key}' must be")
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_predict_refuses_an_out_that_is_a_file_or_cannot_be_created(image, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["predict", str(image), "--out", str(afile)]) == 1
    one_line_error(capsys, "exists and is not a folder")
    assert main(["predict", str(image), "--out", str(afile / "sub")]) == 1
    one_line_error(capsys, "cannot create --out folder")
    assert afile.read_text() == "x"


def test_predict_writes_only_inside_out_and_never_over_an_earlier_output(image, tmp_path, capsys):
    other = tmp_path / "b"
    other.mkdir()
    second = np.full((48, 64, 3), 200, np.uint8)
    cv2.imwrite(str(other / "img.png"), second)
    dots = tmp_path / "..png"
    cv2.imwrite(str(dots), second)
    out = tmp_path / "out" / "sub"
    before = set(tmp_path.rglob("*"))
    assert main(["predict", str(image), str(other / "img.png"), str(dots), "--out", str(out), "--fx", "50"]) == 0
    new = set(tmp_path.rglob("*")) - before
    assert all(path == out or path == out.parent or out in path.parents for path in new), new
    stems = sorted(p.name for p in out.glob("*_depth.npy"))
    assert stems == ["image_depth.npy", "img_2_depth.npy", "img_depth.npy"]
    assert "written as img_2_*" in capsys.readouterr().err
    # Two different inputs, two different predictions kept.
    assert not np.array_equal(np.load(out / "img_depth.npy"), np.load(out / "img_2_depth.npy"))


def test_predict_skips_truncated_and_corrupt_images_and_fails(image, tmp_path, capsys):
    good = cv2.imencode(".jpg", cv2.imread(str(image)))[1].tobytes()
    truncated = tmp_path / "half.jpg"
    truncated.write_bytes(good[: len(good) // 2])
    corrupt = tmp_path / "crc.png"
    png = bytearray(image.read_bytes())
    png[60] ^= 0xFF
    corrupt.write_bytes(bytes(png))
    out = tmp_path / "out"
    assert main(["predict", str(truncated), str(corrupt), str(image), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "skipping" in err and "truncated JPEG" in err and "corrupt PNG" in err and "Traceback" not in err
    assert sorted(p.name for p in out.glob("*_depth.npy")) == ["img_depth.npy"]


def test_replay_user_errors_are_one_line_and_found_before_the_bag_is_processed(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["replay", "."]) == 1
    one_line_error(capsys, "metadata.yaml")
    out = tmp_path / "out_bag"
    assert main(["replay", str(BAG), "--out", str(out), "--summary", str(tmp_path / "nodir" / "s.json"),
                 "--no-progress"]) == 1
    one_line_error(capsys, "nodir", "does not exist")
    assert not out.exists()  # checked before replaying, not after writing the whole bag
    assert main(["replay", str(BAG), "--out", str(tmp_path / "nodir" / "bag"), "--no-progress"]) == 1
    one_line_error(capsys, "cannot create the output bag")
    assert main(["replay", str(BAG), "--out", str(out), "--summary", str(tmp_path), "--no-progress"]) == 1
    one_line_error(capsys, "is a folder")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"junk")
    (tmp_path / "corrupt.card.json").write_text(default_model_path().with_name("mde_demo_unet_r18.card.json")
                                                .read_text())
    assert main(["replay", str(BAG), "--out", str(out), "--model", str(corrupt), "--no-progress"]) == 1
    one_line_error(capsys, "cannot load the model")
    assert not out.exists()


@pytest.mark.parametrize("content, expected", [(None, "does not exist"), ("a: [\n", "not valid YAML"),
                                               ("- 1\n- 2\n", "must map node names"),
                                               ("/**:\n  params: {}\n", "ros__parameters")])
def test_the_node_refuses_a_missing_or_malformed_params_file_in_one_line(tmp_path, content, expected):
    params = tmp_path / "params.yaml"
    if content is not None:
        params.write_text(content)
    result = subprocess.run([sys.executable, "-m", "mde_ros.cli", "node", "--params-file", str(params)],
                            capture_output=True, text=True, timeout=60, env=dict(os.environ))
    output = (result.stdout + result.stderr).strip()
    assert result.returncode != 0
    assert "Traceback" not in output and len(output.splitlines()) == 1, output
    assert expected in output and str(params) in output


def test_the_node_takes_launch_style_name_value_words():
    """`mde-ros node model:=X` as `ros2 launch ... model:=X` takes it: a parameter (here a missing file,
    so the node says which, in its own words, instead of rcl's 'cannot start: [model:=...]')."""
    from mde_ros.cli import launch_style_arguments

    assert launch_style_arguments(["model:=/m.onnx", "image_topic:=/cam/image_raw", "namespace:=robot",
                                   "-p", "backend:=torch", "params_file:=p.yaml", "--ros-args", "-p", "a:=1"]) == [
        "-p", "model:=/m.onnx", "-r", "image:=/cam/image_raw", "-r", "__ns:=/robot", "-p", "backend:=torch",
        "--params-file", "p.yaml", "--ros-args", "-p", "a:=1"]
    # launch arguments named otherwise than their parameter, as the launch file passes them
    assert launch_style_arguments(["dla_core:=0", "workspace_mb:=64", "rebuild_engine:=true", "fast_path:=always",
                                   "scan_output_frame:=base_scan"]) == [
        "-p", "tensorrt.dla_core:=0", "-p", "tensorrt.workspace_mb:=64", "-p", "tensorrt.rebuild:=true",
        "-p", "torch.fast_path:=always", "-p", "scan.output_frame:=base_scan"]
    result = subprocess.run([sys.executable, "-m", "mde_ros.cli", "node", "model:=/nonexistent/net.onnx"],
                            capture_output=True, text=True, timeout=60, env=dict(os.environ))
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "cannot start" not in output
    assert "model file not found: /nonexistent/net.onnx" in output
