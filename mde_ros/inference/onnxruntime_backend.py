"""onnxruntime backend: the default, CPU everywhere, CUDA / TensorRT providers where installed.

`infer` is a bare `session.run` plus a dtype/layout check: everything else (names, providers,
shape checks) is settled once in the constructor.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mde_ros.inference.base import (Backend, BackendUnavailable, as_network_batch, check_network_output,
                                    check_precision, output_rank_ok, parse_device, resolve_io_name,
                                    resolve_extra_output)
from mde_ros.inference.cache import cache_dir, onnx_for_model
from mde_ros.models.card import ModelCard

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
TENSORRT_PROVIDER = "TensorrtExecutionProvider"
OPTIONS = ("intra_op_threads", "trt_provider")


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailable(
            "backend 'onnxruntime' needs the onnxruntime package: pip install onnxruntime "
            f"(CPU) or onnxruntime-gpu (CUDA) [{exc}]") from exc
    return onnxruntime


def select_providers(device: str, available: list[str], trt_provider: bool = False,
                     fp16: bool = False, engine_cache: Path | None = None) -> list:
    """Execution providers for a device, in priority order, or BackendUnavailable.

    CPU stays last on CUDA so nodes a GPU provider cannot take still run.
    """
    kind, index = parse_device(device)
    if kind == "cpu":
        if trt_provider:
            raise ValueError("trt_provider=True needs device 'cuda'")
        return [CPU_PROVIDER]
    wanted = [TENSORRT_PROVIDER, CUDA_PROVIDER] if trt_provider else [CUDA_PROVIDER]
    missing = [p for p in wanted if p not in available]
    if missing:
        raise BackendUnavailable(
            f"onnxruntime on device {device!r} needs {' and '.join(missing)}, but this onnxruntime "
            f"offers only {available}: pip uninstall onnxruntime && pip install onnxruntime-gpu "
            "(a CUDA 12 GPU and driver; TensorrtExecutionProvider also needs TensorRT 10), "
            "or use device 'cpu'")
    providers: list = []
    if trt_provider:
        trt_options = {"device_id": index, "trt_fp16_enable": fp16}
        if engine_cache is not None:
            trt_options.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(engine_cache),
                               trt_timing_cache_enable=True, trt_timing_cache_path=str(engine_cache))
        providers.append((TENSORRT_PROVIDER, trt_options))
    providers.append((CUDA_PROVIDER, {"device_id": index}))
    providers.append(CPU_PROVIDER)
    return providers


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, model_path: str | Path, card: ModelCard, device: str = "cpu",
                 precision: str = "fp32", intra_op_threads: int | None = None,
                 trt_provider: bool = False) -> None:
        ort = import_onnxruntime()
        # fp16 is a TensorRT-provider build flag; the plain providers run the graph as stored.
        check_precision(precision, self.name, ("fp32", "fp16") if trt_provider else ("fp32",))
        if intra_op_threads is not None and intra_op_threads < 0:
            raise ValueError(f"intra_op_threads must be >= 0 (0 = onnxruntime's default), "
                             f"got {intra_op_threads}")
        self.device, self.precision, self.card = device, precision, card
        providers = select_providers(device, ort.get_available_providers(), trt_provider,
                                     fp16=precision == "fp16",
                                     engine_cache=cache_dir() / "ort-tensorrt" if trt_provider else None)
        self.model_path = onnx_for_model(model_path)

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_op_threads:
            options.intra_op_num_threads = intra_op_threads
        self._session = ort.InferenceSession(str(self.model_path), sess_options=options,
                                             providers=providers)
        self._check_providers_loaded(providers)

        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        self.input_name = resolve_io_name(card.input_name, [i.name for i in inputs], "input",
                                          self.model_path)
        self.output_name = resolve_io_name(card.output_name, [o.name for o in outputs], "output",
                                           self.model_path)
        self.sky_name = resolve_extra_output(card, [o.name for o in outputs], self.model_path)
        self._check_signature(next(i for i in inputs if i.name == self.input_name),
                              [o for o in outputs if o.name in (self.output_name, self.sky_name)])
        self._output_names = [self.output_name]
        self._all_names = [self.output_name] + ([self.sky_name] if self.sky_name else [])

    def _check_providers_loaded(self, providers: list) -> None:
        # onnxruntime-gpu lists CUDA even when its CUDA/cuDNN libraries fail to load, then quietly
        # runs on CPU: a robot would silently lose its frame rate. Say so instead.
        requested = [p[0] if isinstance(p, tuple) else p for p in providers]
        dropped = [p for p in requested if p not in self._session.get_providers()]
        if dropped:
            raise BackendUnavailable(
                f"onnxruntime could not start {dropped} (its CUDA / cuDNN / TensorRT libraries did "
                "not load; see the onnxruntime warnings above): install the CUDA 12 and cuDNN 9 "
                "libraries matching onnxruntime-gpu, or use device 'cpu'")

    def _check_signature(self, model_input, model_outputs) -> None:
        shape = model_input.shape  # symbolic or unknown dims (str / None) are fine
        if model_input.type != "tensor(float)" or len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
            raise ValueError(f"{self.model_path}: input {model_input.name!r} is {model_input.type} "
                             f"{model_input.shape}; expected float32 (N,3,H,W)")
        for model_output in model_outputs:
            if model_output.type != "tensor(float)" or not output_rank_ok(model_output.shape):
                raise ValueError(f"{self.model_path}: output {model_output.name!r} is {model_output.type} "
                                 f"{model_output.shape}; expected float32 (N,1,H,W) or (N,H,W)")

    def infer(self, batch: np.ndarray) -> np.ndarray:
        batch = as_network_batch(batch)
        out = self._session.run(self._output_names, {self.input_name: batch})[0]
        return out if out.ndim == 4 else check_network_output(out, batch.shape, self.name, self.output_name)

    def infer_outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        batch = as_network_batch(batch)
        results = self._session.run(self._all_names, {self.input_name: batch})
        roles = ["depth", "sky"][:len(results)]
        return {role: check_network_output(out, batch.shape, self.name, name)
                for role, name, out in zip(roles, self._all_names, results)}

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "device": self.device, "precision": self.precision,
                "providers": self._session.get_providers(), "model": str(self.model_path),
                "input": self.input_name, "output": self.output_name,
                **({"sky_output": self.sky_name} if self.sky_name else {})}
