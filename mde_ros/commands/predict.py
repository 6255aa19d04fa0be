"""`mde-ros predict IMAGE...`: depth (16-bit PNG mm + .npy m), colourised preview and PLY per image."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mde_ros.modelargs import CommandError, add_model_arguments, build_estimator


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", type=Path, help="image files (PNG, JPEG, ...)")
    parser.add_argument("--out", type=Path, default=Path("predictions"), help="output folder")
    parser.add_argument("--resume", action="store_true",
                        help="skip images whose outputs are already in --out (an interrupted run's, say)")
    add_model_arguments(parser)
    camera = parser.add_argument_group(
        "camera", "intrinsics of the images; without them the training camera's field of view is assumed "
        "and no rescale happens")
    camera.add_argument("--camera-info", type=Path, help="camera_info YAML (camera_calibration format)")
    camera.add_argument("--fx", type=float, help="focal length in pixels at the image's resolution")
    camera.add_argument("--fy", type=float, help="default: fx")
    camera.add_argument("--cx", type=float, help="default: image centre")
    camera.add_argument("--cy", type=float, help="default: image centre")
    scale = parser.add_argument_group(
        "metric scale anchors", "correct the model's scale per image with what you know (mde_ros.pipeline.anchoring)")
    scale.add_argument("--anchor", type=float, nargs=3, action="append", default=[], metavar=("U", "V", "Z"),
                       help="pixel column U, row V is Z metres away (depth along the optical axis); repeatable; "
                            "applies to every image")
    scale.add_argument("--camera-height", type=float, help="metres from the camera to a flat floor in view")
    scale.add_argument("--camera-pitch", type=float, help="radians, > 0 looks down (with --camera-height)")
    scale.add_argument("--camera-roll", type=float, help="radians, > 0 turns the image clockwise")


def image_intrinsics(args: argparse.Namespace, width: int, height: int, card):
    """(intrinsics at this image's resolution, assumed?) from a YAML, --fx..., or the training camera.

    A YAML for another aspect ratio raises CameraInfoError (the node treats such a CameraInfo as missing).
    """
    from mde_ros.fileio import read_camera_info_yaml
    from mde_ros.pipeline.intrinsics import CameraInfoError, Intrinsics, at_image_resolution, principal_point_problems

    if args.camera_info is not None:
        return at_image_resolution(read_camera_info_yaml(args.camera_info), width, height), False
    if args.fx is not None:
        fy = args.fy if args.fy is not None else args.fx
        cx = args.cx if args.cx is not None else (width - 1) / 2
        cy = args.cy if args.cy is not None else (height - 1) / 2
        problems = principal_point_problems(cx, cy, width, height, what="--")
        if problems:
            raise CameraInfoError("camera_info_invalid", "; ".join(problems))
        return Intrinsics(args.fx, fy, cx, cy, width, height), False
    if card.train_focal_px:
        # Same field of view as the training camera: the network's own assumption, so no rescale.
        fx = card.train_focal_px * width / card.input_width
        fy = card.train_focal_px * height / card.input_height
        return Intrinsics(fx, fy, (width - 1) / 2, (height - 1) / 2, width, height), True
    return None, False


# A 16384-pixel-wide sensor behind a 1 degree lens has fx = 0.94 million pixels; beyond 1e7 is a typo
# (1e308 made every point of the cloud collapse onto the optical axis).
MAX_FOCAL_PX = 1e7


def camera_argument_problem(args: argparse.Namespace) -> str | None:
    """Why --fx/--fy/--cx/--cy cannot describe a camera (checked before anything is written), or None."""
    import math

    if args.camera_info is not None and args.fx is not None:
        return "give --camera-info or --fx, not both"
    if args.fx is None and any(v is not None for v in (args.fy, args.cx, args.cy)):
        return "--fy, --cx and --cy need --fx"
    for name in ("fx", "fy"):
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and 0 < value <= MAX_FOCAL_PX):
            return f"--{name} must be a focal length in pixels within 0..{MAX_FOCAL_PX:g}, got {value}"
    for name in ("cx", "cy"):
        value = getattr(args, name)
        if value is not None and not math.isfinite(value):
            return f"--{name} must be a finite pixel coordinate, got {value}"
    return None


def anchor_argument_problem(args: argparse.Namespace) -> str | None:
    """Why --anchor/--camera-height cannot be used (checked before anything is written), or None."""
    import math

    for u, v, z in args.anchor:
        if not all(math.isfinite(x) for x in (u, v, z)) or z <= 0 or u < 0 or v < 0:
            return f"--anchor {u:g} {v:g} {z:g}: need a pixel U, V >= 0 and a depth Z > 0 metres"
    if args.camera_height is not None and not (math.isfinite(args.camera_height) and args.camera_height > 0):
        return f"--camera-height must be > 0 metres, got {args.camera_height}"
    if args.camera_height is None and (args.camera_pitch is not None or args.camera_roll is not None):
        return "--camera-pitch/--camera-roll need --camera-height"
    for name in ("camera_pitch", "camera_roll"):
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and abs(value) <= math.pi):
            return f"--{name.replace('_', '-')} must be an angle in radians within -pi..pi, got {value}"
    return None


def anchor_image(args: argparse.Namespace, estimator, result, rgb, intr):
    """(anchored DepthResult, one-line report) with the shared refine stage, or (result, None) without anchors.

    Each image on its own (no smoothing across files). Points need no intrinsics (a nominal pinhole
    puts them back on their pixels); the floor does."""
    import dataclasses

    from mde_ros.pipeline.anchoring import AnchoringConfig, Anchors, GroundPrior, points_from_pixels
    from mde_ros.pipeline.intrinsics import Intrinsics
    from mde_ros.pipeline.refine import RefineConfig, Refiner

    if not args.anchor and args.camera_height is None:
        return result, None
    height, width = rgb.shape[:2]
    fit_intr = intr if intr is not None else Intrinsics(1.0, 1.0, 0.0, 0.0, width, height)
    points, rejected = points_from_pixels(args.anchor, fit_intr, width, height)
    ground = None
    if args.camera_height is not None:
        if intr is None:
            rejected["no_intrinsics"] += 1  # a floor needs the camera's geometry
        else:
            known = args.camera_pitch is not None or args.camera_roll is not None
            ground = GroundPrior(args.camera_height, (args.camera_pitch or 0.0) if known else None,
                                 (args.camera_roll or 0.0) if known else None)
    anchors = Anchors(points=points, ground=ground, rejected=rejected)
    refiner = Refiner(RefineConfig(anchoring=AnchoringConfig(time_constant=0.0)))
    refined = refiner.refine(estimator, dataclasses.replace(result, intrinsics=fit_intr), rgb, anchors, 0.0)
    s = refined.scale
    ignored = (f"; ignored: {', '.join(f'{k} x{n}' for k, n in sorted(refined.anchors.rejected.items()))}"
               if refined.anchors.rejected else "")
    if not s.applied:
        return result, f"not anchored (no usable anchor{ignored})"
    anchored = dataclasses.replace(refined.result, intrinsics=result.intrinsics)
    only = "; scale only: one anchor cannot fix a relative model's shift" if s.scale_only else ""
    return anchored, (f"scale x{s.scale:.4f} ({s.source}, {s.n_anchors} anchors, predicted error <= "
                      f"{100 * s.error_bound:.0f} % (90 %), confidence {s.confidence:.2f}{only}{ignored})")


def output_stems(paths: list[Path]) -> list[str]:
    """One output name per input, each a plain file name inside --out and none used twice
    (`a/img.png b/img.png` -> img, img_2; `..png` -> image)."""
    stems, used = [], set()
    for path in paths:
        stem = path.stem.lstrip(".").strip() or "image"
        stem = stem.replace("/", "_").replace("\\", "_")
        candidate, n = stem, 2
        while candidate in used:
            candidate, n = f"{stem}_{n}", n + 1
        used.add(candidate)
        stems.append(candidate)
    return stems


def prepare_out_dir(out: Path) -> None:
    """Create --out (and parents); CommandError when it is a file or cannot be created."""
    from mde_ros.modelargs import CommandError

    if out.exists() and not out.is_dir():
        raise CommandError(f"--out {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"cannot create --out folder {out}: {exc.strerror or exc}") from exc


def run(args: argparse.Namespace) -> int:
    from mde_ros import fileio
    from mde_ros.models.card import require_metres

    problem = camera_argument_problem(args) or anchor_argument_problem(args)
    if problem:
        print(f"mde-ros predict: {problem}", file=sys.stderr)
        return 2
    try:
        if args.camera_info is not None:
            fileio.read_camera_info_yaml(args.camera_info)  # fail before the first image, not per image
        estimator = build_estimator(args)
        # Depth PNGs and clouds are metres: a relative model needs anchors (predict's --anchor /
        # --camera-height, where this version has them).
        require_metres(estimator.card, bool(getattr(args, "anchor", None) or getattr(args, "camera_height", None)),
                       "predict (depth PNG/npy in metres, PLY)")
        if estimator.card.canonical_focal_px is not None and args.camera_info is None and args.fx is None:
            raise CommandError(
                f"model {estimator.card.name!r} gives depth for a canonical camera (focal length "
                f"{estimator.card.canonical_focal_px:g} px): its metres need this camera's focal length; give "
                "--camera-info cam.yaml or --fx FX (pixels at the image's resolution)")
        prepare_out_dir(args.out)
    except (CommandError, ValueError, OSError) as exc:  # CardError is a ValueError
        print(f"mde-ros predict: {exc}", file=sys.stderr)
        return 1
    return _predict_images(args, estimator)


def _outputs_of(out: Path, name: str) -> list[Path]:
    """An image's output files, in the order they are written: the depth PNG last, so its presence
    means the image is done (--resume)."""
    return [out / f"{name}.ply", out / f"{name}_depth.npy", out / f"{name}_depth_color.png", out / f"{name}_depth.png"]


def _predict_images(args: argparse.Namespace, estimator) -> int:
    """Every image in turn; Ctrl-C / SIGTERM stop between images (what is written is complete)."""
    import numpy as np
    from tqdm import tqdm

    from mde_ros import fileio
    from mde_ros.pipeline.colorize import colorize, with_scale_bar
    from mde_ros.pipeline.geometry import backproject
    from mde_ros.pipeline.imagecodec import read_image_file
    from mde_ros.pipeline.intrinsics import CameraInfoError
    from mde_ros.pipeline.preprocess import InputError
    from mde_ros.stopping import StopRequest, exit_code

    card = estimator.card
    failures, skipped, done = 0, 0, 0
    stems = output_stems(args.images)
    bar = tqdm(list(zip(args.images, stems)), desc="predict", unit="img", disable=len(args.images) < 2)
    with StopRequest() as stop, bar:
        for path, name in bar:
            if stop.requested:
                bar.close()  # the progress line first, then the last word
                print(f"mde-ros predict: stopped by {stop.describe()} after {done + skipped} of {len(args.images)} "
                      f"images: their outputs in {args.out} are complete; run again with --resume to skip them",
                      file=sys.stderr)
                return exit_code(stop.signum)
            outputs = _outputs_of(args.out, name)
            if args.resume and outputs[-1].exists():
                skipped += 1
                continue
            if name != path.stem:
                tqdm.write(f"mde-ros predict: {path}: written as {name}_* (its own name is taken or not a file name)",
                           file=sys.stderr)
            notes: list[str] = []
            try:
                rgb = read_image_file(path, notes=notes)
            except (OSError, InputError) as exc:  # missing, unreadable, truncated, corrupt, over the budget
                tqdm.write(f"mde-ros predict: skipping {path}: {exc}", file=sys.stderr)
                failures += 1
                continue
            for note in notes:  # EXIF orientation applied: the photo as a viewer shows it
                tqdm.write(f"{path}: {note}")
            height, width = rgb.shape[:2]
            try:
                intr, assumed = image_intrinsics(args, width, height, card)
            except CameraInfoError as exc:
                if card.canonical_focal_px is not None:  # its metres would be wrong by f / canonical: no output
                    tqdm.write(f"mde-ros predict: skipping {path}: {exc} (a canonical-camera model needs the "
                               "camera's focal length)", file=sys.stderr)
                    failures += 1
                    continue
                tqdm.write(f"mde-ros predict: {path}: {exc} (depth without rescale, no .ply)", file=sys.stderr)
                intr, assumed = None, False
            # An assumed camera is the training camera by construction: rescaling by it is a no-op anyway.
            result = estimator.estimate(rgb, None if assumed else intr)
            result, report = anchor_image(args, estimator, result, rgb, intr)
            if report is not None:
                tqdm.write(f"{path}: {report}")
            depth = result.depth
            usable = np.isfinite(depth) & (depth > 0)
            if not usable.any():  # a NaN model, an absurd --fx: nothing to write, and never silently
                tqdm.write(f"mde-ros predict: skipping {path}: no valid depth (every pixel is NaN, infinite or "
                           f"<= 0; rescale factor {result.rescale:g}): check the model and --fx / --camera-info",
                           file=sys.stderr)
                failures += 1
                continue
            preview = with_scale_bar(colorize(depth, card.min_depth, card.max_depth), card.min_depth, card.max_depth)
            points = backproject(depth, intr) if intr is not None else None
            try:
                for stale in outputs:  # an earlier run's .ply must not pass for this one's
                    if stale.is_symlink() or stale.exists():
                        stale.unlink()
                if points is not None:
                    fileio.write_ply(outputs[0], points, rgb)
                fileio.write_depth_npy(outputs[1], depth)
                fileio.write_image(outputs[2], preview)
                fileio.write_depth_png16(outputs[3], depth)
            except OSError as exc:  # full disk, read-only folder: no half set of files is left
                for partial in outputs:
                    if partial.is_file() and not partial.is_symlink():
                        partial.unlink(missing_ok=True)
                bar.close()
                print(f"mde-ros predict: cannot write {path}'s outputs into {args.out} "
                      f"({exc.strerror or exc}) after {done + skipped} of {len(args.images)} images; the earlier "
                      "outputs are complete: free space and run again with --resume", file=sys.stderr)
                return 1
            done += 1
    print(f"wrote {done} prediction(s) to {args.out}" + (f"; {skipped} already there (--resume)" if skipped else "")
          + (f"; {failures} file(s) failed" if failures else ""))
    return 1 if failures else 0
