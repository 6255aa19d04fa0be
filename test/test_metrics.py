"""Depth metrics against hand-computed values and against the paper formulas written out plainly."""
import math

import numpy as np
import pytest

from mde_ros.metrics import (depth_metrics, eigen_crop_mask, format_metrics_table, garg_crop_mask, gt_in_range, mean_metrics,
                             metrics_by_range, range_label, sanitize_prediction)


def reference_metrics(pred, gt):
    """Eigen et al. (2014), eq. by eq., one pixel at a time: an independent check of the vectorised code."""
    n = len(gt)
    abs_rel = sum(abs(p - g) / g for p, g in zip(pred, gt)) / n
    sq_rel = sum((p - g) ** 2 / g for p, g in zip(pred, gt)) / n
    rmse = math.sqrt(sum((p - g) ** 2 for p, g in zip(pred, gt)) / n)
    rmse_log = math.sqrt(sum((math.log(p) - math.log(g)) ** 2 for p, g in zip(pred, gt)) / n)
    deltas = [sum(max(p / g, g / p) < 1.25 ** k for p, g in zip(pred, gt)) / n for k in (1, 2, 3)]
    mae = sum(abs(p - g) for p, g in zip(pred, gt)) / n
    return {"abs_rel": abs_rel, "sq_rel": sq_rel, "rmse": rmse, "rmse_log": rmse_log,
            "delta1": deltas[0], "delta2": deltas[1], "delta3": deltas[2], "mae": mae}


def test_hand_computed_values():
    m = depth_metrics(np.array([1.0, 2.0, 4.0]), np.array([1.0, 2.0, 2.0]))
    assert m["n_valid"] == 3
    assert m["abs_rel"] == pytest.approx(1 / 3)
    assert m["sq_rel"] == pytest.approx((4 / 2) / 3)
    assert m["rmse"] == pytest.approx(math.sqrt(4 / 3))
    assert m["rmse_log"] == pytest.approx(math.sqrt(math.log(2) ** 2 / 3))
    assert m["mae"] == pytest.approx(2 / 3)
    # ratio 2 fails all three thresholds (1.25, 1.5625, 1.953125)
    assert (m["delta1"], m["delta2"], m["delta3"]) == pytest.approx((2 / 3, 2 / 3, 2 / 3))


def test_delta_thresholds_are_strict_and_nested():
    gt = np.ones(4)
    pred = np.array([1.2, 1.5, 1.9, 1 / 1.9])   # ratios 1.2, 1.5, 1.9, 1.9 (under-prediction counts the same)
    m = depth_metrics(pred, gt)
    assert (m["delta1"], m["delta2"], m["delta3"]) == pytest.approx((0.25, 0.5, 1.0))


def test_matches_paper_formulas_on_random_data():
    rng = np.random.default_rng(7)
    gt = rng.uniform(0.2, 10.0, size=(24, 32))
    pred = gt * np.exp(rng.normal(0.0, 0.3, size=gt.shape))
    m = depth_metrics(pred, gt)
    ref = reference_metrics(pred.ravel().tolist(), gt.ravel().tolist())
    for key, value in ref.items():
        assert m[key] == pytest.approx(value, rel=1e-9), key
    assert m["n_valid"] == gt.size


def test_invalid_ground_truth_is_ignored():
    gt = np.array([1.0, 2.0, np.nan, 0.0, np.inf, 20.0])
    pred = np.array([1.5, 2.0, 5.0, 5.0, 5.0, 20.0])
    m = depth_metrics(pred, gt, max_depth=10.0)   # valid: first two only (20 m is beyond max_depth)
    assert m["n_valid"] == 2
    assert m["abs_rel"] == pytest.approx(0.25)
    mask = np.array([False, True, True, True, True, True])
    assert depth_metrics(pred, gt, valid=mask, max_depth=10.0)["abs_rel"] == 0.0


def test_range_rule_is_strict_at_both_ends_as_in_bts():
    # BTS/AdaBins/DA-V2: valid = (gt > min_depth) & (gt < max_depth); GT equal to either bound is out.
    gt = np.array([0.5, 2.0, 10.0])
    pred = np.array([1.0, 2.0, 5.0])
    m = depth_metrics(pred, gt, min_depth=0.5, max_depth=10.0)
    assert m["n_valid"] == 1 and m["abs_rel"] == 0.0
    assert gt_in_range(gt, 0.5, 10.0).tolist() == [False, True, False]
    bins = metrics_by_range(pred, gt, ((0.0, 100.0),), min_depth=0.5, max_depth=10.0)
    assert bins["0-100m"]["n_valid"] == 1


def test_non_finite_predictions_are_scored_not_dropped():
    # BTS eval: NaN -> min_depth, +inf -> max_depth, -inf -> min_depth; the pixel stays in the mask.
    gt = np.array([2.0, 2.0, 2.0, 2.0])
    pred = np.array([2.0, np.nan, np.inf, -np.inf])
    m = depth_metrics(pred, gt, min_depth=0.5, max_depth=10.0)
    assert m["n_valid"] == 4
    assert m["mae"] == pytest.approx((0.0 + 1.5 + 8.0 + 1.5) / 4)
    assert sanitize_prediction(pred, 0.5, 10.0).tolist() == [2.0, 0.5, 10.0, 0.5]
    bins = metrics_by_range(pred, gt, ((1.0, 3.0),), min_depth=0.5, max_depth=10.0)
    assert bins["1-3m"]["n_valid"] == 4 and bins["1-3m"]["mae"] == pytest.approx(m["mae"])


def test_prediction_clipped_to_evaluation_range():
    gt = np.array([2.0, 2.0])
    m = depth_metrics(np.array([50.0, -1.0]), gt, min_depth=0.5, max_depth=4.0)
    assert m["mae"] == pytest.approx((2.0 + 1.5) / 2)   # 50 -> 4, -1 -> 0.5


def test_no_valid_pixel_gives_nan_and_zero_count():
    m = depth_metrics(np.ones(3), np.full(3, np.nan))
    assert m["n_valid"] == 0 and all(math.isnan(m[k]) for k in ("abs_rel", "rmse", "delta1"))


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="does not match"):
        depth_metrics(np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="valid mask"):
        depth_metrics(np.ones((2, 3)), np.ones((2, 3)), valid=np.ones(6, bool))


def test_mean_is_per_image_not_pooled_and_skips_empty_images():
    gt_a, pred_a = np.full(1, 1.0), np.full(1, 2.0)          # one pixel, abs_rel 1
    gt_b, pred_b = np.full(99, 1.0), np.full(99, 1.0)        # 99 perfect pixels
    empty = depth_metrics(np.ones(4), np.zeros(4))
    mean = mean_metrics([depth_metrics(pred_a, gt_a), depth_metrics(pred_b, gt_b), empty])
    pooled = depth_metrics(np.concatenate([pred_a, pred_b]), np.concatenate([gt_a, gt_b]))
    assert mean["abs_rel"] == pytest.approx(0.5)
    assert pooled["abs_rel"] == pytest.approx(0.01)
    assert (mean["n_images"], mean["n_skipped"], mean["n_valid"]) == (2, 1, 100)


def test_mean_of_nothing_is_nan():
    mean = mean_metrics([depth_metrics(np.ones(2), np.zeros(2))])
    assert math.isnan(mean["rmse"]) and mean["n_images"] == 0 and mean["n_skipped"] == 1


def test_metrics_by_range_bins_by_ground_truth():
    gt = np.array([0.5, 0.9, 1.0, 2.5, 4.0, 6.0, 9.0])
    pred = gt + np.array([0.1, 0.1, 0.2, 0.2, 0.4, 1.0, 3.0])
    bins = metrics_by_range(pred, gt)
    assert list(bins) == ["0-1m", "1-3m", "3-5m", "5m+"]
    assert [b["n_valid"] for b in bins.values()] == [2, 2, 1, 2]
    assert bins["0-1m"]["mae"] == pytest.approx(0.1)
    assert bins["1-3m"]["mae"] == pytest.approx(0.2)           # 1.0 falls in [1, 3)
    assert bins["5m+"]["rmse"] == pytest.approx(math.sqrt((1 + 9) / 2))
    assert bins["3-5m"]["abs_rel"] == pytest.approx(0.1)
    assert bins["5m+"]["delta1"] == pytest.approx(0.5)          # 7/6 < 1.25, 12/9 is not
    assert set(bins["0-1m"]) == {"mae", "rmse", "abs_rel", "delta1", "n_valid"}


def test_metrics_by_range_respects_mask_and_reports_empty_bins():
    gt = np.array([0.5, 2.0, 2.0])
    bins = metrics_by_range(gt, gt, ranges=((0, 1), (1, 3), (10, 20)), valid=np.array([False, True, True]))
    assert bins["0-1m"]["n_valid"] == 0 and math.isnan(bins["0-1m"]["mae"])
    assert bins["1-3m"]["n_valid"] == 2 and bins["1-3m"]["mae"] == 0.0
    assert bins["10-20m"]["n_valid"] == 0
    with pytest.raises(ValueError, match="empty"):
        metrics_by_range(gt, gt, ranges=((3, 1),))
    assert range_label(0.5, 1.5) == "0.5-1.5m"


def test_eigen_crop_at_nyu_resolution_and_scaled():
    mask = eigen_crop_mask(480, 640)
    rows, cols = np.nonzero(mask)
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (45, 471, 41, 601)
    assert mask.sum() == (471 - 45) * (601 - 41)
    half = eigen_crop_mask(240, 320)
    rows, cols = np.nonzero(half)
    assert half.shape == (240, 320)
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (23, 236, 21, 301)   # 22.5, 235.5, 20.5, 300.5 rounded up


def test_garg_crop_matches_kitti_convention():
    h, w = 375, 1242
    mask = garg_crop_mask(h, w)
    rows, cols = np.nonzero(mask)
    assert mask.shape == (h, w)
    assert (rows.min(), rows.max() + 1) == (int(0.40810811 * h), int(0.99189189 * h))   # 153, 371
    assert (cols.min(), cols.max() + 1) == (int(0.03594771 * w), int(0.96405229 * w))   # 44, 1197
    assert mask.sum() == (371 - 153) * (1197 - 44)


def test_format_metrics_table_single_and_multi_row():
    m = depth_metrics(np.array([1.0, 2.0, 4.0]), np.array([1.0, 2.0, 2.0]))
    table = format_metrics_table(m)
    header, _, row = table.splitlines()
    assert header.split(" | ")[0].strip() == "abs_rel" and "delta3" in header
    assert row.split(" | ")[0].strip() == "0.3333"
    bins = format_metrics_table(metrics_by_range(np.ones(3), np.array([0.5, 2.0, 4.0])))
    lines = bins.splitlines()
    assert len(lines) == 2 + 4 and lines[2].startswith("0-1m") and lines[-1].startswith("5m+")
