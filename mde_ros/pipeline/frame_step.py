"""One frame after decoding and CameraInfo pairing: the per-frame step the node and `mde-ros replay` share.

Scan gating, the output budget, estimation, refinement (anchors, temporal filter, confidence), the
outputs of mde_ros.pipeline.outputs.OUTPUTS and the health findings, in that order. What the caller
should say about the frame comes back as `Note`s (the node warns them throttled, replay counts them
in its summary), so both report the same problems. Pure: no rclpy, no message classes.
"""
from __future__ import annotations

import dataclasses
import functools

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Collection

import numpy as np

from mde_ros.pipeline.budget import BudgetError, FrameBudget, output_bytes
from mde_ros.pipeline.geometry import scan_fits
from mde_ros.pipeline.health import Finding, frame_findings
from mde_ros.pipeline.outputs import FrameData, FrameOutputs, OutputConfig, build_parts

if TYPE_CHECKING:
    from mde_ros.pipeline.anchoring import Anchors
    from mde_ros.pipeline.estimator import DepthEstimator, DepthResult
    from mde_ros.pipeline.intrinsics import Intrinsics
    from mde_ros.pipeline.refine import Refined, Refiner

# Why a scale anchor was not used (pipeline.anchoring's reasons), as the warnings say it.
REJECTION_HINTS = {
    "nan": "NaN values", "negative": "negative depth", "range_limits": "reading outside its min_range..max_range",
    "field_of_view": "invalid field_of_view", "outside_image": "outside the image",
    "behind_camera": "behind the camera", "stamp": "stamp too far from the image's (scale.stamp_tolerance)",
    "frame": "frame unknown (no TF and not scale.range.frame_id / scale.points.frame_id)",
    "no_prediction": "no valid predicted depth there", "no_floor": "no floor found in the predicted depth",
    "no_intrinsics": "no camera intrinsics", "bad_cloud": "unreadable PointCloud2 (needs FLOAT32/64 x, y, z)",
}
# Scale regimes after scale.max_age without anchors (pipeline.scale_filter), as the warning says them.
EXPIRY_TEXT = {"decaying": "returning to the model's own metres", "stopped": "not published",
               "invalid": "published as NaN"}
EXPIRED_REGIMES = tuple(EXPIRY_TEXT)


@dataclass(frozen=True)
class Note:
    """Something to tell about one frame. `counted`: a problem of the frame (the node counts it in its
    diagnostics); otherwise a state of the output, logged only."""

    kind: str
    message: str
    counted: bool = True


@dataclass(frozen=True)
class StepConfig:
    """What the step needs besides the frame: the output settings, the depth range, the budget."""

    outputs: OutputConfig
    min_depth: float
    max_depth: float
    budget: FrameBudget | None = None  # None: no output budget (replay)


@dataclass
class FrameResult:
    outputs: FrameOutputs | None  # None: the frame was rejected (over the output budget), see notes
    result: "DepthResult | None" = None  # after refinement
    refined: "Refined | None" = None  # scale estimate, confidence, anchors used (None: no refiner)
    valid: float = 0.0  # share of usable depth pixels (of the relative image for an unanchored relative model)
    findings: list[Finding] = field(default_factory=list)  # health of the published depth (pipeline.health)
    notes: list[Note] = field(default_factory=list)
    stopped: bool = False  # the scale expired with scale.on_expiry 'stop': no metric output for this frame
    # run_frame(defer_outputs=True): builds `outputs` later, in another thread (replay's writer), once
    build: "Callable[[], FrameOutputs] | None" = None


def output_config_for(config: OutputConfig, wanted: Collection[str], intrinsics: "Intrinsics | None",
                      notes: list[Note]) -> OutputConfig:
    """`config` with the optional outputs enabled only where wanted and possible (geometry needs
    intrinsics; the scan needs its rows around cy inside the image: a `scan_height` note otherwise)."""
    scan_possible = intrinsics is not None and scan_fits(intrinsics, config.scan_height)
    if "scan" in wanted and config.scan_enabled and intrinsics is not None and not scan_possible:
        notes.append(Note("scan_height", f"scan.scan_height {config.scan_height} does not fit the "
                                         f"{intrinsics.height}-row image around cy={intrinsics.cy:.1f}: no scan"))
    return dataclasses.replace(  # every other setting (scan_convention, cloud_*, ...) as configured
        config, cloud_enabled=config.cloud_enabled and "points" in wanted and intrinsics is not None,
        scan_enabled=config.scan_enabled and "scan" in wanted and scan_possible,
        colorized_enabled=config.colorized_enabled and "colorized" in wanted)


def run_frame(estimator: "DepthEstimator", rgb: np.ndarray, intrinsics: "Intrinsics | None",
              wanted: Collection[str], config: StepConfig, *, refiner: "Refiner | None" = None,
              anchors: "Anchors | None" = None, stamp_s: float = 0.0, defer_outputs: bool = False) -> FrameResult:
    """Estimate, refine and build the outputs named in `wanted` (OutputSpec keys) for one frame.

    `defer_outputs`: leave the building to FrameResult.build (outputs None), so offline replay builds
    frame N's outputs in its writer thread while frame N+1 is in the network."""
    notes: list[Note] = []
    out_config = output_config_for(config.outputs, wanted, intrinsics, notes)
    if config.budget is not None:
        height, width = rgb.shape[:2]
        try:
            config.budget.check_outputs(output_bytes(
                width, height, depth_bytes_per_pixel=2 if out_config.depth_encoding == "16UC1" else 4,
                cloud=out_config.cloud_enabled, cloud_decimation=out_config.cloud_decimation,
                cloud_rgb=out_config.cloud_rgb, colorized=out_config.colorized_enabled))
        except BudgetError as exc:
            return FrameResult(None, notes=[*notes, Note("over_budget", str(exc))])
    result = estimator.estimate(rgb, intrinsics)
    estimated = result
    notes += [Note("intrinsics_ignored", warning) for warning in result.warnings]
    refined = None
    if refiner is not None:
        refined = refiner.refine(estimator, result, rgb, anchors, stamp_s, confidence_wanted="confidence" in wanted)
        notes += [Note(f"anchor_{reason}", f"ignored {count} scale anchor(s) for the image at {stamp_s:.3f} s: "
                                           f"{REJECTION_HINTS.get(reason, reason)}")
                  for reason, count in sorted(refined.anchors.rejected.items())]
        result = refined.result
        scale = refined.scale
        if scale.regime in EXPIRED_REGIMES:
            notes.append(Note("scale_expired", f"no usable scale anchor for {scale.age:.1f} s (> scale.max_age): "
                                               f"depth is {EXPIRY_TEXT[scale.regime]} (scale.on_expiry)"))
    stopped = refined is not None and not refined.publish
    device = estimated.device if result is estimated else None
    if device is not None and defer_outputs:  # built after the next estimate, which reuses the device buffer
        device = device.kept()
    frame = FrameData(result, rgb, out_config, config.min_depth, config.max_depth,
                      confidence=None if refined is None else refined.confidence,
                      scale=None if refined is None else refined.scale,
                      # outputs built where the depth is only while it is the estimator's own (a refined
                      # depth is a new result made on the CPU: dataclasses.replace would carry a stale device)
                      device=device)
    build = functools.partial(build_parts, frame, tuple(wanted), metric=result.is_metric and not stopped)
    outputs, later = (None, build) if defer_outputs else (build(), None)
    if stopped:  # nothing metric published: no health to judge
        return FrameResult(outputs, result, refined, 0.0, [], notes, stopped=True, build=later)
    if result.is_metric:
        valid, findings = frame_findings(result.depth, config.min_depth, config.max_depth, result.rescale,
                                         result.intrinsics, estimator.card)
    else:  # an unanchored relative model: no metres to judge, only how much of the relative image is finite
        valid, findings = float(np.isfinite(result.relative).mean()), []
    return FrameResult(outputs, result, refined, valid, findings, notes, build=later)
