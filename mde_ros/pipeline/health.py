"""Per-frame health for diagnostics that tell the truth (pure numpy).

"valid depth" is what a consumer of the published depth can use: finite AND inside
[min_depth, max_depth], i.e. measured after REP 117 marking (outputs.mark_out_of_range), not
before it. A camera-aware rescale far from 1 means the CameraInfo's fx is not this camera's (fx = 1
or 1e6 turns every pixel out of range with no other symptom): it is named with the K value.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mde_ros.models.card import ModelCard
from mde_ros.pipeline.bands import row_bands
from mde_ros.pipeline.intrinsics import Intrinsics

WARN_VALID_FRACTION = 0.5  # most pixels invalid: WARN
ERROR_VALID_FRACTION = 0.05  # (almost) nothing usable: ERROR
PLAUSIBLE_RESCALE = (0.25, 4.0)  # f_camera / f_training beyond this is a wrong K, not another lens


@dataclass(frozen=True)
class Finding:
    kind: str  # problem kind for the counters
    level: str  # "warn" | "error"
    message: str


def valid_fraction(depth: np.ndarray, min_depth: float, max_depth: float) -> float:
    """Share of pixels a consumer can use: finite and in [min_depth, max_depth] (REP 117 marks the
    rest NaN / -Inf / +Inf; 16UC1 publishes them as 0)."""
    depth = np.asarray(depth)
    if depth.size == 0:
        return 0.0
    rows = depth.reshape(depth.shape[0] if depth.ndim > 1 else 1, -1)
    usable = sum(int(np.count_nonzero((rows[band] >= min_depth) & (rows[band] <= max_depth)))  # False for NaN
                 for band in row_bands(*rows.shape))  # masks of a band at a time (pipeline.bands)
    return usable / depth.size


def valid_fraction_finding(fraction: float, min_depth: float, max_depth: float) -> Finding | None:
    if fraction >= WARN_VALID_FRACTION:
        return None
    level = "error" if fraction < ERROR_VALID_FRACTION else "warn"
    return Finding("depth_mostly_invalid", level,
                   f"only {100 * fraction:.1f} % of depth pixels are valid (finite, within "
                   f"{min_depth:g}..{max_depth:g} m): the rest are published as NaN/-Inf/+Inf")


def rescale_finding(rescale: float, intrinsics: Intrinsics | None, card: ModelCard) -> Finding | None:
    """An implausible camera-aware rescale factor, named with the CameraInfo value(s) behind it."""
    low, high = PLAUSIBLE_RESCALE
    reference = getattr(card, "canonical_focal_px", None) or card.train_focal_px
    if intrinsics is None or not reference or low <= rescale <= high:
        return None
    by_fx = getattr(card, "focal_rule", "fx") == "fx"
    k_values = (f"K fx={intrinsics.fx:g} (K[0])" if by_fx else
                f"K fx={intrinsics.fx:g} (K[0]) and fy={intrinsics.fy:g} (K[4])")
    return Finding("implausible_rescale", "error",
                   f"camera-aware rescale factor {rescale:.3g} is implausible (expected {low:g}..{high:g}): "
                   f"{k_values} at {intrinsics.width}x{intrinsics.height} is {rescale * reference:.4g} px at the "
                   f"network's {card.input_width}x{card.input_height} against the model's reference focal length "
                   f"{reference:g} px: check the camera's calibration (or set camera_aware_rescale false)")


def frame_findings(depth: np.ndarray, min_depth: float, max_depth: float, rescale: float,
                   intrinsics: Intrinsics | None, card: ModelCard) -> tuple[float, list[Finding]]:
    """(valid fraction, findings) of one published frame."""
    fraction = valid_fraction(depth, min_depth, max_depth)
    findings = [f for f in (rescale_finding(rescale, intrinsics, card),
                            valid_fraction_finding(fraction, min_depth, max_depth)) if f is not None]
    return fraction, findings
