"""Small torch networks with the I/O layouts of the popular ONNX depth exports, and each family's own
pre/post-processing written out as its project does it (the references the pipeline is compared with).

No weights are downloaded: the networks are random (seeded) stand-ins of the same layout: tensor
names, ranks, static/dynamic axes, normalisation inside or outside the graph, patch multiples.
Shared by test_byo_models.py and test_ros_node_byo.py.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


class TokenAttention(nn.Module):
    """One self-attention step over the patch tokens (MatMul + Softmax in the graph, as in every ViT/DPT
    export): what tells a transformer export from a convolutional one in its graph."""

    def __init__(self, channels: int):
        super().__init__()
        self.q, self.k, self.v = (nn.Conv2d(channels, channels, 1) for _ in range(3))
        self.scale = channels ** -0.5

    def forward(self, x):
        n, c, h, w = x.shape
        q, k, v = (f(x).flatten(2) for f in (self.q, self.k, self.v))  # (n, c, hw)
        attn = torch.softmax(torch.matmul(q.transpose(1, 2), k) * self.scale, dim=-1)  # (n, hw, hw)
        return x + torch.matmul(v, attn.transpose(1, 2)).reshape(n, c, h, w)


class PatchDepth(nn.Module):
    """Patch embedding (ViT patches of 14 px, or MiDaS's stride 32), optional token attention (the
    transformer families), a 1x1 head, bilinear upsampling to the input size: smooth enough that resize
    details matter less than the resize rule itself."""

    def __init__(self, patch: int, head: str, channels: int = 8, max_depth: float = 20.0,
                 inside_mean=None, inside_std=None, rank3: bool = False, sky: bool = False, seed: int = 0,
                 attention: bool = True):
        super().__init__()
        torch.manual_seed(seed)
        self.patch = nn.Conv2d(3, channels, patch, stride=patch)
        self.attention = TokenAttention(channels) if attention else None
        self.mix = nn.Conv2d(channels, channels, 3, padding=1)
        self.head = nn.Conv2d(channels, 1, 1)
        self.kind, self.max_depth, self.rank3, self.sky = head, max_depth, rank3, sky
        self.inside = inside_mean is not None
        if self.inside:
            self.register_buffer("mean", torch.tensor(inside_mean, dtype=torch.float32).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(inside_std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x):
        height, width = x.shape[-2], x.shape[-1]
        if self.inside:  # Metric3D / MiDaS: the graph normalises its own input
            x = (x - self.mean) / self.std
        features = torch.tanh(self.patch(x))
        if self.attention is not None:
            features = self.attention(features)
        features = torch.tanh(self.mix(features))
        out = F.interpolate(self.head(features), size=(height, width), mode="bilinear", align_corners=True)
        if self.kind == "metric":  # DA-V2 metric: sigmoid * max_depth
            depth = torch.sigmoid(out) * self.max_depth
        elif self.kind == "relu":  # DA-V2 relative: ReLU
            depth = F.relu(out + 1.0)
        else:  # relative inverse depth / canonical depth: positive
            depth = F.softplus(out) + 0.05
        depth = depth[:, 0] if self.rank3 else depth
        if not self.sky:
            return depth
        # Depth-Anything-3's sky head stand-in: bright blue in the normalised input is sky.
        blue = F.avg_pool2d(x[:, 2:3] - 0.5 * (x[:, 0:1] + x[:, 1:2]), 7, stride=1, padding=3)
        return depth, torch.sigmoid(4.0 * (blue - 1.0))


def export(module: nn.Module, path: Path, size: tuple[int, int], input_names=("image",), output_names=("depth",),
           dynamic_hw: bool = False, dynamic_batch: bool = False) -> Path:
    """torch.onnx.export as the families' scripts call it (TorchScript exporter, opset 17)."""
    axes = {}
    if dynamic_batch:
        axes[0] = "batch_size"
    if dynamic_hw:
        axes.update({2: "height", 3: "width"})
    kwargs = {}
    if input_names:
        kwargs["input_names"] = list(input_names)
    if output_names:
        kwargs["output_names"] = list(output_names)
    if axes:
        names = list(input_names) + list(output_names)
        kwargs["dynamic_axes"] = {name: axes for name in names}
    module.eval()
    with torch.no_grad():
        torch.onnx.export(module, torch.rand(1, 3, *size), str(path), opset_version=17, dynamo=False, **kwargs)
    return path


# ---- the families' own demos: what a user of each would get -------------------------------------------

def midas_resize_size(src_h, src_w, height, width, multiple, method, keep_aspect=True):
    """MiDaS / Depth-Anything `Resize.get_size`, as written in their transform.py."""
    def constrain(x, min_val=0, max_val=None):
        y = (np.round(x / multiple) * multiple).astype(int)
        if max_val is not None and y > max_val:
            y = (np.floor(x / multiple) * multiple).astype(int)
        if y < min_val:
            y = (np.ceil(x / multiple) * multiple).astype(int)
        return y

    scale_h, scale_w = height / src_h, width / src_w
    if keep_aspect:
        if method == "lower_bound":
            scale_h = scale_w = max(scale_h, scale_w)
        elif method == "minimal":  # scale as little as possible
            if abs(1 - scale_w) < abs(1 - scale_h):
                scale_h = scale_w
            else:
                scale_w = scale_h
        else:
            scale_h = scale_w = min(scale_h, scale_w)
    if method == "minimal":
        return int(constrain(scale_h * src_h)), int(constrain(scale_w * src_w))
    if method == "lower_bound":
        return int(constrain(scale_h * src_h, min_val=height)), int(constrain(scale_w * src_w, min_val=width))
    return int(constrain(scale_h * src_h, max_val=height)), int(constrain(scale_w * src_w, max_val=width))


def da2_reference(session, rgb, input_size=518, static_size=None):
    """Depth-Anything-V2 `infer_image` (dynamic export) or fabio-sim's `infer` (static export)."""
    h, w = rgb.shape[:2]
    image = rgb / 255.0
    if static_size is None:
        net_h, net_w = midas_resize_size(h, w, input_size, input_size, 14, "lower_bound")
    else:
        net_h, net_w = static_size
    image = cv2.resize(image, (net_w, net_h), interpolation=cv2.INTER_CUBIC)
    image = ((image - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)[None].astype(np.float32)
    depth = session.run(None, {"image": image})[0]  # (1, h, w)
    depth = F.interpolate(torch.from_numpy(depth)[:, None], (h, w), mode="bilinear", align_corners=True)
    return depth[0, 0].numpy()


def da3_ika_reference(session, rgb, fx, fy, sky_threshold=0.3):
    """The ika-rwth-aachen node's TensorRTDepthAnything::preprocess/postprocess; sky pixels -> +Inf."""
    src_h, src_w = rgb.shape[:2]
    net_h, net_w = session.get_inputs()[0].shape[2:]
    resized = cv2.resize(rgb, (net_w, net_h), interpolation=cv2.INTER_CUBIC)
    image = ((resized / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)[None].astype(np.float32)
    depth, sky = session.run(["depth", "sky"], {"image": image})
    depth = np.maximum(depth[0, 0], 0.0)
    focal = 0.5 * (fx * net_w / src_w + fy * net_h / src_h)
    depth = depth * focal / 300.0
    depth = cv2.resize(depth, (src_w, src_h), interpolation=cv2.INTER_CUBIC)
    sky = cv2.resize(sky[0, 0], (src_w, src_h), interpolation=cv2.INTER_LINEAR) >= sky_threshold
    return depth, sky


def metric3d_reference(session, rgb, fx, input_size=(616, 1064)):
    """Metric3D onnx/test_onnx.py prepare_input + un-pad + resize, then hubconf's de-canonical transform."""
    h, w = rgb.shape[:2]
    scale = min(input_size[0] / h, input_size[1] / w)
    image = cv2.resize(rgb, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_LINEAR)
    padding = [123.675, 116.28, 103.53]
    rh, rw = image.shape[:2]
    pad_h, pad_w = input_size[0] - rh, input_size[1] - rw
    pad_h_half, pad_w_half = pad_h // 2, pad_w // 2
    image = cv2.copyMakeBorder(image, pad_h_half, pad_h - pad_h_half, pad_w_half, pad_w - pad_w_half,
                               cv2.BORDER_CONSTANT, value=padding)
    pad_info = [pad_h_half, pad_h - pad_h_half, pad_w_half, pad_w - pad_w_half]
    onnx_input = np.ascontiguousarray(np.transpose(image, (2, 0, 1))[None], dtype=np.float32)
    depth = session.run(None, {"image": onnx_input})[0].squeeze()
    depth = depth[pad_info[0]: input_size[0] - pad_info[1], pad_info[2]: input_size[1] - pad_info[3]]
    depth = cv2.resize(depth, (w, h), interpolation=cv2.INTER_LINEAR)
    return depth * (fx * scale / 1000.0)


def midas_reference(session, rgb, size=256):
    """MiDaS tf/run_onnx.py (model_type small): stretch to 256x256 (keep_aspect_ratio False), cubic."""
    h, w = rgb.shape[:2]
    image = rgb / 255.0
    net_h, net_w = midas_resize_size(h, w, size, size, 32, "upper_bound", keep_aspect=False)
    image = cv2.resize(image, (net_w, net_h), interpolation=cv2.INTER_CUBIC).transpose(2, 0, 1)
    inputs = session.get_inputs()[0].name
    output = session.run(None, {inputs: image.reshape(1, 3, net_h, net_w).astype(np.float32)})[0]
    prediction = np.array(output).reshape(net_h, net_w)
    return cv2.resize(prediction, (w, h), interpolation=cv2.INTER_CUBIC)


# ---- the exports ---------------------------------------------------------------------------------------

def export_da2(path: Path, kind: str = "relative", dynamic: bool = True, size=(518, 518), max_depth=20.0) -> Path:
    """fabio-sim `dynamo.py export` layout: image (N,3,H,W) -> depth (N,H,W); -h 0 -w 0 marks H/W dynamic."""
    module = PatchDepth(14, "metric" if kind == "metric" else "relu", max_depth=max_depth, rank3=True)
    return export(module, path, (140, 140) if dynamic else size, dynamic_hw=dynamic)


def export_da3_ika(path: Path, size=(280, 504)) -> Path:
    """ika onnx/export.py layout: image (B,3,280,504) static -> depth, sky (B,1,H,W)."""
    return export(PatchDepth(14, "canonical", rank3=False, sky=True), path, size, output_names=("depth", "sky"))


def export_metric3d(path: Path, size=(616, 1064)) -> Path:
    """Metric3D onnx/metric3d_onnx_export.py layout: raw RGB 0..255 image, normalised inside, -> pred_depth."""
    module = PatchDepth(14, "canonical", inside_mean=[123.675, 116.28, 103.53], inside_std=[58.395, 57.12, 57.375])
    return export(module, path, size, output_names=("pred_depth",))


def export_midas_small(path: Path, size=(256, 256)) -> Path:
    """MiDaS tf/make_onnx_model.py layout: normalisation inside, output (N,H,W), torch's default names;
    a convolutional network (no attention)."""
    module = PatchDepth(32, "relative", inside_mean=IMAGENET_MEAN.tolist(), inside_std=IMAGENET_STD.tolist(),
                        rank3=True, attention=False)
    return export(module, path, size, input_names=(), output_names=())


def export_midas_dpt(path: Path, size=(384, 384), dynamic: bool = False) -> Path:
    """MiDaS v3.1 DPT (dpt_hybrid_384 / dpt_large_384) exported with torch.onnx.export from
    midas.model_loader.load_model: input `image`, normalisation outside (mean = std = 0.5), output `depth`
    (N,H,W) relative inverse depth; a transformer."""
    module = PatchDepth(16, "relative", rank3=True)
    return export(module, path, (128, 160) if dynamic else size, dynamic_hw=dynamic)


def midas_dpt_reference(session, rgb, size=384, static: bool = True):
    """MiDaS run.py for the v3.1 DPT models: Resize(384, 384, keep_aspect_ratio=not square,
    ensure_multiple_of=32, resize_method="minimal", INTER_CUBIC), NormalizeImage(0.5, 0.5), then
    F.interpolate(..., mode="bicubic", align_corners=False) to the image size."""
    h, w = rgb.shape[:2]
    image = rgb / 255.0
    if static:
        net_h, net_w = size, size  # run.py --square: a fixed-size export takes the stretched image
    else:
        net_h, net_w = midas_resize_size(h, w, size, size, 32, "minimal")
    image = cv2.resize(image, (net_w, net_h), interpolation=cv2.INTER_CUBIC)
    image = ((image - 0.5) / 0.5).transpose(2, 0, 1)[None].astype(np.float32)
    depth = session.run(None, {"image": image})[0]
    depth = F.interpolate(torch.from_numpy(depth)[:, None], (h, w), mode="bicubic", align_corners=False)
    return depth[0, 0].numpy()
