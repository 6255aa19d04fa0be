"""`mde-ros quantize MODEL.onnx --calibration DIR|BAG --out MODEL.int8.onnx`: the model's INT8 Q/DQ
ONNX (onnxruntime static quantisation, weights int8 symmetric per channel), calibrated on images
from a folder or a bag's camera topic through the node's own preprocessing.

--target onnxruntime (default): uint8 activations / int8 weights (U8S8), fastest on x86 CPUs.
--target tensorrt: symmetric int8 activations and weights (S8S8), what TensorRT builds.
--target all: both; the TensorRT one is written beside --out as NAME.tensorrt.onnx.
The card (sidecar + ONNX metadata) records the target, scheme, recipe, calibration source and command.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from mde_ros.quantization.qdq import TARGETS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="float ONNX model (with its card)")
    parser.add_argument("--calibration", type=Path, required=True,
                        help="a folder of images or a rosbag2 folder (its colour camera topic)")
    parser.add_argument("--out", type=Path, help="output .onnx (default: MODEL.int8.onnx beside the model)")
    parser.add_argument("--target", choices=(*TARGETS, "all"), default="onnxruntime",
                        help="which int8 kernels the model is for (default onnxruntime: the CPU)")
    parser.add_argument("--topic", help="bag image topic (default: the bag's one colour camera topic)")
    parser.add_argument("--pattern", default="*", help="folder: file name pattern, e.g. '*_rgb.png' (default *)")
    parser.add_argument("--max-images", type=int, default=64, help="calibration images used, spread evenly (64)")
    parser.add_argument("--resize-policy", default="stretch", choices=("stretch", "letterbox"),
                        help="as the node's resize_policy (calibration sees what the node feeds)")
    parser.add_argument("--check", action="store_true",
                        help="afterwards, time fp32 and int8 on onnxruntime CPU and print the ratio")


def output_paths(model: Path, out: Path | None, target: str) -> dict[str, Path]:
    """target -> file: --out (or MODEL.int8.onnx) for the first target; with 'all' the TensorRT model
    goes beside it as <out stem>.tensorrt.onnx."""
    stem = model.name[:-len(".onnx")] if model.name.endswith(".onnx") else model.stem
    first = out or model.with_name(f"{stem}.int8.onnx")
    if target != "all":
        return {target: first}
    first_stem = first.name[:-len(".onnx")] if first.name.endswith(".onnx") else first.stem
    return {"onnxruntime": first, "tensorrt": first.with_name(f"{first_stem}.tensorrt.onnx")}


def run(args: argparse.Namespace) -> int:
    from mde_ros.models.card import CardError
    from mde_ros.quantization.calibration import CalibrationError, load_calibration_images
    from mde_ros.quantization.qdq import quantize_model

    if args.model.suffix != ".onnx" or not args.model.is_file():
        print(f"mde-ros quantize: {args.model} is not an .onnx file (export a .pt bundle first: mde-ros export)",
              file=sys.stderr)
        return 1
    if args.max_images < 1:
        print("mde-ros quantize: --max-images must be >= 1", file=sys.stderr)
        return 2
    targets = output_paths(args.model, args.out, args.target)
    if any(path.resolve() == args.model.resolve() for path in targets.values()):
        print("mde-ros quantize: --out must not overwrite the float model", file=sys.stderr)
        return 2
    try:
        images = load_calibration_images(args.calibration, topic=args.topic, pattern=args.pattern,
                                         max_images=args.max_images)
        command = "mde-ros quantize " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 2 else None
        for target, path in targets.items():
            started = time.perf_counter()
            card = quantize_model(args.model, path, images, target=target, resize_policy=args.resize_policy,
                                  command=command)
            record = card.provenance["quantization"]
            print(f"wrote {path} ({record['scheme']}, for {target}; {images.info['images']} calibration images "
                  f"from {images.info['kind']} {images.info['path']}) in {time.perf_counter() - started:.0f} s")
    except (CalibrationError, CardError, ValueError, OSError) as exc:
        print(f"mde-ros quantize: {exc}", file=sys.stderr)
        return 1
    if args.check:
        from mde_ros.quantization.check import compare_speed

        for target, path in targets.items():
            if target == "onnxruntime":
                print(compare_speed(args.model, path).summary())
    return 0
