"""ONNX export with the model card inside (metadata_props) and beside it (sidecar .card.json).

Uses torch's TorchScript exporter (``dynamo=False``): the dynamo exporter needs onnxscript, which
this package does not install, and the traced exporter records the U-Net skips' interpolate sizes
and the ViT's position-embedding resize as shape ops, so batch, height and width stay dynamic.
"""
from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mde_ros.atomic import write_bytes_atomically
from mde_ros.models.card import ONNX_METADATA_KEY, ModelCard, card_path_for, load_card_for

DYNAMIC_AXES = {0: "batch", 2: "height", 3: "width"}


def export_onnx(model: nn.Module, card: ModelCard, path: str | Path, opset: int = 17,
                sample_hw: tuple[int, int] | None = None, fp16_weights: bool = False) -> Path:
    """Export ``model`` (traced at ``sample_hw``, default the card's input size) to ``path``.

    ``fp16_weights``: store the weights as fp16 with fp32 I/O and compute (``mde_ros.models.onnx_fp16``).

    The model is exported in eval mode and put back in its previous mode afterwards. The file is
    written atomically, checked with ``onnx.checker``, and ``card_path_for(path)`` is written too.
    """
    import onnx

    path = Path(path)
    height, width = sample_hw or (card.input_height, card.input_width)
    device = next(model.parameters()).device
    sample = torch.zeros(1, 3, height, width, device=device)
    was_training = model.training
    model.eval()
    buffer = io.BytesIO()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The TorchScript exporter is deprecated in favour of dynamo; we choose it on purpose.
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                model, (sample,), buffer, dynamo=False, opset_version=opset,
                input_names=[card.input_name], output_names=[card.output_name],
                dynamic_axes={card.input_name: DYNAMIC_AXES, card.output_name: DYNAMIC_AXES},
                do_constant_folding=True)
    finally:
        model.train(was_training)
    proto = onnx.load_from_string(buffer.getvalue())
    entry = proto.metadata_props.add()
    entry.key, entry.value = ONNX_METADATA_KEY, json.dumps(card.to_dict())
    if fp16_weights:
        from mde_ros.models.onnx_fp16 import store_weights_fp16

        store_weights_fp16(proto)
    proto.producer_name = "mde_ros"
    proto.doc_string = f"{card.name} ({card.architecture}): {card.input_name} (N,3,H,W) normalised RGB -> " \
                       f"{card.output_name} (N,1,H,W) {card.output}"
    onnx.checker.check_model(proto)
    write_bytes_atomically(path, proto.SerializeToString())
    card.save(card_path_for(path))
    return path


def verify_onnx(onnx_path: str | Path, model: nn.Module, batch: int = 2, height: int | None = None,
                width: int | None = None, seed: int = 0) -> float:
    """Max |onnxruntime - torch| in metres on a random input; default shape = the card's input size
    + 32 px each way with ``batch`` images, i.e. not the traced shape, to exercise the dynamic axes."""
    import onnxruntime as ort

    card = load_card_for(onnx_path)
    height = height or card.input_height + 32
    width = width or card.input_width + 32
    image = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected = model(image.to(next(model.parameters()).device)).cpu().numpy()
    finally:
        model.train(was_training)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (got,) = session.run([card.output_name], {card.input_name: image.numpy()})
    if got.shape != expected.shape:
        raise ValueError(f"{onnx_path}: onnxruntime output {got.shape} != torch output {expected.shape}")
    return float(np.max(np.abs(got - expected)))
