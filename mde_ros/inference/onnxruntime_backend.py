"""onnxruntime backend: the default, CPU everywhere, CUDA / TensorRT providers where installed.

`infer` is a bare `session.run` plus a dtype/layout check: everything else (names, providers,
shape checks) is settled once in the constructor.

With a fused model beside the model (`model.fused.onnx`, `mde-ros export --fused WxH`) the backend
offers `DepthEstimator` a fused pipeline (`fused_pipeline`): the whole estimate (uint8 image in,
metres at camera resolution out) in one `session.run` of its own session, with the same providers
and session options, for frames of the camera size and resize policy it was exported for.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from mde_ros.inference.base import (Backend, BackendUnavailable, FirstUse, as_network_batch, check_network_output,
                                    output_rank_ok, parse_device, resolve_io_name, resolve_extra_output)
from mde_ros.inference.spec import BackendOption, BackendSpec, check_run, device_kind, package_missing
from mde_ros.inference.tensorrt_build import PROFILE_OPTIONS, TENSORRT
from mde_ros.models.card import ModelCard
from mde_ros.models.fused_meta import (FUSED_INPUTS, FUSED_OUTPUT, FusedSpec, existing_fused_model,
                                       fused_spec_for_card, read_ort_metadata)

log = logging.getLogger(__name__)

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
TENSORRT_PROVIDER = "TensorrtExecutionProvider"
NAME = "onnxruntime"
TRT_EP_OPTIONS = tuple(o.option for o in PROFILE_OPTIONS)  # the TensorRT EP's optimisation profile
OPTIONS = (
    BackendOption("intra_op_threads", "onnxruntime.intra_op_threads", "intra_op_threads", "--threads", "int", 0,
                  "onnxruntime intra-op threads; 0: onnxruntime's default (one per core)", low=0, high=1024),
    BackendOption("spin_wait", "onnxruntime.spin_wait", "spin_wait", "--spin-wait", "bool", False,
                  "let onnxruntime's intra-op threads spin between runs (its own default): ~0.5 ms less "
                  "network time, ~10 ms more CPU per frame (2 threads); false: they sleep"),
    BackendOption("trt_provider", "onnxruntime.trt_provider", "trt_provider", "--trt-provider", "bool", False,
                  "onnxruntime on cuda: put its TensorRT execution provider first (needs onnxruntime-gpu "
                  "built with TensorRT)"),
    *PROFILE_OPTIONS,
)


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailable(
            "backend 'onnxruntime' needs the onnxruntime package: pip install onnxruntime "
            f"(CPU) or onnxruntime-gpu (CUDA) [{exc}]") from exc
    return onnxruntime


def select_providers(device: str, available: list[str], trt_provider: bool = False,
                     fp16: bool = False, engine_cache: Path | None = None,
                     profile_options: dict[str, str] | None = None) -> list:
    """Execution providers for a device, in priority order, or BackendUnavailable.

    CPU stays last on CUDA so nodes a GPU provider cannot take still run. The TensorRT provider gets
    explicit profile shapes (else it builds its engine inside the first frame, and again for every
    new shape) and a cache folder that names the onnxruntime version.
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
        trt_options = {"device_id": index, "trt_fp16_enable": fp16, **(profile_options or {})}
        if engine_cache is not None:
            trt_options.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(engine_cache),
                               trt_timing_cache_enable=True, trt_timing_cache_path=str(engine_cache))
        providers.append((TENSORRT_PROVIDER, trt_options))
    providers.append((CUDA_PROVIDER, {"device_id": index}))
    providers.append(CPU_PROVIDER)
    return providers


class OnnxRuntimeBackend(Backend):
    """Runs the ONNX file it is given (for fp16 / int8: the fp16 / Q/DQ model mde_ros.modelfiles made);
    `source` is the model the user named, beside which its fused model is looked for."""

    name = NAME

    def __init__(self, model_path: str | Path, card: ModelCard, device: str = "cpu",
                 precision: str = "fp32", intra_op_threads: int | None = None, spin_wait: bool = False,
                 trt_provider: bool = False, max_batch: int | None = None,
                 min_size: tuple[int, int] | None = None, max_size: tuple[int, int] | None = None, *,
                 source: str | Path | None = None) -> None:
        ort = import_onnxruntime()
        check_run(SPEC, device, precision, {"trt_provider": trt_provider})
        if Path(model_path).suffix != ".onnx":
            raise ValueError(f"backend {NAME!r} loads an ONNX file, got {model_path}: mde_ros.modelfiles exports "
                             ".pt bundles (open_backend / load_estimator)")
        if intra_op_threads is not None and intra_op_threads < 0:
            raise ValueError(f"intra_op_threads must be >= 0 (0 = onnxruntime's default), "
                             f"got {intra_op_threads}")
        profile_options = None
        trt_ep = {"max_batch": max_batch, "min_size": min_size, "max_size": max_size}
        if any(v is not None for v in trt_ep.values()) and not trt_provider:
            raise ValueError("max_batch / min_size / max_size shape the TensorRT provider's engine: they need "
                             "trt_provider=True (onnxruntime's CPU and CUDA providers take any shape)")
        self.device, self.precision, self.card = device, precision, card
        engine_cache = None
        if trt_provider:
            from mde_ros.inference.tensorrt_build import TensorRTConfig, optimization_profile, ort_trt_cache_dir

            shape_config = TensorRTConfig(max_batch=max_batch or 1, min_size=min_size, max_size=max_size)
            profile_options = optimization_profile(card, shape_config).trt_ep_options(card.input_name)
            engine_cache = ort_trt_cache_dir(ort.__version__, f"cuda{parse_device(device)[1]}")
        providers = select_providers(device, ort.get_available_providers(), trt_provider,
                                     fp16=precision == "fp16", engine_cache=engine_cache,
                                     profile_options=profile_options)
        # What a fused session needs to start like this one (fused_pipeline, on first use).
        self._ort, self._trt_provider, self._engine_cache = ort, trt_provider, engine_cache
        # its fused model is looked for beside the model the user named (not beside a variant or an export)
        self._model_path = Path(source if source is not None else model_path)
        self._fused = FirstUse(self._start_fused)  # the fused pipeline, started on first use
        # fp16: the fp16 model (fp32 I/O), for the CUDA provider and the TensorRT provider alike.
        self.model_path = Path(model_path)

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_op_threads:
            options.intra_op_num_threads = intra_op_threads
        # onnxruntime's pool threads spin after each parallel op by default: between a node's frames that
        # burned ~10 ms of CPU per 128x160 frame on 2 cores (25.9 vs 15.8 ms process CPU per run for
        # +0.5 ms wall, README "CPU per frame") and took the cores the camera and DDS threads needed.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin_wait else "0")
        self._threads, self._spin_wait = intra_op_threads or 0, bool(spin_wait)
        self._options = options
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

    def fused_pipeline(self) -> "OrtFusedPipeline | None":
        """The fused model beside the model in its own session (same providers and options), or None:
        no `MODEL.fused.onnx`, precision other than fp32 (the fused model carries fp32 weights), or a
        fused model exported for another card (logged once). Started on first use and kept."""
        return self._fused.get()

    def _start_fused(self) -> "OrtFusedPipeline | None":
        path = existing_fused_model(self._model_path)
        if path is None:
            return None
        if self.precision != "fp32":
            log.warning("device_pipeline: the fused model %s is fp32; precision %s keeps the numpy "
                        "pre/post-processing around the %s model", path, self.precision, self.precision)
            return None
        spec = fused_spec_for_card(read_ort_metadata(path), path, self.card)
        if spec is None:
            return None
        ort = self._ort
        profile = fused_trt_ep_options(spec) if self._trt_provider else None
        providers = select_providers(self.device, ort.get_available_providers(), self._trt_provider,
                                     engine_cache=self._engine_cache, profile_options=profile)
        session = ort.InferenceSession(str(path), sess_options=self._options, providers=providers)
        dropped = providers_not_started(providers, session)
        if dropped:
            raise BackendUnavailable(f"onnxruntime could not start {dropped} for the fused model {path}")
        return OrtFusedPipeline(session, spec, path, self._options)

    def _check_providers_loaded(self, providers: list) -> None:
        # onnxruntime-gpu lists CUDA even when its CUDA/cuDNN libraries fail to load, then quietly
        # runs on CPU: a robot would silently lose its frame rate. Say so instead.
        dropped = providers_not_started(providers, self._session)
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
                "intra_op_threads": self._threads, "spin_wait": self._spin_wait,
                "input": self.input_name, "output": self.output_name,
                **({"sky_output": self.sky_name} if self.sky_name else {}),
                **({"fused": self._fused.value.describe()} if self._fused.value is not None else {})}


def providers_not_started(providers: list, session) -> list[str]:
    """Requested execution providers the session does not run (their libraries did not load)."""
    requested = [p[0] if isinstance(p, tuple) else p for p in providers]
    return [p for p in requested if p not in session.get_providers()]


def fused_trt_ep_options(spec: FusedSpec) -> dict[str, str]:
    """The TensorRT EP's profile for a fused model: static, one image of its camera, one factor."""
    shapes = f"image:1x{spec.height}x{spec.width}x3,rescale:1"
    return {"trt_profile_min_shapes": shapes, "trt_profile_opt_shapes": shapes, "trt_profile_max_shapes": shapes}


class OrtFusedPipeline:
    """`DepthEstimator`'s fused pipeline on onnxruntime: one `session.run` per frame.

    Timings: "preprocess" and "postprocess" are the host-side staging around the run; "network" is
    the run itself, which includes the graph's resize, normalisation and depth conversion.
    """

    # On the CPU provider numpy builds the outputs faster than the graphs (640x480 default outputs 2.4 vs
    # 5.7 ms, README "GPU fast path"): the graphs run only where the depth is on a device, unless this is
    # set (the tests hold the graphs to numpy on CPU onnxruntime, the only provider here).
    outputs_on_cpu = False

    def __init__(self, session, spec: FusedSpec, path: Path, options=None) -> None:
        inputs = {i.name: i for i in session.get_inputs()}
        outputs = [o.name for o in session.get_outputs()]
        image, rescale = (inputs.get(name) for name in FUSED_INPUTS)
        if image is None or rescale is None or FUSED_OUTPUT not in outputs or image.type != "tensor(uint8)" \
                or rescale.type != "tensor(float)":
            raise ValueError(f"{path}: a fused model has inputs image uint8 (N,H,W,3) and rescale float32 (N,), "
                             f"output depth; this one has {[(i.name, i.type) for i in inputs.values()]} -> {outputs}")
        self.session, self.spec, self.path = session, spec, path
        # The depth stays where the session made it (an OrtValue): its outputs are built there by
        # inference.ort_outputs' graphs on the same provider (last_device_frame).
        providers = session.get_providers()
        self._device = ("cuda", int(session.get_provider_options().get(CUDA_PROVIDER, {}).get("device_id", 0))) \
            if CUDA_PROVIDER in providers else ("cpu", 0)
        self._options = options
        self._outputs = FirstUse(self._start_outputs)
        self._last_depth = None

    def accepts(self, height: int, width: int, policy: str | None) -> bool:
        """Only the camera size and resize policy the model was exported for (its matrices are constants)."""
        return self.spec.accepts(height, width, policy)

    def estimate(self, rgb: np.ndarray, card: ModelCard, policy: str | None,
                 rescale: float = 1.0) -> tuple[np.ndarray, dict[str, float]]:
        """HxWx3 uint8 RGB -> (HxW float32 metres, stage seconds)."""
        self.spec.check(rgb.shape, policy, f"fused model {self.path.name}")
        start = time.perf_counter()
        binding = self.session.io_binding()
        binding.bind_cpu_input("image", np.ascontiguousarray(rgb)[None])
        binding.bind_cpu_input("rescale", np.array([rescale], np.float32))
        host = None
        if self._device[0] == "cpu":  # written straight into the array the estimator returns
            host = np.empty((1,) + tuple(rgb.shape[:2]), np.float32)
            binding.bind_ortvalue_output(FUSED_OUTPUT, self._ort().OrtValue.ortvalue_from_numpy(host))
        else:  # kept on the device; the estimator's numpy depth is one copy of it
            binding.bind_output(FUSED_OUTPUT, *self._device)
        staged = time.perf_counter()
        self.session.run_with_iobinding(binding)
        ran = time.perf_counter()
        self._last_depth = binding.get_outputs()[0]
        depth = (binding.copy_outputs_to_cpu()[0] if host is None else host)[0]
        done = time.perf_counter()
        return depth, {"preprocess": staged - start, "network": ran - staged, "postprocess": done - ran}

    @property
    def last_device_frame(self):
        """The last estimate's depth where the session made it, as an inference.ort_outputs.OrtDeviceFrame
        (valid until the next estimate), or None: nothing run yet, the CPU provider (numpy is faster there,
        unless outputs_on_cpu), or no onnx to write the output graphs."""
        if self._device[0] == "cpu" and not self.outputs_on_cpu:
            return None
        outputs = self._outputs.get()
        if self._last_depth is None or outputs is None:
            return None
        from mde_ros.inference.ort_outputs import OrtDeviceFrame

        return OrtDeviceFrame(self._last_depth, outputs)

    def _start_outputs(self):
        from mde_ros.inference.ort_outputs import OrtOutputs, output_providers, self_check
        from mde_ros.inference.output_graphs import onnx_available

        if not onnx_available():
            log.warning("device_pipeline: onnx is not installed (pip install onnx): the outputs of the fused "
                        "model's depth are built by numpy on the host")
            return None
        outputs = OrtOutputs(self._ort(), output_providers(self.session), self._options)
        problem = self_check(outputs, self._device)
        if problem is not None:
            log.warning("device_pipeline: onnxruntime's output graphs on %s do not reproduce the numpy builders "
                        "(%s): the outputs are built by numpy on the host", outputs.providers, problem)
            return None
        return outputs

    @staticmethod
    def _ort():
        import onnxruntime

        return onnxruntime

    def describe(self) -> dict[str, Any]:
        return {"model": str(self.path), "height": self.spec.height, "width": self.spec.width,
                "policy": self.spec.policy, "providers": self.session.get_providers()}


def _auto_options(device: str, options: dict) -> dict:
    """What auto passes on: no TensorRT provider on the CPU, and its profile only with the provider."""
    accepted = {k: v for k, v in options.items() if k in SPEC.option_names}
    if device_kind(device) == "cpu":
        accepted.pop("trt_provider", None)
    if not accepted.get("trt_provider"):  # engine shapes meant for TensorRT: not for CPU/CUDA
        for option in TRT_EP_OPTIONS:
            accepted.pop(option, None)
    return accepted


def _model_variant(precision: str, device: str, options: dict, card: ModelCard) -> tuple[str, str]:
    """The precision's own model; int8 made for the TensorRT provider when it runs it."""
    return precision, TENSORRT if options.get("trt_provider") else NAME


SPEC = BackendSpec(
    name=NAME, factory=OnnxRuntimeBackend, devices=("cpu", "cuda"),
    # int8 runs the Q/DQ model (CPU kernels, or the TensorRT provider); fp16 the fp16 model on a GPU.
    precisions={"cpu": ("fp32", "int8"), "cuda": ("fp32", "fp16")}, option_precisions={"trt_provider": ("int8",)},
    unavailable=lambda: package_missing("onnxruntime", "pip install onnxruntime (CPU) or onnxruntime-gpu (CUDA)"),
    options=OPTIONS, auto_rank=10, auto_files=(".onnx",), model_variant=_model_variant, auto_options=_auto_options)
