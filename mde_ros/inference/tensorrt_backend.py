"""TensorRT backend (TensorRT 10 Python API): ONNX -> cached engine -> execute_async_v3.

Building an engine takes minutes on a Jetson, so engines are cached under the user cache dir
(`tensorrt/<key>.engine`, with a JSON sidecar of what the key was made of). The key covers
everything an engine depends on: the ONNX bytes, the TensorRT version, the GPU, the precision,
DLA core, workspace, optimisation profile and calibration data; change any and a new engine is
built beside the old one. A timing cache per TensorRT version and GPU makes rebuilds faster.

The cache key, paths, config validation, profile shapes and calibration batching are pure
functions (tested without a GPU); only `TensorRTBackend` and the calibrator touch TensorRT.
Buffers are torch CUDA tensors on torch's current stream, so no pycuda / cuda-python is needed.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import numpy as np

from mde_ros.inference.base import (PRECISIONS, Backend, BackendUnavailable, as_network_batch,
                                    check_network_output, parse_device, resolve_extra_output,
                                    resolve_io_name)
from mde_ros.atomic import write_bytes_atomically
from mde_ros.inference.cache import cache_dir, onnx_for_model
from mde_ros.models.card import ModelCard

log = logging.getLogger(__name__)

DEFAULT_WORKSPACE_BYTES = 1 << 30
OPTIONS = ("workspace_bytes", "dla_core", "max_batch", "min_size", "max_size", "calibration_data",
           "calibration_cache", "calibration_batch_size", "rebuild")
INSTALL_HINT = ("pip install tensorrt (x86_64, CUDA 12) or, on Jetson, the python3-libnvinfer "
                "that JetPack ships")


# --------------------------------------------------------------------------- pure parts

@dataclass(frozen=True)
class TensorRTConfig:
    """How to build an engine. Validated on creation so mistakes surface before a long build."""

    precision: str = "fp32"
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES
    dla_core: int | None = None            # Jetson DLA core; layers DLA cannot run fall back to GPU
    max_batch: int = 1
    min_size: tuple[int, int] | None = None   # smallest (H, W) the engine accepts; None: the card's
    max_size: tuple[int, int] | None = None   # largest (H, W); None: the card's
    # int8: images normalised exactly like the network input, (N,3,H,W) at the card's size ...
    calibration_data: np.ndarray | None = field(default=None, compare=False, repr=False)
    # ... and/or a calibration cache file (read if it exists, written after calibrating).
    calibration_cache: Path | None = None
    calibration_batch_size: int = 8

    def __post_init__(self) -> None:
        if self.calibration_cache is not None:
            object.__setattr__(self, "calibration_cache", Path(self.calibration_cache))
        for name in ("min_size", "max_size"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, tuple(getattr(self, name)))
        self.validate()

    def validate(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"tensorrt precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not isinstance(self.workspace_bytes, int) or self.workspace_bytes <= 0:
            raise ValueError(f"workspace_bytes must be a positive int, got {self.workspace_bytes!r}")
        if self.dla_core is not None:
            if not isinstance(self.dla_core, int) or self.dla_core < 0:
                raise ValueError(f"dla_core must be an int >= 0 or None, got {self.dla_core!r}")
            if self.precision == "fp32":
                raise ValueError("DLA runs fp16 or int8 only: use precision 'fp16' or 'int8' with dla_core")
        if not isinstance(self.max_batch, int) or self.max_batch < 1:
            raise ValueError(f"max_batch must be an int >= 1, got {self.max_batch!r}")
        for name in ("min_size", "max_size"):
            size = getattr(self, name)
            if size is not None and (len(size) != 2 or any(not isinstance(v, int) or v <= 0 for v in size)):
                raise ValueError(f"{name} must be (height, width) with positive ints, got {size!r}")
        if not isinstance(self.calibration_batch_size, int) or self.calibration_batch_size < 1:
            raise ValueError(f"calibration_batch_size must be an int >= 1, got {self.calibration_batch_size!r}")
        self._validate_calibration()

    def _validate_calibration(self) -> None:
        data = self.calibration_data
        if self.precision != "int8":
            if data is not None or self.calibration_cache is not None:
                raise ValueError("calibration_data / calibration_cache are only used with precision 'int8'")
            return
        has_cache = self.calibration_cache is not None and self.calibration_cache.is_file()
        if data is None and not has_cache:
            missing = f" ({self.calibration_cache} does not exist)" if self.calibration_cache else ""
            raise ValueError("precision 'int8' needs calibration_data (N,3,H,W float32 images, "
                             "normalised like the network input) or an existing calibration_cache"
                             + missing)
        if data is not None and (not isinstance(data, np.ndarray) or data.ndim != 4
                                 or data.shape[1] != 3 or data.shape[0] < 1
                                 or not np.issubdtype(data.dtype, np.floating)):
            raise ValueError("calibration_data must be a float (N,3,H,W) array with N >= 1, got "
                             f"{getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}")


class ProfileShapes(NamedTuple):
    min: tuple[int, int, int, int]
    opt: tuple[int, int, int, int]
    max: tuple[int, int, int, int]


def optimization_profile(card: ModelCard, config: TensorRTConfig) -> ProfileShapes:
    """min/opt/max input shapes: opt is one image at the card's size (what the node sends)."""
    size = (card.input_height, card.input_width)
    low, high = config.min_size or size, config.max_size or size
    if not (low[0] <= size[0] <= high[0] and low[1] <= size[1] <= high[1]):
        raise ValueError(f"min_size {low} <= card input size {size} <= max_size {high} must hold")
    return ProfileShapes(min=(1, 3, *low), opt=(1, 3, *size), max=(config.max_batch, 3, *high))


def calibration_batches(data: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """Fixed-size float32 C-contiguous batches for the calibrator.

    TensorRT calibrates at one fixed shape, so a last partial batch is dropped; with fewer
    images than batch_size, all images form one batch.
    """
    size = min(batch_size, len(data))
    for start in range(0, len(data) - size + 1, size):
        yield np.ascontiguousarray(data[start:start + size], dtype=np.float32)


def sanitize(text: str) -> str:
    """A file-name-safe lower-case token: 'NVIDIA GeForce RTX 4090' -> 'nvidia-geforce-rtx-4090'."""
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-.") or "unknown"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def engine_key_parts(onnx_bytes: bytes, trt_version: str, gpu_name: str, config: TensorRTConfig,
                     profile: ProfileShapes) -> dict[str, Any]:
    """Everything an engine depends on, as plain JSON types (also written as the sidecar)."""
    parts: dict[str, Any] = {
        "onnx_sha256": _sha256(onnx_bytes), "tensorrt": trt_version, "gpu": gpu_name,
        "precision": config.precision, "dla_core": config.dla_core,
        "workspace_bytes": config.workspace_bytes,
        "profile": {"min": list(profile.min), "opt": list(profile.opt), "max": list(profile.max)},
    }
    if config.precision == "int8":
        if config.calibration_data is not None:
            data = np.ascontiguousarray(config.calibration_data, dtype=np.float32)
            parts["calibration"] = {"data_sha256": _sha256(data.tobytes()), "shape": list(data.shape),
                                    "batch_size": config.calibration_batch_size}
        else:
            parts["calibration"] = {"cache_sha256": _sha256(config.calibration_cache.read_bytes())}
    return parts


def engine_cache_key(parts: dict[str, Any]) -> str:
    """Readable prefix (model, GPU, TensorRT, precision, DLA) + a digest of all the parts."""
    key = (f"{parts['onnx_sha256'][:16]}-{sanitize(parts['gpu'])}-trt{sanitize(parts['tensorrt'])}"
           f"-{parts['precision']}")
    if parts.get("dla_core") is not None:
        key += f"-dla{parts['dla_core']}"
    digest = _sha256(json.dumps(parts, sort_keys=True).encode())[:8]
    return f"{key}-{digest}"


@dataclass(frozen=True)
class EnginePaths:
    engine: Path
    sidecar: Path           # JSON of the key parts: why this engine exists
    calibration: Path       # default int8 calibration cache for this engine
    timing_cache: Path      # shared by every engine of this TensorRT version and GPU


def engine_paths(key: str, trt_version: str, gpu_name: str, root: Path | None = None) -> EnginePaths:
    folder = (root or cache_dir()) / "tensorrt"
    return EnginePaths(engine=folder / f"{key}.engine", sidecar=folder / f"{key}.json",
                       calibration=folder / f"{key}.calib",
                       timing_cache=folder / f"timing-{sanitize(trt_version)}-{sanitize(gpu_name)}.cache")


# --------------------------------------------------------------------------- TensorRT parts

def tensorrt_unavailable_reason() -> str | None:
    """None when TensorRT can run here, else what is missing and how to get it."""
    try:
        import tensorrt  # noqa: F401
    except ImportError as exc:
        return f"tensorrt is not installed ({exc}): {INSTALL_HINT}; it also needs an NVIDIA CUDA GPU"
    try:
        import torch
    except ImportError:
        return "tensorrt is installed, but the tensorrt backend keeps its buffers in torch CUDA tensors: install a CUDA build of torch"
    if not torch.cuda.is_available():
        return (f"tensorrt needs an NVIDIA CUDA GPU, but torch {torch.__version__} sees none (CPU-only "
                "torch wheel, no driver, or CUDA_VISIBLE_DEVICES hides it)")
    return None


def import_tensorrt():
    reason = tensorrt_unavailable_reason()
    if reason:
        raise BackendUnavailable(f"backend 'tensorrt' is unavailable: {reason}")
    import tensorrt as trt
    import torch

    return trt, torch


def _make_calibrator(trt, torch, batches: Iterator[np.ndarray], batch_shape: tuple[int, ...],
                     cache: Path, device):
    """An IInt8EntropyCalibrator2 feeding numpy batches through one reused CUDA tensor.

    (Implicit int8 calibration is deprecated since TensorRT 10.1 in favour of explicit Q/DQ
    quantisation, but is still the way to get int8 from a plain float ONNX model.)
    """

    class NumpyEntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._device_batch = torch.empty(batch_shape, dtype=torch.float32, device=device)

        def get_batch_size(self) -> int:
            return batch_shape[0]

        def get_batch(self, names):
            batch = next(batches, None)
            if batch is None:
                return None
            self._device_batch.copy_(torch.from_numpy(batch))
            return [self._device_batch.data_ptr()]

        def read_calibration_cache(self):
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, blob) -> None:
            write_bytes_atomically(cache, bytes(memoryview(blob)))

    return NumpyEntropyCalibrator()


_TORCH_DTYPES = {np.dtype(np.float32): "float32", np.dtype(np.float16): "float16"}


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, model_path: str | Path, card: ModelCard, device: str = "cuda",
                 precision: str = "fp32", *, workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
                 dla_core: int | None = None, max_batch: int = 1,
                 min_size: tuple[int, int] | None = None, max_size: tuple[int, int] | None = None,
                 calibration_data: np.ndarray | None = None, calibration_cache: str | Path | None = None,
                 calibration_batch_size: int = 8, rebuild: bool = False) -> None:
        self.config = TensorRTConfig(precision, workspace_bytes, dla_core, max_batch, min_size, max_size,
                                     calibration_data, calibration_cache, calibration_batch_size)
        trt, torch = import_tensorrt()
        kind, index = parse_device(device)
        if kind != "cuda":
            raise ValueError(f"backend 'tensorrt' runs on a CUDA GPU: use device 'cuda', not {device!r}")
        if index >= torch.cuda.device_count():
            raise BackendUnavailable(f"device {device!r}: only {torch.cuda.device_count()} CUDA GPU(s) visible")
        self._trt, self._torch = trt, torch
        self._device = torch.device("cuda", index)
        self.device, self.precision, self.card = device, precision, card
        self.profile = optimization_profile(card, self.config)
        self.onnx_path = onnx_for_model(model_path)
        # Names and output ranks are checked from the ONNX graph before minutes of engine building.
        from mde_ros.models.onnx_io import check_model_io

        check_model_io(self.onnx_path, card)
        onnx_bytes = self.onnx_path.read_bytes()
        gpu_name = torch.cuda.get_device_name(self._device)
        self.key_parts = engine_key_parts(onnx_bytes, trt.__version__, gpu_name, self.config, self.profile)
        self.paths = engine_paths(engine_cache_key(self.key_parts), trt.__version__, gpu_name)
        self._logger = trt.Logger(trt.Logger.WARNING)

        with torch.cuda.device(self._device):
            built = rebuild or not self.paths.engine.is_file()
            if built:
                self._build()
            self._runtime = trt.Runtime(self._logger)  # must outlive the engine
            self._engine = self._runtime.deserialize_cuda_engine(self.paths.engine.read_bytes())
            if self._engine is None and not built:
                log.warning("cached engine %s did not load (corrupt file?); rebuilding", self.paths.engine)
                self._build()
                self._engine = self._runtime.deserialize_cuda_engine(self.paths.engine.read_bytes())
            if self._engine is None:
                raise RuntimeError(f"TensorRT could not load the engine {self.paths.engine} it just "
                                   "built; see the TensorRT log above")
            self._context = self._engine.create_execution_context()
            # Own stream: enqueueV3 on the legacy default stream costs extra synchronisation.
            self._stream = torch.cuda.Stream(self._device)
        self._bind_io_names()

    def _bind_io_names(self) -> None:
        trt, engine = self._trt, self._engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.input_name = resolve_io_name(self.card.input_name, inputs, "input", self.onnx_path)
        self.output_name = resolve_io_name(self.card.output_name, outputs, "output", self.onnx_path)
        self.sky_name = resolve_extra_output(self.card, outputs, self.onnx_path)
        # Every output gets a buffer (TensorRT needs an address for each), the depth one first.
        self._outputs = [self.output_name] + [n for n in outputs if n != self.output_name]
        dtypes = {}
        for name in [self.input_name, *self._outputs]:
            np_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            if np_dtype not in _TORCH_DTYPES and name not in (self.input_name, self.output_name, self.sky_name):
                dtypes[name] = self._torch.from_numpy(np.empty(0, np_dtype)).dtype  # unused output: any type
                continue
            if np_dtype not in _TORCH_DTYPES:
                raise ValueError(f"{self.onnx_path}: tensor {name!r} is {np_dtype}; expected float32/16")
            dtypes[name] = getattr(self._torch, _TORCH_DTYPES[np_dtype])
        self._input_dtype, self._output_dtype = dtypes[self.input_name], dtypes[self.output_name]
        self._dtypes = dtypes

    def _build(self) -> None:
        trt, config, paths = self._trt, self.config, self.paths
        log.warning("building a TensorRT %s engine for %s (minutes on a Jetson; cached as %s)",
                    config.precision, self.onnx_path, paths.engine)
        builder = trt.Builder(self._logger)
        network = builder.create_network(0)  # TensorRT 10 networks are always explicit-batch
        parser = trt.OnnxParser(network, self._logger)
        if not parser.parse_from_file(str(self.onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"TensorRT could not parse {self.onnx_path}: {errors}")
        inputs = [network.get_input(i).name for i in range(network.num_inputs)]
        input_name = resolve_io_name(self.card.input_name, inputs, "input", self.onnx_path)

        build = builder.create_builder_config()
        build.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, config.workspace_bytes)
        if config.precision in ("fp16", "int8"):
            build.set_flag(trt.BuilderFlag.FP16)  # int8 layers without int8 kernels fall back to fp16
        profile = builder.create_optimization_profile()
        profile.set_shape(input_name, *self.profile)
        build.add_optimization_profile(profile)
        if config.precision == "int8":
            self._configure_int8(builder, build, input_name)
        if config.dla_core is not None:
            if config.dla_core >= builder.num_DLA_cores:
                raise BackendUnavailable(f"dla_core={config.dla_core} requested, but this device has "
                                         f"{builder.num_DLA_cores} DLA core(s) (DLA exists on Jetson "
                                         "AGX Xavier/Orin and Orin NX)")
            build.default_device_type = trt.DeviceType.DLA
            build.DLA_core = config.dla_core
            build.set_flag(trt.BuilderFlag.GPU_FALLBACK)

        timing_blob = paths.timing_cache.read_bytes() if paths.timing_cache.is_file() else b""
        timing_cache = build.create_timing_cache(timing_blob)
        build.set_timing_cache(timing_cache, ignore_mismatch=False)

        serialized = builder.build_serialized_network(network, build)
        if serialized is None:
            raise RuntimeError(f"TensorRT failed to build an engine for {self.onnx_path}; see the "
                               "TensorRT errors above (unsupported layer, too little workspace?)")
        write_bytes_atomically(paths.timing_cache, bytes(memoryview(build.get_timing_cache().serialize())))
        write_bytes_atomically(paths.engine, bytes(memoryview(serialized)))
        write_bytes_atomically(paths.sidecar, (json.dumps(self.key_parts, indent=2) + "\n").encode())

    def _configure_int8(self, builder, build, input_name: str) -> None:
        config, card = self.config, self.card
        build.set_flag(self._trt.BuilderFlag.INT8)
        cache = config.calibration_cache or self.paths.calibration
        data, size = config.calibration_data, (card.input_height, card.input_width)
        if data is None:  # cache only: TensorRT reads it; a stale cache fails instead of calibrating on nothing
            batches, shape = iter(()), (1, 3, *size)
        elif tuple(data.shape[2:]) != size:
            raise ValueError(f"calibration_data is {data.shape[2]}x{data.shape[3]}, the network input "
                             f"{size[0]}x{size[1]}: resize and normalise it like the pipeline does")
        else:
            batches = calibration_batches(data, config.calibration_batch_size)
            shape = (min(config.calibration_batch_size, len(data)), 3, *size)
        calibrator = _make_calibrator(self._trt, self._torch, batches, shape, cache, self._device)
        calibration_profile = builder.create_optimization_profile()
        calibration_profile.set_shape(input_name, shape, shape, shape)
        build.int8_calibrator = calibrator
        build.set_calibration_profile(calibration_profile)
        self._calibrator = calibrator  # TensorRT holds no Python reference to it

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.infer_outputs(batch)["depth"]

    def infer_outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        batch = as_network_batch(batch)
        shape = batch.shape
        if not all(lo <= s <= hi for lo, s, hi in zip(self.profile.min, shape, self.profile.max)):
            raise ValueError(f"batch {shape} is outside the engine's profile {self.profile.min}.."
                             f"{self.profile.max}: rebuild with max_batch / min_size / max_size")
        torch = self._torch
        with torch.cuda.device(self._device), torch.cuda.stream(self._stream):
            stream = torch.cuda.current_stream(self._device)
            x = torch.from_numpy(batch).to(self._device, self._input_dtype)
            if not self._context.set_input_shape(self.input_name, shape):
                raise RuntimeError(f"TensorRT rejected input shape {shape}; see the TensorRT log")
            outs = {name: torch.empty(tuple(self._context.get_tensor_shape(name)), dtype=self._dtypes[name],
                                      device=self._device) for name in self._outputs}
            self._context.set_tensor_address(self.input_name, x.data_ptr())
            for name, out in outs.items():
                self._context.set_tensor_address(name, out.data_ptr())
            if not self._context.execute_async_v3(stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed; see the TensorRT log")
            wanted = {"depth": self.output_name, **({"sky": self.sky_name} if self.sky_name else {})}
            results = {role: outs[name].float().cpu().numpy() for role, name in wanted.items()}  # waits
        return {role: check_network_output(results[role], shape, self.name, name) for role, name in wanted.items()}

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "device": self.device, "precision": self.precision,
                "engine": str(self.paths.engine), "tensorrt": self._trt.__version__,
                "dla_core": self.config.dla_core,
                "profile": {k: list(v) for k, v in self.profile._asdict().items()}}
