"""TensorRT backend's pure parts (engine cache key, paths, config validation, profile shapes,
calibration batching), which decide when a minutes-long engine build happens, tested without a GPU."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mde_ros.inference import BackendUnavailable
from mde_ros.inference.tensorrt_backend import (TensorRTBackend, TensorRTConfig, calibration_batches,
                                                engine_cache_key, engine_key_parts, engine_paths,
                                                optimization_profile, sanitize,
                                                tensorrt_unavailable_reason)
from mde_ros.models.card import ModelCard

CARD = ModelCard(name="tiny", architecture="external", input_height=240, input_width=320)
ONNX = b"\x08\x07fake onnx bytes: only their hash matters here"
GPU = "NVIDIA Jetson AGX Orin"


def key_for(onnx=ONNX, version="10.3.0", gpu=GPU, card=CARD, **config) -> str:
    cfg = TensorRTConfig(**config)
    return engine_cache_key(engine_key_parts(onnx, version, gpu, cfg, optimization_profile(card, cfg)))


def calibration_images(n: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, 240, 320), dtype=np.float32)


# ---------------------------------------------------------------- cache key

def test_key_is_stable_for_the_same_inputs():
    assert key_for() == key_for()
    assert key_for(precision="fp16", dla_core=0) == key_for(precision="fp16", dla_core=0)
    data = calibration_images()
    assert key_for(precision="int8", calibration_data=data) == \
        key_for(precision="int8", calibration_data=data.copy())


@pytest.mark.parametrize("change", [
    {"onnx": ONNX + b"!"},
    {"version": "10.4.0"},
    {"gpu": "NVIDIA GeForce RTX 4090"},
    {"precision": "fp16"},
    {"precision": "fp16", "dla_core": 1},
    {"workspace_bytes": 1 << 28},
    {"max_batch": 4},
    {"max_size": (480, 640)},
    {"card": ModelCard(name="tiny", architecture="external", input_height=256, input_width=320)},
])
def test_any_change_gives_a_new_key(change):
    assert key_for(**change) != key_for()


def test_int8_key_follows_the_calibration_data():
    first = key_for(precision="int8", calibration_data=calibration_images(seed=0))
    assert first != key_for(precision="int8", calibration_data=calibration_images(seed=1))
    assert first != key_for(precision="int8", calibration_data=calibration_images(seed=0),
                            calibration_batch_size=2)


def test_key_is_a_readable_file_name():
    key = key_for(precision="fp16", dla_core=0)
    sha16 = engine_key_parts(ONNX, "10.3.0", GPU, TensorRTConfig(),
                             optimization_profile(CARD, TensorRTConfig()))["onnx_sha256"][:16]
    assert key.startswith(f"{sha16}-nvidia-jetson-agx-orin-trt10.3.0-fp16-dla0-")
    assert Path(key).name == key and " " not in key


def test_key_parts_are_the_json_sidecar():
    cfg = TensorRTConfig(precision="fp16", max_batch=2)
    parts = engine_key_parts(ONNX, "10.3.0", GPU, cfg, optimization_profile(CARD, cfg))
    assert json.loads(json.dumps(parts)) == parts
    assert parts["profile"] == {"min": [1, 3, 240, 320], "opt": [1, 3, 240, 320], "max": [2, 3, 240, 320]}
    assert (parts["tensorrt"], parts["gpu"], parts["precision"]) == ("10.3.0", GPU, "fp16")


def test_sanitize():
    assert sanitize("NVIDIA GeForce RTX 4090") == "nvidia-geforce-rtx-4090"
    assert sanitize("Orin (nvgpu)/x") == "orin-nvgpu-x"
    assert sanitize("10.3.0.post1") == "10.3.0.post1"
    assert sanitize("***") == "unknown"


# ---------------------------------------------------------------- paths

def test_paths_live_under_mde_ros_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MDE_ROS_CACHE", str(tmp_path / "c"))
    paths = engine_paths("abc", "10.3.0", GPU)
    assert paths.engine == tmp_path / "c" / "tensorrt" / "abc.engine"
    assert paths.sidecar == tmp_path / "c" / "tensorrt" / "abc.json"
    assert paths.calibration == tmp_path / "c" / "tensorrt" / "abc.calib"
    assert paths.timing_cache == tmp_path / "c" / "tensorrt" / "timing-10.3.0-nvidia-jetson-agx-orin.cache"


def test_paths_fall_back_to_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.delenv("MDE_ROS_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert engine_paths("k", "10", "g").engine == tmp_path / "xdg" / "mde_ros" / "tensorrt" / "k.engine"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert engine_paths("k", "10", "g").engine == \
        tmp_path / "home" / ".cache" / "mde_ros" / "tensorrt" / "k.engine"


# ---------------------------------------------------------------- config validation

@pytest.mark.parametrize("config,message", [
    ({"precision": "int4"}, "precision must be one of"),
    ({"workspace_bytes": 0}, "workspace_bytes must be a positive int"),
    ({"dla_core": -1}, "dla_core must be an int >= 0"),
    ({"dla_core": 0}, "DLA runs fp16 or int8"),
    ({"max_batch": 0}, "max_batch must be an int >= 1"),
    ({"min_size": (0, 10)}, "min_size must be"),
    ({"max_size": (480,)}, "max_size must be"),
    ({"precision": "int8"}, "needs calibration_data"),
    ({"precision": "int8", "calibration_cache": "/nonexistent/x.calib"}, "does not exist"),
    ({"precision": "int8", "calibration_data": np.zeros((4, 240, 320), np.float32)}, r"\(N,3,H,W\)"),
    ({"precision": "int8", "calibration_data": np.zeros((0, 3, 8, 8), np.float32)}, "N >= 1"),
    ({"precision": "fp16", "calibration_data": np.zeros((1, 3, 8, 8), np.float32)}, "only used with"),
    ({"precision": "int8", "calibration_data": np.zeros((1, 3, 8, 8)), "calibration_batch_size": 0},
     "calibration_batch_size"),
])
def test_config_rejects(config, message):
    with pytest.raises(ValueError, match=message):
        TensorRTConfig(**config)


def test_config_accepts_int8_with_an_existing_cache(tmp_path):
    cache = tmp_path / "model.calib"
    cache.write_bytes(b"TRT-1000-EntropyCalibration2\n")
    cfg = TensorRTConfig(precision="int8", calibration_cache=str(cache))
    assert cfg.calibration_cache == cache
    parts = engine_key_parts(ONNX, "10.3.0", GPU, cfg, optimization_profile(CARD, cfg))
    assert parts["calibration"]["cache_sha256"]


def test_profile_spans_the_configured_sizes():
    cfg = TensorRTConfig(max_batch=4, min_size=(120, 160), max_size=(480, 640))
    assert optimization_profile(CARD, cfg) == ((1, 3, 120, 160), (1, 3, 240, 320), (4, 3, 480, 640))
    with pytest.raises(ValueError, match="min_size"):
        optimization_profile(CARD, TensorRTConfig(min_size=(300, 320)))


# ---------------------------------------------------------------- calibration batches

def test_calibration_batches_are_fixed_size_contiguous_float32():
    data = np.arange(10 * 3 * 2 * 2, dtype=np.float64).reshape(10, 3, 2, 2)
    batches = list(calibration_batches(data, 4))
    assert len(batches) == 2  # 10 images: two full batches, the 2 left over are dropped
    for index, batch in enumerate(batches):
        assert batch.dtype == np.float32 and batch.flags.c_contiguous and batch.shape == (4, 3, 2, 2)
        np.testing.assert_array_equal(batch, data[4 * index:4 * index + 4])


def test_fewer_images_than_the_batch_size_make_one_batch():
    data = calibration_images(3)[:, :, :4, :4]  # a strided view
    (batch,) = calibration_batches(data, 8)
    assert batch.shape == (3, 3, 4, 4) and batch.flags.c_contiguous
    np.testing.assert_array_equal(batch, data)


# ---------------------------------------------------------------- availability

@pytest.mark.skipif(tensorrt_unavailable_reason() is None, reason="TensorRT and a GPU are present")
def test_backend_here_names_tensorrt_and_the_gpu(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(ONNX)
    with pytest.raises(BackendUnavailable, match="tensorrt") as info:
        TensorRTBackend(model, CARD)
    assert "GPU" in str(info.value)


def test_config_errors_come_before_the_tensorrt_import(tmp_path):
    with pytest.raises(ValueError, match="needs calibration_data"):
        TensorRTBackend(tmp_path / "m.onnx", CARD, precision="int8")
