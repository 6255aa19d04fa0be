"""Model card: everything the pipeline must know about a network besides its weights.

Kept free of torch so the onnxruntime / TensorRT path never imports it. A card can also
describe an ONNX model this project did not train (architecture "external").
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import yaml

from mde_ros.atomic import atomic_write

OUTPUT_KINDS = ("metric_depth", "inverse_depth", "disparity", "relative_inverse_depth")
# Affine-invariant outputs: no metres without scale anchors (published as a relative image instead).
RELATIVE_KINDS = ("relative_inverse_depth",)
RESIZE_POLICIES = ("stretch", "letterbox", "keep_aspect")
# shorter: DA/MiDaS 'lower_bound'; longer: 'upper_bound'; minimal: MiDaS 'minimal' (the scale nearer 1)
RESIZE_SIDES = ("shorter", "longer", "minimal")
INTERPOLATIONS = ("auto", "linear", "cubic", "area", "nearest")
# How the network's output is resized back to the camera's size (the family's own demo):
# linear: bilinear, half-pixel centres (torch align_corners=False, OpenCV); linear_align_corners:
# bilinear with corners aligned (Depth-Anything-V2's F.interpolate(..., align_corners=True));
# cubic: bicubic, half-pixel (MiDaS's F.interpolate(..., mode="bicubic", align_corners=False)).
OUTPUT_INTERPOLATIONS = ("linear", "linear_align_corners", "cubic")
CHANNEL_ORDERS = ("RGB", "BGR")
NORMALIZATIONS = ("outside", "inside")
FOCAL_RULES = ("fx", "mean_fx_fy")
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
    # ---- the model's own pre/post-processing (defaults: this project's own models) ----
    # stretch: to input size; letterbox: fit inside it, centred, padded; keep_aspect (dynamic-shape
    # models): the `resize_side` side at the input size, both sides rounded to `size_multiple`.
    resize_policy: str = "stretch"
    resize_side: str = "shorter"
    # Network input sides must be multiples of this (ViT patch 14, MiDaS 32); keep_aspect rounds to it.
    size_multiple: int = 1
    # Letterbox padding as an RGB pixel value (0..255, before normalisation); null: the mean colour.
    pad_value: list | None = None
    interpolation: str = "auto"        # auto: area when shrinking, linear otherwise; or an OpenCV mode
    output_interpolation: str = "linear"  # the output's resize back to the camera (OUTPUT_INTERPOLATIONS)
    value_range: float = 1.0           # pixel 255 becomes this (1.0: [0, 1]; 255.0: raw pixel values)
    channel_order: str = "RGB"
    normalization: str = "outside"     # outside: the pipeline applies mean/std; inside: the graph does
    # Camera-aware rescale: which camera focal (at network resolution) is compared with the card's.
    focal_rule: str = "fx"
    # Canonical-camera models (Metric3D, Depth-Anything-3): depth = raw * f / canonical_focal_px,
    # always applied (the output is defined for that camera), unlike the optional train_focal_px.
    canonical_focal_px: float | None = None
    # An optional sky/mask output (e.g. Depth-Anything-3 'sky'): values >= sky_threshold are sky.
    sky_output: str | None = None
    sky_threshold: float = 0.5

    def __post_init__(self) -> None:
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)
        if self.pad_value is not None:
            values = [self.pad_value] * 3 if isinstance(self.pad_value, (int, float)) else self.pad_value
            self.pad_value = [float(v) for v in values]
        self.validate()

    @property
    def is_relative(self) -> bool:
        """Affine-invariant output: metres only through scale anchors."""
        return self.output in RELATIVE_KINDS

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
        self._validate_processing()

    def _validate_processing(self) -> None:
        name = self.name
        for key, allowed in (("resize_policy", RESIZE_POLICIES), ("resize_side", RESIZE_SIDES),
                             ("interpolation", INTERPOLATIONS), ("output_interpolation", OUTPUT_INTERPOLATIONS),
                             ("channel_order", CHANNEL_ORDERS),
                             ("normalization", NORMALIZATIONS), ("focal_rule", FOCAL_RULES)):
            if getattr(self, key) not in allowed:
                raise CardError(f"card {name!r}: {key} must be one of {allowed}, got {getattr(self, key)!r}")
        if self.size_multiple < 1:
            raise CardError(f"card {name!r}: size_multiple must be >= 1, got {self.size_multiple}")
        if self.input_height % self.size_multiple or self.input_width % self.size_multiple:
            raise CardError(f"card {name!r}: input size {self.input_height}x{self.input_width} is not a "
                            f"multiple of the model's patch size (size_multiple {self.size_multiple}); use "
                            f"e.g. {_nearest_multiple(self.input_height, self.size_multiple)}x"
                            f"{_nearest_multiple(self.input_width, self.size_multiple)}")
        if not self.value_range > 0:
            raise CardError(f"card {name!r}: value_range must be > 0 (1.0 or 255.0), got {self.value_range}")
        if self.pad_value is not None and not all(0 <= v <= 255 for v in self.pad_value):
            raise CardError(f"card {name!r}: pad_value is an RGB pixel value in 0..255, got {self.pad_value}")
        if self.canonical_focal_px is not None:
            if not self.canonical_focal_px > 0:
                raise CardError(f"card {name!r}: canonical_focal_px must be > 0 or null")
            if self.train_focal_px is not None:
                raise CardError(f"card {name!r}: give canonical_focal_px (output defined for a canonical "
                                "camera) or train_focal_px (optional rescale), not both")
        if self.sky_output is not None and self.sky_output in ("", self.output_name):
            raise CardError(f"card {name!r}: sky_output must name another output than the depth "
                            f"output {self.output_name!r}")

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


def require_metres(card: ModelCard, anchored: bool, consumer: str) -> None:
    """CardError when `consumer` must produce metres from a relative model that has no scale anchors.

    A relative (affine-invariant) output has no metres of its own: never publish it as depth.
    """
    if card.is_relative and not anchored:
        raise CardError(f"model {card.name!r} outputs {card.output} (affine-invariant, no metric scale): "
                        f"{consumer} needs metres, which only scale anchors can give it (see the README's "
                        "'Bring your own ONNX' and scale-anchoring sections), or use a metric model")


def _nearest_multiple(value: int, multiple: int) -> int:
    return max(multiple, round(value / multiple) * multiple)


_NUMBER = (int, float)
_FIELD_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "name": ((str,), "a string"), "architecture": ((str,), "a string"),
    "input_height": ((int,), "an integer"), "input_width": ((int,), "an integer"),
    "arch_kwargs": ((dict,), "a mapping"), "provenance": ((dict,), "a mapping"), "metrics": ((dict,), "a mapping"),
    "output": ((str,), "a string"), "output_scale": (_NUMBER, "a number"), "output_shift": (_NUMBER, "a number"),
    "min_depth": (_NUMBER, "a number"), "max_depth": (_NUMBER, "a number"),
    "train_focal_px": ((*_NUMBER, type(None)), "a number or null"),
    "input_name": ((str,), "a string"), "output_name": ((str,), "a string"),
    "resize_policy": ((str,), "a string"), "resize_side": ((str,), "a string"),
    "size_multiple": ((int,), "an integer"), "interpolation": ((str,), "a string"),
    "output_interpolation": ((str,), "a string"),
    "value_range": (_NUMBER, "a number"), "channel_order": ((str,), "a string"),
    "normalization": ((str,), "a string"), "focal_rule": ((str,), "a string"),
    "canonical_focal_px": ((*_NUMBER, type(None)), "a number or null"),
    "sky_output": ((str, type(None)), "an output name or null"), "sky_threshold": (_NUMBER, "a number"),
}


def _check_types(data: dict[str, Any]) -> None:
    """CardError naming the key whose value has the wrong type (a hand-written card with
    "min_depth": "0.1" or "mean": 0.5 must not end in a TypeError deep inside the pipeline)."""
    for key, value in data.items():
        if key in ("mean", "std"):
            ok = (isinstance(value, (list, tuple)) and len(value) == 3
                  and all(isinstance(v, _NUMBER) and not isinstance(v, bool) for v in value))
            expected = "a list of 3 numbers"
        elif key == "pad_value":
            ok = value is None or (isinstance(value, _NUMBER) and not isinstance(value, bool)) or (
                isinstance(value, (list, tuple)) and len(value) == 3
                and all(isinstance(v, _NUMBER) and not isinstance(v, bool) for v in value))
            expected = "null, a number or 3 numbers (RGB, 0..255)"
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


# Card readers of model files that carry their card inside, by suffix, registered by the layer that can read
# them (".pt": mde_ros.models, through the bundle reader, which needs torch): this contract imports no torch.
CARD_READERS: dict[str, Callable[[Path], "ModelCard"]] = {}


def register_card_reader(suffix: str, reader: Callable[[Path], "ModelCard"]) -> None:
    """Let load_card_for read the card inside `suffix` files (a sidecar still wins)."""
    CARD_READERS[suffix] = reader


def load_card_for(model_path: str | Path) -> ModelCard:
    """Find a model's card: a sidecar .card.json/.card.yaml, the ONNX metadata, or a registered reader
    (the .pt bundle's)."""
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
    if model_path.suffix in CARD_READERS:
        return CARD_READERS[model_path.suffix](model_path)
    raise CardError(f"unsupported model file {model_path}: expected .onnx or "
                    f"{' or '.join(sorted(CARD_READERS)) or '.pt (with mde_ros.models imported)'}")
