"""Inference backends with real parts: a tiny torch conv net, its real ONNX export, real
onnxruntime sessions, a real .pt bundle, and backend selection on this (GPU-less) machine."""
from __future__ import annotations

import logging
import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from mde_ros.inference import (BACKEND_NAMES, Backend, BackendUnavailable, available_backends,
                               create_backend)
from mde_ros.inference.tensorrt_backend import tensorrt_unavailable_reason
from mde_ros.modelfiles import open_backend
from mde_ros.models.card import ModelCard, card_path_for

torch.set_num_threads(1)

HAS_ORT_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()
HAS_TORCH_CUDA = torch.cuda.is_available()
HAS_TENSORRT = tensorrt_unavailable_reason() is None


class TinyDepthNet(nn.Module):
    """Two convolutions and a stride-2 down/up path, so H/W really are dynamic in the graph."""

    def __init__(self, out_channels: int = 1) -> None:
        super().__init__()
        self.encode = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.decode = nn.Conv2d(8, out_channels, 3, padding=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        features = torch.relu(self.encode(image))
        features = nn.functional.interpolate(features, size=image.shape[-2:], mode="bilinear",
                                             align_corners=False)
        return nn.functional.softplus(self.decode(features))


def make_card(**overrides) -> ModelCard:
    fields = dict(name="tiny", architecture="external", input_height=32, input_width=48)
    return ModelCard(**{**fields, **overrides})


def export(model: nn.Module, path, input_name: str = "image", output_name: str = "depth"):
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated; chosen on purpose
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model.eval(), (torch.zeros(1, 3, 32, 48),), str(path), dynamo=False,
                          opset_version=17, input_names=[input_name], output_names=[output_name],
                          dynamic_axes={input_name: axes, output_name: axes})
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    model = TinyDepthNet().eval()
    path = export(model, tmp_path_factory.mktemp("tiny") / "tiny.onnx")
    card = make_card()
    card.save(card_path_for(path))
    return model, path, card


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MDE_ROS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def batch_of(n: int, height: int = 32, width: int = 48, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, height, width), dtype=np.float32)


def torch_output(model: nn.Module, batch: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(batch)).numpy()


# ---------------------------------------------------------------- onnxruntime

def test_onnxruntime_equals_bare_session_and_torch(tiny):
    model, path, card = tiny
    backend = create_backend("onnxruntime", path, card)
    assert isinstance(backend, Backend) and backend.name == "onnxruntime"
    batch = batch_of(1)
    out = backend.infer(batch)
    bare = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = bare.run(None, {"image": batch})[0]
    assert out.dtype == np.float32 and out.shape == (1, 1, 32, 48)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_allclose(out, torch_output(model, batch), atol=1e-5, rtol=0)


@pytest.mark.parametrize("n,height,width", [(3, 32, 48), (2, 64, 40), (1, 17, 23)])
def test_onnxruntime_dynamic_batch_and_size(tiny, n, height, width):
    model, path, card = tiny
    backend = create_backend("onnxruntime", path, card, intra_op_threads=1)
    batch = batch_of(n, height, width, seed=n + height)
    out = backend.infer(batch)
    assert out.shape == (n, 1, height, width)
    np.testing.assert_allclose(out, torch_output(model, batch), atol=1e-5, rtol=0)


def test_onnxruntime_converts_float64_and_strided_input(tiny):
    _, path, card = tiny
    backend = create_backend("onnxruntime", path, card)
    batch = batch_of(2)
    reference = backend.infer(batch)
    np.testing.assert_array_equal(backend.infer(batch.astype(np.float64)), reference)
    wide = np.concatenate([batch, batch], axis=3)[..., ::2]  # non-contiguous view
    np.testing.assert_array_equal(backend.infer(wide), backend.infer(np.ascontiguousarray(wide)))
    with pytest.raises(ValueError, match=r"\(N,3,H,W\)"):
        backend.infer(np.zeros((1, 32, 48, 3), np.float32))


def test_onnxruntime_falls_back_to_the_models_only_io_names(tmp_path, caplog):
    model = TinyDepthNet().eval()
    path = export(model, tmp_path / "named.onnx", input_name="rgb", output_name="out")
    with caplog.at_level(logging.WARNING):
        backend = create_backend("onnxruntime", path, make_card())  # card says image/depth
    assert (backend.input_name, backend.output_name) == ("rgb", "out")
    assert "'image'" in caplog.text and "'rgb'" in caplog.text
    batch = batch_of(1)
    np.testing.assert_allclose(backend.infer(batch), torch_output(model, batch), atol=1e-5, rtol=0)


def test_onnxruntime_rejects_a_model_that_is_not_one_depth_channel(tmp_path):
    path = export(TinyDepthNet(out_channels=2), tmp_path / "two.onnx")
    with pytest.raises(ValueError, match=r"expected float32 \(N,1,H,W\)"):
        create_backend("onnxruntime", path, make_card())


def test_onnxruntime_describe_and_options(tiny):
    _, path, card = tiny
    info = create_backend("onnxruntime", path, card).describe()
    assert info["backend"] == "onnxruntime" and info["device"] == "cpu"
    assert info["precision"] == "fp32" and info["providers"] == ["CPUExecutionProvider"]
    with pytest.raises(ValueError, match="intra_op_threads"):
        create_backend("onnxruntime", path, card, intra_op_threads=-1)
    with pytest.raises(ValueError, match="int8.*mde-ros quantize"):  # no Q/DQ model beside it
        open_backend("onnxruntime", path, card, precision="int8")
    with pytest.raises(ValueError, match="int8 model .* is made above inference.*mde_ros.modelfiles"):
        create_backend("onnxruntime", path, card, precision="int8")  # the factory builds no model files
    with pytest.raises(ValueError, match=r"accepts \['intra_op_threads', 'spin_wait', 'trt_provider', 'max_batch'"):
        create_backend("onnxruntime", path, card, workspace_bytes=1 << 20)
    # the pool threads sleep between runs unless asked to spin (onnxruntime's own default)
    assert info["spin_wait"] is False
    for spin_wait, entry in ((False, "0"), (True, "1")):
        backend = create_backend("onnxruntime", path, card, intra_op_threads=2, spin_wait=spin_wait)
        assert backend._options.get_session_config_entry("session.intra_op.allow_spinning") == entry


@pytest.mark.skipif(HAS_ORT_CUDA, reason="this onnxruntime has the CUDA provider")
def test_onnxruntime_cuda_without_the_gpu_package_says_what_to_install(tiny):
    _, path, card = tiny
    with pytest.raises(BackendUnavailable, match="CUDAExecutionProvider") as info:
        create_backend("onnxruntime", path, card, device="cuda")
    assert "onnxruntime-gpu" in str(info.value)
    with pytest.raises(BackendUnavailable, match="TensorrtExecutionProvider"):
        create_backend("onnxruntime", path, card, device="cuda", trt_provider=True)


# ---------------------------------------------------------------- torch (.pt bundle)

@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from mde_ros.models.bundle import save_bundle
    from mde_ros.models.registry import build_model

    torch.manual_seed(0)
    card = ModelCard(name="plain-small", architecture="unet_plain",
                     arch_kwargs={"base_channels": 4, "depth": 2}, input_height=32, input_width=48)
    model = build_model(card.architecture, **card.arch_kwargs).eval()
    path = save_bundle(tmp_path_factory.mktemp("bundle") / "plain.pt", model, card)
    return model, path, card


def test_torch_backend_runs_the_bundle(bundle):
    model, path, card = bundle
    backend = create_backend("torch", path, card)
    assert backend.describe()["device"] == "cpu"
    batch = batch_of(2, 40, 56)
    out = backend.infer(batch)
    assert out.shape == (2, 1, 40, 56) and out.dtype == np.float32
    np.testing.assert_allclose(out, torch_output(model, batch), atol=1e-6, rtol=0)


def test_torch_backend_refuses_onnx_and_cpu_fp16(bundle, tiny):
    _, onnx_path, onnx_card = tiny
    with pytest.raises(BackendUnavailable, match=r"\.pt bundle"):
        create_backend("torch", onnx_path, onnx_card)
    _, path, card = bundle
    with pytest.raises(ValueError, match="fp16.*cuda"):
        create_backend("torch", path, card, precision="fp16")


@pytest.mark.skipif(HAS_TORCH_CUDA, reason="a CUDA GPU is present")
def test_torch_backend_on_cuda_without_a_gpu(bundle):
    _, path, card = bundle
    with pytest.raises(BackendUnavailable, match="CUDA GPU"):
        create_backend("torch", path, card, device="cuda")


def test_onnxruntime_exports_a_bundle_once_into_the_cache(bundle, cache):
    model, path, card = bundle
    backend = open_backend("onnxruntime", path, card)
    exported = sorted((cache / "onnx").glob("*.onnx"))
    assert exported == [backend.model_path]
    batch = batch_of(1)
    np.testing.assert_allclose(backend.infer(batch), torch_output(model, batch), atol=1e-5, rtol=0)
    stamp = exported[0].stat().st_mtime_ns
    again = open_backend("onnxruntime", path, card)
    assert again.model_path == exported[0] and exported[0].stat().st_mtime_ns == stamp


# ---------------------------------------------------------------- selection

def test_unknown_backend_lists_the_names(tiny):
    _, path, card = tiny
    with pytest.raises(ValueError) as info:
        create_backend("openvino", path, card)
    assert all(name in str(info.value) for name in BACKEND_NAMES)


def test_bad_device_and_missing_file(tiny, tmp_path):
    _, path, card = tiny
    with pytest.raises(ValueError, match="'cpu', 'cuda'"):
        create_backend("onnxruntime", path, card, device="gpu")
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        create_backend("auto", tmp_path / "missing.onnx", card)


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT and a GPU are present")
def test_tensorrt_here_is_unavailable_and_says_why(tiny):
    _, path, card = tiny
    with pytest.raises(BackendUnavailable, match="tensorrt") as info:
        create_backend("tensorrt", path, card, device="cuda")
    assert "pip install tensorrt" in str(info.value) or "GPU" in str(info.value)


def test_auto_picks_onnxruntime_for_onnx_and_torch_for_a_bundle(tiny, bundle):
    _, path, card = tiny
    assert create_backend("auto", path, card).name == "onnxruntime"
    _, pt_path, pt_card = bundle
    assert create_backend("auto", pt_path, pt_card).name == "torch"
    with pytest.raises(ValueError, match="no backend takes"):
        create_backend("auto", path, card, colour="blue")


@pytest.mark.skipif(HAS_TENSORRT or HAS_ORT_CUDA, reason="a GPU backend is present")
def test_auto_on_cuda_falls_back_to_cpu_and_says_why(tiny, caplog):
    _, path, card = tiny
    with caplog.at_level(logging.WARNING):
        backend = create_backend("auto", path, card, device="cuda", max_batch=2)
    assert backend.name == "onnxruntime" and backend.describe()["device"] == "cpu"
    assert "tensorrt" in caplog.text and "CUDAExecutionProvider" in caplog.text


def test_available_backends_reports_each_backend():
    status = available_backends()
    assert set(status) == {"torch", "onnxruntime", "tensorrt"}
    assert status["onnxruntime"] is None and status["torch"] is None
    if not HAS_TENSORRT:
        assert "tensorrt" in status["tensorrt"]


def test_first_use_makes_once_and_a_failure_falls_back_to_none():
    """Backends start their fused pipeline with FirstUse: made once under concurrent calls; a start that
    fails reports its error to the first caller and leaves later frames on the numpy path (None)."""
    import threading

    from mde_ros.inference.base import FirstUse

    made = []
    lazy = FirstUse(lambda: made.append(1) or "pipeline")
    threads = [threading.Thread(target=lazy.get) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert lazy.get() == "pipeline" and made == [1]

    def broken():
        raise RuntimeError("engine build failed")
    failing = FirstUse(broken)
    with pytest.raises(RuntimeError, match="engine build failed"):
        failing.get()
    assert failing.get() is None and failing.value is None
