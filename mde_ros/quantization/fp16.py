"""fp16 ONNX with fp32 inputs and outputs: what a strongly typed TensorRT build needs for fp16
(TensorRT 11 has no BuilderFlag.FP16; the precision must be in the graph), and what DLA computes in.

onnxconverter-common's float16 pass converts weights and activations and inserts Casts at the
graph's inputs and outputs (keep_io_types), so callers keep feeding float32 images.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

from mde_ros.inference.cache import file_sha256
from mde_ros.models.card import load_card_for
from mde_ros.quantization.onnx_file import derived_card, write_model

log = logging.getLogger(__name__)

# Ops left in fp32: the final range mapping stays exact and Resize keeps float scales (DLA and
# TensorRT handle the Casts around them).
OP_BLOCK_LIST = ("Resize", "Upsample", "Range", "NonMaxSuppression", "TopK", "RoiAlign")


def convert_to_fp16(source: str | Path, target: str | Path) -> Path:
    """Write the fp16 version of the ONNX `source` to `target` (+ its card)."""
    import onnx

    try:
        from onnxconverter_common import float16
    except ImportError as exc:
        from mde_ros.inference.base import BackendUnavailable

        raise BackendUnavailable(f"precision fp16 converts the model with onnxconverter-common, which is not "
                                 f"installed ({exc}): pip install onnxconverter-common, or put a "
                                 f"{source.stem}.fp16.onnx made from this model beside it") from exc

    source, target = Path(source), Path(target)
    card = load_card_for(source)
    model = onnx.load(str(source))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "float32 number ... will be truncated" per tiny weight
        converted = float16.convert_float_to_float16(model, keep_io_types=True,
                                                     op_block_list=list(float16.DEFAULT_OP_BLOCK_LIST) +
                                                     list(OP_BLOCK_LIST))
    record = {"tool": "onnxconverter-common float16.convert_float_to_float16", "keep_io_types": True,
              "fp32_ops": sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(OP_BLOCK_LIST)),
              "source": source.name, "source_sha256": file_sha256(source)}
    return write_model(converted, derived_card(card, "fp16", "fp16", record), target)
