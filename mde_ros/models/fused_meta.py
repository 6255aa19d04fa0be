"""What a fused ONNX model (inference/fused.py) is for, readable without torch.

`model.fused.onnx` is the whole estimate as one graph for ONE camera resolution and resize policy
(its resize matrices are constants): inputs `image` uint8 (N,H,W,3) and `rescale` float32 (N,),
output `depth` (N,H,W) metres. Its metadata key `mde_ros.fused` holds {height, width, policy}.
The onnxruntime and TensorRT backends read it here: the runtime never imports torch (and the
onnxruntime path not even the `onnx` package, see test/test_runtime_deps.py).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from mde_ros.models.card import ONNX_METADATA_KEY, ModelCard

FUSED_METADATA_KEY = "mde_ros.fused"
FUSED_POLICIES = ("stretch", "letterbox", "keep_aspect")
FUSED_OUTPUTS = ("metric_depth", "inverse_depth", "disparity")
FUSED_INPUTS = ("image", "rescale")
FUSED_OUTPUT = "depth"
# Card fields a fused graph bakes in (pre/post-processing constants): a fused model whose embedded
# card differs in one of them was exported for another card and is not used.
BAKED_CARD_FIELDS = ("input_height", "input_width", "mean", "std", "output", "output_scale", "output_shift",
                     "resize_side", "size_multiple", "pad_value", "interpolation", "value_range",
                     "channel_order", "normalization")


def fused_supports(card: ModelCard, policy: str | None) -> bool:
    """Whether the fused path reproduces the CPU pipeline for this card and resize policy (None: the
    card's); when not (relative or sky outputs, a fixed OpenCV interpolation, a policy or output kind
    added later), callers keep the numpy path."""
    policy = card.resize_policy if policy is None else policy
    return (policy in FUSED_POLICIES and card.output in FUSED_OUTPUTS and card.sky_output is None
            and card.interpolation == "auto" and card.output_interpolation == "linear")


def fused_path_for(model_path: str | Path) -> Path:
    """'model.onnx' -> 'model.fused.onnx' (the fused model written beside the plain one)."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.stem + ".fused.onnx")


def fused_metadata(height: int, width: int, policy: str) -> dict:
    return {"height": int(height), "width": int(width), "policy": policy,
            "inputs": {"image": "(N,H,W,3) uint8 RGB", "rescale": "(N,) float32"},
            "output": {"depth": "(N,H,W) float32 metres"}}


@dataclass(frozen=True)
class FusedSpec:
    """The camera a fused model was exported for; it runs only frames of exactly this kind."""

    height: int
    width: int
    policy: str

    def accepts(self, height: int, width: int, policy: str | None) -> bool:
        return (int(height), int(width), policy) == (self.height, self.width, self.policy)

    def check(self, rgb_shape: tuple[int, ...], policy: str | None, what: str) -> None:
        """ValueError naming `what` (the fused model or engine) when a frame is not its kind."""
        if not self.accepts(rgb_shape[0], rgb_shape[1], policy):
            raise ValueError(f"{what} is for {self.width}x{self.height} ({self.policy}), "
                             f"not {rgb_shape[1]}x{rgb_shape[0]} ({policy})")

    @classmethod
    def from_metadata(cls, meta: Mapping) -> "FusedSpec":
        try:
            spec = cls(int(meta["height"]), int(meta["width"]), str(meta["policy"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"fused metadata {dict(meta)!r} lacks height/width/policy ({exc})") from exc
        if spec.height < 1 or spec.width < 1 or spec.policy not in FUSED_POLICIES:
            raise ValueError(f"fused metadata {dict(meta)!r}: bad size or policy")
        return spec


def fused_spec_from_map(metadata: Mapping[str, str], source: str | Path = "model") -> FusedSpec:
    """FusedSpec from an ONNX metadata map (onnxruntime's `custom_metadata_map`, or onnx's
    metadata_props as a dict); ValueError for a plain model."""
    if FUSED_METADATA_KEY not in metadata:
        raise ValueError(f"{source} is not a fused mde_ros model (no {FUSED_METADATA_KEY} metadata)")
    return FusedSpec.from_metadata(json.loads(metadata[FUSED_METADATA_KEY]))


def card_mismatch(embedded: Mapping | None, card: ModelCard) -> list[str]:
    """The baked-in card fields where a fused model's embedded card (a dict) differs from `card`."""
    if embedded is None:
        return []
    mine = card.to_dict()
    return [name for name in BAKED_CARD_FIELDS
            if name in embedded and _plain(embedded[name]) != _plain(mine.get(name))]


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """An ONNX file's metadata_props as a dict: with the `onnx` package (no session), else through
    onnxruntime (nothing run), so a TensorRT-only or an onnxruntime-only install can read it."""
    try:
        import onnx
    except ImportError:
        return read_ort_metadata(path)
    proto = onnx.load(str(path), load_external_data=False)
    return {prop.key: prop.value for prop in proto.metadata_props}


def read_fused_metadata(path: str | Path) -> dict:
    """The `mde_ros.fused` entry of a fused ONNX file (ValueError if it is a plain model)."""
    metadata = read_onnx_metadata(path)
    if FUSED_METADATA_KEY not in metadata:
        raise ValueError(f"{path} is not a fused mde_ros model (no {FUSED_METADATA_KEY} metadata)")
    return json.loads(metadata[FUSED_METADATA_KEY])


def read_ort_metadata(path: str | Path) -> dict[str, str]:
    """An ONNX file's metadata through onnxruntime (a CPU session, nothing optimised or run): what the
    onnxruntime path reads, without the `onnx` package."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return dict(session.get_modelmeta().custom_metadata_map)


def existing_fused_model(model_path: str | Path) -> Path | None:
    """MODEL.fused.onnx beside the model, or None (said once, at the backend's fused start)."""
    path = fused_path_for(model_path)
    if path.is_file():
        return path
    logging.getLogger("mde_ros.inference").info(
        "device_pipeline: no fused model %s beside the model (mde-ros export MODEL --fused WxH writes it); "
        "pre/post-processing stay in numpy", path)
    return None


def fused_spec_for_card(metadata: Mapping[str, str], path: str | Path, card: ModelCard) -> FusedSpec | None:
    """The fused model's camera from its ONNX metadata, or None (logged once, by the caller's single
    start) when it was exported for another card: its baked-in pre/post-processing would be wrong."""
    spec = fused_spec_from_map(metadata, path)
    embedded = json.loads(metadata[ONNX_METADATA_KEY]) if ONNX_METADATA_KEY in metadata else None
    differs = card_mismatch(embedded, card)
    if differs:
        logging.getLogger("mde_ros.inference").warning(
            "device_pipeline: the fused model %s was exported for another card (%s differ); pre/post-processing "
            "stay in numpy: re-export with mde-ros export --fused", path, ", ".join(differs))
        return None
    return spec
