"""The scale filter over time (pipeline.scale_filter) on synthetic sequences with exact depth and
simulated sensors (mde_ros.synthetic.sensors, stand-ins named as such): glitches, true scale changes,
per-source noise, expiry regimes, and the calibration of the published error bound.

The "model" is the exact depth x a factor, with a smooth distortion and per-frame pixel noise that
changes between frames (so the prediction flickers as a network's does), computed directly: these
tests are about the filter, not a backend.
"""
import math

import numpy as np
import pytest

from mde_ros.pipeline.anchoring import AnchoringConfig, Anchors, FrameFit
from mde_ros.pipeline.intrinsics import Intrinsics
from mde_ros.pipeline.scale_filter import ScaleAnchoring, ScaleFilter, apply_scale
from mde_ros.synthetic import camera_path, make_scene
from mde_ros.synthetic.sensors import best_scale, lidar_points, range_reading, sparse_points

W, H = 160, 120
INTR = Intrinsics.nyu(W, H)
PERIOD = 0.1  # 10 Hz


def model_prediction(truth, factor, frame_index, seed=0, distortion=0.08, noise=0.03):
    """A stand-in network: truth x factor x a smooth distortion x per-frame pixel noise."""
    yy, xx = np.mgrid[0:H, 0:W] / np.array([H, W])[:, None, None]
    shape = 1.0 + distortion * np.sin(2.5 * xx + 1.0 + seed) * np.cos(1.7 * yy + 0.5 * seed)
    flicker = np.exp(np.random.default_rng(1000 * seed + frame_index).normal(0.0, noise, truth.shape))
    return (truth * factor * shape * flicker).astype(np.float32)


def view(seed, index=0):
    scene = make_scene(7000 + seed)
    pose = camera_path(scene, index + 1, seed=seed)[index]
    return scene.render(pose, INTR)


def run_range(frames, factors, glitch=lambda i: 1.0, fov=math.radians(5.0), config=AnchoringConfig(),
              noise=0.01, rng_seed=0):
    """Published scales and the ideal per-frame factors for a range-only sequence."""
    rng = np.random.default_rng(rng_seed)
    anchoring = ScaleAnchoring(config)
    published, ideal, estimates = [], [], []
    for i, (frame, factor) in enumerate(zip(frames, factors)):
        pred = model_prediction(frame.depth, factor, i)
        reading = range_reading(frame.depth, INTR, fov, noise=noise, rng=rng)
        g = glitch(i)
        reading = reading.__class__(reading.reading * g, *list(reading.__dict__.values())[1:])
        _, estimate = anchoring.anchor(pred, INTR, Anchors(ranges=[reading]), i * PERIOD)
        published.append(estimate.scale)
        ideal.append(best_scale(pred, frame.depth))
        estimates.append(estimate)
    return np.array(published), np.array(ideal), estimates


@pytest.mark.parametrize("length, factor", [(2, 3.0), (5, 3.0), (10, 3.0), (10, 1 / 3), (10, 1.6)])
def test_a_rangefinder_glitch_never_moves_the_scale_by_10_percent(length, factor):
    frame = view(0)
    n = 40
    published, ideal, estimates = run_range([frame] * n, [0.5] * n,
                                            glitch=lambda i: factor if 15 <= i < 15 + length else 1.0)
    before = published[14]
    assert np.max(np.abs(published[15:] / before - 1.0)) <= 0.10
    assert any(e.event == "outlier" for e in estimates[15:15 + length])
    assert abs(published[-1] / ideal[-1] - 1.0) < 0.15


def test_a_true_scale_change_after_a_new_view_is_followed_within_one_second():
    first, second = view(1), view(2)
    n = 30
    frames = [first] * 10 + [second] * (n - 10)
    factors = [0.5] * 10 + [1.0] * (n - 10)  # the model is off by 2x more in the new view
    published, ideal, estimates = run_range(frames, factors)
    assert abs(published[9] / ideal[9] - 1.0) < 0.15
    within = int(round(1.0 / PERIOD))
    settled = [i for i in range(10, n) if all(abs(published[j] / ideal[j] - 1.0) < 0.15 for j in range(i, n))]
    assert settled and settled[0] - 10 <= within, (published / ideal)[8:25]
    assert any(e.event == "reset" for e in estimates[10:10 + within])


def test_a_lasting_disagreement_without_a_new_view_is_believed_after_glitch_frames():
    frame = view(0)
    config = AnchoringConfig(glitch_frames=15)
    published, _, estimates = run_range([frame] * 50, [0.5] * 50, glitch=lambda i: 2.0 if i >= 10 else 1.0,
                                        config=config)
    assert abs(published[20] / published[9] - 1.0) < 0.1  # not yet
    assert published[-1] / published[9] == pytest.approx(2.0, rel=0.1)
    assert any(e.event == "persistent" for e in estimates)


def test_sources_are_weighted_by_their_measured_noise():
    """A noisy rangefinder (15 % per reading) beside a 16-row lidar: the filter measures each
    source's noise, and the fused scale is as good as the lidar's alone."""
    frames = [view(3, i) for i in range(0, 30)]
    rng = np.random.default_rng(5)
    errors = {"lidar": [], "both": []}
    anchorings = {"lidar": ScaleAnchoring(), "both": ScaleAnchoring()}
    for i, frame in enumerate(frames):
        pred = model_prediction(frame.depth, 0.5, i)
        ideal = best_scale(pred, frame.depth)
        lidar = lidar_points(frame.depth, INTR, noise=0.01, rng=rng)
        reading = range_reading(frame.depth, INTR, math.radians(5.0), noise=0.15, rng=rng)
        for name, anchors in (("lidar", Anchors(points=lidar)), ("both", Anchors(points=lidar, ranges=[reading]))):
            _, estimate = anchorings[name].anchor(pred, INTR, anchors, i * PERIOD)
            errors[name].append(abs(estimate.scale / ideal - 1.0))
    f = anchorings["both"].filter
    assert f.source_noise("range") > 2 * f.source_noise("points")
    assert np.mean(errors["both"][10:]) <= 1.2 * np.mean(errors["lidar"][10:]) + 0.005


def fit_of(scale, variance=0.0025, sources=("points",)):
    return FrameFit(scale, 0.0, sources, 20, 20, 0.9, 0.01, variance)


@pytest.mark.parametrize("choice, regime", [("hold", "held"), ("decay", "decaying"), ("stop", "stopped"),
                                            ("nan", "invalid")])
def test_expiry_regimes(choice, regime):
    f = ScaleFilter(AnchoringConfig(max_age=1.0, on_expiry=choice))
    depth = np.full((4, 4), 2.0, np.float32)
    assert f.update(None, 0.0).regime == "unanchored"
    for i in range(5):
        anchored = f.update(fit_of(0.5), 0.1 * i)
    assert anchored.regime == "anchored" and anchored.scale == pytest.approx(0.5)
    held = f.update(None, 1.2)
    assert held.regime == "held" and held.applied and held.scale == pytest.approx(0.5)
    assert held.error_bound > anchored.error_bound  # the bound widens while held
    late = f.update(None, 3.0)
    assert late.regime == regime and late.publish == (regime != "stopped")
    out = apply_scale(depth, late)
    if regime == "held":
        assert np.allclose(out, 1.0)
    elif regime == "decaying":
        assert 1.0 < float(out[0, 0]) < 2.0  # on its way back to the model's own metres, not there at once
    elif regime == "invalid":
        assert np.isnan(out).all()
    else:
        assert not late.applied
    back = f.update(fit_of(0.8), 3.1)
    assert back.regime == "anchored" and back.scale == pytest.approx(0.8) and back.event in ("reacquired", "")


def test_a_relative_model_stops_on_decay():
    f = ScaleFilter(AnchoringConfig(max_age=0.5, on_expiry="decay"))
    f.update(fit_of(2.0), 0.0)
    assert f.update(None, 2.0, relative=True).regime == "stopped"


def test_time_going_backwards_restarts():
    f = ScaleFilter()
    f.update(fit_of(2.0), 5.0)
    assert f.update(fit_of(1.5), 0.0).scale == pytest.approx(1.5)


# ---- calibration -------------------------------------------------------------------------------

def coverage_cases():
    """(name, anchors maker) for the calibration sequences: anchor counts and sources."""
    def points(n):
        return lambda truth, rng: Anchors(points=sparse_points(truth, INTR, n, rng, noise=0.01))

    def cone(deg):
        return lambda truth, rng: Anchors(ranges=[range_reading(truth, INTR, math.radians(deg), noise=0.01, rng=rng)])

    return {"1 point": points(1), "3 points": points(3), "20 points": points(20), "200 points": points(200),
            "range 2deg": cone(2.0), "range 25deg": cone(25.0),
            "lidar 16 rows": lambda truth, rng: Anchors(points=lidar_points(truth, INTR, noise=0.01, rng=rng))}


def test_the_error_bound_covers_the_true_error_and_tightens_with_evidence():
    """Held-out sequences (scenes not used elsewhere, two distortion shapes, several model factors):
    the published bound covers |scale / best - 1| in >= 90 % of frames for every anchor kind, and the
    mean bound shrinks as anchors are added."""
    coverage, bounds = {}, {}
    for name, make in coverage_cases().items():
        covered, widths = [], []
        for seq in range(6):
            scene = make_scene(8100 + seq)
            poses = camera_path(scene, 8, step=0.15, seed=seq)
            rng = np.random.default_rng(seq)
            anchoring = ScaleAnchoring()
            factor = (0.5, 2.0, 1.3)[seq % 3]
            for i, pose in enumerate(poses):
                truth = scene.render(pose, INTR).depth
                pred = model_prediction(truth, factor, i, seed=seq % 2, distortion=0.12)
                _, estimate = anchoring.anchor(pred, INTR, make(truth, rng), i * PERIOD)
                if not estimate.applied:
                    continue
                error = abs(estimate.scale / best_scale(pred, truth) - 1.0)
                covered.append(error <= estimate.error_bound)
                widths.append(estimate.error_bound)
        coverage[name], bounds[name] = float(np.mean(covered)), float(np.mean(widths))
    assert all(c >= 0.9 for c in coverage.values()), coverage
    assert bounds["1 point"] > bounds["3 points"] > bounds["20 points"] >= bounds["200 points"], bounds
    assert bounds["lidar 16 rows"] < bounds["range 2deg"], bounds


def test_the_error_bound_covers_the_shipped_models_true_error():
    """The same check through a real network: the shipped ONNX model on onnxruntime, its card's output
    scaled x0.5 / x2 / x1 per sequence, on held-out walks (scenes 8100-8105). The bound must cover
    the true error of the scale in >= 90 % of frames per anchor kind and tighten with more anchors."""
    import dataclasses

    from mde_ros.bags.replay import load_estimator

    estimator = load_estimator(None, "onnxruntime")
    original = estimator.card
    sequences = []
    for seq in range(6):
        scene = make_scene(8100 + seq)
        estimator.card = dataclasses.replace(original, output_scale=original.output_scale * (0.5, 2.0, 1.0)[seq % 3])
        frames = [scene.render(pose, INTR) for pose in camera_path(scene, 8, step=0.15, seed=seq)]
        sequences.append([(f.depth, estimator.estimate(f.rgb, INTR).depth) for f in frames])
    estimator.card = original
    coverage, bounds = {}, {}
    for name, make in coverage_cases().items():
        covered, widths = [], []
        for seq, frames in enumerate(sequences):
            rng = np.random.default_rng(seq)
            anchoring = ScaleAnchoring()
            for i, (truth, pred) in enumerate(frames):
                _, estimate = anchoring.anchor(pred, INTR, make(truth, rng), i * PERIOD)
                if estimate.applied:
                    covered.append(abs(estimate.scale / best_scale(pred, truth) - 1.0) <= estimate.error_bound)
                    widths.append(estimate.error_bound)
        coverage[name], bounds[name] = float(np.mean(covered)), float(np.mean(widths))
    assert all(c >= 0.9 for c in coverage.values()), coverage
    assert bounds["1 point"] > bounds["3 points"] > bounds["20 points"] >= bounds["200 points"], bounds


def test_a_glitch_while_walking_is_not_taken_for_a_new_view():
    """Walking moves the prediction at the range footprint by 10-20 % a frame: not enough to explain a
    3x jump of the factor (found by `mde-ros stability --sections sequences`)."""
    scene = make_scene(7050)
    frames = [scene.render(pose, INTR) for pose in camera_path(scene, 20, step=0.3, seed=4)]  # 3 m/s
    published, ideal, estimates = run_range(frames, [0.5] * 20, glitch=lambda i: 3.0 if 5 <= i < 15 else 1.0)
    assert np.max(np.abs(published[5:] / published[4] - 1.0)) <= 0.10, published / published[4]
    assert np.max(np.abs(published / ideal - 1.0)) < 0.2
