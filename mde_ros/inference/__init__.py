"""Inference backends behind one interface: create_backend(name, model, card, device=..., ...).

Backend modules import their heavy dependency (torch, onnxruntime, tensorrt) only when chosen,
so an onnxruntime-only install never needs torch.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
from pathlib import Path

from mde_ros.inference.base import Backend, BackendUnavailable, parse_device
from mde_ros.inference.cache import require_model_file
from mde_ros.models.card import ModelCard

__all__ = ["Backend", "BackendUnavailable", "BACKEND_NAMES", "available_backends", "create_backend"]

log = logging.getLogger(__name__)

BACKEND_NAMES = ("auto", "torch", "onnxruntime", "tensorrt")


# Concrete backend -> its class in mde_ros.inference.<name>_backend (imported only when used).
_CLASS_NAMES = {"torch": "TorchBackend", "onnxruntime": "OnnxRuntimeBackend", "tensorrt": "TensorRTBackend"}


def _module_of(name: str):
    return importlib.import_module(f"mde_ros.inference.{name}_backend")


def _options_of(name: str) -> tuple[str, ...]:
    return _module_of(name).OPTIONS


def _create(name: str, model_path: Path, card: ModelCard, device: str, precision: str,
            options: dict) -> Backend:
    module = _module_of(name)
    unknown = sorted(set(options) - set(module.OPTIONS))
    if unknown:
        raise ValueError(f"backend {name!r} takes no option(s) {unknown}; it accepts {list(module.OPTIONS)}")
    return getattr(module, _CLASS_NAMES[name])(model_path, card, device, precision, **options)


def _runs_precision(name: str, device: str, precision: str, options: dict) -> bool:
    on_gpu = parse_device(device)[0] == "cuda"
    if precision == "bf16":  # only torch's CUDA path runs bf16
        return name == "torch" and on_gpu
    if name == "tensorrt" or precision == "fp32":
        return True
    if name == "torch":
        return precision == "fp16" and on_gpu
    # onnxruntime: fp16 = the fp16 model on a GPU; int8 = the Q/DQ model on the CPU or the TensorRT provider.
    if precision == "fp16":
        return on_gpu
    return not on_gpu or bool(options.get("trt_provider"))


def _auto(model_path: Path, card: ModelCard, device: str, precision: str, options: dict) -> Backend:
    """TensorRT on a GPU when usable, else onnxruntime (CUDA if present, else CPU); a .pt bundle
    runs on torch (on the GPU if present, else CPU), since no ONNX file was given."""
    unknown = sorted(set(options) - {o for n in _CLASS_NAMES for o in _options_of(n)})
    if unknown:
        raise ValueError(f"no backend takes option(s) {unknown}")
    on_gpu = parse_device(device)[0] == "cuda"
    if model_path.suffix == ".pt":
        candidates = [("torch", device)] + ([("torch", "cpu")] if on_gpu else [])
    else:
        candidates = ([("tensorrt", device)] if on_gpu else []) + [("onnxruntime", device)]
        candidates += [("onnxruntime", "cpu")] if on_gpu else []
    reasons = []
    for name, candidate_device in candidates:
        accepted = {k: v for k, v in options.items() if k in _options_of(name)}
        if name == "onnxruntime":
            if candidate_device == "cpu":
                accepted.pop("trt_provider", None)
            if not accepted.get("trt_provider"):  # engine shapes meant for TensorRT: not for CPU/CUDA
                for option in _module_of("onnxruntime").TRT_EP_OPTIONS:
                    accepted.pop(option, None)
        if not _runs_precision(name, candidate_device, precision, accepted):
            reasons.append(f"{name} on {candidate_device} does not run {precision}")
            continue
        try:
            backend = _create(name, model_path, card, candidate_device, precision, accepted)
        except BackendUnavailable as exc:
            reasons.append(f"{name} on {candidate_device}: {exc}")
            continue
        if reasons:
            log.warning("backend 'auto' chose %s on %s because %s", name, candidate_device,
                        "; ".join(reasons))
        return backend
    raise BackendUnavailable("backend 'auto' found no usable backend: " + " | ".join(reasons))


def create_backend(name: str, model_path: str | Path, card: ModelCard, *, device: str = "cpu",
                   precision: str = "fp32", **options) -> Backend:
    """A ready backend for `model_path` (.onnx, or a .pt bundle).

    name: "auto" | "torch" | "onnxruntime" | "tensorrt". Raises ValueError for bad arguments,
    BackendUnavailable when the backend cannot run here (message says what to install).
    Options (mde_ros.inference.options lists them with their ROS parameter and CLI names):
    onnxruntime: intra_op_threads, trt_provider, int8_model, calibration, max_batch, min_size,
    max_size (the last three: TensorRT provider profile); tensorrt: workspace_bytes, dla_core,
    max_batch, min_size, max_size, typing, rebuild, int8_model, calibration.
    precision "int8" runs the model's Q/DQ int8 model (mde_ros.quantization.variants).
    """
    if name not in BACKEND_NAMES:
        raise ValueError(f"unknown backend {name!r}: choose one of {', '.join(BACKEND_NAMES)}")
    parse_device(device)
    model_path = require_model_file(model_path, card)
    if name == "auto":
        return _auto(model_path, card, device, precision, options)
    return _create(name, model_path, card, device, precision, options)


def available_backends() -> dict[str, str | None]:
    """Each concrete backend -> None if it can run here (on some device), else why not."""
    from mde_ros.inference.tensorrt_backend import tensorrt_unavailable_reason

    def missing(module: str, hint: str) -> str | None:
        return None if importlib.util.find_spec(module) else f"{module} is not installed: {hint}"

    return {
        "torch": missing("torch", "pip install torch"),
        "onnxruntime": missing("onnxruntime", "pip install onnxruntime (CPU) or onnxruntime-gpu (CUDA)"),
        "tensorrt": tensorrt_unavailable_reason(),
    }
