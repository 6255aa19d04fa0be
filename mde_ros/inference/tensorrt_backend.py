"""TensorRT backend (TensorRT 10.x and 11.x): ONNX -> cached engine -> execute_async_v3.

What is built is decided by `tensorrt_build` (pure, tested without a GPU): a strongly typed
network whose precision lives in the ONNX (the fp16 model with fp32 I/O, or the Q/DQ int8
model of `mde-ros quantize`), the builder-flag (weak typing) path only where the running
TensorRT still has the flags. Engines are cached under the user cache dir
(`tensorrt/<key>.engine` + a JSON sidecar of the key parts: the hash of the ONNX actually
built, TensorRT version, GPU compute capability / SM count / memory, CUDA runtime and driver,
precision, profile, DLA core). A timing cache per TensorRT version and GPU speeds up rebuilds;
one that does not fit is replaced, never fatal, and the engine is written before anything else
that could fail.

Memory and streams come from cuda-python (no torch): input and every output get a pinned host
buffer and a device buffer, allocated once for the profile's largest shape.

With a fused model beside the model (`model.fused.onnx`, `mde-ros export --fused WxH`) the backend
offers `DepthEstimator` a fused pipeline (`fused_pipeline`, built on first use): a second engine with
static shapes from the fused model's metadata (uint8 image (1,H,W,3) + float32 rescale (1,) -> depth
(1,H,W) metres), cached like the plain one with the fused camera in its key, so a frame of that
camera is one upload, one enqueue and one download. The frame's outputs (depth image, cloud,
colourised image, scan rows) are then built from the depth left on the device by small output engines
(inference.trt_outputs) and come down straight into their message buffers.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mde_ros.atomic import write_bytes_atomically
from mde_ros.inference.base import (Backend, BackendUnavailable, FirstUse, as_network_batch, check_network_output,
                                    parse_device, resolve_extra_output, resolve_io_name)
from mde_ros.inference.cache import file_sha256
from mde_ros.inference.spec import BackendOption, BackendSpec, check_run
from mde_ros.inference.tensorrt_build import (DEFAULT_WORKSPACE_BYTES, FUSED_IMAGE, FUSED_RESCALE, INSTALL_HINT,
                                              PROFILE_OPTIONS, TENSORRT, TYPING_MODES,
                                              BuildPlan, EnginePaths, ProfileShapes, TensorRTConfig, TrtFeatures,
                                              engine_cache_key, engine_key_parts, engine_paths,
                                              fused_build_problem, fused_profile_shapes, network_creation_flags,
                                              optimization_profile, plan_build, version_problem)
from mde_ros.models.card import ModelCard
from mde_ros.models.fused_meta import (FUSED_OUTPUT, FusedSpec, existing_fused_model, fused_spec_for_card,
                                       read_onnx_metadata)

log = logging.getLogger(__name__)

NAME = TENSORRT
OPTIONS = (
    BackendOption("workspace_bytes", "tensorrt.workspace_mb", "workspace_mb", "--workspace-mb", "int", 1024,
                  "TensorRT builder workspace in MiB", low=1, high=1 << 20, scale=1 << 20),
    BackendOption("dla_core", "tensorrt.dla_core", "dla_core", "--dla-core", "int", -1,
                  "Jetson DLA core for the TensorRT engine (fp16/int8, static shape, GPU fallback); -1: GPU",
                  low=-1, high=15),
    *PROFILE_OPTIONS,
    BackendOption("typing", "tensorrt.typing", "typing", "--typing", "str", "auto",
                  "TensorRT network typing: auto (strongly typed; 10.x DLA: builder flags), strong, weak "
                  "(builder flags; TensorRT 10.x only)", choices=TYPING_MODES),
    BackendOption("rebuild", "tensorrt.rebuild", "rebuild_engine", "--rebuild-engine", "bool", False,
                  "rebuild the TensorRT engine even if a cached one fits"),
)


# --------------------------------------------------------------------------- availability

def tensorrt_unavailable_reason() -> str | None:
    """None when TensorRT (>= 10) and cuda-python with a CUDA device are here, else what is missing."""
    try:
        import tensorrt
    except ImportError as exc:
        return f"tensorrt is not installed ({exc}): {INSTALL_HINT}; it also needs an NVIDIA CUDA GPU"
    problem = version_problem(getattr(tensorrt, "__version__", ""))
    if problem:
        return problem
    from mde_ros.inference.cuda_memory import CudaError, check, import_cudart

    try:
        cudart = import_cudart()
    except ImportError as exc:
        return f"tensorrt {tensorrt.__version__} is installed, but {exc}"
    try:
        count = check(cudart, cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")
    except CudaError as exc:
        return f"tensorrt needs an NVIDIA CUDA GPU and driver: {exc}"
    if not count:
        return "tensorrt needs an NVIDIA CUDA GPU, but CUDA sees none (no driver, or CUDA_VISIBLE_DEVICES hides it)"
    return None


def import_tensorrt():
    """(tensorrt, cudart) or BackendUnavailable saying what is missing."""
    reason = tensorrt_unavailable_reason()
    if reason:
        raise BackendUnavailable(f"backend {NAME!r} is unavailable: {reason}")
    import tensorrt as trt

    from mde_ros.inference.cuda_memory import import_cudart

    return trt, import_cudart()


# --------------------------------------------------------------------------- build steps (API only)

def attach_timing_cache(build_config: Any, path: Path) -> Any | None:
    """Load the timing cache at `path` into the builder config; one that is corrupt or from another
    TensorRT / GPU is replaced by a fresh one (logged), never fatal. None if even that fails."""
    blob = b""
    try:
        blob = path.read_bytes() if path.is_file() else b""
    except OSError as exc:
        log.warning("cannot read the TensorRT timing cache %s (%s); starting a new one", path, exc)
    for attempt in ((blob, "stored"), (b"", "new")) if blob else ((b"", "new"),):
        data, kind = attempt
        try:
            cache = build_config.create_timing_cache(data)
            if cache is not None and build_config.set_timing_cache(cache, ignore_mismatch=False):
                return cache
        except Exception as exc:  # TensorRT raises or returns False for a cache it cannot use
            log.debug("timing cache (%s) rejected: %s", kind, exc)
        if kind == "stored":
            log.warning("the TensorRT timing cache %s does not fit this TensorRT / GPU (or is damaged); "
                        "building with a new one, which replaces it", path)
    log.warning("TensorRT accepted no timing cache; building without one")
    return None


def save_build(serialized: Any, build_config: Any, paths: EnginePaths, key_parts: dict) -> None:
    """Engine first (a minutes-long build must never be lost), then the sidecar, then the timing
    cache; failures after the engine only warn."""
    write_bytes_atomically(paths.engine, bytes(memoryview(serialized)))
    try:
        write_bytes_atomically(paths.sidecar, (json.dumps(key_parts, indent=2) + "\n").encode())
    except OSError as exc:
        log.warning("engine %s saved, but not its sidecar %s: %s", paths.engine, paths.sidecar, exc)
    try:
        cache = build_config.get_timing_cache()
        if cache is not None:
            write_bytes_atomically(paths.timing_cache, bytes(memoryview(cache.serialize())))
    except Exception as exc:  # a timing cache only speeds up the next build
        log.warning("engine %s saved; the timing cache was not (%s)", paths.engine, exc)


def build_engine(trt: Any, logger: Any, onnx_path: Path, input_name: str | None, plan: BuildPlan,
                 profile: ProfileShapes, config: TensorRTConfig, paths: EnginePaths, key_parts: dict,
                 shapes: dict[str, tuple] | None = None) -> None:
    """Parse `onnx_path` into a network as `plan` says, build it and save it (see save_build).

    `shapes` ({input name: (min, opt, max)}, the fused model's inputs) replaces the one-input profile."""
    builder = trt.Builder(logger)
    network = builder.create_network(network_creation_flags(trt, plan))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT {trt.__version__} could not parse {onnx_path}: {errors}")
    inputs = [network.get_input(i).name for i in range(network.num_inputs)]
    if shapes is None:
        shapes = {resolve_io_name(input_name, inputs, "input", onnx_path): tuple(profile)}
    elif sorted(shapes) != sorted(inputs):
        raise ValueError(f"{onnx_path}: the network's inputs are {inputs}; expected {sorted(shapes)}")

    build = builder.create_builder_config()
    build.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, config.workspace_bytes)
    for flag in plan.builder_flags:
        build.set_flag(getattr(trt.BuilderFlag, flag))
    trt_profile = builder.create_optimization_profile()
    for name, (low, opt, high) in shapes.items():
        trt_profile.set_shape(name, low, opt, high)
    build.add_optimization_profile(trt_profile)
    if plan.dla_core is not None:
        cores = builder.num_DLA_cores
        if plan.dla_core >= cores:
            raise BackendUnavailable(
                f"dla_core={plan.dla_core} requested, but TensorRT {trt.__version__} sees {cores} DLA core(s) "
                "here (DLA: Jetson AGX Orin / Orin NX / Xavier, TensorRT <= 10.7 or 11.4.1+ on JetPack 7.2.2+)")
        build.default_device_type = trt.DeviceType.DLA
        build.DLA_core = plan.dla_core
    timing_cache = attach_timing_cache(build, paths.timing_cache)  # noqa: F841  (kept alive during the build)

    serialized = builder.build_serialized_network(network, build)
    if serialized is None:
        raise RuntimeError(f"TensorRT {trt.__version__} failed to build an engine for {onnx_path}; see the "
                           "TensorRT errors above (unsupported layer, too little workspace?)")
    save_build(serialized, build, paths, key_parts)


# --------------------------------------------------------------------------- backend

def load_or_build_engine(runtime: Any, paths: EnginePaths, build: Callable[[], None], rebuild: bool,
                         what: str = "engine") -> Any:
    """The cached engine at `paths`, built first when it is missing or `rebuild`, and rebuilt once when
    the cached file does not load (damaged, or another TensorRT build)."""
    built = rebuild or not paths.engine.is_file()
    if built:
        build()
    engine = runtime.deserialize_cuda_engine(paths.engine.read_bytes())
    if engine is None and not built:
        log.warning("cached %s %s did not load (damaged, or another TensorRT build?); rebuilding", what, paths.engine)
        build()
        engine = runtime.deserialize_cuda_engine(paths.engine.read_bytes())
    if engine is None:
        raise RuntimeError(f"TensorRT could not load the {what} {paths.engine} it just built; "
                           "see the TensorRT log above")
    return engine


class _Binding:
    def __init__(self, name: str, buffer, dtype: np.dtype) -> None:
        self.name, self.buffer, self.dtype = name, buffer, dtype


def _bind_tensor(trt, engine, context, cudart, name: str, allowed: tuple, source: Path, what: str) -> _Binding:
    """A pinned host + device buffer for one engine tensor at the context's current shapes, its address
    set once (a frame then only copies and enqueues); `what` names the tensor in errors."""
    from mde_ros.inference.cuda_memory import PinnedBuffer

    dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
    if dtype not in allowed:
        raise ValueError(f"{source}: {what} {name!r} is {dtype}; expected {' or '.join(map(str, allowed))}")
    shape = tuple(context.get_tensor_shape(name))
    if any(v < 0 for v in shape):
        raise RuntimeError(f"TensorRT cannot size {what} {name!r} ({shape})")
    buffer = PinnedBuffer(cudart, shape, dtype)
    if not context.set_tensor_address(name, buffer.device_ptr):
        buffer.free()
        raise RuntimeError(f"TensorRT rejected the address of {what} {name!r}")
    return _Binding(name, buffer, dtype)


class TensorRTBackend(Backend):
    """Builds (or loads the cached engine of) the ONNX file it is given: for fp16 / int8 the fp16 / Q/DQ
    model that `model_variant` asked mde_ros.modelfiles for; `source` is the model the user named,
    beside which its fused model is looked for."""

    name = NAME

    def __init__(self, model_path: str | Path, card: ModelCard, device: str = "cuda",
                 precision: str = "fp32", *, workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
                 dla_core: int | None = None, max_batch: int = 1,
                 min_size: tuple[int, int] | None = None, max_size: tuple[int, int] | None = None,
                 typing: str = "auto", rebuild: bool = False, source: str | Path | None = None) -> None:
        self.config = TensorRTConfig(precision, workspace_bytes, dla_core, max_batch, min_size, max_size, typing)
        check_run(SPEC, device, precision)
        _, index = parse_device(device)
        self.profile = optimization_profile(card, self.config)  # bad sizes fail before TensorRT loads
        trt, cudart = import_tensorrt()
        self.device, self.precision, self.card = device, precision, card
        self._trt, self._cudart, self._index = trt, cudart, index
        self._buffers: list = []
        self._rebuild = rebuild
        # its fused model is looked for beside the model the user named (not beside a variant or an export)
        self._model_path = Path(source if source is not None else model_path)
        self._fused = FirstUse(self._start_fused)  # the fused pipeline, started on first use
        try:
            self._setup(Path(model_path), rebuild)
        except AttributeError as exc:
            # The running TensorRT / cuda-python lacks something this code expects: say which, as
            # BackendUnavailable so `auto` falls back instead of crashing.
            raise BackendUnavailable(
                f"TensorRT {getattr(trt, '__version__', '?')} / cuda-python API difference: {exc}. This "
                "backend supports TensorRT 10.x and 11.x with cuda-python >= 12; run tools/trt_check.py "
                "to see what differs") from exc

    # ---- setup ----------------------------------------------------------------------------

    def _setup(self, model_path: Path, rebuild: bool) -> None:
        from mde_ros.inference.cuda_memory import CudaError, Stream, check, device_info

        trt, cudart, config = self._trt, self._cudart, self.config
        try:
            self.gpu = device_info(cudart, self._index)
            check(cudart, cudart.cudaSetDevice(self._index), "cudaSetDevice")
        except CudaError as exc:
            raise BackendUnavailable(f"backend {NAME!r} on {self.device}: {exc}") from exc
        self.features = TrtFeatures.probe(trt)
        self.plan = plan_build(self.features, config.precision, config.typing, config.dla_core)
        # Names and output ranks are checked from the ONNX graph before minutes of engine building.
        from mde_ros.models.onnx_io import ModelIOUnavailable, check_model_io

        try:
            check_model_io(model_path, self.card)
        except ModelIOUnavailable as exc:  # neither onnxruntime nor onnx here: TensorRT's parser checks
            log.info("tensorrt: %s; the card is checked against the engine instead", exc)
        self.onnx_path = model_path
        self.key_parts = engine_key_parts(file_sha256(self.onnx_path), trt.__version__, self.gpu, config,
                                          self.plan, self.profile)
        self.paths = engine_paths(engine_cache_key(self.key_parts), trt.__version__, self.gpu)
        self._logger = trt.Logger(trt.Logger.WARNING)
        for note in self.plan.notes:
            log.info("tensorrt: %s", note)

        self._runtime = trt.Runtime(self._logger)  # must outlive the engine
        if config.dla_core is not None:
            self._runtime.DLA_core = config.dla_core  # before deserialising: the engine runs on this core
        self._engine = load_or_build_engine(self._runtime, self.paths, self._build, rebuild)
        self._context = self._engine.create_execution_context()
        self._stream = Stream(cudart)
        self._bind()

    def _build(self) -> None:
        log.warning("building a TensorRT %s %s engine for %s on %s (minutes on a Jetson; cached as %s)",
                    self._trt.__version__, self.config.precision, self.onnx_path, self.gpu.name, self.paths.engine)
        build_engine(self._trt, self._logger, self.onnx_path, self.card.input_name, self.plan, self.profile,
                     self.config, self.paths, self.key_parts)

    def _bind(self) -> None:
        """Every I/O tensor gets a pinned host + device buffer for the profile's largest shape, and its
        address is set once; a frame then only copies, sets its input shape and enqueues."""
        trt, engine, context = self._trt, self._engine, self._context
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.input_name = resolve_io_name(self.card.input_name, inputs, "input", self.onnx_path)
        self.output_name = resolve_io_name(self.card.output_name, outputs, "output", self.onnx_path)
        self.sky_name = resolve_extra_output(self.card, outputs, self.onnx_path)
        if len(inputs) != 1:
            raise ValueError(f"{self.onnx_path}: the engine has inputs {inputs}; expected one image input")
        if not context.set_input_shape(self.input_name, self.profile.max):
            raise RuntimeError(f"TensorRT rejected the profile's largest input {self.profile.max}")
        self._bindings: dict[str, _Binding] = {}
        for name in [self.input_name, *outputs]:
            binding = _bind_tensor(trt, engine, context, self._cudart, name,
                                   (np.dtype(np.float32), np.dtype(np.float16)), self.onnx_path,
                                   "tensor (at the profile's largest input)")
            self._buffers.append(binding.buffer)
            self._bindings[name] = binding
        self._outputs = outputs
        self._input_shape: tuple[int, ...] | None = None

    # ---- fused pipeline -----------------------------------------------------------------------

    def fused_pipeline(self) -> "TensorRTFusedPipeline | None":
        """The fused model beside the model as its own engine (built and cached on first use), or None:
        no `MODEL.fused.onnx`, a build that cannot take it (tensorrt_build.fused_build_problem), or a fused
        model exported for another card (each logged once)."""
        return self._fused.get()

    def _start_fused(self) -> "TensorRTFusedPipeline | None":
        path = existing_fused_model(self._model_path)
        if path is None:
            return None
        problem = fused_build_problem(self.plan)
        if problem:
            log.warning("device_pipeline: not using the fused model %s: %s; pre/post-processing stay in numpy",
                        path, problem)
            return None
        metadata = read_onnx_metadata(path)
        spec = fused_spec_for_card(metadata, path, self.card)
        if spec is None:
            return None
        return TensorRTFusedPipeline(self, path, spec)

    def static_engine(self, onnx_path: Path, paths: EnginePaths, key_parts: dict, shapes: dict[str, tuple],
                      plan: BuildPlan, config: TensorRTConfig, what: str) -> Any:
        """The engine of `onnx_path` with static input `shapes` ({name: (min, opt, max)}), loaded from `paths`
        or built there with `plan` / `config` on this backend's runtime (inference.trt_outputs' graphs)."""
        profile = ProfileShapes(*next(iter(shapes.values())))

        def build() -> None:
            build_engine(self._trt, self._logger, onnx_path, None, plan, profile, config, paths, key_parts,
                         shapes=shapes)

        return load_or_build_engine(self._runtime, paths, build, self._rebuild, what)

    # ---- inference --------------------------------------------------------------------------

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.infer_outputs(batch)["depth"]

    def infer_outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """The depth (and the card's sky output) by role, as (N,1,H,W); (N,H,W) outputs get the axis."""
        results = self.infer_all(batch)
        roles = {"depth": self.output_name, **({"sky": self.sky_name} if self.sky_name else {})}
        return {role: check_network_output(results[name], np.shape(batch), self.name, name)
                for role, name in roles.items()}

    def infer_all(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Every output of the engine for one batch, as float32 host arrays (copies)."""
        batch = as_network_batch(batch)
        shape = tuple(batch.shape)
        if not self.profile.contains(shape):
            raise ValueError(f"batch {shape} is outside the engine's profile {self.profile.min}.."
                             f"{self.profile.max}: rebuild with max_batch / min_size / max_size")
        context, stream = self._context, self._stream
        if shape != self._input_shape:
            if not context.set_input_shape(self.input_name, shape):
                raise RuntimeError(f"TensorRT rejected input shape {shape}; see the TensorRT log")
            self._input_shape = shape
        source = self._bindings[self.input_name]
        np.copyto(source.buffer.host_view(shape), batch, casting="same_kind")
        source.buffer.to_device(int(np.prod(shape)) * source.dtype.itemsize, stream.handle)
        if not context.execute_async_v3(int(stream)):
            raise RuntimeError("TensorRT execute_async_v3 failed; see the TensorRT log")
        shapes = {name: tuple(context.get_tensor_shape(name)) for name in self._outputs}
        for name in self._outputs:
            binding = self._bindings[name]
            binding.buffer.to_host(int(np.prod(shapes[name])) * binding.dtype.itemsize, stream.handle)
        stream.synchronize()
        results = {name: self._bindings[name].buffer.host_view(shapes[name]).astype(np.float32, copy=True)
                   for name in self._outputs}
        return results

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "device": self.device, "precision": self.precision,
                "engine": str(self.paths.engine), "tensorrt": self._trt.__version__,
                "gpu": self.gpu.to_dict(), "onnx": str(self.onnx_path),
                "strongly_typed": self.plan.strongly_typed, "builder_flags": list(self.plan.builder_flags),
                "dla_core": self.config.dla_core,
                "dla_gpu_fallback": self.config.dla_core is not None,
                "profile": {k: list(v) for k, v in self.profile._asdict().items()},
                **({"fused": self._fused.value.describe()} if self._fused.value is not None else {})}

    def close(self) -> None:
        """Free the CUDA buffers and stream now (otherwise when the backend is collected)."""
        if self._fused.value is not None:
            self._fused.value.close()
        for buffer in self._buffers:
            buffer.free()
        self._buffers = []
        if getattr(self, "_stream", None) is not None:
            self._stream.destroy()


# --------------------------------------------------------------------------- fused pipeline

FUSED_DTYPES = {FUSED_IMAGE: np.dtype(np.uint8), FUSED_RESCALE: np.dtype(np.float32),
                FUSED_OUTPUT: np.dtype(np.float32)}


class TensorRTFusedPipeline:
    """`DepthEstimator`'s fused pipeline on TensorRT: the fused model as an engine of static shapes
    (one frame of its camera), on the plain engine's runtime, stream and build settings.

    Timings (host clock): "preprocess" is the copy into the pinned image buffer, "network" the upload,
    the enqueue and the download until the stream is done (the graph's own pre/post-processing
    included), "postprocess" the copy out of the pinned depth buffer.
    """

    def __init__(self, backend: TensorRTBackend, path: Path, spec: FusedSpec) -> None:
        trt = backend._trt
        self.path, self.spec, self._stream, self._buffers = path, spec, backend._stream, []
        shapes = fused_profile_shapes(spec.height, spec.width)
        profile = ProfileShapes(*shapes[FUSED_IMAGE])
        self.key_parts = engine_key_parts(file_sha256(path), trt.__version__, backend.gpu, backend.config,
                                          backend.plan, profile, fused_shapes=shapes,
                                          fused={"height": spec.height, "width": spec.width, "policy": spec.policy})
        self.paths = engine_paths(engine_cache_key(self.key_parts), trt.__version__, backend.gpu)

        def build() -> None:
            log.warning("building the fused TensorRT engine for %s (%dx%d %s; cached as %s)", path, spec.width,
                        spec.height, spec.policy, self.paths.engine)
            build_engine(trt, backend._logger, path, None, backend.plan, profile, backend.config, self.paths,
                         self.key_parts, shapes=shapes)

        self._engine = load_or_build_engine(backend._runtime, self.paths, build, backend._rebuild, "fused engine")
        engine, context = self._engine, self._engine.create_execution_context()
        self._context = context
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        if sorted(names) != sorted(FUSED_DTYPES):
            raise ValueError(f"{path}: the fused engine's tensors are {names}; expected {sorted(FUSED_DTYPES)}")
        for name, (shape, _, _) in shapes.items():
            if not context.set_input_shape(name, shape):
                raise RuntimeError(f"TensorRT rejected the fused input {name!r} shape {shape}")
        self._bindings: dict[str, _Binding] = {}
        for name, want in FUSED_DTYPES.items():
            binding = _bind_tensor(trt, engine, context, backend._cudart, name, (np.dtype(want),), path,
                                   "fused tensor")
            self._buffers.append(binding.buffer)
            self._bindings[name] = binding
        self._shapes = {name: tuple(context.get_tensor_shape(name)) for name in FUSED_DTYPES}
        if self._shapes[FUSED_OUTPUT] != (1, spec.height, spec.width):
            raise ValueError(f"{path}: the fused engine's depth is {self._shapes[FUSED_OUTPUT]}; expected "
                             f"(1, {spec.height}, {spec.width})")
        self._lock = threading.Lock()
        self._backend = backend
        self._outputs = FirstUse(self._start_outputs)  # inference.trt_outputs' engines, on first use
        self._ran = False

    def accepts(self, height: int, width: int, policy: str | None) -> bool:
        """Only the camera size and resize policy the model was exported for (static engine shapes)."""
        return self.spec.accepts(height, width, policy)

    def estimate(self, rgb: np.ndarray, card: ModelCard, policy: str | None,
                 rescale: float = 1.0) -> tuple[np.ndarray, dict[str, float]]:
        """HxWx3 uint8 RGB -> (HxW float32 metres, stage seconds)."""
        self.spec.check(rgb.shape, policy, f"fused engine {self.path.name}")
        image, factor, depth = (self._bindings[n] for n in (FUSED_IMAGE, FUSED_RESCALE, FUSED_OUTPUT))
        shapes, stream = self._shapes, self._stream
        with self._lock:
            start = time.perf_counter()
            np.copyto(image.buffer.host_view(shapes[FUSED_IMAGE]), rgb[None], casting="no")
            factor.buffer.host_view((1,))[0] = np.float32(rescale)
            staged = time.perf_counter()
            image.buffer.to_device(image.buffer.nbytes, stream.handle)
            factor.buffer.to_device(factor.buffer.nbytes, stream.handle)
            if not self._context.execute_async_v3(int(stream)):
                raise RuntimeError("TensorRT execute_async_v3 (fused engine) failed; see the TensorRT log")
            depth.buffer.to_host(depth.buffer.nbytes, stream.handle)
            stream.synchronize()
            ran = time.perf_counter()
            out = depth.buffer.host_view(shapes[FUSED_OUTPUT])[0].copy()
            done = time.perf_counter()
            self._ran = True
        return out, {"preprocess": staged - start, "network": ran - staged, "postprocess": done - ran}

    @property
    def last_device_frame(self):
        """The last estimate's depth where the engine left it (its device buffer), as an
        inference.trt_outputs.TrtDeviceFrame valid until the next estimate; None before the first estimate,
        without onnx (the graphs cannot be written), or when the output engines failed their start-up check."""
        if not self._ran:
            return None
        outputs = self._outputs.get()
        if outputs is None:
            return None
        from mde_ros.inference.trt_outputs import TrtDeviceFrame

        return TrtDeviceFrame(self._bindings[FUSED_OUTPUT].buffer.device_ptr, self.spec.height, self.spec.width,
                              outputs)

    def _start_outputs(self):
        from mde_ros.inference.output_graphs import onnx_available
        from mde_ros.inference.trt_outputs import TrtOutputs, self_check

        if not onnx_available():
            log.warning("device_pipeline: onnx is not installed (pip install onnx): the outputs of the fused "
                        "engine's depth are built by numpy on the host")
            return None
        try:
            outputs = TrtOutputs(self._backend)
        except Exception as exc:  # a build setting this TensorRT refuses: numpy builds the outputs
            log.warning("device_pipeline: no TensorRT output engines (%s: %s): the outputs are built by numpy on "
                        "the host", type(exc).__name__, exc)
            return None
        problem = self_check(outputs)
        if problem is not None:
            log.warning("device_pipeline: TensorRT's output engines do not reproduce the numpy builders (%s): the "
                        "outputs are built by numpy on the host", problem)
            outputs.close()
            return None
        return outputs

    def describe(self) -> dict[str, Any]:
        return {"engine": str(self.paths.engine), "onnx": str(self.path), "height": self.spec.height,
                "width": self.spec.width, "policy": self.spec.policy}

    def close(self) -> None:
        if self._outputs.value is not None:
            self._outputs.value.close()
        for buffer in self._buffers:
            buffer.free()
        self._buffers = []


def _model_variant(precision: str, device: str, options: dict, card: ModelCard) -> tuple[str, str]:
    """The ONNX this TensorRT builds for `precision`: strongly typed, the precision's own model; weakly
    typed (10.x builder flags), fp16 is a flag on the fp32 model. Bad settings fail before TensorRT
    loads; no TensorRT here is BackendUnavailable (auto falls back)."""
    config = TensorRTConfig(precision, options.get("workspace_bytes", DEFAULT_WORKSPACE_BYTES),
                            options.get("dla_core"), options.get("max_batch", 1), options.get("min_size"),
                            options.get("max_size"), options.get("typing", "auto"))
    optimization_profile(card, config)
    trt, _ = import_tensorrt()
    try:
        features = TrtFeatures.probe(trt)
    except AttributeError as exc:  # as in the constructor: an API difference is BackendUnavailable
        raise BackendUnavailable(f"TensorRT {getattr(trt, '__version__', '?')} API difference: {exc}") from exc
    return plan_build(features, config.precision, config.typing, config.dla_core).model_variant, NAME


SPEC = BackendSpec(
    name=NAME, factory=TensorRTBackend, devices=("cuda",), precisions={"cuda": ("fp32", "fp16", "int8")},
    unavailable=tensorrt_unavailable_reason, options=OPTIONS, auto_rank=0, auto_files=(".onnx",),
    model_variant=_model_variant)
