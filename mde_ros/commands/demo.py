"""`mde-ros demo`: the main job on built-in data.

Renders a synthetic indoor sequence with exact depth (a camera approaching an obstacle), runs it
through the same estimator and output builder as the ROS node, writes depth, point clouds and
previews, and prints frames, FPS and metrics against the exact depth.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from mde_ros.argtypes import int_range
from mde_ros.commands.predict import prepare_out_dir
from mde_ros.modelargs import CommandError, add_model_arguments, build_estimator


# The synthetic scene needs a few pixels per side to hold its walls and objects; 4096 keeps one
# frame's exact depth, prediction and preview strip in memory comfortably.
MIN_SIDE, MAX_DEMO_SIDE = 16, 4096


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder")
    parser.add_argument("--frames", type=int_range(2, 100_000), default=24,
                        help="frames in the demo sequence (the camera moves between frames: at least 2)")
    parser.add_argument("--width", type=int_range(MIN_SIDE, MAX_DEMO_SIDE), default=320)
    parser.add_argument("--height", type=int_range(MIN_SIDE, MAX_DEMO_SIDE), default=240)
    parser.add_argument("--seed", type=int_range(0, 2**32 - 1), default=7, help="scene seed (deterministic)")
    add_model_arguments(parser)


ERROR_SPAN_M = 2.0


def preview_strip(rgb: np.ndarray, gt: np.ndarray, pred: np.ndarray, min_depth: float, max_depth: float):
    """image | exact depth | predicted depth | |error| side by side, for a person to look at."""
    from mde_ros.pipeline.colorize import colorize

    import cv2

    error = np.abs(pred - gt)
    # |error| from 0 m (far colour) to ERROR_SPAN_M and beyond (near colour), on the same colour map.
    error_rgb = colorize(np.where(np.isfinite(error), max_depth * (1.0 - error / ERROR_SPAN_M), np.nan),
                         min_depth, max_depth)
    panels = [rgb.copy(), colorize(gt, min_depth, max_depth), colorize(pred, min_depth, max_depth), error_rgb]
    titles = ["image", "exact depth", "prediction", f"|error| 0-{ERROR_SPAN_M:g} m"]
    for panel, title in zip(panels, titles):
        cv2.putText(panel, title, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate(panels, axis=1)


def run(args: argparse.Namespace) -> int:
    from mde_ros.metrics import format_metrics_table
    from mde_ros.synthetic import approach_sequence

    if args.frames < 2:
        print("mde-ros demo: --frames must be >= 2 (the camera moves between frames)", file=sys.stderr)
        return 2
    try:
        estimator = build_estimator(args)
    except CommandError as exc:
        print(f"mde-ros demo: {exc}", file=sys.stderr)
        return 1
    card = estimator.card
    frames = approach_sequence(args.seed, args.frames, args.width, args.height)
    out = args.out
    try:
        for sub in ("depth", "preview", "points"):
            prepare_out_dir(out / sub)
    except CommandError as exc:
        print(f"mde-ros demo: {exc}", file=sys.stderr)
        return 1
    try:
        summary, metrics = _run_frames(args, estimator, frames, out)
    except OSError as exc:  # --out read-only, full disk
        print(f"mde-ros demo: cannot write into {out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"\nmde-ros demo: {len(frames)} frames at {args.width}x{args.height}, model {card.name}, "
          f"backend {estimator.backend.name}")
    print(f"  throughput {summary['fps_end_to_end']:.1f} frames/s (including file writing); per stage (ms): "
          + ", ".join(f"{k} {v:.1f}" for k, v in summary["stage_ms_mean"].items()))
    print("  metrics vs exact depth (per-frame mean, no median scaling):")
    print(format_metrics_table(metrics))
    print(f"  wrote {out}/depth/*.png (16-bit mm), {out}/points/*.ply, {out}/preview/*.png, "
          f"{out}/preview.png, {out}/summary.json")
    return 0


def _run_frames(args: argparse.Namespace, estimator, frames, out: Path) -> tuple[dict, dict]:
    """Estimate, score and write every frame; (summary, mean metrics)."""
    from tqdm import tqdm

    from mde_ros import fileio
    from mde_ros.metrics import depth_metrics, mean_metrics
    from mde_ros.pipeline.colorize import with_scale_bar
    from mde_ros.pipeline.geometry import backproject
    from mde_ros.pipeline.outputs import OutputConfig, build_outputs

    card = estimator.card
    min_depth, max_depth = card.min_depth, card.max_depth
    config = OutputConfig()

    per_frame, stage_times = [], {"preprocess": [], "network": [], "postprocess": [], "outputs": []}
    started = time.perf_counter()
    for i, frame in enumerate(tqdm(frames, desc="demo", unit="frame")):
        result = estimator.estimate(frame.rgb, frame.intrinsics)
        t0 = time.perf_counter()
        build_outputs(result, frame.rgb, config, min_depth, max_depth)
        stage_times["outputs"].append(time.perf_counter() - t0)
        for stage in ("preprocess", "network", "postprocess"):
            stage_times[stage].append(result.timings[stage])
        per_frame.append(depth_metrics(result.depth, frame.depth, min_depth=min_depth, max_depth=max_depth))
        name = f"frame_{i:03d}"
        fileio.write_depth_png16(out / "depth" / f"{name}.png", result.depth)
        fileio.write_image(out / "preview" / f"{name}.png",
                           preview_strip(frame.rgb, frame.depth, result.depth, min_depth, max_depth))
        if i in (0, len(frames) - 1):
            fileio.write_ply(out / "points" / f"{name}.ply", backproject(result.depth, frame.intrinsics),
                             frame.rgb)
    elapsed = time.perf_counter() - started
    last = frames[-1]
    fileio.write_image(out / "preview.png", with_scale_bar(
        preview_strip(last.rgb, last.depth, result.depth, min_depth, max_depth), min_depth, max_depth))

    metrics = mean_metrics(per_frame)
    summary = {
        "frames": len(frames),
        "resolution": [args.width, args.height],
        "model": card.name,
        "backend": estimator.backend.name,
        "fps_end_to_end": len(frames) / elapsed,
        "stage_ms_mean": {k: 1000 * float(np.mean(v)) for k, v in stage_times.items()},
        "metrics_vs_exact_depth": metrics,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary, metrics
