"""`mde-ros predict` interrupted or out of space keeps complete outputs only (issue 22): real signals to
a real process, a file size limit standing in for a full disk."""
import resource
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

N_IMAGES = 40


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for index in range(N_IMAGES):
        path = folder / f"img{index:02d}.png"
        cv2.imwrite(str(path), rng.integers(0, 255, (240, 320, 3), dtype=np.uint8))
        paths.append(path)
    return paths


def predict(*args):
    return [sys.executable, "-m", "mde_ros.cli", "predict", *map(str, args)]


def test_predict_stops_between_images_on_sigterm_and_resume_finishes(images, tmp_path):
    out = tmp_path / "out"
    process = subprocess.Popen(predict(*images, "--out", out, "--fx", "300"), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(out.glob("*_depth.png"))) < 3 and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert "Traceback" not in err
    assert process.returncode == 128 + signal.SIGTERM, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("mde-ros predict: stopped by SIGTERM after") and "--resume" in last, last
    done = sorted(p.name[:-len("_depth.png")] for p in out.glob("*_depth.png"))
    assert 3 <= len(done) < N_IMAGES
    for name in done:  # every image written is written whole
        for suffix in ("_depth.npy", "_depth_color.png", ".ply"):
            assert (out / f"{name}{suffix}").is_file()
        assert np.load(out / f"{name}_depth.npy").shape == (240, 320)
    assert not list(out.glob(".*.tmp"))  # no temporary file left behind
    resumed = subprocess.run(predict(*images, "--out", out, "--fx", "300", "--resume"), capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(done)} already there (--resume)" in resumed.stdout
    assert len(list(out.glob("*_depth.png"))) == N_IMAGES


def _limit_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))  # a 320x240 .npy is 307 kB


def test_predict_out_of_space_leaves_no_truncated_file(images, tmp_path):
    """Before: a truncated .ply on a full disk (and a traceback for other files)."""
    out = tmp_path / "out"
    out.mkdir()
    result = subprocess.run(predict(*images[:3], "--out", out, "--fx", "300"), capture_output=True, text=True,
                            timeout=300, preexec_fn=_limit_file_size)
    assert "Traceback" not in result.stderr
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("mde-ros predict: cannot write") and "--resume" in last, last
    assert list(out.iterdir()) == []  # neither a half-written file nor a half set of files


def test_predict_replaces_a_symlink_in_out_instead_of_writing_through_it(images, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (out / "img00.ply").symlink_to(victim)
    (out / "img00_depth.npy").symlink_to(victim)
    result = subprocess.run(predict(images[0], "--out", out, "--fx", "300"), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert victim.read_text() == "keep me"
    assert not (out / "img00.ply").is_symlink() and (out / "img00.ply").stat().st_size > 100


def nan_model(path):
    """The test model's graph with its output multiplied by NaN (a broken export), beside its card."""
    import json

    import onnx
    from onnx import helper

    from mde_ros.bags import fixtures
    from mde_ros.models.card import card_path_for

    source = fixtures.export_test_model(path.with_name("tiny.onnx"))
    model = onnx.load(source)
    graph = model.graph
    output = graph.output[0].name
    graph.node.append(helper.make_node("Constant", [], ["nan_value"], value=helper.make_tensor(
        "nan_value", onnx.TensorProto.FLOAT, [], [float("nan")])))
    graph.node.append(helper.make_node("Mul", [output + "_raw", "nan_value"], [output]))
    for node in graph.node[:-2]:  # the old output now feeds the Mul
        node.output[:] = [output + "_raw" if name == output else name for name in node.output]
    onnx.save(model, path)
    card = json.loads(card_path_for(source).read_text())
    card["name"] = "nan_model"
    card_path_for(path).write_text(json.dumps(card))
    return path


def test_predict_says_so_when_no_pixel_has_depth(images, tmp_path):
    """A model that outputs NaN: before, all-invalid depth was written silently with exit 0."""
    model = nan_model(tmp_path / "nan.onnx")
    result = subprocess.run(predict(images[0], "--out", tmp_path / "out", "--model", model, "--backend",
                                    "onnxruntime"), capture_output=True, text=True, timeout=300)
    assert "Traceback" not in result.stderr
    assert result.returncode == 1, result.stderr
    assert "no valid depth" in result.stderr
    assert not list((tmp_path / "out").glob("*"))
