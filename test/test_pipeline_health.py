"""Diagnostics' per-frame truth: valid fraction after REP 117 marking, implausible rescale named by K."""
import numpy as np

from mde_ros.models.card import ModelCard
from mde_ros.pipeline.health import frame_findings, rescale_finding, valid_fraction
from mde_ros.pipeline.intrinsics import Intrinsics
from mde_ros.pipeline.outputs import mark_out_of_range

CARD = ModelCard(name="c", architecture="external", input_height=24, input_width=32, min_depth=0.1,
                 max_depth=10.0, train_focal_px=20.0)


def test_valid_fraction_counts_what_rep117_marking_leaves_usable():
    depth = np.full((10, 10), 2.0, np.float32)
    depth[0] = np.nan
    depth[1] = 0.05  # too close: -Inf after marking
    depth[2:5] = 50.0  # too far: +Inf
    fraction = valid_fraction(depth, 0.1, 10.0)
    assert fraction == 0.5
    assert fraction == np.isfinite(mark_out_of_range(depth, 0.1, 10.0)).mean()
    assert np.isfinite(depth).mean() == 0.9  # what the old diagnostics called "valid"


def test_most_pixels_invalid_warns_and_none_valid_is_an_error():
    ok = np.full((4, 4), 2.0, np.float32)
    assert frame_findings(ok, 0.1, 10.0, 1.0, None, CARD) == (1.0, [])
    far = ok.copy()
    far[:3] = 20.0
    fraction, (finding,) = frame_findings(far, 0.1, 10.0, 1.0, None, CARD)
    assert fraction == 0.25 and finding.level == "warn" and "25.0 %" in finding.message
    _, (finding,) = frame_findings(ok * 100, 0.1, 10.0, 1.0, None, CARD)
    assert finding.level == "error" and finding.kind == "depth_mostly_invalid"


def test_implausible_rescale_names_the_k_value():
    intr = Intrinsics(1.0, 1.0, 32.0, 24.0, 64, 48)
    finding = rescale_finding(0.025, intr, CARD)
    assert finding.level == "error" and "fx=1 (K[0])" in finding.message and "0.025" in finding.message
    assert rescale_finding(1e5, Intrinsics(1e6, 1e6, 32.0, 24.0, 64, 48), CARD) is not None
    assert rescale_finding(1.5, intr, CARD) is None  # another lens, plausibly
    assert rescale_finding(0.01, None, CARD) is None
