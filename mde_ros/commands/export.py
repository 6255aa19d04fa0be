"""`mde-ros export BUNDLE.pt --out MODEL.onnx`: ONNX for the onnxruntime/TensorRT backends.

`mde-ros export MODEL.onnx --fused WxH`: the fused model of an existing ONNX network (the shipped
model, a bring-your-own export), written beside it as MODEL.fused.onnx, where the backends look."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="model bundle (.pt) written by training or save_bundle; or an "
                                                  ".onnx model with its card, with --fused only")
    parser.add_argument("--out", type=Path, default=None,
                        help="ONNX file to write (card written beside it); for an .onnx input: the fused file "
                             "(default: MODEL.fused.onnx beside it)")
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
    if args.bundle.suffix.lower() == ".onnx":
        return _fuse_existing_onnx(args, fused_size)
    if args.out is None:
        print("mde-ros export: --out MODEL.onnx is required for a .pt bundle", file=sys.stderr)
        return 1
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
        from mde_ros.inference.fused import export_fused_onnx, fused_path_for

        try:
            fused = export_fused_onnx(model, card, fused_path_for(args.out), *fused_size, policy=args.fused_policy)
        except ValueError as exc:
            print(f"mde-ros export: {exc}", file=sys.stderr)
            return 1
        print(f"wrote {fused} (uint8 {fused_size[1]}x{fused_size[0]} image in, depth out, "
              f"{args.fused_policy or card.resize_policy})")
    return 0


def _fuse_existing_onnx(args: argparse.Namespace, fused_size: tuple[int, int] | None) -> int:
    from mde_ros.models.card import CardError, load_card_for
    from mde_ros.inference.fused import fuse_onnx_model, fused_path_for

    if fused_size is None:
        print("mde-ros export: an .onnx input is already exported; give --fused WxH to write its fused model",
              file=sys.stderr)
        return 1
    try:
        card = load_card_for(args.bundle)
        out = args.out or fused_path_for(args.bundle)
        fused = fuse_onnx_model(args.bundle, card, out, *fused_size, policy=args.fused_policy)
    except (CardError, ValueError) as exc:
        print(f"mde-ros export: {exc}", file=sys.stderr)
        return 1
    policy = args.fused_policy or card.resize_policy
    print(f"wrote {fused} (uint8 {fused_size[1]}x{fused_size[0]} image in, depth out, {policy}; "
          f"pre/post-processing joined around {args.bundle.name})")
    if not args.no_verify:
        worst = verify_fused(args.bundle, fused, card, *fused_size, policy=policy)
        print(f"fused model vs the numpy pipeline on onnxruntime CPU, one synthetic {fused_size[1]}x{fused_size[0]} "
              f"frame: max |diff| = {worst:.2e} m")
    return 0


def verify_fused(model: Path, fused: Path, card, height: int, width: int, policy: str) -> float:
    """Largest |depth difference| (m) between the fused model and the plain model + numpy pipeline."""
    import numpy as np
    import onnxruntime as ort

    from mde_ros.inference import create_backend
    from mde_ros.inference.onnxruntime_backend import NAME as ONNXRUNTIME
    from mde_ros.pipeline.estimator import DepthEstimator, EstimatorConfig
    from mde_ros.synthetic import render_frame

    frame = render_frame(1, width, height)
    plain = DepthEstimator(create_backend(ONNXRUNTIME, model, card), card, EstimatorConfig(resize_policy=policy))
    want = plain.estimate(frame.rgb).depth
    session = ort.InferenceSession(str(fused), providers=["CPUExecutionProvider"])
    got = session.run(["depth"], {"image": frame.rgb[None], "rescale": np.ones(1, np.float32)})[0][0]
    both = np.isfinite(got) & np.isfinite(want)
    return float(np.abs(got[both] - want[both]).max()) if both.any() else 0.0
