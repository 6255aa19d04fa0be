"""Temporal filter and per-pixel confidence (pure modules), on synthetic sequences with exact depth."""
import math

import numpy as np
import pytest

from mde_ros.commands.stability import series_lag, static_flicker
from mde_ros.pipeline.confidence import flip_consistency, mark_unconfident, mirrored_intrinsics
from mde_ros.pipeline.intrinsics import Intrinsics
from mde_ros.pipeline.temporal import TemporalConfig, TemporalFilter
from mde_ros.synthetic import approach_sequence, render_frame

PERIOD = 0.1


def flicker(depth, rng, sigma=0.01):
    """A network's frame-to-frame flicker: ~1 % multiplicative noise, fresh every frame."""
    return (depth * np.exp(rng.normal(0.0, sigma, depth.shape))).astype(np.float32)


def test_static_flicker_is_more_than_halved_and_abs_rel_not_worse():
    frame = render_frame(3, 160, 120)
    rng = np.random.default_rng(0)
    raw = [flicker(frame.depth, rng) for _ in range(15)]
    filt = TemporalFilter()
    filtered = [filt.update(d, i * PERIOD) for i, d in enumerate(raw)]
    truth = [frame.depth] * len(raw)
    assert static_flicker(truth, filtered) <= 0.5 * static_flicker(truth, raw)
    abs_rel = lambda seq: np.mean([np.nanmean(np.abs(d - frame.depth) / frame.depth) for d in seq])
    assert abs_rel(filtered) <= abs_rel(raw)


def test_approaching_obstacle_is_followed_without_lag():
    frames = approach_sequence(7, n_frames=20, width=96, height=72)
    rng = np.random.default_rng(1)
    raw = [flicker(f.depth, rng) for f in frames]
    filt = TemporalFilter()
    filtered = [filt.update(d, i * PERIOD) for i, d in enumerate(raw)]
    intr = frames[0].intrinsics
    v, u = int(round(intr.cy)), int(round(intr.cx))
    centre_raw = np.array([d[v, u] for d in raw])
    centre_filtered = np.array([d[v, u] for d in filtered])
    assert series_lag(centre_raw, centre_filtered) <= 1.0
    assert np.all(np.diff(centre_filtered) < 0)  # still strictly approaching


def test_a_moving_object_resets_its_pixels_and_a_moving_camera_resets_all():
    depth = np.full((40, 40), 3.0, np.float32)
    filt = TemporalFilter(TemporalConfig(time_constant=1.0, threshold=0.03, scene_change=0.1))
    filt.update(depth, 0.0)
    out = filt.update(depth * 1.01, 0.1)  # small change everywhere: smoothed
    assert 3.0 < out[0, 0] < 3.03
    moved = depth.copy()
    moved[:5, :5] = 1.0  # something entered 1.6 % of the image: those pixels follow at once
    out = filt.update(moved, 0.2)
    assert np.allclose(out[:5, :5], 1.0) and out[20, 20] < 3.03
    assert filt.last_changed_fraction == pytest.approx(25 / 1600)
    out = filt.update(depth * 1.2, 0.3)  # the camera moved: every pixel takes the new frame
    assert np.allclose(out, 3.6)


def test_invalid_pixels_pass_through_and_gaps_restart():
    depth = np.full((8, 8), 2.0, np.float32)
    filt = TemporalFilter()
    filt.update(depth, 0.0)
    marked = depth.copy()
    marked[0, 0], marked[0, 1], marked[0, 2] = np.nan, np.inf, -np.inf
    out = filt.update(marked, 0.1)
    assert np.isnan(out[0, 0]) and out[0, 1] == np.inf and out[0, 2] == -np.inf
    out = filt.update(depth * 1.02, 0.2)
    assert out[0, 0] == pytest.approx(2.04)  # a pixel that was invalid starts from its new value
    assert out[4, 4] < 2.04
    assert np.allclose(filt.update(depth * 1.02, 5.0), 2.04)  # a gap longer than max_gap: start over
    assert np.allclose(filt.update(depth, 4.0), 2.0)  # time went backwards: start over


def test_temporal_config_is_checked():
    with pytest.raises(ValueError):
        TemporalConfig(time_constant=0)
    with pytest.raises(ValueError):
        TemporalConfig(scene_change=1.5)


def test_flip_consistency_and_marking():
    a = np.array([[1.0, 2.0, np.nan, 1.0]], np.float32)
    b = np.array([[1.0, 2.2, 1.0, 0.0]], np.float32)
    conf = flip_consistency(a, b, tolerance=0.1)
    assert conf[0, 0] == pytest.approx(1.0)
    assert conf[0, 1] == pytest.approx(math.exp(-1.0), rel=1e-5)  # 10 % apart at tolerance 0.1
    assert conf[0, 2] == 0.0 and conf[0, 3] == 0.0
    assert conf.dtype == np.float32 and ((0 <= conf) & (conf <= 1)).all()
    marked = mark_unconfident(a, conf, 0.5)
    assert marked[0, 0] == 1.0 and np.isnan(marked[0, 1]) and a[0, 1] == 2.0
    assert mark_unconfident(a, conf, 0.0) is a
    intr = Intrinsics(100.0, 100.0, 30.0, 20.0, 64, 48)
    assert mirrored_intrinsics(intr).cx == 33.0 and mirrored_intrinsics(None) is None
