"""INT8 as one Q/DQ ONNX and fp16 conversion, on a small real model with real onnxruntime:
calibration from a folder and from a fixture bag, the recipe per target, the card, which file a
backend picks for a precision, and the `mde-ros quantize` command. Speed is printed, not asserted."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from mde_ros.bags import fixtures
from mde_ros.cli import main
from mde_ros.fileio import write_image
from mde_ros.modelfiles import open_backend
from mde_ros.models.card import card_path_for, load_card_for
from mde_ros.quantization.calibration import CalibrationError, load_calibration_images, network_inputs
from mde_ros.quantization.check import compare_speed
from mde_ros.quantization.qdq import quantize_model
from mde_ros.quantization.variants import fp16_model_for, int8_candidates, int8_model_for
from mde_ros.synthetic import render_frame

BAG = fixtures.FIXTURE_DIR / fixtures.fixture_name("mcap")


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("calib")
    for seed in range(900, 906):  # synthetic scenes, not the fixture sequence
        write_image(folder / f"scene_{seed}_rgb.png", render_frame(seed, 96, 72).rgb)
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return fixtures.export_test_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="module")
def quantized(model, calib_dir, tmp_path_factory) -> dict[str, Path]:
    images = load_calibration_images(calib_dir, pattern="*_rgb.png")
    out = tmp_path_factory.mktemp("q")
    return {target: quantize_model(model, out / f"tiny.int8.{target}.onnx", images, target=target) and
            out / f"tiny.int8.{target}.onnx" for target in ("onnxruntime", "tensorrt")}


def inputs(model: Path, n: int = 3) -> list[np.ndarray]:
    card = load_card_for(model)
    return list(network_inputs([render_frame(s, 96, 72).rgb for s in range(950, 950 + n)], card))


def run(path: Path, batch: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": batch})[0]


# ---------------------------------------------------------------- calibration sources

def test_folder_calibration_spreads_evenly_and_ignores_other_files(calib_dir):
    images = load_calibration_images(calib_dir, max_images=3)
    assert images.info == {"kind": "folder", "path": str(calib_dir), "pattern": "*", "images": 3, "available": 6}
    assert all(i.dtype == np.uint8 and i.shape == (72, 96, 3) for i in images.images)
    with pytest.raises(CalibrationError, match="no images matching"):
        load_calibration_images(calib_dir, pattern="*.jpg")


def test_bag_calibration_reads_the_camera_topic():
    images = load_calibration_images(BAG, max_images=5)
    assert images.info["kind"] == "bag" and images.info["topic"] == "/camera/color/image_raw"
    assert images.info["images"] == 5 and images.info["available"] == fixtures.N_FRAMES
    with pytest.raises(CalibrationError, match="/nope"):
        load_calibration_images(BAG, topic="/nope")


def test_bad_calibration_sources(tmp_path, calib_dir):
    with pytest.raises(CalibrationError, match="not found"):
        load_calibration_images(tmp_path / "missing")
    with pytest.raises(CalibrationError, match="is a file"):
        load_calibration_images(calib_dir / "notes.txt")
    with pytest.raises(CalibrationError, match="for bags"):
        load_calibration_images(calib_dir, topic="/camera/image")


# ---------------------------------------------------------------- Q/DQ models

def test_quantized_models_are_qdq_with_the_target_recipe_in_the_card(model, quantized):
    for target, path in quantized.items():
        proto = onnx.load(str(path))
        ops = {n.op_type for n in proto.graph.node}
        assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops, target
        inits = {i.name: i for i in proto.graph.initializer}
        zero_points = [inits[n.input[2]] for n in proto.graph.node
                       if n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2] in inits]
        dtypes = {onnx.helper.tensor_dtype_to_np_dtype(z.data_type) for z in zero_points}
        record = load_card_for(path).provenance["quantization"]
        assert json.loads(card_path_for(path).read_text())["provenance"]["quantization"] == record
        assert record["format"] == "QDQ" and record["target"] == target
        assert record["weights"] == "int8 symmetric per-channel"
        assert record["calibration"]["kind"] == "folder" and record["calibration"]["images"] == 6
        assert record["source_sha256"] == load_card_for(path).provenance["quantization"]["source_sha256"]
        if target == "tensorrt":  # symmetric int8 activations: int8 zero points, all 0
            assert dtypes == {np.dtype(np.int8)} and record["scheme"] == "S8S8"
            assert all(not onnx.numpy_helper.to_array(z).any() for z in zero_points)
        else:
            assert dtypes == {np.dtype(np.uint8)} and record["scheme"] == "U8S8"


def test_int8_output_stays_close_to_fp32_and_the_speed_is_printed(model, quantized):
    for batch in inputs(model):
        fp32, int8 = run(model, batch), run(quantized["onnxruntime"], batch)
        assert np.abs(int8 - fp32).mean() < 0.05 * np.abs(fp32).mean()
    speed = compare_speed(model, quantized["onnxruntime"], iters=8, warmup=1, threads=1)
    print(f"\nint8 on a tiny model (not the product network): {speed.summary()}")
    assert speed.fp32_ms > 0 and speed.int8_ms > 0


# ---------------------------------------------------------------- which file runs

def test_int8_lookup_beside_the_model_checks_target_and_source(model, quantized, tmp_path, caplog):
    local = tmp_path / "tiny.onnx"
    local.write_bytes(model.read_bytes())
    card_path_for(local).write_text(card_path_for(model).read_text())
    with pytest.raises(ValueError, match="mde-ros quantize .*--target onnxruntime"):
        int8_model_for(local, "onnxruntime")
    # An onnxruntime (U8S8) model named plainly: fine for onnxruntime, refused for TensorRT.
    plain = int8_candidates(local, "onnxruntime")[1]
    plain.write_bytes(quantized["onnxruntime"].read_bytes())
    card_path_for(plain).write_text(card_path_for(quantized["onnxruntime"]).read_text())
    assert int8_model_for(local, "onnxruntime") == plain
    with caplog.at_level(logging.WARNING), pytest.raises(ValueError, match="S8S8"):
        int8_model_for(local, "tensorrt")
    # Made from another model (the shipped model replaced): not used.
    local.write_bytes(model.read_bytes() + b"\0")
    with pytest.raises(ValueError, match="another version of the model"):
        int8_model_for(local, "onnxruntime")
    with pytest.raises(ValueError, match="is not a Q/DQ int8 model"):
        int8_model_for(local, "onnxruntime", int8_model=model)


def test_precision_int8_runs_the_qdq_model_on_onnxruntime(model, quantized):
    card = load_card_for(model)
    backend = open_backend("onnxruntime", model, card, precision="int8", int8_model=quantized["onnxruntime"])
    assert backend.describe()["model"] == str(quantized["onnxruntime"])
    batch = inputs(model, 1)[0]
    np.testing.assert_array_equal(backend.infer(batch), run(quantized["onnxruntime"], batch))


def test_precision_int8_builds_from_a_named_calibration_source_once(model, calib_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("MDE_ROS_CACHE", str(tmp_path / "cache"))
    card = load_card_for(model)
    first = open_backend("auto", model, card, precision="int8", calibration=str(BAG)).describe()["model"]
    assert Path(first).parent == tmp_path / "cache" / "onnx" and ".int8.onnxruntime" in first
    assert load_card_for(first).provenance["quantization"]["calibration"]["kind"] == "bag"
    mtime = Path(first).stat().st_mtime_ns
    assert open_backend("onnxruntime", model, card, precision="int8",
                          calibration=str(BAG)).describe()["model"] == first
    assert Path(first).stat().st_mtime_ns == mtime  # cached, not rebuilt


def test_fp16_conversion_keeps_fp32_io_and_the_values(model, monkeypatch, tmp_path):
    monkeypatch.setenv("MDE_ROS_CACHE", str(tmp_path / "cache"))
    path = fp16_model_for(model)
    assert path == fp16_model_for(model) and path.parent == tmp_path / "cache" / "onnx"
    proto = onnx.load(str(path))
    io_types = {v.type.tensor_type.elem_type for v in list(proto.graph.input) + list(proto.graph.output)}
    assert io_types == {onnx.TensorProto.FLOAT}
    assert {i.data_type for i in proto.graph.initializer if i.dims} == {onnx.TensorProto.FLOAT16}
    assert load_card_for(path).provenance["fp16"]["keep_io_types"] is True
    batch = inputs(model, 1)[0]
    np.testing.assert_allclose(run(path, batch), run(model, batch), atol=5e-3, rtol=0)


# ---------------------------------------------------------------- the command

def test_quantize_command_writes_both_targets(model, calib_dir, tmp_path, capsys):
    out = tmp_path / "m.int8.onnx"
    code = main(["quantize", str(model), "--calibration", str(calib_dir), "--pattern", "*_rgb.png",
                 "--target", "all", "--out", str(out), "--max-images", "4"])
    text = capsys.readouterr().out
    assert code == 0 and "U8S8" in text and "S8S8" in text
    assert load_card_for(out).provenance["quantization"]["target"] == "onnxruntime"
    assert load_card_for(tmp_path / "m.int8.tensorrt.onnx").provenance["quantization"]["scheme"] == "S8S8"


@pytest.mark.parametrize("argv,message", [
    (["--calibration", "/nonexistent"], "calibration source not found"),
    (["--calibration", "{calib}", "--pattern", "*.jpg"], "no images matching"),
    (["--calibration", "{calib}", "--max-images", "0"], "--max-images must be >= 1"),
    (["--calibration", "{calib}", "--out", "{model}"], "must not overwrite"),
])
def test_quantize_command_errors_are_one_line(model, calib_dir, capsys, argv, message):
    argv = [a.format(calib=calib_dir, model=model) for a in argv]
    code = main(["quantize", str(model), *argv])
    err = capsys.readouterr().err
    assert code != 0 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
