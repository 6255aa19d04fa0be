"""The one model loader: which file runs for a precision, made before any backend is constructed.

A backend's spec says what it loads for a precision (mde_ros.inference.spec.ModelRequest: the ONNX or
the .pt bundle; the fp32 model, its fp16 conversion or its Q/DQ int8 model for a recipe). This module
turns that into a file, building it when needed (like ultralytics' exporter beside its AutoBackend):

- a .pt bundle a backend needs as ONNX: exported once into the user cache (keyed by the bundle's hash);
- fp16: MODEL.fp16.onnx beside the model if converted from it, else a cached conversion;
- int8: `int8_model`, else MODEL.int8.<target>.onnx / MODEL.int8.onnx beside it made from this model,
  else quantised once from `calibration` (images or a bag), else a ValueError saying how
  (mde_ros.quantization.variants).

Backends then only load the file they are given. The node, the CLI commands and bag replay all load
models through `load_estimator` (or `open_backend` for a bare backend).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from mde_ros.inference import AUTO, Backend, create_backend
from mde_ros.inference.cache import cache_dir, file_sha256
from mde_ros.inference.options import MODEL_FILE_OPTIONS
from mde_ros.inference.spec import ModelRequest
from mde_ros.models.card import ModelCard, load_card_for
from mde_ros.pipeline.estimator import DepthEstimator, EstimatorConfig

FILE_OPTIONS = tuple(o.option for o in MODEL_FILE_OPTIONS)  # int8_model, calibration


def onnx_export_of(bundle: str | Path) -> Path:
    """The ONNX to run for a .pt bundle: a cached export, keyed by the bundle's sha256 (retrained weights
    get a fresh export). Needs torch only when a bundle has not been exported before."""
    bundle = Path(bundle)
    target = cache_dir() / "onnx" / f"{file_sha256(bundle)[:16]}.onnx"
    if target.exists():
        return target
    from mde_ros.models.bundle import load_bundle
    from mde_ros.models.export import export_onnx

    model, card = load_bundle(bundle, map_location="cpu")
    export_onnx(model, card, target)  # atomic: a crash leaves no half-written export
    return target


def model_file(request: ModelRequest, *, int8_model: str | Path | None = None,
               calibration: str | Path | None = None) -> Path:
    """The file that satisfies `request`, found or built (see the module doc)."""
    if request.format == "pt":
        return request.source
    from mde_ros.quantization.variants import model_for_precision

    onnx = onnx_export_of(request.source) if request.source.suffix == ".pt" else request.source
    return model_for_precision(onnx, request.variant, target=request.int8_target, int8_model=int8_model,
                               calibration=calibration)


def open_backend(name: str, model_path: str | Path, card: ModelCard, *, device: str = "cpu",
                 precision: str = "fp32", **options: Any) -> Backend:
    """create_backend, with the file for `precision` found or built first (int8_model / calibration
    name the int8 model or its calibration data; ValueError when given for another precision)."""
    files = {k: options.pop(k) for k in FILE_OPTIONS if k in options}
    if precision != "int8" and any(v is not None for v in files.values()):
        raise ValueError(f"{' / '.join(FILE_OPTIONS)} are only used with precision 'int8'")

    def resolve(request: ModelRequest) -> Path:
        return model_file(request, **files)

    return create_backend(name, model_path, card, device=device, precision=precision, model_files=resolve,
                          **options)


def load_estimator(model: str | Path | None = None, backend: str = AUTO, *, device: str = "cpu",
                   precision: str = "fp32", config: EstimatorConfig | None = None,
                   **options: Any) -> DepthEstimator:
    """The DepthEstimator for `model` (default: the shipped model): its card (sidecar, ONNX metadata or
    .pt bundle), the file for `precision`, and the backend on it."""
    if model is None:
        from mde_ros.resources import default_model_path

        model = default_model_path()
    card = load_card_for(model)
    runner = open_backend(backend, model, card, device=device, precision=precision, **options)
    return DepthEstimator(runner, card, config)
