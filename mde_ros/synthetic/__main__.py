"""Render speed and sample frames of the synthetic scenes.

    python -m mde_ros.synthetic --bench                # frames/s at 320x240 along a walk through a room
    python -m mde_ros.synthetic --save samples --count 8   # RGB PNGs + 16-bit depth PNGs (mm)
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mde_ros.fileio import write_depth_png16, write_image
from mde_ros.pipeline.intrinsics import Intrinsics
from mde_ros.synthetic.scenes import camera_path, make_scene, render_frame


def bench(seed: int, frames: int, width: int, height: int) -> float:
    """Frames/s of Scene.render along a camera path (scene built and textures loaded beforehand)."""
    intr = Intrinsics.nyu(width, height)
    scene = make_scene(seed)
    poses = camera_path(scene, frames, seed=seed)
    scene.render(poses[0], intr)                      # textures, atlas, ray grid: once per process/scene
    start = time.perf_counter()
    for pose in poses:
        scene.render(pose, intr)
    return len(poses) / (time.perf_counter() - start)


def save_samples(out: Path, count: int, seed: int, width: int, height: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for i in range(seed, seed + count):
        frame = render_frame(i, width, height)
        write_image(out / f"scene_{i:04d}_rgb.png", frame.rgb)
        write_depth_png16(out / f"scene_{i:04d}_depth_mm.png", frame.depth)
    print(f"wrote {count} RGB + depth (uint16 mm) pairs to {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mde_ros.synthetic", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", action="store_true", help="print rendering frames/s")
    parser.add_argument("--save", type=Path, metavar="DIR", help="write sample frames to DIR")
    parser.add_argument("--count", type=int, default=8, help="frames to save (default 8)")
    parser.add_argument("--frames", type=int, default=200, help="frames to time (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    args = parser.parse_args(argv)
    if not (args.bench or args.save):
        parser.error("nothing to do: pass --bench and/or --save DIR")
    if args.width < 8 or args.height < 8 or args.frames < 1 or args.count < 1 or args.seed < 0:
        parser.error("--width/--height must be >= 8, --frames/--count >= 1 and --seed >= 0")
    if args.bench:
        fps = bench(args.seed, args.frames, args.width, args.height)
        print(f"synthetic render: {fps:.1f} frames/s at {args.width}x{args.height} "
              f"({1000.0 / fps:.2f} ms/frame, seed {args.seed}, {args.frames} frames, RGB + exact depth)")
    if args.save:
        save_samples(args.save, args.count, args.seed, args.width, args.height)
    return 0


if __name__ == "__main__":
    sys.exit(main())
