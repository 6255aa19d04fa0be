"""INT8 as one explicit Q/DQ ONNX model: onnxruntime's static quantisation in QDQ format with
calibration images, weights symmetric int8 per output channel.

Targets differ in what their int8 kernels want, so each gets its own recipe (recorded in the card):

- onnxruntime (x86 CPU): uint8 activations (asymmetric) with int8 weights (U8S8), the layout MLAS
  is fastest with; `reduce_range` (7-bit weights) avoids the int16 saturation of AVX2's
  vpmaddubsw on CPUs without VNNI. Conv (+ its Relu, fused into QLinearConv) and the decoder's
  Resize/Concat are quantised, so the skip path stays uint8 between convolutions; residual Adds,
  MaxPool and the Sigmoid head stay float (quantising them measured slower or no faster here).
- tensorrt: symmetric int8 activations and weights (S8S8, zero point 0), the only int8 Q/DQ
  TensorRT builds; float biases (TensorRT fuses them itself); residual Adds quantised too so
  TensorRT can fuse them into the int8 convolutions (NVIDIA's Q/DQ placement guidance).
"""
from __future__ import annotations

import logging
import platform
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mde_ros.inference.cache import file_sha256
from mde_ros.models.card import ModelCard, load_card_for
from mde_ros.quantization.calibration import CalibrationSet, network_inputs
from mde_ros.quantization.onnx_file import derived_card, write_model

log = logging.getLogger(__name__)

TARGETS = ("onnxruntime", "tensorrt")


@dataclass(frozen=True)
class Recipe:
    """The quantize_static settings of one target (all recorded in the card)."""

    target: str
    activations: str                      # "uint8" (asymmetric) | "int8" (symmetric)
    weights: str = "int8"                 # always symmetric, per output channel
    per_channel: bool = True
    reduce_range: bool = False
    op_types: tuple[str, ...] = ()        # () = every op onnxruntime can quantise
    quantize_bias: bool = True
    calibrate_method: str = "MinMax"
    extra_options: dict[str, Any] = field(default_factory=dict)


RECIPES = {
    "onnxruntime": Recipe("onnxruntime", activations="uint8", reduce_range=True,
                          op_types=("Conv", "Relu", "Resize", "Concat")),
    "tensorrt": Recipe("tensorrt", activations="int8", op_types=("Conv", "Relu", "Add", "MaxPool"),
                       quantize_bias=False, extra_options={"ActivationSymmetric": True}),
}


def recipe_for(target: str) -> Recipe:
    if target not in RECIPES:
        raise ValueError(f"unknown quantization target {target!r}: choose one of {TARGETS}")
    return RECIPES[target]


class _Reader:
    """onnxruntime CalibrationDataReader over preprocessed calibration images."""

    def __init__(self, input_name: str, batches: list[np.ndarray]) -> None:
        self._input_name, self._batches = input_name, batches
        self._iter = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._iter, None)
        return None if batch is None else {self._input_name: batch}

    def rewind(self) -> None:
        self._iter = iter(self._batches)


def quantize_model(source: str | Path, target_path: str | Path, calibration: CalibrationSet, *,
                   target: str = "onnxruntime", resize_policy: str = "stretch", command: str | None = None) -> ModelCard:
    """Write the Q/DQ int8 model of the ONNX `source` for `target` to `target_path` (+ its card)."""
    import onnx
    import onnxruntime
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    recipe = recipe_for(target)
    source, target_path = Path(source), Path(target_path)
    card = load_card_for(source)
    batches = list(network_inputs(calibration.images, card, resize_policy))
    reader = type("CalibrationReader", (_Reader, CalibrationDataReader), {})(card.input_name, batches)
    types = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    extra = {"WeightSymmetric": True, "QuantizeBias": recipe.quantize_bias, **recipe.extra_options}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mde_quantize_") as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "quantized.onnx"
        # Shape inference + graph cleanup first, as onnxruntime recommends for static quantisation.
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=False)
        quantize_static(str(prepared), str(quantized), reader, quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(recipe.op_types) or None, per_channel=recipe.per_channel,
                        reduce_range=recipe.reduce_range, activation_type=types[recipe.activations],
                        weight_type=types[recipe.weights],
                        calibrate_method=getattr(CalibrationMethod, recipe.calibrate_method), extra_options=extra)
        proto = onnx.load(str(quantized))
    record = {
        "format": "QDQ", "target": target, "tool": f"onnxruntime {onnxruntime.__version__} quantize_static",
        "activations": f"{recipe.activations} {'asymmetric' if recipe.activations == 'uint8' else 'symmetric'}",
        "weights": f"{recipe.weights} symmetric {'per-channel' if recipe.per_channel else 'per-tensor'}",
        "scheme": "U8S8" if recipe.activations == "uint8" else "S8S8",
        "recipe": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(recipe).items()},
        "calibration": {**calibration.info, "resize_policy": resize_policy},
        "source": source.name, "source_sha256": file_sha256(source),
        "machine": platform.machine(), "seconds": round(time.perf_counter() - started, 1),
    }
    if command:
        record["command"] = command
    new_card = derived_card(card, f"int8-{target}", "quantization", record)
    write_model(proto, new_card, target_path)
    return new_card


def quantization_record(card: ModelCard) -> dict[str, Any] | None:
    """How a model was quantised (its card's provenance), or None for a float model."""
    record = card.provenance.get("quantization")
    return record if isinstance(record, dict) else None
