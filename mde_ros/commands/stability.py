"""`mde-ros stability`: figures for the temporal filter and the scale anchoring, on synthetic
sequences with exact depth (mde_ros.synthetic), through the real model (default: the shipped one).

Sections:
  temporal   static camera, stop-and-go walk (camera_path with holds) and the approach sequence,
             each frame with camera noise (Gaussian, sigma 3 levels) so the network flickers as on a
             real sensor. Reported: mean frame-to-frame relative change on static pixels (exact depth
             changed < 0.1 %) without/with the filter (goal: ratio <= 0.5), AbsRel without/with (goal:
             no worse), and the lag of the approaching obstacle's centre distance behind the unfiltered
             one (the delay that best aligns the two series; goal: <= 1 frame).
  anchoring  the model deliberately mis-scaled (card output_scale x0.5 and x2) on held-out synthetic
             scenes seen from a robot-mounted camera: AbsRel raw, per-image median-scaled (the best one factor can do), anchored with 20
             sparse metric points, and anchored with the known camera height (with and without pitch/roll).
  cost       milliseconds per 640x480 frame (median of 10) of the per-frame fit for each anchor source and
             of the temporal filter: what anchoring adds to the node's frame time.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

SECTIONS = ("temporal", "anchoring", "cost")
WIDTH, HEIGHT = 160, 120
NOISE_LEVELS = 3.0
PERIOD_S = 0.1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--model", type=Path, default=None, help="model (default: the shipped demo model)")
    parser.add_argument("--scenes", type=int, default=12, help="scenes for the anchoring section")
    parser.add_argument("--seed", type=int, default=0)


def _noisy(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.clip(rgb + rng.normal(0.0, NOISE_LEVELS, rgb.shape), 0, 255).astype(np.uint8)


def sequences(seed: int = 0) -> dict[str, list]:
    """name -> list of SceneFrame: static camera, stop-and-go walk, approach (exact depth)."""
    from mde_ros.pipeline.intrinsics import Intrinsics
    from mde_ros.synthetic import approach_sequence, camera_path, make_scene, render_frame

    intr = Intrinsics.nyu(WIDTH, HEIGHT)
    still = render_frame(500 + seed, WIDTH, HEIGHT)
    scene = make_scene(600 + seed)
    held = []
    for i, pose in enumerate(camera_path(scene, 12, seed=seed)):
        held += [pose] * (3 if i % 2 == 0 else 1)  # stand for three frames, then walk
    return {"static": [still] * 20,
            "stop_and_go": [scene.render(pose, intr) for pose in held],
            "approach": approach_sequence(700 + seed, n_frames=30, width=WIDTH, height=HEIGHT)}


def static_flicker(truth: list[np.ndarray], depth: list[np.ndarray]) -> float:
    """Mean |d_t - d_t-1| / d_t-1 over pixels whose exact depth changed < 0.1 % (NaN: none)."""
    values = []
    for i in range(1, len(depth)):
        static = np.abs(truth[i] - truth[i - 1]) <= 1e-3 * truth[i - 1]
        ok = static & np.isfinite(depth[i]) & np.isfinite(depth[i - 1]) & (depth[i - 1] > 0)
        if ok.sum() >= 100:
            values.append(float(np.mean(np.abs(depth[i][ok] - depth[i - 1][ok]) / depth[i - 1][ok])))
    return float(np.mean(values)) if values else float("nan")


def series_lag(reference: np.ndarray, delayed: np.ndarray, max_lag: float = 5.0, skip: int = 3) -> float:
    """The delay (frames, 0.05 steps) that best aligns `delayed` with `reference` (least squares)."""
    t = np.arange(len(reference), dtype=np.float64)
    best = (0.0, np.inf)
    for lag in np.arange(0.0, max_lag + 1e-9, 0.05):
        error = float(np.mean((delayed[skip:] - np.interp(t - lag, t, reference)[skip:]) ** 2))
        if error < best[1]:
            best = (float(lag), error)
    return best[0]


def _abs_rel(truth: list[np.ndarray], depth: list[np.ndarray]) -> float:
    from mde_ros.metrics import depth_metrics

    return float(np.mean([depth_metrics(d, t)["abs_rel"] for t, d in zip(truth, depth)]))


def temporal_section(estimator, seed: int) -> dict[str, dict[str, float]]:
    from mde_ros.pipeline.temporal import TemporalFilter

    rng = np.random.default_rng(seed)
    results = {}
    for name, frames in sequences(seed).items():
        truth = [f.depth for f in frames]
        raw = [estimator.estimate(_noisy(f.rgb, rng), f.intrinsics).depth for f in frames]
        filt = TemporalFilter()
        filtered = [filt.update(d, i * PERIOD_S) for i, d in enumerate(raw)]
        row = {"abs_rel_raw": _abs_rel(truth, raw), "abs_rel_filtered": _abs_rel(truth, filtered)}
        if name != "approach":
            row["flicker_raw"] = static_flicker(truth, raw)
            row["flicker_filtered"] = static_flicker(truth, filtered)
            row["flicker_ratio"] = row["flicker_filtered"] / row["flicker_raw"]
        else:
            intr = frames[0].intrinsics
            v, u = int(round(intr.cy)), int(round(intr.cx))
            centre_raw = np.array([d[v, u] for d in raw], np.float64)
            centre_filtered = np.array([d[v, u] for d in filtered], np.float64)
            row["centre_lag_frames"] = series_lag(centre_raw, centre_filtered)
            row["centre_max_gap_m"] = float(np.max(np.abs(centre_filtered - centre_raw)))
        results[name] = row
    return results


def _anchor_points(truth: np.ndarray, intr, rng: np.random.Generator, n: int = 20) -> np.ndarray:
    valid = np.argwhere(np.isfinite(truth) & (truth > 0))
    v, u = valid[rng.choice(len(valid), size=n, replace=False)].T
    z = truth[v, u].astype(np.float64)
    return np.stack([(u - intr.cx) / intr.fx * z, (v - intr.cy) / intr.fy * z, z], axis=1)


def robot_frame(seed: int):
    """A view from a robot-mounted camera (camera_path: 0.4-1.5 m high, pitched a few degrees), the
    setting a known camera height describes; render_frame's random views look anywhere."""
    from mde_ros.pipeline.intrinsics import Intrinsics
    from mde_ros.synthetic import camera_path, make_scene

    scene = make_scene(seed)
    return scene.render(camera_path(scene, 1, seed=seed)[0], Intrinsics.nyu(WIDTH, HEIGHT))


def anchoring_section(estimator, scenes: int, seed: int) -> dict[str, dict[str, float]]:
    from mde_ros.metrics import depth_metrics
    from mde_ros.pipeline.anchoring import Anchors, GroundPrior, fit_frame
    original = estimator.card
    results = {}
    try:
        for factor in (0.5, 2.0):
            estimator.card = dataclasses.replace(original, output_scale=original.output_scale * factor)
            rows: dict[str, list[float]] = {k: [] for k in ("raw", "median_scaled", "points20")}
            ground: dict[str, list[tuple[float, float]]] = {"ground_pose": [], "ground_height": []}
            rng = np.random.default_rng(seed)
            for i in range(scenes):
                frame = robot_frame(900_000 + seed * 1000 + i)
                truth, intr, pose = frame.depth, frame.intrinsics, frame.pose
                pred = estimator.estimate(frame.rgb, intr).depth
                ok = np.isfinite(pred) & np.isfinite(truth) & (truth > 0)
                median_scaled = depth_metrics(pred * np.median(truth[ok]) / np.median(pred[ok]), truth)["abs_rel"]
                rows["raw"].append(depth_metrics(pred, truth)["abs_rel"])
                rows["median_scaled"].append(median_scaled)
                fit = fit_frame(pred, intr, Anchors(points=_anchor_points(truth, intr, rng)))
                rows["points20"].append(depth_metrics(pred * fit.scale, truth)["abs_rel"])
                for key, prior in (("ground_pose", GroundPrior(pose.position[2], pose.pitch, pose.roll)),
                                   ("ground_height", GroundPrior(pose.position[2]))):
                    fit = fit_frame(pred, intr, Anchors(ground=prior))
                    if fit is not None:  # no floor in view: no ground anchor (the depth is left alone)
                        ground[key].append((depth_metrics(pred * fit.scale, truth)["abs_rel"], median_scaled))
            row: dict[str, float] = {k: float(np.mean(v)) for k, v in rows.items()}
            for key, pairs in ground.items():
                row[f"{key}_found"] = len(pairs)
                row[key] = float(np.mean([a for a, _ in pairs])) if pairs else float("nan")
                row[f"{key}_median_scaled"] = float(np.mean([m for _, m in pairs])) if pairs else float("nan")
            results[f"x{factor:g}"] = row
    finally:
        estimator.card = original
    return results


def cost_section(repeats: int = 10) -> dict[str, float]:
    import time

    from mde_ros.pipeline.anchoring import Anchors, GroundPrior, RangeReading, fit_frame
    from mde_ros.pipeline.temporal import TemporalFilter
    from mde_ros.synthetic import render_frame

    frame = render_frame(3, 640, 480)
    depth, intr, pose = frame.depth * 2.0, frame.intrinsics, frame.pose
    points = _anchor_points(frame.depth, intr, np.random.default_rng(0))
    cases = {"20 points": lambda: fit_frame(depth, intr, Anchors(points=points)),
             "range (offset sensor)": lambda: fit_frame(depth, intr, Anchors(
                 ranges=[RangeReading(2.0, 0.1, (0.05, 0.0, 0.0), (0.0, 0.0, 1.0))])),
             "camera height + pitch/roll": lambda: fit_frame(depth, intr, Anchors(
                 ground=GroundPrior(pose.position[2], pose.pitch, pose.roll))),
             "camera height only": lambda: fit_frame(depth, intr, Anchors(ground=GroundPrior(pose.position[2])))}
    filt = TemporalFilter()
    filt.update(depth, 0.0)
    ticks = iter(range(1, 10 * repeats + 100))
    cases["temporal filter"] = lambda: filt.update(depth, 0.1 * next(ticks))
    results = {}
    for name, call in cases.items():
        call()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        results[name] = 1000.0 * float(np.median(times))
    return results


def run(args: argparse.Namespace) -> int:
    from mde_ros.bags.replay import load_estimator
    from mde_ros.inference.onnxruntime_backend import NAME as ONNXRUNTIME

    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        print(f"mde-ros stability: unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}",
              file=sys.stderr)
        return 2
    try:
        estimator = load_estimator(args.model, ONNXRUNTIME)
    except Exception as exc:  # one line, not a traceback
        print(f"mde-ros stability: cannot load the model: {exc}", file=sys.stderr)
        return 1
    print(f"model {estimator.card.name}, {WIDTH}x{HEIGHT}, camera noise sigma {NOISE_LEVELS:g} levels")
    if "temporal" in sections:
        print("\ntemporal filter (defaults: time_constant 0.3 s, threshold 0.03, scene_change 0.1; 10 Hz)")
        for name, row in temporal_section(estimator, args.seed).items():
            parts = [f"AbsRel {row['abs_rel_raw']:.4f} -> {row['abs_rel_filtered']:.4f}"]
            if "flicker_ratio" in row:
                parts.insert(0, f"static-pixel change {100 * row['flicker_raw']:.2f} % -> "
                                f"{100 * row['flicker_filtered']:.2f} % (ratio {row['flicker_ratio']:.2f})")
            else:
                parts.append(f"centre-distance lag {row['centre_lag_frames']:.2f} frames "
                             f"(max gap {row['centre_max_gap_m']:.3f} m)")
            print(f"  {name:12s} " + "; ".join(parts))
    if "anchoring" in sections:
        print(f"\nscale anchoring, model output scaled x0.5 and x2, {args.scenes} synthetic scenes, mean AbsRel")
        for factor, row in anchoring_section(estimator, args.scenes, args.seed).items():
            print(f"  {factor:4s} raw {row['raw']:.3f}; median-scaled {row['median_scaled']:.3f}; "
                  f"20 points {row['points20']:.3f}")
            for key, label in (("ground_pose", "camera height+pitch/roll"), ("ground_height", "camera height only")):
                print(f"       {label}: floor found in {row[key + '_found']}/{args.scenes} views; there AbsRel "
                      f"{row[key]:.3f} vs median-scaled {row[key + '_median_scaled']:.3f}")
    if "cost" in sections:
        print("\ncost per 640x480 frame (median of 10)")
        for name, ms in cost_section().items():
            print(f"  {name:28s} {ms:7.2f} ms")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mde-ros stability", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
