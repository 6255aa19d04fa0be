"""Which ONNX file a backend runs for a precision: the model itself (fp32), its fp16 conversion, or
its Q/DQ int8 model.

`precision: int8` means "use the Q/DQ model": `int8_model` if named, else `MODEL.int8.<target>.onnx`
or `MODEL.int8.onnx` beside the model (made from THIS model: the card's source hash must match),
else one built from a calibration source the user names (cached), else a ValueError that says how
to make one. fp16 conversions are made once and cached (or taken from `MODEL.fp16.onnx` beside it).
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from mde_ros.inference.cache import cache_dir, file_sha256
from mde_ros.models.card import CardError, ModelCard, load_card_for

log = logging.getLogger(__name__)

VARIANTS = ("fp32", "fp16", "int8")


def _stem(path: Path) -> str:
    return path.name[:-len(".onnx")] if path.name.endswith(".onnx") else path.stem


def int8_candidates(model: Path, target: str) -> list[Path]:
    """Where a Q/DQ model of `model` is looked for, in order."""
    stem = _stem(model)
    return [model.with_name(f"{stem}.int8.{target}.onnx"), model.with_name(f"{stem}.int8.onnx")]


def int8_problem(card: ModelCard, target: str, source_sha256: str | None = None) -> str | None:
    """Why a model with this card cannot be `target`'s int8 model (None: it can)."""
    from mde_ros.quantization.qdq import quantization_record

    record = quantization_record(card)
    if record is None or record.get("format") != "QDQ":
        return "is not a Q/DQ int8 model (its card has no provenance.quantization; make one with mde-ros quantize)"
    if target == "tensorrt" and record.get("scheme") != "S8S8":
        return (f"has {record.get('scheme', '?')} activations; TensorRT builds only symmetric int8 (S8S8) Q/DQ: "
                "mde-ros quantize ... --target tensorrt")
    if source_sha256 is not None and record.get("source_sha256") not in (None, source_sha256):
        return "was made from another version of the model (source hash differs): quantize it again"
    return None


def _card_or_none(path: Path) -> ModelCard | None:
    try:
        return load_card_for(path)
    except CardError as exc:
        log.warning("ignoring %s: %s", path, exc)
        return None


def int8_model_for(model: str | Path, target: str, int8_model: str | Path | None = None,
                   calibration: str | Path | None = None) -> Path:
    """The Q/DQ model to run for `model` on `target` ("onnxruntime" | "tensorrt"); see the module doc."""
    model = Path(model)
    if int8_model:
        path = Path(int8_model).expanduser()
        if not path.is_file():
            raise ValueError(f"int8_model {path} does not exist")
        card = _card_or_none(path)
        problem = int8_problem(card, target) if card is not None else "has no model card"
        if problem:
            raise ValueError(f"int8_model {path} {problem}")
        return path
    source_sha = file_sha256(model)
    skipped = []
    for path in int8_candidates(model, target):
        if path.is_file():
            card = _card_or_none(path)
            problem = int8_problem(card, target, source_sha) if card is not None else "has no model card"
            if problem is None:
                return path
            skipped.append(f"{path.name} {problem}")
            log.warning("not using %s for %s int8: %s", path, target, problem)
    if calibration:
        return _quantized_from(model, source_sha, target, Path(calibration).expanduser())
    found = f" ({'; '.join(skipped)})" if skipped else ""
    raise ValueError(
        f"precision 'int8' runs a Q/DQ model and none was found for {model.name}{found}: make one with "
        f"`mde-ros quantize {model} --calibration DIR|BAG --target {target} --out "
        f"{int8_candidates(model, target)[0]}`, name one (int8_model / --int8-model), or name a calibration "
        "folder or bag (calibration / --calibration) to build it now")


def _quantized_from(model: Path, source_sha: str, target: str, calibration: Path) -> Path:
    from mde_ros.quantization.calibration import load_calibration_images
    from mde_ros.quantization.qdq import quantize_model

    tag = hashlib.sha256(str(calibration.resolve()).encode()).hexdigest()[:8]
    path = cache_dir() / "onnx" / f"{source_sha[:16]}.int8.{target}-calib{tag}.onnx"
    if path.is_file():
        return path
    log.warning("quantising %s for %s with calibration images from %s (once; cached as %s)",
                model, target, calibration, path)
    images = load_calibration_images(calibration)
    quantize_model(model, path, images, target=target)
    return path


def fp16_model_for(model: str | Path) -> Path:
    """The fp16 (fp32 I/O) version of `model`: MODEL.fp16.onnx beside it if made from it, else a cached
    conversion (made once)."""
    from mde_ros.quantization.fp16 import convert_to_fp16

    model = Path(model)
    source_sha = file_sha256(model)
    beside = model.with_name(f"{_stem(model)}.fp16.onnx")
    if beside.is_file():
        card = _card_or_none(beside)
        record = card.provenance.get("fp16") if card is not None else None
        if isinstance(record, dict) and record.get("source_sha256") == source_sha:
            return beside
        log.warning("not using %s: it was not converted from this %s", beside, model.name)
    path = cache_dir() / "onnx" / f"{source_sha[:16]}.fp16.onnx"
    if not path.is_file():
        log.info("converting %s to fp16 with fp32 I/O (once; cached as %s)", model, path)
        convert_to_fp16(model, path)
    return path


def model_for_precision(model: str | Path, variant: str, *, target: str, int8_model: str | Path | None = None,
                        calibration: str | Path | None = None, card: ModelCard | None = None) -> Path:
    """The ONNX file to run: `variant` "fp32" -> `model`, "fp16" -> its fp16 conversion, "int8" -> its
    Q/DQ model for `target`."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown model variant {variant!r}: one of {VARIANTS}")
    model = Path(model)
    if variant == "fp32":
        return model
    if variant == "fp16":
        return fp16_model_for(model)
    return int8_model_for(model, target, int8_model, calibration)
