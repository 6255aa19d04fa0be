"""Model card: everything the pipeline must know about a network besides its weights.

Kept free of torch so the onnxruntime / TensorRT path never imports it. A card can also
describe an ONNX model this project did not train (architecture "external").
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from mde_ros.atomic import atomic_write

OUTPUT_KINDS = ("metric_depth", "inverse_depth", "disparity")
ONNX_METADATA_KEY = "mde_ros.card"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class CardError(ValueError):
    """A model card is missing, unreadable or inconsistent."""


@dataclass
class ModelCard:
    name: str
    architecture: str
    input_height: int
    input_width: int
    arch_kwargs: dict = field(default_factory=dict)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    # metric_depth: depth = scale * raw + shift
    # inverse_depth: depth = 1 / (scale * raw + shift)
    # disparity: depth = scale / raw   (scale = baseline * fx at network resolution)
    output: str = "metric_depth"
    output_scale: float = 1.0
    output_shift: float = 0.0
    min_depth: float = 0.1
    max_depth: float = 10.0
    # The training camera's fx at NETWORK resolution; enables camera-aware metric rescale.
    train_focal_px: float | None = None
    input_name: str = "image"
    output_name: str = "depth"
    provenance: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)
        self.validate()

    def validate(self) -> None:
        if self.output not in OUTPUT_KINDS:
            raise CardError(f"card {self.name!r}: output must be one of {OUTPUT_KINDS}, got {self.output!r}")
        if self.input_height <= 0 or self.input_width <= 0:
            raise CardError(f"card {self.name!r}: input size must be positive, got "
                            f"{self.input_height}x{self.input_width}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise CardError(f"card {self.name!r}: mean/std need 3 values with std > 0")
        if not (0 <= self.min_depth < self.max_depth) or not math.isfinite(self.max_depth):
            raise CardError(f"card {self.name!r}: need 0 <= min_depth < max_depth < inf, got "
                            f"{self.min_depth}..{self.max_depth}")
        if self.train_focal_px is not None and not self.train_focal_px > 0:
            raise CardError(f"card {self.name!r}: train_focal_px must be > 0 or null")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelCard":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CardError(f"unknown model card keys: {unknown}")
        missing = [k for k in ("name", "architecture", "input_height", "input_width") if k not in data]
        if missing:
            raise CardError(f"model card lacks required keys: {missing}")
        _check_types(data)
        return cls(**data)

    def save(self, path: str | Path) -> Path:
        """Written atomically like the model beside it: a reader never sees half a card."""
        path = Path(path)
        text = (yaml.safe_dump(self.to_dict(), sort_keys=False) if path.suffix in (".yaml", ".yml")
                else json.dumps(self.to_dict(), indent=2) + "\n")
        with atomic_write(path, "w") as stream:
            stream.write(text)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "ModelCard":
        path = Path(path)
        try:
            text = path.read_text()
            data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise CardError(f"cannot read model card {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise CardError(f"model card {path} is not a mapping")
        return cls.from_dict(data)


_NUMBER = (int, float)
_FIELD_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "name": ((str,), "a string"), "architecture": ((str,), "a string"),
    "input_height": ((int,), "an integer"), "input_width": ((int,), "an integer"),
    "arch_kwargs": ((dict,), "a mapping"), "provenance": ((dict,), "a mapping"), "metrics": ((dict,), "a mapping"),
    "output": ((str,), "a string"), "output_scale": (_NUMBER, "a number"), "output_shift": (_NUMBER, "a number"),
    "min_depth": (_NUMBER, "a number"), "max_depth": (_NUMBER, "a number"),
    "train_focal_px": ((*_NUMBER, type(None)), "a number or null"),
    "input_name": ((str,), "a string"), "output_name": ((str,), "a string"),
}


def _check_types(data: dict[str, Any]) -> None:
    """CardError naming the key whose value has the wrong type (a hand-written card with
    "min_depth": "0.1" or "mean": 0.5 must not end in a TypeError deep inside the pipeline)."""
    for key, value in data.items():
        if key in ("mean", "std"):
            ok = (isinstance(value, (list, tuple)) and len(value) == 3
                  and all(isinstance(v, _NUMBER) and not isinstance(v, bool) for v in value))
            expected = "a list of 3 numbers"
        elif key in _FIELD_TYPES:
            types, expected = _FIELD_TYPES[key]
            ok = isinstance(value, types) and not isinstance(value, bool)
        else:
            continue
        if not ok:
            raise CardError(f"model card key {key!r} must be {expected}, got {value!r:.60}")


def card_path_for(model_path: str | Path) -> Path:
    """Sidecar card of a model file: 'foo.onnx' -> 'foo.card.json'."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.stem + ".card.json")


def onnx_metadata(model_path: str | Path) -> dict[str, str]:
    """The ONNX file's metadata_props, read through onnxruntime (the runtime has it; the `onnx` package
    is only for export). `onnx` is the fallback where onnxruntime is absent (a TensorRT-only install)
    or cannot open the graph on CPU (operators only another provider has)."""
    first_error: Exception | None = None
    try:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.log_severity_level = 3  # a corrupt file is reported below, once
        session = onnxruntime.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        return dict(session.get_modelmeta().custom_metadata_map)
    except Exception as exc:  # ImportError, or onnxruntime's several types for a corrupt/unsupported file
        first_error = exc
    try:
        import onnx
    except ImportError:
        if isinstance(first_error, ImportError):
            raise CardError(f"cannot read the card inside {model_path}: neither onnxruntime nor onnx is "
                            "installed") from first_error
        raise CardError(f"cannot read ONNX model {model_path}: {_first_line(first_error)}") from first_error
    try:
        proto = onnx.load(str(model_path), load_external_data=False)
    except Exception as exc:  # onnx raises several types for a corrupt file
        raise CardError(f"cannot read ONNX model {model_path}: {_first_line(exc)}") from exc
    return {prop.key: prop.value for prop in proto.metadata_props}


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)


def load_card_for(model_path: str | Path) -> ModelCard:
    """Find a model's card: a sidecar .card.json/.card.yaml, the ONNX metadata, or the .pt bundle."""
    model_path = Path(model_path)
    if not model_path.exists():
        raise CardError(f"model file not found: {model_path}")
    for suffix in (".card.json", ".card.yaml", ".card.yml"):
        sidecar = model_path.with_name(model_path.stem + suffix)
        if sidecar.exists():
            return ModelCard.load(sidecar)
    if model_path.suffix == ".onnx":
        metadata = onnx_metadata(model_path)
        if ONNX_METADATA_KEY in metadata:
            return ModelCard.from_dict(json.loads(metadata[ONNX_METADATA_KEY]))
        raise CardError(f"{model_path} has no model card: write {card_path_for(model_path)} "
                        "(see README, 'Bring your own ONNX model')")
    if model_path.suffix == ".pt":
        from mde_ros.models.bundle import load_bundle_card

        return load_bundle_card(model_path)
    raise CardError(f"unsupported model file {model_path}: expected .onnx or .pt")
