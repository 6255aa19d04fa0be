"""Depth-estimation metrics (Eigen et al. 2014), pure numpy.

Shared by the demo, the bag regression tests and training so that every number the package
reports is computed the same way. The formulas follow the standard evaluation code
(monodepth2 / BTS / Depth-Anything metric_depth): metrics over the valid pixels of ONE image,
the prediction clipped to the evaluation depth range, then averaged per image over a test set.
Metric models are scored as they are, without median scaling.

Range rule (BTS / AdaBins / DA-V2 ``eval``): a ground-truth pixel counts when it is finite and
``min_depth < gt < max_depth``, both strict. Which pixels count depends on the ground truth only: a
non-finite prediction is scored, not dropped, the way BTS's ``compute_errors`` caller treats it
(NaN -> min_depth, +inf -> max_depth, -inf -> min_depth, then everything clipped to the range).
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np

METRIC_KEYS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "delta1", "delta2", "delta3", "mae")
RANGE_KEYS = ("mae", "rmse", "abs_rel", "delta1")
DEFAULT_RANGES: tuple[tuple[float, float], ...] = ((0.0, 1.0), (1.0, 3.0), (3.0, 5.0), (5.0, math.inf))

# NYU Depth V2 Eigen crop, in pixels of the 480x640 original.
_EIGEN_ROWS, _EIGEN_COLS, _NYU_SHAPE = (45, 471), (41, 601), (480, 640)
# KITTI Garg crop as fractions of the image size: rows top, bottom, cols left, right (monodepth2).
_GARG_FRACTIONS = (0.40810811, 0.99189189, 0.03594771, 0.96405229)


def gt_in_range(gt: np.ndarray, min_depth: float = 1e-3, max_depth: float | None = None) -> np.ndarray:
    """The references' range rule: finite ground truth with min_depth < gt < max_depth (both strict)."""
    gt = np.asarray(gt)
    mask = np.isfinite(gt)
    with np.errstate(invalid="ignore"):
        mask &= gt > min_depth
        if max_depth is not None:
            mask &= gt < max_depth
    return mask


def sanitize_prediction(pred: np.ndarray, min_depth: float = 1e-3, max_depth: float | None = None) -> np.ndarray:
    """The prediction as the references score it: NaN -> min_depth, then clipped to [min_depth, max_depth]
    (+inf -> max_depth, -inf -> min_depth). With no max_depth, +inf stays and makes the errors infinite."""
    pred = np.asarray(pred, dtype=np.float64)
    upper = math.inf if max_depth is None else max_depth
    return np.clip(np.where(np.isnan(pred), min_depth, pred), min_depth, upper)


def valid_mask(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None,
               min_depth: float = 1e-3, max_depth: float | None = None) -> np.ndarray:
    """Pixels that count: GT inside the range (see gt_in_range) and ``valid``. The prediction's value
    never removes a pixel: a NaN or inf prediction is scored (see sanitize_prediction)."""
    pred, gt = _check_pair(pred, gt)
    mask = gt_in_range(gt, min_depth, max_depth)
    if valid is not None:
        valid = np.asarray(valid)
        if valid.shape != gt.shape:
            raise ValueError(f"valid mask shape {valid.shape} does not match depth shape {gt.shape}")
        mask &= valid.astype(bool)
    return mask


def depth_metrics(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None,
                  min_depth: float = 1e-3, max_depth: float | None = None) -> dict[str, float]:
    """Eigen et al. metrics of one predicted depth map against its ground truth (metres).

    The prediction is clipped to [min_depth, max_depth] as the standard evaluation code does, so a
    model is not scored on values it would never publish; non-finite predictions are scored as
    sanitize_prediction says. With no valid pixel every metric is NaN and n_valid is 0 (mean_metrics
    skips such images).
    """
    mask = valid_mask(pred, gt, valid, min_depth, max_depth)
    n_valid = int(mask.sum())
    if n_valid == 0:
        return {**{key: math.nan for key in METRIC_KEYS}, "n_valid": 0}
    g = np.asarray(gt, dtype=np.float64)[mask]
    p = sanitize_prediction(np.asarray(pred)[mask], min_depth, max_depth)
    err = p - g
    ratio = np.maximum(g / p, p / g)
    return {
        "abs_rel": float(np.mean(np.abs(err) / g)),
        "sq_rel": float(np.mean(err ** 2 / g)),
        "rmse": float(np.sqrt(np.mean(err ** 2))),
        "rmse_log": float(np.sqrt(np.mean((np.log(p) - np.log(g)) ** 2))),
        "delta1": float(np.mean(ratio < 1.25)),
        "delta2": float(np.mean(ratio < 1.25 ** 2)),
        "delta3": float(np.mean(ratio < 1.25 ** 3)),
        "mae": float(np.mean(np.abs(err))),
        "n_valid": n_valid,
    }


def mean_metrics(per_image: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Average per-image metrics over a test set: every image weighs the same, as in the papers.

    Images with n_valid == 0 are left out of the average and counted in n_skipped; n_images is the
    number averaged and n_valid the total of their valid pixels. Works on the per-range dicts of
    metrics_by_range too: mean_metrics(r["1-3m"] for r in results).
    """
    per_image = list(per_image)
    used = [m for m in per_image if m.get("n_valid", 0) > 0]
    keys = [k for k in (used[0] if used else METRIC_KEYS) if k != "n_valid"]
    means = {k: float(np.mean([m[k] for m in used])) if used else math.nan for k in keys}
    return {**means, "n_valid": int(sum(m["n_valid"] for m in used)),
            "n_images": len(used), "n_skipped": len(per_image) - len(used)}


def range_label(low: float, high: float) -> str:
    """Key of a depth bin in metrics_by_range: (1, 3) -> "1-3m", (5, inf) -> "5m+"."""
    return f"{low:g}m+" if math.isinf(high) else f"{low:g}-{high:g}m"


def metrics_by_range(pred: np.ndarray, gt: np.ndarray,
                     ranges: Sequence[tuple[float, float]] = DEFAULT_RANGES,
                     valid: np.ndarray | None = None, *, min_depth: float = 1e-3,
                     max_depth: float | None = None) -> dict[str, dict[str, float]]:
    """Errors by ground-truth distance (low <= gt < high): where a model fails, near or far.

    Returns {range_label: {mae, rmse, abs_rel, delta1, n_valid}}; an empty bin has NaN metrics and
    n_valid 0.
    """
    base = valid_mask(pred, gt, valid, min_depth, max_depth)
    gt = np.asarray(gt)
    result = {}
    for low, high in ranges:
        if not low < high:
            raise ValueError(f"depth range ({low}, {high}) is empty: ranges are (low, high) with low < high")
        with np.errstate(invalid="ignore"):
            in_bin = base & (gt >= low) & (gt < high)
        metrics = depth_metrics(pred, gt, in_bin, min_depth, max_depth)
        result[range_label(low, high)] = {k: metrics[k] for k in (*RANGE_KEYS, "n_valid")}
    return result


def eigen_crop_mask(height: int, width: int) -> np.ndarray:
    """NYU Eigen crop (rows 45:471, cols 41:601 of 480x640), scaled to (height, width), halves rounded up."""
    mask = np.zeros((height, width), dtype=bool)
    rows = [math.floor(r * height / _NYU_SHAPE[0] + 0.5) for r in _EIGEN_ROWS]
    cols = [math.floor(c * width / _NYU_SHAPE[1] + 0.5) for c in _EIGEN_COLS]
    mask[rows[0]:rows[1], cols[0]:cols[1]] = True
    return mask


def garg_crop_mask(height: int, width: int) -> np.ndarray:
    """KITTI Garg crop, truncated to pixels the way monodepth2's evaluation does."""
    top, bottom, left, right = np.array(
        [f * s for f, s in zip(_GARG_FRACTIONS, (height, height, width, width))]).astype(np.int32)
    mask = np.zeros((height, width), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def format_metrics_table(metrics: Mapping[str, float] | Mapping[str, Mapping[str, float]]) -> str:
    """Fixed-width text table: one row for a metrics dict, one row per key for a dict of dicts
    (e.g. metrics_by_range output, or {"model_a": ..., "model_b": ...})."""
    if all(isinstance(v, Mapping) for v in metrics.values()) and metrics:
        rows = dict(metrics)
    else:
        rows = {"": metrics}
    order = (*METRIC_KEYS, "n_valid", "n_images", "n_skipped")
    present = {k for row in rows.values() for k in row}
    columns = [k for k in order if k in present] + sorted(present - set(order))
    label_width = max(len(str(label)) for label in rows)
    width = max(10, *(len(c) for c in columns))

    def cell(value: object) -> str:
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return f"{value:>{width}d}"
        if isinstance(value, (float, np.floating)):
            return f"{value:>{width}.4f}"
        return f"{'-' if value is None else value!s:>{width}}"

    labels = [[f"{label!s:<{label_width}}"] if label_width else [] for label in rows]
    header = " | ".join([" " * label_width] * bool(label_width) + [f"{c:>{width}}" for c in columns])
    lines = [header, "-" * len(header)]
    for label_cells, row in zip(labels, rows.values()):
        lines.append(" | ".join(label_cells + [cell(row.get(c)) for c in columns]))
    return "\n".join(lines)


def _check_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} does not match ground truth shape {gt.shape}; "
                         "resize the prediction to the ground-truth resolution first")
    return pred, gt
