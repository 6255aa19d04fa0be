"""The yardstick models are chosen with: fixed frames (every kind, real camera sizes, seeds apart from
every training range and the fixtures), scored through the node's pipeline with equal weight per kind."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from mde_ros.yardstick import (CLASSIC_SEED0, KINDS, WORLD_SEED0, YardstickSpec, beats, score_frames, summarise,
                               yardstick_frames)

SMALL = YardstickSpec(scenes=1, views=1, classic=1)


@pytest.fixture(scope="module")
def frames():
    return list(yardstick_frames(SMALL))


def test_frames_are_fixed_real_cameras_of_every_kind(frames):
    again = list(yardstick_frames(SMALL))
    assert [f.name for f in frames] == [f.name for f in again]
    for a, b in zip(frames, again):
        np.testing.assert_array_equal(a.rgb, b.rgb)
        np.testing.assert_array_equal(a.depth, b.depth)
    assert len(frames) == SMALL.n_frames == 7
    assert [f.kind for f in frames] == ["tabletop"] * 2 + ["room"] * 2 + ["hall"] * 2 + ["classic"]
    sizes = {(f.rgb.shape[1], f.rgb.shape[0]) for f in frames}
    assert sizes == {(640, 480), (1280, 720)}
    for f in frames:
        intr = f.intrinsics
        assert (intr.width, intr.height) == (f.rgb.shape[1], f.rgb.shape[0]) == (f.depth.shape[1], f.depth.shape[0])
        assert intr.fx == pytest.approx(intr.fy, rel=2e-3)              # square pixels: a real camera (NYU: 0.1 %)
        hfov = math.degrees(2 * math.atan(intr.width / 2 / intr.fx))
        assert 45.0 <= hfov <= 90.0 or f.kind == "classic"
    tabletop = np.nanmedian(frames[0].depth)
    hall = np.nanmedian(frames[4].depth)
    assert tabletop < 1.2 < hall                                       # the kinds are what they say


def test_seeds_are_apart_from_training_and_fixtures():
    from mde_ros.bags.fixtures import SEED as FIXTURE_SEED

    # training.datasets.world: seed * 10_000_000 + split * 1_000_000 + scene, scene < 1_000_000
    largest_training_seed = 8 * 10_000_000 + 2 * 1_000_000 + 999_999
    assert WORLD_SEED0 > largest_training_seed and CLASSIC_SEED0 > WORLD_SEED0 + 3 * 10_000
    assert FIXTURE_SEED < WORLD_SEED0


def test_scores_weigh_every_kind_the_same(frames):
    exact = score_frames(lambda rgb, intr: next(f.depth for f in frames if f.rgb is rgb), iter(frames))
    assert set(exact["by_kind"]) == set(KINDS)
    for kind in KINDS:
        assert exact["by_kind"][kind]["abs_rel"] == pytest.approx(0.0, abs=1e-6)
        assert exact["by_kind"][kind]["delta1"] == pytest.approx(1.0)
    double = score_frames(lambda rgb, intr: 2 * next(f.depth for f in frames if f.rgb is rgb), iter(frames))
    # clipped to the 10 m evaluation range, far pixels count less than 1.0
    assert 0.5 < double["mean_over_kinds"]["abs_rel"] <= 1.0 + 1e-6
    per_kind = {"tabletop": [{"abs_rel": 1.0, "delta1": 0.0, "rmse": 1.0, "n_valid": 1}] * 9,
                "room": [{"abs_rel": 0.0, "delta1": 1.0, "rmse": 0.0, "n_valid": 1}]}
    summary = summarise(per_kind)
    assert summary["mean_over_kinds"]["abs_rel"] == pytest.approx(0.5)   # not 0.9: kinds, not images
    assert summary["worst_kind"] == {"kind": "tabletop", "abs_rel": 1.0}


def test_beating_means_the_mean_and_every_kind():
    def result(**kinds):
        return {"by_kind": {k: {"abs_rel": v} for k, v in kinds.items()},
                "mean_over_kinds": {"abs_rel": float(np.mean(list(kinds.values())))}}
    reference = result(tabletop=1.4, room=0.2, hall=0.4)
    assert beats(result(tabletop=0.3, room=0.19, hall=0.3), reference) == (True, [])
    ok, reasons = beats(result(tabletop=0.3, room=0.25, hall=0.3), reference)
    assert not ok and reasons == ["room 0.250 >= 0.200"]


def test_the_command_scores_the_shipped_model_through_the_node_pipeline(tmp_path):
    out = tmp_path / "y.json"
    run = subprocess.run([sys.executable, "-m", "mde_ros.cli", "yardstick", "--scenes", "1", "--classic", "1",
                          "--threads", "1", "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "mean over kinds AbsRel" in run.stdout
    result = next(iter(json.loads(out.read_text()).values()))
    assert set(result["by_kind"]) == set(KINDS) and result["n_images"] == 7
    assert 0 < result["mean_over_kinds"]["abs_rel"] < 5


@pytest.mark.parametrize("args, message", [
    (["--scenes", "0"], "scenes >= 1"),
    (["--threads", "-1"], "--threads"),
    (["nope.onnx"], "not found"),
])
def test_bad_arguments_get_one_line_and_exit_2(args, message):
    run = subprocess.run([sys.executable, "-m", "mde_ros.cli", "yardstick", *args], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr
