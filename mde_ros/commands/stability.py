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
  sequences  the scale over time on held-out walks (model output scaled x0.5 / x2 per walk, 10 Hz) with
             simulated sensors (mde_ros.synthetic.sensors: range cones 2-30 deg, a 16-row lidar, 20 points,
             the camera height with pitch/roll; 3x rangefinder glitches, dropouts): per-frame AbsRel of the
             published depth against the per-frame median-scaled optimum, the worst frame's gap, how
             often the published error bound covered the scale's true error, and the frames published.
  cost       milliseconds per 640x480 frame (median of 10) of the per-frame fit for each anchor source and
             of the temporal filter: what anchoring adds to the node's frame time.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

SECTIONS = ("temporal", "anchoring", "sequences", "cost")
WIDTH, HEIGHT = 160, 120
NOISE_LEVELS = 3.0
PERIOD_S = 0.1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--model", type=Path, default=None, help="model (default: the shipped demo model)")
    from mde_ros.argtypes import int_range

    parser.add_argument("--scenes", type=int_range(1, 10_000), default=12, help="scenes for the anchoring section")
    parser.add_argument("--seed", type=int_range(0, 2**32 - 1), default=0)


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


SEQUENCE_WALKS, SEQUENCE_FRAMES = 6, 20


def _scenarios():
    """name -> (anchors maker(frame_index, frame, rng) -> Anchors)."""
    import math

    from mde_ros.pipeline.anchoring import Anchors, GroundPrior
    from mde_ros.synthetic.sensors import lidar_points, range_reading, sparse_points

    def cone(deg, glitch=None, dropout=None):
        def make(i, frame, rng):
            if dropout and dropout[0] <= i < dropout[1]:
                return Anchors()
            reading = range_reading(frame.depth, frame.intrinsics, math.radians(deg), noise=0.01, rng=rng)
            if reading is None:
                return Anchors()
            if glitch and glitch[0] <= i < glitch[1]:
                reading = dataclasses.replace(reading, reading=3.0 * reading.reading)
            return Anchors(ranges=[reading])
        return make

    def lidar(glitch=None):
        def make(i, frame, rng):
            anchors = Anchors(points=lidar_points(frame.depth, frame.intrinsics, rows=16, noise=0.01, rng=rng))
            if glitch:
                anchors.ranges = cone(5.0, glitch)(i, frame, rng).ranges
            return anchors
        return make

    def ground(i, frame, rng):
        pose = frame.pose
        return Anchors(ground=GroundPrior(pose.position[2], pose.pitch, pose.roll))

    return {"range 2 deg": cone(2.0), "range 10 deg": cone(10.0), "range 30 deg": cone(30.0),
            "range 5 deg, 3x glitch frames 5-14": cone(5.0, glitch=(5, 15)),
            "range 5 deg, dropout frames 8-13 (0.6 s)": cone(5.0, dropout=(8, 14)),
            "range 5 deg, dropout frames 6-19 (1.4 s)": cone(5.0, dropout=(6, 20)),
            "16-row lidar": lidar(), "16-row lidar + glitching range": lidar(glitch=(5, 15)),
            "20 points": lambda i, frame, rng: Anchors(points=sparse_points(frame.depth, frame.intrinsics, 20, rng,
                                                                           noise=0.01)),
            "camera height + pitch/roll": ground}


def sequences_section(estimator, seed: int, max_age: float = 1.0) -> dict[str, dict[str, float]]:
    """Per scenario: mean AbsRel of the published depth, of the per-frame median-scaled optimum, the mean
    and worst per-frame gap, the error bound's coverage, frames published / total (see the module doc)."""
    from mde_ros.metrics import depth_metrics
    from mde_ros.pipeline.anchoring import AnchoringConfig
    from mde_ros.pipeline.intrinsics import Intrinsics
    from mde_ros.pipeline.scale_filter import ScaleAnchoring
    from mde_ros.synthetic import camera_path, make_scene
    from mde_ros.synthetic.sensors import best_scale

    intr = Intrinsics.nyu(WIDTH, HEIGHT)
    original = estimator.card
    walks = []
    try:
        for w in range(SEQUENCE_WALKS):
            scene = make_scene(950_000 + 100 * seed + w)
            factor = (0.5, 2.0)[w % 2]
            estimator.card = dataclasses.replace(original, output_scale=original.output_scale * factor)
            frames = [scene.render(pose, intr) for pose in camera_path(scene, SEQUENCE_FRAMES, step=0.08, seed=w)]
            walks.append([(f, estimator.estimate(f.rgb, intr).depth) for f in frames])
    finally:
        estimator.card = original
    results = {}
    for name, make in _scenarios().items():
        gaps, published, optimum, covered, shown, total = [], [], [], [], 0, 0
        for w, walk in enumerate(walks):
            rng = np.random.default_rng(1000 * seed + w)
            anchoring = ScaleAnchoring(AnchoringConfig(max_age=max_age, on_expiry="stop"))
            for i, (frame, pred) in enumerate(walk):
                truth = frame.depth
                depth, estimate = anchoring.anchor(pred, intr, make(i, frame, rng), i * PERIOD_S)
                total += 1
                if not estimate.publish or not estimate.applied:
                    continue  # stopped (or never anchored): nothing wrong is published
                shown += 1
                best = depth_metrics(pred * best_scale(pred, truth), truth)["abs_rel"]
                got = depth_metrics(depth, truth)["abs_rel"]
                published.append(got)
                optimum.append(best)
                gaps.append(got - best)
                covered.append(abs(estimate.scale / best_scale(pred, truth) - 1.0) <= estimate.error_bound)
        results[name] = {"abs_rel": float(np.mean(published)) if published else float("nan"),
                         "optimum": float(np.mean(optimum)) if optimum else float("nan"),
                         "mean_gap": float(np.mean(gaps)) if gaps else float("nan"),
                         "worst_gap": float(np.max(gaps)) if gaps else float("nan"),
                         "coverage": float(np.mean(covered)) if covered else float("nan"),
                         "published": shown, "frames": total}
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
    from mde_ros.pipeline.scale_filter import ScaleAnchoring
    from mde_ros.synthetic.sensors import lidar_points, range_reading

    scan = lidar_points(frame.depth, intr)
    beam = range_reading(frame.depth, intr, 0.1)
    anchoring = ScaleAnchoring()
    stamps = iter(range(1, 10 * repeats + 100))
    cases["16-row scan + range, fits + filter + apply"] = lambda: anchoring.anchor(
        depth, intr, Anchors(points=scan, ranges=[beam]), 0.1 * next(stamps))
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
    if "sequences" in sections:
        print(f"\nscale over time: {SEQUENCE_WALKS} held-out walks x {SEQUENCE_FRAMES} frames at 10 Hz, model output "
              "x0.5 / x2 per walk, scale.max_age 1 s then stop; per published frame AbsRel vs the per-frame "
              "median-scaled optimum")
        print(f"  {'scenario':42s} {'AbsRel':>7s} {'optimum':>7s} {'gap':>6s} {'worst':>6s} {'bound ok':>8s} "
              f"{'published':>9s}")
        for name, row in sequences_section(estimator, args.seed).items():
            print(f"  {name:42s} {row['abs_rel']:7.3f} {row['optimum']:7.3f} {row['mean_gap']:6.3f} "
                  f"{row['worst_gap']:6.3f} {100 * row['coverage']:7.0f}% {row['published']:4d}/{row['frames']}")
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
