"""`mde-ros export BUNDLE.pt --out MODEL.onnx`: ONNX for the onnxruntime/TensorRT backends."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="model bundle (.pt) written by training or save_bundle")
    parser.add_argument("--out", type=Path, required=True, help="ONNX file to write (card written beside it)")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--no-verify", action="store_true", help="skip the onnxruntime vs torch check")
    parser.add_argument("--fused", metavar="WxH", default=None,
                        help="also write OUT.fused.onnx for a WxH camera: uint8 image in, depth at camera "
                             "resolution out (pre/post-processing inside, for TensorRT / onnxruntime-CUDA)")
    parser.add_argument("--fused-policy", default=None, choices=("stretch", "letterbox", "keep_aspect"),
                        help="resize policy baked into the fused model (default: the card's)")


def run(args: argparse.Namespace) -> int:
    from mde_ros.models.bundle import load_bundle
    from mde_ros.models.card import CardError
    from mde_ros.models.export import export_onnx, verify_onnx

    fused_size = None
    if args.fused is not None:
        width, _, height = args.fused.lower().partition("x")
        if not (width.isdigit() and height.isdigit() and int(width) > 0 and int(height) > 0):
            print(f"mde-ros export: --fused wants WIDTHxHEIGHT like 640x480, got {args.fused!r}", file=sys.stderr)
            return 1
        fused_size = (int(height), int(width))
    try:
        model, card = load_bundle(args.bundle)
    except CardError as exc:
        print(f"mde-ros export: {exc}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    path = export_onnx(model, card, args.out, opset=args.opset)
    print(f"wrote {path} (opset {args.opset}, dynamic batch/height/width) and its card")
    if not args.no_verify:
        # A shape other than the export shape, so the dynamic axes are exercised.
        height, width = card.input_height + 32, card.input_width + 64
        diff = verify_onnx(path, model, batch=2, height=height, width=width)
        print(f"onnxruntime vs torch at 2x3x{height}x{width}: max |diff| = {diff:.2e} m")
    if fused_size is not None:
        from mde_ros.models.fused import export_fused_onnx, fused_path_for

        try:
            fused = export_fused_onnx(model, card, fused_path_for(args.out), *fused_size, policy=args.fused_policy)
        except ValueError as exc:
            print(f"mde-ros export: {exc}", file=sys.stderr)
            return 1
        print(f"wrote {fused} (uint8 {fused_size[1]}x{fused_size[0]} image in, depth out, "
              f"{args.fused_policy or card.resize_policy})")
    return 0
