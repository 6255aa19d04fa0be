"""The registered backends (one list) and the factory made from their specs.

`create_backend` constructs a backend on a model file it is given: which file runs for a precision
(the fp16 conversion, the Q/DQ int8 model, the ONNX export of a .pt bundle) is decided and built
above inference by `mde_ros.modelfiles`, which passes `model_files`. Without it the factory runs
only the model as given (fp32 ONNX, or the .pt bundle on a backend that loads bundles).

The backend modules import their heavy dependency (torch, onnxruntime, tensorrt) only when a
backend is constructed, so listing them here never imports torch on an onnxruntime-only install.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from mde_ros.inference import onnxruntime_backend, tensorrt_backend, torch_backend
from mde_ros.inference.base import Backend, BackendUnavailable
from mde_ros.inference.cache import require_model_file
from mde_ros.inference.spec import AUTO, BackendSpec, ModelRequest, check_run, device_kind, parse_device
from mde_ros.models.card import ModelCard

log = logging.getLogger(__name__)

# Every backend, once. Adding one (e.g. OpenVINO) = its module with a SPEC, and its line here.
SPECS: tuple[BackendSpec, ...] = (
    onnxruntime_backend.SPEC,
    tensorrt_backend.SPEC,
    torch_backend.SPEC,
)
BY_NAME = {spec.name: spec for spec in SPECS}
BACKEND_NAMES = (AUTO, *BY_NAME)
AUTO_ORDER = tuple(sorted((s for s in SPECS if s.auto_rank is not None), key=lambda s: s.auto_rank))

ModelFiles = Callable[[ModelRequest], Path]


def auto_description() -> str:
    """What `auto` does, in words, from the specs (parameter and flag help)."""
    by_file: dict[str, list[str]] = {}
    for spec in AUTO_ORDER:
        for suffix in spec.auto_files:
            by_file.setdefault(suffix, []).append(spec.name)
    rules = "; ".join(f"a {suffix} model on {', then '.join(names)}" for suffix, names in by_file.items())
    return f"auto: {rules} (with device cuda each on the GPU first, then on the CPU)"


def spec_of(name: str) -> BackendSpec:
    """The spec of a concrete backend; ValueError listing the names for anything else."""
    if name not in BY_NAME:
        raise ValueError(f"unknown backend {name!r}: choose one of {', '.join(BACKEND_NAMES)}")
    return BY_NAME[name]


def takes_option(name: str, option: str) -> bool:
    """Whether backend `name` (or some backend, for auto) takes `option`."""
    return any(option in s.option_names for s in (SPECS if name == AUTO else (spec_of(name),)))


def given_file(request: ModelRequest) -> Path:
    """The model file as given, when that is what the backend loads; else ValueError saying who makes it."""
    suffix = request.source.suffix
    if request.variant == "fp32" and (request.format == "pt" or suffix == ".onnx"):
        return request.source
    wanted = "the ONNX export" if request.variant == "fp32" else f"the {request.variant} model"
    raise ValueError(f"{wanted} of {request.source} is made above inference: load it through "
                     "mde_ros.modelfiles (open_backend / load_estimator), which finds or builds it")


def _create(spec: BackendSpec, model_path: Path, card: ModelCard, device: str, precision: str,
            options: dict, model_files: ModelFiles) -> Backend:
    request = spec.request(model_path, device, precision, options, card)
    return spec.factory(model_files(request), card, device, precision, source=model_path, **options)


def _explicit(spec: BackendSpec, model_path: Path, card: ModelCard, device: str, precision: str,
              options: dict, model_files: ModelFiles) -> Backend:
    unknown = sorted(set(options) - set(spec.option_names))
    if unknown:
        raise ValueError(f"backend {spec.name!r} takes no option(s) {unknown}; it accepts {list(spec.option_names)}")
    check_run(spec, device, precision, options, SPECS)
    return _create(spec, model_path, card, device, precision, options, model_files)


def _auto(model_path: Path, card: ModelCard, device: str, precision: str, options: dict,
          model_files: ModelFiles) -> Backend:
    """The first spec in auto's order that runs here: on a GPU each on the GPU, then each on the CPU;
    only specs whose auto_files include the model's suffix (an ONNX goes to TensorRT / onnxruntime,
    a .pt bundle to torch)."""
    unknown = sorted(set(options) - {o for s in SPECS for o in s.option_names})
    if unknown:
        raise ValueError(f"no backend takes option(s) {unknown}")
    fitting = [s for s in AUTO_ORDER if model_path.suffix in s.auto_files]
    on_gpu = device_kind(device) == "cuda"
    candidates = [(s, device) for s in fitting if device_kind(device) in s.devices]
    candidates += [(s, "cpu") for s in fitting if on_gpu and "cpu" in s.devices]
    reasons = []
    for spec, candidate_device in candidates:
        accepted = spec.options_for_auto(candidate_device, options)
        if precision not in spec.runs(candidate_device, precision, accepted):
            reasons.append(f"{spec.name} on {candidate_device} does not run {precision}")
            continue
        try:
            backend = _create(spec, model_path, card, candidate_device, precision, accepted, model_files)
        except BackendUnavailable as exc:
            reasons.append(f"{spec.name} on {candidate_device}: {exc}")
            continue
        if reasons:
            log.warning("backend 'auto' chose %s on %s because %s", spec.name, candidate_device, "; ".join(reasons))
        return backend
    raise BackendUnavailable("backend 'auto' found no usable backend: " + " | ".join(reasons))


def create_backend(name: str, model_path: str | Path, card: ModelCard, *, device: str = "cpu",
                   precision: str = "fp32", model_files: ModelFiles | None = None, **options: Any) -> Backend:
    """A ready backend for `model_path` (.onnx, or a .pt bundle).

    name: "auto" or a registered backend (BACKEND_NAMES). Raises ValueError for bad arguments,
    BackendUnavailable when the backend cannot run here (message says what to install). Options: each
    spec's (mde_ros.inference.options lists them with their ROS parameter and CLI names).
    `model_files` turns a backend's ModelRequest into the file it loads (mde_ros.modelfiles builds
    fp16 / int8 / exported models); default: the model as given.
    """
    if name != AUTO:
        spec_of(name)
    parse_device(device)
    model_path = require_model_file(model_path, card)
    model_files = model_files or given_file
    if name == AUTO:
        return _auto(model_path, card, device, precision, options, model_files)
    return _explicit(BY_NAME[name], model_path, card, device, precision, options, model_files)


def available_backends() -> dict[str, str | None]:
    """Each registered backend -> None if it can run here (on some device), else why not."""
    return {spec.name: spec.unavailable() for spec in SPECS}
