"""The whole estimate as one network: uint8 camera image in, metres at camera resolution out.

`DepthEstimator` on the CPU does pre- and post-processing in numpy (pipeline/preprocess.py,
pipeline/postprocess.py). On a GPU those steps cost more in copies and launches than in work, so
this module writes them as torch modules around the network:

    FusedPreprocess   (N,H,W,3) uint8 RGB -> (N,3,h,w) normalised (the card's resize policy, the
                      CPU path's interpolation as two matrix products, see pipeline/resample.py)
    FusedPostprocess  (N,1,h',w') raw -> (N,H,W) float32 metres (the card's output kind, NaN for
                      impossible values, the camera-aware factor, letterbox crop, bilinear resize)

One design for every engine: the torch backend runs the three parts as CUDA graphs
(inference/torch_cuda.py), and `fuse_onnx_model` joins the pre/post modules, traced to ONNX, around
an ONNX network as ONE ONNX model (`model.fused.onnx`: inputs `image` uint8 (N,H,W,3) and `rescale`
float32 (N,), output `depth` (N,H,W)) for TensorRT or onnxruntime, so an engine does a frame in one
launch (`export_fused_onnx`: a torch network's plain ONNX export, then the same). A fused model is
specific to one camera resolution and resize policy (the matrices are constants), which is what
engines want anyway (static shapes).
"""
from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mde_ros.atomic import write_bytes_atomically
from mde_ros.models.card import ONNX_METADATA_KEY, ModelCard
# Torch-free (the runtime reads them without torch); re-exported here for existing callers.
from mde_ros.models.fused_meta import (FUSED_METADATA_KEY, FUSED_OUTPUTS, FUSED_POLICIES,  # noqa: F401
                                       fused_metadata, fused_path_for, fused_supports, read_fused_metadata)
from mde_ros.pipeline.preprocess import ResizeInfo, normalisation, pad_input, resize_info
from mde_ros.pipeline.resample import resize_matrices


def card_resize_info(card: ModelCard, height: int, width: int, policy: str | None) -> ResizeInfo:
    """preprocess's geometry for a height x width camera (policy None: the card's)."""
    policy = card.resize_policy if policy is None else policy
    return resize_info(height, width, card.input_height, card.input_width, policy, card.resize_side,
                       card.size_multiple)


class FusedPreprocess(nn.Module):
    """(N,H,W,3) uint8 RGB -> (N,3,net_h,net_w) float32, as pipeline.preprocess does on the CPU."""

    def __init__(self, card: ModelCard, height: int, width: int, policy: str | None = None) -> None:
        super().__init__()
        self.info: ResizeInfo = card_resize_info(card, height, width, policy)
        info = self.info
        rows, cols = resize_matrices(info)
        self.register_buffer("rows", torch.from_numpy(rows))
        self.register_buffer("cols_t", torch.from_numpy(np.ascontiguousarray(cols.T)))
        # The CPU path's exact float32 constants (preprocess.normalisation): x * gain + offset.
        gain, offset = normalisation(card)
        self.register_buffer("gain", torch.from_numpy(gain).view(1, 3, 1, 1))
        self.register_buffer("offset", torch.from_numpy(offset).view(1, 3, 1, 1))
        self.bgr = card.channel_order == "BGR"
        self.identity = (height, width) == (info.content_height, info.content_width)
        self.pad = (info.content_left, info.net_width - info.content_width - info.content_left,
                    info.content_top, info.net_height - info.content_height - info.content_top)
        fill = pad_input(card) if any(self.pad) else np.zeros(3, np.float32)
        self.fill = bool(np.any(fill))
        if self.fill:  # the padding value outside the content box, 0 inside (added after a zero pad)
            canvas = np.broadcast_to(fill[:, None, None], (3, info.net_height, info.net_width)).copy()
            canvas[:, info.content_top:info.content_top + info.content_height,
                   info.content_left:info.content_left + info.content_width] = 0
            self.register_buffer("canvas", torch.from_numpy(canvas[None]))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        # Cast first: TensorRT takes a uint8 network input only into a Cast (no Slice/Transpose on uint8);
        # uint8 -> float32 is exact, so the order changes no value.
        x = image.float()
        if self.bgr:
            x = torch.flip(x, dims=(3,))
        x = x.permute(0, 3, 1, 2)
        if not self.identity:
            # OpenCV resizes the uint8 image to uint8: the same weights, then round and saturate.
            x = torch.clamp(torch.round(torch.matmul(torch.matmul(self.rows, x), self.cols_t)), 0.0, 255.0)
        x = x * self.gain + self.offset
        if any(self.pad):
            x = F.pad(x, self.pad)
            if self.fill:
                x = x + self.canvas
        return x


class FusedPostprocess(nn.Module):
    """(N,1,h,w) raw network output + (N,) camera-aware factor -> (N,H,W) float32 metres, as
    postprocess.raw_to_depth + to_camera_resolution do on the CPU."""

    def __init__(self, card: ModelCard, info: ResizeInfo) -> None:
        super().__init__()
        if card.output not in FUSED_OUTPUTS:
            raise ValueError(f"the fused path does not convert output kind {card.output!r}")
        self.output, self.info = card.output, info
        self.scale, self.shift = float(np.float32(card.output_scale)), float(np.float32(card.output_shift))

    def forward(self, raw: torch.Tensor, rescale: torch.Tensor) -> torch.Tensor:
        raw = raw.float()
        nan = torch.full((), float("nan"), dtype=torch.float32, device=raw.device)
        if self.output == "metric_depth":
            depth = raw * self.scale + self.shift
        elif self.output == "inverse_depth":
            inverse = raw * self.scale + self.shift
            depth = torch.where(inverse > 0, 1.0 / inverse, nan)
        else:  # disparity
            depth = torch.where(raw > 0, self.scale / raw, nan)
        depth = torch.where(torch.isfinite(depth) & (depth > 0), depth, nan)
        depth = depth * rescale.view(-1, 1, 1, 1)
        info = self.info
        out_h, out_w = int(raw.shape[2]), int(raw.shape[3])
        ry, rx = out_h / info.net_height, out_w / info.net_width
        top, left = round(info.content_top * ry), round(info.content_left * rx)
        height = max(1, round(info.content_height * ry))
        width = max(1, round(info.content_width * rx))
        if (top, left, height, width) != (0, 0, out_h, out_w):
            depth = depth[:, :, top:top + height, left:left + width]
        if (height, width) != (info.src_height, info.src_width):
            depth = F.interpolate(depth, size=(info.src_height, info.src_width), mode="bilinear",
                                  align_corners=False)
        return depth[:, 0]


def export_fused_onnx(network: nn.Module, card: ModelCard, path: str | Path, height: int, width: int,
                      policy: str | None = None, opset: int = 17) -> Path:
    """Write the fused model of a torch network for a (height, width) camera to ``path`` (dynamic batch).

    One way to fuse: the network is exported as its plain ONNX (models/export.py, TorchScript exporter)
    and fused around it like any ONNX model (fuse_onnx_model). The card is embedded like in the plain
    export, plus ``mde_ros.fused`` = {height, width, policy, inputs, output}.
    """
    import tempfile

    from mde_ros.models.export import export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        plain = export_onnx(network, card, Path(tmp) / "network.onnx", opset=opset)
        return fuse_onnx_model(plain, card, path, height, width, policy)


def _write_fused(proto, card: ModelCard, path: Path, height: int, width: int, policy: str) -> Path:
    """Embed the card and the fused camera (the parts' own metadata was dropped before joining), check,
    write atomically."""
    import onnx

    for key, value in ((ONNX_METADATA_KEY, json.dumps(card.to_dict())),
                       (FUSED_METADATA_KEY, json.dumps(fused_metadata(height, width, policy)))):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "mde_ros"
    proto.doc_string = (f"{card.name} fused for a {width}x{height} camera ({policy}): image (N,H,W,3) uint8 RGB, "
                        "rescale (N,) camera-aware factor -> depth (N,H,W) float32 metres, NaN invalid")
    onnx.checker.check_model(proto)
    write_bytes_atomically(path, proto.SerializeToString())
    return path


class _PostOfRank3(nn.Module):
    """FusedPostprocess for networks whose depth is (N,h,w) (Depth-Anything-V2, MiDaS exports)."""

    def __init__(self, post: FusedPostprocess) -> None:
        super().__init__()
        self.post = post

    def forward(self, raw: torch.Tensor, rescale: torch.Tensor) -> torch.Tensor:
        return self.post(raw.unsqueeze(1), rescale)


def _traced_onnx(module: nn.Module, args: tuple, input_names: list[str], output_names: list[str], opset: int):
    import onnx

    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), args, buffer, dynamo=False, opset_version=opset, input_names=input_names,
                          output_names=output_names, do_constant_folding=True,
                          dynamic_axes={name: {0: "batch"} for name in (*input_names, *output_names)})
    return onnx.load_from_string(buffer.getvalue())


def _rename_tensor(graph, old: str, new: str) -> None:
    for value in (*graph.input, *graph.output):
        if value.name == old:
            value.name = new
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]


def fuse_onnx_model(model_path: str | Path, card: ModelCard, path: str | Path, height: int, width: int,
                    policy: str | None = None) -> Path:
    """The fused model of an existing ONNX network (the shipped model, a bring-your-own export): the
    pre- and post-processing graphs (traced from FusedPreprocess / FusedPostprocess, no network in
    torch) joined around the ONNX network with onnx.compose. Same contract as export_fused_onnx."""
    import onnx
    import onnx.compose
    import onnxruntime as ort

    from mde_ros.inference.base import resolve_io_name

    policy = card.resize_policy if policy is None else policy
    if not fused_supports(card, policy):
        raise ValueError(f"cannot fuse this card: resize policy {policy!r}, output {card.output!r}, "
                         f"sky output {card.sky_output!r}, interpolation {card.interpolation!r}, output "
                         f"interpolation {card.output_interpolation!r} (the fused path does {FUSED_POLICIES}, "
                         f"{FUSED_OUTPUTS}, no sky output, interpolation 'auto', output interpolation 'linear')")
    model_path, path = Path(model_path), Path(path)
    network = onnx.load(str(model_path))
    opset = next((o.version for o in network.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        raise ValueError(f"{model_path}: no default-domain opset in the model")
    input_name = resolve_io_name(card.input_name, [i.name for i in network.graph.input
                                                   if i.name not in {t.name for t in network.graph.initializer}],
                                 "input", model_path)
    output_name = resolve_io_name(card.output_name, [o.name for o in network.graph.output], "output", model_path)

    pre = FusedPreprocess(card, height, width, policy)
    info = pre.info
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    raw = session.run([output_name], {input_name: np.zeros((1, 3, info.net_height, info.net_width), np.float32)})[0]
    if raw.ndim not in (3, 4) or (raw.ndim == 4 and raw.shape[1] != 1):
        raise ValueError(f"{model_path}: depth output {output_name!r} has shape {raw.shape} for one image; "
                         "the fused path takes (N,1,h,w) or (N,h,w)")
    post = FusedPostprocess(card, info)
    post_module = post if raw.ndim == 4 else _PostOfRank3(post)
    try:
        pre_proto = _traced_onnx(pre, (torch.zeros(1, height, width, 3, dtype=torch.uint8),), ["image"],
                                 ["network_input"], opset)
        post_proto = _traced_onnx(post_module, (torch.from_numpy(raw), torch.ones(1)), ["raw", "rescale"],
                                  ["depth"], opset)
    except Exception as exc:  # torch's exporter: an opset it cannot write these ops in
        raise ValueError(f"cannot write the pre/post-processing graphs at the model's opset {opset}: {exc}") from exc
    ir_version = max(network.ir_version, pre_proto.ir_version, post_proto.ir_version)
    for proto in (network, pre_proto, post_proto):
        proto.ir_version = ir_version
        del proto.metadata_props[:]
    pre_proto = onnx.compose.add_prefix(pre_proto, "pre/")
    network = onnx.compose.add_prefix(network, "net/")
    post_proto = onnx.compose.add_prefix(post_proto, "post/")
    fused = onnx.compose.merge_models(pre_proto, network, io_map=[("pre/network_input", f"net/{input_name}")])
    fused = onnx.compose.merge_models(fused, post_proto, io_map=[(f"net/{output_name}", "post/raw")],
                                      outputs=["post/depth"])
    for old, new in (("pre/image", "image"), ("post/rescale", "rescale"), ("post/depth", "depth")):
        _rename_tensor(fused.graph, old, new)
    fused.graph.name = f"{card.name}_fused"
    return _write_fused(fused, card, path, height, width, policy)
