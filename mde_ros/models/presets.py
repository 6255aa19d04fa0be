"""Ready-made cards for the popular ONNX depth exports, with each family's own pre/post-processing.

`card_for_preset(name, model.onnx)` inspects the ONNX (input/output names, static or dynamic H/W)
and writes what that family's own demo does; `mde-ros card --preset NAME MODEL.onnx` saves it as the
sidecar card. Sources (each project's inference/export code):

- Depth-Anything-V2 (github.com/DepthAnything/Depth-Anything-V2 `DepthAnythingV2.image2tensor`;
  ONNX by github.com/fabio-sim/Depth-Anything-ONNX `dynamo.py export`): RGB/255, ImageNet mean/std,
  INTER_CUBIC; dynamic exports: shorter side to 518 keeping the aspect ratio, sides rounded to 14
  ('lower_bound'); static exports: stretched to their fixed size (fabio-sim's `infer`). Input `image`,
  output `depth` (N,H,W). Relative models output affine-invariant inverse depth (ReLU); metric ones
  sigmoid * max_depth (20 m Hypersim indoor, 80 m Virtual KITTI outdoor).
- Depth-Anything-3 metric in the layout the ika-rwth-aachen ROS 2 TensorRT node consumes
  (github.com/ika-rwth-aachen/ros2-depth-anything-v3-trt `onnx/export.py`): input `image`
  (1,3,280,504) stretched with INTER_CUBIC, ImageNet; outputs `depth` and `sky` (N,1,H,W);
  metres = depth * mean(fx, fy at network resolution) / 300; sky where `sky` >= 0.3.
- Metric3D v2 (github.com/YvanYin/Metric3D `onnx/metric3d_onnx_export.py`, `hubconf.py`): input
  `image` raw RGB 0..255 normalised inside the graph, fitted into 616x1064 (ViT) keeping the aspect
  ratio with INTER_LINEAR, padded with the mean colour (123.675, 116.28, 103.53), centred; output
  `pred_depth` (N,1,H,W) in a canonical camera of focal 1000 px: metres = depth * fx_net / 1000.
- MiDaS v2.1 small (github.com/isl-org/MiDaS `tf/make_onnx_model.py`, `tf/run_onnx.py`): RGB in
  [0, 1] normalised inside the graph, stretched to 256x256 with INTER_CUBIC, output (N,H,W) relative
  inverse depth, resized back with INTER_CUBIC.
- MiDaS v3.1 DPT (`midas/model_loader.py`, `run.py`): Resize(384, keep aspect, multiple of 32,
  resize_method 'minimal', INTER_CUBIC), NormalizeImage(mean = std = 0.5) outside the graph; the output
  is resized back bicubic (align_corners=False); fixed-size exports are stretched (run.py --square).

Output resizes as each demo does (card `output_interpolation`): DA-V2 bilinear align_corners=True, MiDaS
and the ika DA3 node bicubic, Metric3D bilinear. Beyond names and shapes (here), `preset_checks` checks
the graph and probes the output (`mde-ros card --preset` runs both).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mde_ros.models.card import IMAGENET_MEAN, IMAGENET_STD, CardError, ModelCard
from mde_ros.models.onnx_io import ModelIO, check_model_io, read_model_io

METRIC3D_MEAN = (123.675, 116.28, 103.53)
METRIC3D_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class Preset:
    description: str
    fields: dict[str, Any]
    # Sizes for an export whose H/W are dynamic: (H, W) and the policy used then.
    dynamic_size: tuple[int, int]
    dynamic_policy: str
    export: str  # the exact export command (README)
    source: str
    extra: dict[str, Any] = field(default_factory=dict)
    # What the family's graph looks like (checked where the `onnx` package can read the graph):
    transformer: bool | None = None  # attention (Softmax) in the graph: ViT/DPT families; None: either
    output_tail: str | None = None  # "sigmoid": the depth output ends in a sigmoid (x max_depth);
    #                                 "no_sigmoid": it must not (a relative head); None: not checked
    bounded_output: bool = False  # raw output never exceeds max_depth (sigmoid x max_depth): probed


_DA2 = dict(architecture="external", mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation="cubic",
            size_multiple=14, resize_side="shorter", input_name="image", output_name="depth",
            output_interpolation="linear_align_corners")
_DA2_EXPORT = ("git clone https://github.com/fabio-sim/Depth-Anything-ONNX && cd Depth-Anything-ONNX && "
               "python dynamo.py export --encoder vits{metric} -h 0 -w 0 -o depth_anything_v2_vits{suffix}.onnx")

PRESETS: dict[str, Preset] = {
    "depth-anything-v2-relative": Preset(
        "Depth-Anything-V2 (relative, affine-invariant inverse depth; needs scale anchors for metres)",
        dict(_DA2, output="relative_inverse_depth", min_depth=0.1, max_depth=80.0),
        (518, 518), "keep_aspect", _DA2_EXPORT.format(metric="", suffix=""),
        "DepthAnything/Depth-Anything-V2 image2tensor; fabio-sim/Depth-Anything-ONNX dynamo.py",
        transformer=True, output_tail="no_sigmoid"),
    "depth-anything-v2-metric-indoor": Preset(
        "Depth-Anything-V2 metric, Hypersim (indoor, 0..20 m)",
        dict(_DA2, output="metric_depth", min_depth=0.1, max_depth=20.0),
        (518, 518), "keep_aspect", _DA2_EXPORT.format(metric=" --metric indoor", suffix="_indoor"),
        "DepthAnything/Depth-Anything-V2 metric_depth; fabio-sim/Depth-Anything-ONNX dynamo.py",
        transformer=True, output_tail="sigmoid", bounded_output=True),
    "depth-anything-v2-metric-outdoor": Preset(
        "Depth-Anything-V2 metric, Virtual KITTI 2 (outdoor, 0..80 m)",
        dict(_DA2, output="metric_depth", min_depth=0.1, max_depth=80.0),
        (518, 518), "keep_aspect", _DA2_EXPORT.format(metric=" --metric outdoor", suffix="_outdoor"),
        "DepthAnything/Depth-Anything-V2 metric_depth; fabio-sim/Depth-Anything-ONNX dynamo.py",
        transformer=True, output_tail="sigmoid", bounded_output=True),
    "depth-anything-3-metric-ika": Preset(
        "Depth-Anything-3 metric (DA3METRIC) in the ika-rwth-aachen ROS 2 TensorRT node's ONNX layout",
        dict(architecture="external", mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation="cubic",
             size_multiple=14, input_name="image", output_name="depth", output="metric_depth",
             focal_rule="mean_fx_fy", canonical_focal_px=300.0, sky_output="sky", sky_threshold=0.3,
             min_depth=0.1, max_depth=200.0, output_interpolation="cubic"),
        (280, 504), "stretch",
        "git clone https://github.com/ika-rwth-aachen/ros2-depth-anything-v3-trt && "
        "cp ros2-depth-anything-v3-trt/onnx/export.py depth-anything-3/src/depth_anything_3/ && "
        "cd depth-anything-3/src/depth_anything_3 && "
        "python export.py --model-dir DA3METRIC-LARGE --height 280 --width 504 --output-dir .",
        "ika-rwth-aachen/ros2-depth-anything-v3-trt onnx/export.py, tensorrt_depth_anything.cpp",
        transformer=True),
    "metric3d-v2": Preset(
        "Metric3D v2 (ViT; canonical camera f = 1000 px, normalisation inside the graph)",
        dict(architecture="external", mean=METRIC3D_MEAN, std=METRIC3D_STD, value_range=255.0,
             normalization="inside", pad_value=list(METRIC3D_MEAN), interpolation="linear",
             size_multiple=14, input_name="image", output_name="pred_depth", output="metric_depth",
             focal_rule="fx", canonical_focal_px=1000.0, min_depth=0.1, max_depth=300.0),
        (616, 1064), "letterbox",
        "git clone https://github.com/YvanYin/Metric3D && cd Metric3D && "
        "python3 onnx/metric3d_onnx_export.py metric3d_vit_small",
        "YvanYin/Metric3D onnx/metric3d_onnx_export.py, onnx/test_onnx.py, hubconf.py",
        extra={"static_policy": "letterbox"}, transformer=True),
    "midas-v2.1-small": Preset(
        "MiDaS v2.1 small (relative inverse depth, 256x256, normalisation inside the graph)",
        dict(architecture="external", mean=IMAGENET_MEAN, std=IMAGENET_STD, normalization="inside",
             interpolation="cubic", size_multiple=32, output="relative_inverse_depth",
             min_depth=0.1, max_depth=80.0, output_interpolation="cubic"),
        (256, 256), "stretch",
        "git clone https://github.com/isl-org/MiDaS && cd MiDaS/tf && "
        "python make_onnx_model.py  # with MidasNet_small and a (1,3,256,256) input; or use the v2_1 "
        "release's model-small.onnx",
        "isl-org/MiDaS tf/make_onnx_model.py, tf/run_onnx.py", transformer=False),
    "midas-v3.1-dpt": Preset(
        "MiDaS v3.1 DPT (dpt_hybrid_384, dpt_large_384, dpt_beit_large_384/512, dpt_next_vit_large_384; "
        "relative inverse depth, mean = std = 0.5 outside the graph)",
        dict(architecture="external", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="cubic",
             size_multiple=32, resize_side="minimal", input_name="image", output_name="depth",
             output="relative_inverse_depth", min_depth=0.1, max_depth=80.0, output_interpolation="cubic"),
        (384, 384), "keep_aspect",
        "git clone https://github.com/isl-org/MiDaS && cd MiDaS && python -c \"import torch; "
        "from midas.model_loader import load_model; "
        "m = load_model('cpu', 'weights/dpt_hybrid_384.pt', 'dpt_hybrid_384', optimize=False)[0]; "
        "torch.onnx.export(m, torch.rand(1, 3, 384, 384), 'dpt_hybrid_384.onnx', input_names=['image'], "
        "output_names=['depth'], opset_version=17, dynamo=False)\"",
        "isl-org/MiDaS midas/model_loader.py (Resize minimal, multiple 32, NormalizeImage 0.5), run.py "
        "(bicubic output resize; --square for fixed-size inputs)", transformer=True),
}


def _pick(wanted: str | None, tensors: tuple, role: str, io: ModelIO, preset: str) -> str:
    names = [t.name for t in tensors]
    if wanted in names:
        return wanted
    if len(names) == 1:
        return names[0]
    raise CardError(f"{io.path.name} does not look like a {preset} export: its {role}s are {names}, "
                    f"expected {wanted!r}")


def card_for_preset(name: str, model_path: str | Path, card_name: str | None = None) -> ModelCard:
    """The preset's card fitted to this ONNX (names, static/dynamic size), checked against it.

    CardError with one message for an unknown preset or a model that does not match it.
    """
    if name not in PRESETS:
        raise CardError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    preset = PRESETS[name]
    io = read_model_io(model_path)
    fields = dict(preset.fields)
    fields["input_name"] = _pick(fields.get("input_name"), io.inputs, "input", io, name)
    fields["output_name"] = _pick(fields.get("output_name"), io.outputs, "output", io, name)
    if fields.get("sky_output") and io.output(fields["sky_output"]) is None:
        raise CardError(f"{io.path.name} does not look like a {name} export: it has no "
                        f"{fields['sky_output']!r} output (outputs {[t.name for t in io.outputs]})")
    static = io.static_hw(fields["input_name"])
    if static is not None:  # a fixed-size export: the family's own demo fits the image to that size
        fields["input_height"], fields["input_width"] = static
        fields["resize_policy"] = preset.extra.get("static_policy", "stretch")
    else:
        fields["input_height"], fields["input_width"] = preset.dynamic_size
        fields["resize_policy"] = preset.dynamic_policy
    fields["provenance"] = {"preset": name, "source": preset.source, "export": preset.export,
                            "notes": preset.description}
    card = ModelCard(name=card_name or Path(model_path).stem, **fields)
    check_model_io(io, card)
    return card
