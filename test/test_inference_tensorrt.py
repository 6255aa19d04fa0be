"""TensorRT backend without a GPU: version gate, typing decisions, DLA validation, profile shapes,
engine cache key and paths (pure), and the build / load / infer path against the TensorRT API
stand-in of 10.3, 10.16 and 11.1 (test/trt_standin.py: NOT TensorRT, never verification; on a
machine with TensorRT, tools/trt_check.py runs the real thing)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from mde_ros.inference import BackendUnavailable, create_backend
from mde_ros.inference.tensorrt_backend import (TensorRTBackend, attach_timing_cache, save_build,
                                                tensorrt_unavailable_reason)
from mde_ros.inference.tensorrt_build import (GpuInfo, ProfileShapes, TensorRTConfig, TrtFeatures, engine_cache_key,
                                              engine_key_parts, engine_paths, network_creation_flags,
                                              optimization_profile, parse_version, plan_build, sanitize,
                                              version_problem)
from mde_ros.modelfiles import open_backend
from mde_ros.models.card import ModelCard
from trt_standin import CudaRuntimeStandIn, TensorRTStandIn, engine_files, install

CARD = ModelCard(name="tiny", architecture="external", input_height=240, input_width=320)
SHA = "ab" * 32
ORIN16 = GpuInfo("Orin", (8, 7), 16, 64 << 30, 12060, 12080)
VERSIONS = ("10.3.0", "10.16.0", "11.1.0")


def features(version: str) -> TrtFeatures:
    return TrtFeatures.probe(TensorRTStandIn(version))


def key_for(sha=SHA, version="10.3.0", gpu=ORIN16, card=CARD, **config) -> str:
    cfg = TensorRTConfig(**config)
    plan = plan_build(features(version), cfg.precision, cfg.typing, cfg.dla_core)
    return engine_cache_key(engine_key_parts(sha, version, gpu, cfg, plan, optimization_profile(card, cfg)))


# ---------------------------------------------------------------- version gate

@pytest.mark.parametrize("text,parsed", [("10.3.0", (10, 3, 0)), ("10.3.0.post1", (10, 3, 0)),
                                         ("11.1", (11, 1)), ("8.6.2.3", (8, 6, 2, 3)), ("dev", ())])
def test_parse_version(text, parsed):
    assert parse_version(text) == parsed


def test_version_gate_refuses_tensorrt_8_with_the_jetpack_hint():
    problem = version_problem("8.6.2")
    assert "too old" in problem and ">= 10.0" in problem and "JetPack 6.1" in problem
    assert version_problem("10.0.1") is None and version_problem("11.1.0") is None
    assert "cannot read" in version_problem("")


def test_tensorrt_8_stand_in_is_refused_as_unavailable(monkeypatch, tmp_path):
    """TensorRT API stand-in (8.6, JetPack 6.0): BackendUnavailable, so `auto` falls back."""
    install(monkeypatch, TensorRTStandIn("8.6.1"), CudaRuntimeStandIn())
    assert "8.6.1 is too old" in tensorrt_unavailable_reason()
    model = tiny_model(tmp_path)
    with pytest.raises(BackendUnavailable, match="too old"):
        TensorRTBackend(model, CARD)
    backend = create_backend("auto", model, tiny_card(), device="cuda")
    assert backend.name == "onnxruntime"


# ---------------------------------------------------------------- feature probe and typing plan

def test_feature_probe_of_each_version_stand_in():
    """TensorRT API stand-ins of 10.3 / 10.16 / 11.1: what the probe finds."""
    assert features("10.3.0") == TrtFeatures("10.3.0", True, False, True, True, True)
    assert features("10.16.0") == TrtFeatures("10.16.0", True, False, True, True, True)
    assert features("11.1.0") == TrtFeatures("11.1.0", True, True, False, False, True)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_gpu_builds_are_strongly_typed_with_precision_from_the_onnx(version, precision):
    plan = plan_build(features(version), precision)
    assert plan.strongly_typed and plan.model_variant == precision and plan.builder_flags == ()
    trt = TensorRTStandIn(version)
    assert network_creation_flags(trt, plan) == 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


@pytest.mark.parametrize("version", ["10.3.0", "10.16.0"])
def test_dla_on_10x_takes_the_documented_builder_flag_path(version):
    fp16 = plan_build(features(version), "fp16", dla_core=0)
    assert not fp16.strongly_typed and fp16.model_variant == "fp32"
    assert fp16.builder_flags == ("FP16", "GPU_FALLBACK")
    int8 = plan_build(features(version), "int8", dla_core=1)
    assert int8.model_variant == "int8" and int8.builder_flags == ("INT8", "FP16", "GPU_FALLBACK")
    assert any("fall back to the GPU" in note for note in int8.notes)
    assert network_creation_flags(TensorRTStandIn(version), fp16) == 0


def test_dla_on_11x_is_strongly_typed_with_gpu_fallback():
    plan = plan_build(features("11.1.0"), "fp16", dla_core=0)
    assert plan.strongly_typed and plan.model_variant == "fp16" and plan.builder_flags == ("GPU_FALLBACK",)


def test_weak_typing_is_refused_where_the_flags_are_gone():
    with pytest.raises(BackendUnavailable, match="removed in TensorRT 11"):
        plan_build(features("11.1.0"), "fp16", typing="weak")
    weak = plan_build(features("10.16.0"), "fp16", typing="weak")
    assert weak.builder_flags == ("FP16",) and not weak.strongly_typed
    assert plan_build(features("11.1.0"), "fp32", typing="strong").strongly_typed
    with pytest.raises(ValueError, match="typing"):
        plan_build(features("10.3.0"), "fp16", typing="loose")


# ---------------------------------------------------------------- config and DLA validation

@pytest.mark.parametrize("config,message", [
    ({"precision": "int4"}, "precision must be one of"),
    ({"workspace_bytes": 0}, "workspace_bytes must be a positive int"),
    ({"dla_core": -1}, "dla_core must be an int >= 0"),
    ({"dla_core": 0}, "DLA runs fp16 or int8"),
    ({"dla_core": 0, "precision": "fp16", "max_batch": 2}, "static input shape: max_batch"),
    ({"dla_core": 0, "precision": "fp16", "min_size": (120, 160)}, "static input shape"),
    ({"max_batch": 0}, "max_batch must be an int >= 1"),
    ({"max_batch": True}, "max_batch must be an int >= 1"),
    ({"min_size": (0, 10)}, "min_size must be"),
    ({"max_size": (480,)}, "max_size must be"),
    ({"typing": "loose"}, "typing must be one of"),
])
def test_config_rejects(config, message):
    with pytest.raises(ValueError, match=message):
        TensorRTConfig(**config)


def test_profile_spans_the_configured_sizes_and_is_static_on_dla():
    cfg = TensorRTConfig(max_batch=4, min_size=(120, 160), max_size=(480, 640))
    profile = optimization_profile(CARD, cfg)
    assert profile == ((1, 3, 120, 160), (1, 3, 240, 320), (4, 3, 480, 640)) and not profile.is_static
    assert profile.contains((2, 3, 200, 300)) and not profile.contains((5, 3, 240, 320))
    with pytest.raises(ValueError, match="min_size"):
        optimization_profile(CARD, TensorRTConfig(min_size=(300, 320)))
    dla = optimization_profile(CARD, TensorRTConfig(precision="fp16", dla_core=0))
    assert dla.is_static and dla.opt == (1, 3, 240, 320)
    assert optimization_profile(CARD, TensorRTConfig(precision="int8", dla_core=1, min_size=(256, 320),
                                                     max_size=(256, 320))).max == (1, 3, 256, 320)


def test_profile_as_onnxruntime_tensorrt_provider_options():
    profile = optimization_profile(CARD, TensorRTConfig(max_batch=2, max_size=(480, 640)))
    assert profile.trt_ep_options("image") == {"trt_profile_min_shapes": "image:1x3x240x320",
                                               "trt_profile_opt_shapes": "image:1x3x240x320",
                                               "trt_profile_max_shapes": "image:2x3x480x640"}


# ---------------------------------------------------------------- cache key and paths

def test_key_is_stable_and_readable():
    assert key_for() == key_for()
    key = key_for(precision="fp16", dla_core=0)
    assert key.startswith(f"{SHA[:16]}-orin-sm87-16sm-trt10.3.0-fp16-dla0-")
    assert Path(key).name == key and " " not in key


@pytest.mark.parametrize("change", [
    {"sha": "cd" * 32},                                              # the ONNX actually built
    {"version": "10.16.0"},
    {"gpu": GpuInfo("Orin", (8, 7), 8, 64 << 30, 12060, 12080)},    # Orin NX: fewer SMs, same name
    {"gpu": GpuInfo("Orin", (8, 7), 16, 32 << 30, 12060, 12080)},   # same SMs, other memory
    {"gpu": GpuInfo("Orin", (8, 7), 16, 64 << 30, 12020, 12080)},   # CUDA runtime
    {"gpu": GpuInfo("Orin", (8, 7), 16, 64 << 30, 12060, 12020)},   # driver
    {"gpu": GpuInfo("NVIDIA GeForce RTX 4090", (8, 9), 128, 24 << 30, 12060, 12080)},
    {"precision": "fp16"},
    {"precision": "fp16", "dla_core": 1},
    {"precision": "fp16", "typing": "weak"},
    {"workspace_bytes": 1 << 28},
    {"max_batch": 4},
    {"max_size": (480, 640)},
    {"card": ModelCard(name="tiny", architecture="external", input_height=256, input_width=320)},
])
def test_any_change_gives_a_new_key(change):
    assert key_for(**change) != key_for()


def test_key_parts_are_the_json_sidecar():
    cfg = TensorRTConfig(precision="fp16", max_batch=2)
    plan = plan_build(features("11.1.0"), "fp16")
    parts = engine_key_parts(SHA, "11.1.0", ORIN16, cfg, plan, optimization_profile(CARD, cfg))
    assert json.loads(json.dumps(parts)) == parts
    assert parts["gpu"] == {"name": "Orin", "compute_capability": "8.7", "sm_count": 16,
                            "total_memory": 64 << 30, "cuda_runtime": 12060, "driver": 12080}
    assert parts["profile"] == {"min": [1, 3, 240, 320], "opt": [1, 3, 240, 320], "max": [2, 3, 240, 320]}
    assert parts["strongly_typed"] and parts["model_variant"] == "fp16" and parts["builder_flags"] == []


def test_paths_live_under_mde_ros_cache_and_timing_caches_are_per_version_and_gpu(monkeypatch, tmp_path):
    monkeypatch.setenv("MDE_ROS_CACHE", str(tmp_path / "c"))
    paths = engine_paths("abc", "10.3.0", ORIN16)
    assert paths.engine == tmp_path / "c" / "tensorrt" / "abc.engine"
    assert paths.sidecar == tmp_path / "c" / "tensorrt" / "abc.json"
    assert paths.timing_cache.name == "timing-trt10.3.0-orin-sm87-16sm.cache"
    other = GpuInfo("Orin", (8, 7), 8, 16 << 30, 12060, 12080)
    assert engine_paths("abc", "10.3.0", other).timing_cache != paths.timing_cache


def test_sanitize():
    assert sanitize("NVIDIA GeForce RTX 4090") == "nvidia-geforce-rtx-4090"
    assert sanitize("10.3.0.post1") == "10.3.0.post1"
    assert sanitize("***") == "unknown"


# ---------------------------------------------------------------- timing cache and save order

def test_a_timing_cache_that_does_not_fit_is_replaced_not_fatal(tmp_path, caplog):
    """TensorRT API stand-in: a cache from another device (refused) and a damaged one (raises)."""
    trt = TensorRTStandIn("10.16.0", timing_device="orin-sm87")
    config = trt.Builder(None).create_builder_config()
    path = tmp_path / "timing.cache"
    path.write_bytes(json.dumps({"device": "rtx-4090", "entries": 7}).encode())
    with caplog.at_level(logging.WARNING):
        cache = attach_timing_cache(config, path)
    assert cache is not None and cache.device == "orin-sm87" and cache.entries == 0
    assert "does not fit" in caplog.text
    path.write_bytes(b"\x00garbage")
    assert attach_timing_cache(config, path).device == "orin-sm87"
    path.write_bytes(json.dumps({"device": "orin-sm87", "entries": 3}).encode())
    assert attach_timing_cache(config, path).entries == 3  # a fitting one is used


def test_the_engine_is_written_before_anything_that_can_fail(tmp_path, caplog):
    class BrokenCache:
        def serialize(self):
            raise RuntimeError("stand-in: serialize failed")

    class Config:
        def get_timing_cache(self):
            return BrokenCache()

    paths = engine_paths("k", "10.3.0", ORIN16, root=tmp_path)
    with caplog.at_level(logging.WARNING):
        save_build(b"engine bytes", Config(), paths, {"k": 1})
    assert paths.engine.read_bytes() == b"engine bytes"
    assert json.loads(paths.sidecar.read_text()) == {"k": 1}
    assert not paths.timing_cache.exists() and "timing cache was not" in caplog.text


# ---------------------------------------------------------------- backend against the stand-ins

def tiny_card() -> ModelCard:
    return ModelCard.load(tiny_model.path.with_name("tiny.card.json"))


def tiny_model(tmp_path: Path) -> Path:
    from mde_ros.bags.fixtures import export_test_model

    path = export_test_model(tmp_path / "tiny.onnx")
    tiny_model.path = path
    return path


@pytest.fixture
def model(tmp_path, monkeypatch):
    monkeypatch.setenv("MDE_ROS_CACHE", str(tmp_path / "cache"))
    return tiny_model(tmp_path)


def batch(card: ModelCard, n: int = 1) -> np.ndarray:
    return np.random.default_rng(1).standard_normal((n, 3, card.input_height, card.input_width)).astype(np.float32)


@pytest.mark.parametrize("version", VERSIONS)
def test_build_load_and_infer_against_each_version_stand_in(version, model, tmp_path, monkeypatch):
    """TensorRT API stand-in + CUDA runtime stand-in (not verification): the engine is built once,
    strongly typed without precision flags, cached, loaded, and every output is bound and copied
    through pinned buffers."""
    import onnxruntime as ort

    trt, cudart = TensorRTStandIn(version), CudaRuntimeStandIn()
    install(monkeypatch, trt, cudart)
    card = tiny_card()
    backend = open_backend("tensorrt", model, card, device="cuda", precision="fp16", max_batch=2)
    (built,) = trt.built
    assert built["strongly_typed"] and built["flags"] == [] and built["onnx"].endswith(".fp16.onnx")
    assert built["profiles"][0]["image"] == ((1, 3, 48, 64), (1, 3, 48, 64), (2, 3, 48, 64))
    (engine,) = engine_files(tmp_path / "cache")
    sidecar = json.loads(engine.with_suffix(".json").read_text())
    assert sidecar["gpu"]["sm_count"] == 16 and sidecar["tensorrt"] == version
    assert list((tmp_path / "cache" / "tensorrt").glob("timing-*.cache"))

    images = batch(card, 2)
    expected = ort.InferenceSession(str(backend.onnx_path)).run(None, {"image": images})[0]
    out = backend.infer(images)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)
    assert out.dtype == np.float32 and out.shape == (2, 1, 48, 64)
    assert backend.infer(images[:1]).shape == (1, 1, 48, 64)
    assert {kind for kind, _, _ in cudart.copies} == {"cudaMemcpyHostToDevice", "cudaMemcpyDeviceToHost"}
    allocations = len(cudart.allocations)
    backend.infer(images)
    assert len(cudart.allocations) == allocations  # nothing allocated per frame
    with pytest.raises(ValueError, match="outside the engine's profile"):
        backend.infer(batch(card, 3))
    info = backend.describe()
    assert info["strongly_typed"] and info["gpu"]["compute_capability"] == "8.7"

    open_backend("tensorrt", model, card, device="cuda", precision="fp16", max_batch=2)  # second start: cached
    assert len(trt.built) == 1


def test_dla_core_is_set_on_the_runtime_before_deserialising(model, monkeypatch):
    """TensorRT API stand-in of a Jetson with 2 DLA cores (10.3, JetPack 6.1)."""
    trt = TensorRTStandIn("10.3.0", dla_cores=2)
    install(monkeypatch, trt, CudaRuntimeStandIn())
    backend = open_backend("tensorrt", model, tiny_card(), device="cuda", precision="fp16", dla_core=1)
    (built,) = trt.built
    assert built["dla_core"] == 1 and built["flags"] == ["FP16", "GPU_FALLBACK"] and not built["strongly_typed"]
    assert trt.runtimes[-1].dla_core_at_deserialize == 1
    assert backend.describe()["dla_gpu_fallback"] is True
    with pytest.raises(BackendUnavailable, match="sees 2 DLA core"):
        open_backend("tensorrt", model, tiny_card(), device="cuda", precision="fp16", dla_core=3)


def test_dla_without_dla_hardware_is_unavailable(model, monkeypatch):
    install(monkeypatch, TensorRTStandIn("11.1.0", dla_cores=0), CudaRuntimeStandIn(name="NVIDIA RTX A2000"))
    with pytest.raises(BackendUnavailable, match="0 DLA core"):
        open_backend("tensorrt", model, tiny_card(), device="cuda", precision="fp16", dla_core=0)


def test_an_api_difference_is_backend_unavailable_not_an_attribute_error(model, monkeypatch):
    """A TensorRT API stand-in missing MemoryPoolType (an API change): `auto` must fall back."""
    trt = TensorRTStandIn("11.1.0")
    del trt.MemoryPoolType
    install(monkeypatch, trt, CudaRuntimeStandIn())
    with pytest.raises(BackendUnavailable, match="API difference.*MemoryPoolType"):
        TensorRTBackend(model, tiny_card(), "cuda")
    assert create_backend("auto", model, tiny_card(), device="cuda").name == "onnxruntime"


def test_no_cuda_driver_is_unavailable(model, monkeypatch):
    install(monkeypatch, TensorRTStandIn("10.16.0"), CudaRuntimeStandIn(driver_ok=False))
    assert "cudaErrorInsufficientDriver" in tensorrt_unavailable_reason()
    with pytest.raises(BackendUnavailable, match="GPU and driver"):
        TensorRTBackend(model, tiny_card(), "cuda")


def test_int8_uses_the_qdq_model_and_says_how_to_make_one(model, monkeypatch):
    install(monkeypatch, TensorRTStandIn("11.1.0"), CudaRuntimeStandIn())
    with pytest.raises(ValueError, match="mde-ros quantize .*--target tensorrt"):
        open_backend("tensorrt", model, tiny_card(), device="cuda", precision="int8")


# ---------------------------------------------------------------- this machine

@pytest.mark.skipif(tensorrt_unavailable_reason() is None, reason="TensorRT and a GPU are present")
def test_backend_here_names_what_is_missing(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"not used")
    with pytest.raises(BackendUnavailable, match="tensorrt") as info:
        TensorRTBackend(model, CARD)
    assert "pip install tensorrt" in str(info.value) or "GPU" in str(info.value)


def test_config_errors_come_before_the_tensorrt_import(tmp_path):
    with pytest.raises(ValueError, match="DLA runs fp16 or int8"):
        TensorRTBackend(tmp_path / "m.onnx", CARD, dla_core=0)
    with pytest.raises(ValueError, match="device 'cuda'"):
        TensorRTBackend(tmp_path / "m.onnx", CARD, device="cpu")


def test_bench_times_tensorrt_on_cuda_when_it_is_present(model, monkeypatch, capsys):
    """TensorRT API stand-in (10.16) + CUDA runtime stand-in: `mde-ros bench` creates the tensorrt
    backend on cuda (not on the cpu) and prints its rows; no backend failure ends the bench."""
    import argparse

    from mde_ros.commands import bench

    install(monkeypatch, TensorRTStandIn("10.16.0"), CudaRuntimeStandIn())
    runs = bench.backend_runs()
    assert ("tensorrt", "cuda", "fp32") in runs and ("tensorrt", "cuda", "fp16") in runs
    assert ("onnxruntime", "cpu", "fp32") in runs
    args = argparse.Namespace(iters=2, warmup=0, threads=1, model=None, _default_network=(model, model))
    bench.bench_backends(args)
    rows = {line[:26].strip(): line[26:] for line in capsys.readouterr().out.splitlines()
            if line.startswith(("tensorrt", "onnxruntime", "torch"))}
    for label in ("tensorrt cuda fp32", "tensorrt cuda fp16", "onnxruntime cpu fp32"):
        assert len(rows[label].split()) == 4, (label, rows[label])  # pre, network, post, total


# ---------------------------------------------------------------- fused model (inference/fused.py) as an engine

def test_fused_engine_key_and_build_problems():
    """Pure: a fused engine's key names its camera and differs per size / policy from the plain one's;
    strongly typed fp16 / int8 and DLA builds keep the numpy path."""
    from mde_ros.inference.tensorrt_build import fused_build_problem, fused_profile_shapes

    cfg = TensorRTConfig()
    plan = plan_build(features("10.3.0"), "fp32")
    shapes = fused_profile_shapes(120, 160)
    assert shapes == {"image": ((1, 120, 160, 3),) * 3, "rescale": ((1,),) * 3}

    def key(height, width, policy):
        parts = engine_key_parts(SHA, "10.3.0", ORIN16, cfg, plan, ProfileShapes(*fused_profile_shapes(
            height, width)["image"]), fused_shapes=fused_profile_shapes(height, width),
            fused={"height": height, "width": width, "policy": policy})
        assert parts["fused"]["inputs"]["rescale"] == [[1], [1], [1]]
        return engine_cache_key(parts)

    assert "-fused160x120-stretch-" in key(120, 160, "stretch")
    assert len({key(120, 160, "stretch"), key(120, 160, "letterbox"), key(240, 320, "stretch"), key_for()}) == 4
    assert fused_build_problem(plan) is None
    assert fused_build_problem(plan_build(features("10.3.0"), "fp16", "weak")) is None  # FP16 flag, fp32 ONNX
    assert "fp16" in fused_build_problem(plan_build(features("11.1.0"), "fp16"))
    assert "int8" in fused_build_problem(plan_build(features("10.16.0"), "int8"))
    assert "DLA" in fused_build_problem(plan_build(TrtFeatures.probe(TensorRTStandIn("10.3.0", dla_cores=2)),
                                                   "fp16", dla_core=0))


def model_builds(trt, root):
    """The stand-in's builds of the model's own engines (plain, fused), not of the output graphs that
    inference.trt_outputs writes into the engine cache."""
    return [b for b in trt.built if not b["onnx"].startswith(str(root / "cache"))]


@pytest.mark.parametrize("version", VERSIONS)
def test_fused_engine_runs_device_pipeline_frames_against_each_version_stand_in(version, fused_onnx_model, tmp_path,
                                                                                monkeypatch):
    """TensorRT API stand-in + CUDA runtime stand-in (NOT TensorRT, never verification; the stand-in's
    "engine" is onnxruntime on the fused ONNX): the fused engine is built once with static uint8 image and
    float32 rescale shapes from the fused metadata, cached beside the plain engine under its own key, and
    frames of its camera size go through it (one upload of each input, one enqueue, one download); other
    sizes take the numpy path, identical to device_pipeline off."""
    from mde_ros.pipeline.estimator import DepthEstimator, EstimatorConfig
    from mde_ros.synthetic import render_frame

    card, plain = fused_onnx_model
    trt, cudart = TensorRTStandIn(version), CudaRuntimeStandIn()
    install(monkeypatch, trt, cudart)
    backend = TensorRTBackend(plain, card, "cuda", "fp32")
    fast = DepthEstimator(backend, card, EstimatorConfig(device_pipeline=True))
    off = DepthEstimator(backend, card)
    reference = DepthEstimator(create_backend("onnxruntime", plain, card), card)
    frame = render_frame(1, 160, 120)
    assert len(trt.built) == 1
    copies = len(cudart.copies)
    got = fast.estimate(frame.rgb, frame.intrinsics)
    built = model_builds(trt, tmp_path)  # the output engines' builds (trt_outputs) are test_trt_outputs'
    assert len(built) == 2 and built[1]["onnx"].endswith("m.fused.onnx")
    assert built[1]["profiles"][0] == {"image": ((1, 120, 160, 3),) * 3, "rescale": ((1,),) * 3}
    assert built[1]["strongly_typed"] and built[1]["flags"] == []
    assert [kind for kind, _, _ in cudart.copies[copies:copies + 3]] == ["cudaMemcpyHostToDevice"] * 2 + \
        ["cudaMemcpyDeviceToHost"]
    want = reference.estimate(frame.rgb, frame.intrinsics)
    assert got.rescale == want.rescale != 1.0 and got.depth.shape == (120, 160) and got.depth.dtype == np.float32
    assert set(got.timings) == {"preprocess", "network", "postprocess"}
    np.testing.assert_array_equal(np.isnan(got.depth), np.isnan(want.depth))
    np.testing.assert_allclose(got.depth, want.depth, rtol=2e-4, atol=1e-4)  # as test_gpu_fast_path's ORT bound
    engines = [e for e in engine_files(tmp_path / "cache") if not e.with_suffix(".onnx").exists()]
    assert len(engines) == 2 and sum("-fused160x120-stretch-" in e.name for e in engines) == 1
    assert backend.describe()["fused"]["width"] == 160

    other = render_frame(2, 200, 150)
    np.testing.assert_array_equal(fast.estimate(other.rgb, other.intrinsics).depth,
                                  off.estimate(other.rgb, other.intrinsics).depth)
    again = TensorRTBackend(plain, card, "cuda", "fp32")  # both engines come from the cache
    assert again.fused_pipeline() is not None and len(model_builds(trt, tmp_path)) == 2
    again.close()
    backend.close()


def test_fused_engine_is_not_used_for_strongly_typed_fp16_or_without_a_fused_model(fused_onnx_model, tmp_path,
                                                                                   monkeypatch):
    """TensorRT API stand-in (not verification): a strongly typed fp16 build keeps the numpy path (the
    fused model is fp32); weak typing (10.x) builds it with the FP16 flag; no fused model, no pipeline."""
    import shutil

    card, plain = fused_onnx_model
    trt = TensorRTStandIn("10.16.0")
    install(monkeypatch, trt, CudaRuntimeStandIn())
    assert open_backend("tensorrt", plain, card, device="cuda", precision="fp16").fused_pipeline() is None
    weak = open_backend("tensorrt", plain, card, device="cuda", precision="fp16", typing="weak")
    assert weak.fused_pipeline() is not None and trt.built[-1]["flags"] == ["FP16"]
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copyfile(plain, bare / "m.onnx")
    assert TensorRTBackend(bare / "m.onnx", card, "cuda", "fp32").fused_pipeline() is None
