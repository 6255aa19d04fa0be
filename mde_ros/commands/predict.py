"""`mde-ros predict IMAGE...`: depth (16-bit PNG mm + .npy m), colourised preview and PLY per image."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mde_ros.commands.common import CommandError, add_model_arguments, build_estimator


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", type=Path, help="image files (PNG, JPEG, ...)")
    parser.add_argument("--out", type=Path, default=Path("predictions"), help="output folder")
    add_model_arguments(parser)
    camera = parser.add_argument_group(
        "camera", "intrinsics of the images; without them the training camera's field of view is assumed "
        "and no rescale happens")
    camera.add_argument("--camera-info", type=Path, help="camera_info YAML (camera_calibration format)")
    camera.add_argument("--fx", type=float, help="focal length in pixels at the image's resolution")
    camera.add_argument("--fy", type=float, help="default: fx")
    camera.add_argument("--cx", type=float, help="default: image centre")
    camera.add_argument("--cy", type=float, help="default: image centre")


def image_intrinsics(args: argparse.Namespace, width: int, height: int, card):
    """(intrinsics at this image's resolution, assumed?) from a YAML, --fx..., or the training camera.

    A YAML for another aspect ratio raises CameraInfoError (the node treats such a CameraInfo as missing).
    """
    from mde_ros.fileio import read_camera_info_yaml
    from mde_ros.pipeline.intrinsics import Intrinsics, at_image_resolution

    if args.camera_info is not None:
        return at_image_resolution(read_camera_info_yaml(args.camera_info), width, height), False
    if args.fx is not None:
        fy = args.fy if args.fy is not None else args.fx
        cx = args.cx if args.cx is not None else (width - 1) / 2
        cy = args.cy if args.cy is not None else (height - 1) / 2
        return Intrinsics(args.fx, fy, cx, cy, width, height), False
    if card.train_focal_px:
        # Same field of view as the training camera: the network's own assumption, so no rescale.
        fx = card.train_focal_px * width / card.input_width
        fy = card.train_focal_px * height / card.input_height
        return Intrinsics(fx, fy, (width - 1) / 2, (height - 1) / 2, width, height), True
    return None, False


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from mde_ros import fileio
    from mde_ros.pipeline.colorize import colorize, with_scale_bar
    from mde_ros.pipeline.geometry import backproject
    from mde_ros.models.card import require_metres
    from mde_ros.pipeline.intrinsics import CameraInfoError

    if args.camera_info is not None and args.fx is not None:
        print("mde-ros predict: give --camera-info or --fx, not both", file=sys.stderr)
        return 2
    try:
        estimator = build_estimator(args)
        # Depth PNGs and clouds are metres: a relative model needs anchors (predict's --anchor /
        # --camera-height, where this version has them).
        require_metres(estimator.card, bool(getattr(args, "anchor", None) or getattr(args, "camera_height", None)),
                       "predict (depth PNG/npy in metres, PLY)")
        if args.camera_info is not None:
            fileio.read_camera_info_yaml(args.camera_info)  # fail before the first image, not per image
    except (CommandError, ValueError, OSError) as exc:  # CardError is a ValueError
        print(f"mde-ros predict: {exc}", file=sys.stderr)
        return 1
    card = estimator.card
    args.out.mkdir(parents=True, exist_ok=True)
    failures = 0
    for path in tqdm(args.images, desc="predict", unit="img", disable=len(args.images) < 2):
        try:
            rgb = fileio.read_image(path)
        except (OSError, ValueError) as exc:
            tqdm.write(f"mde-ros predict: skipping {path}: {exc}", file=sys.stderr)
            failures += 1
            continue
        height, width = rgb.shape[:2]
        try:
            intr, assumed = image_intrinsics(args, width, height, card)
        except CameraInfoError as exc:
            tqdm.write(f"mde-ros predict: {path}: {exc} (depth without rescale, no .ply)", file=sys.stderr)
            intr, assumed = None, False
        # An assumed camera is the training camera by construction: rescaling by it is a no-op anyway.
        result = estimator.estimate(rgb, None if assumed else intr)
        stem = args.out / path.stem
        fileio.write_depth_png16(stem.with_name(stem.name + "_depth.png"), result.depth)
        fileio.write_depth_npy(stem.with_name(stem.name + "_depth.npy"), result.depth)
        preview = with_scale_bar(colorize(result.depth, card.min_depth, card.max_depth),
                                 card.min_depth, card.max_depth)
        fileio.write_image(stem.with_name(stem.name + "_depth_color.png"), preview)
        if intr is not None:
            fileio.write_ply(stem.with_name(stem.name + ".ply"), backproject(result.depth, intr), rgb)
    done = len(args.images) - failures
    print(f"wrote {done} prediction(s) to {args.out}" + (f"; {failures} file(s) failed" if failures else ""))
    return 1 if failures else 0
