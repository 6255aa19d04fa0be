"""The stage after DepthEstimator.estimate that the node, replay and predict share: metric scale
anchoring, the opt-in temporal filter and the opt-in per-pixel confidence.

With no anchors and both options off, `Refiner.refine` returns the estimator's result object
untouched, so outputs are bit-identical to a pipeline without this stage.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mde_ros.pipeline.anchoring import AnchoringConfig, Anchors
from mde_ros.pipeline.confidence import DEFAULT_TOLERANCE, flip_confidence, mark_unconfident
from mde_ros.pipeline.scale_filter import ScaleAnchoring, ScaleEstimate
from mde_ros.pipeline.temporal import TemporalConfig, TemporalFilter

if TYPE_CHECKING:
    from mde_ros.pipeline.estimator import DepthEstimator, DepthResult


@dataclass(frozen=True)
class RefineConfig:
    anchoring: AnchoringConfig = AnchoringConfig()
    temporal: TemporalConfig | None = None  # None: no temporal filter
    confidence: bool = False  # compute flip-consistency confidence (one more network run per frame)
    confidence_tolerance: float = DEFAULT_TOLERANCE
    confidence_threshold: float = 0.0  # depth where confidence < this becomes NaN; 0: none

    def __post_init__(self) -> None:
        if not self.confidence_tolerance > 0:
            raise ValueError(f"confidence tolerance must be > 0, got {self.confidence_tolerance}")
        if not 0.0 <= self.confidence_threshold <= 1.0:
            raise ValueError(f"confidence threshold must be in 0..1, got {self.confidence_threshold}")
        if self.confidence_threshold > 0 and not self.confidence:
            raise ValueError("a confidence threshold needs the confidence enabled")


@dataclass
class Refined:
    result: "DepthResult"  # depth anchored, filtered and marked; the estimator's object when untouched
    scale: ScaleEstimate
    confidence: np.ndarray | None  # HxW float32 0..1 when enabled
    anchors: Anchors

    @property
    def publish(self) -> bool:
        """False when the scale expired with on_expiry 'stop': no metric output for this frame."""
        return self.scale.publish


class Refiner:
    """Per camera stream state (scale filter, temporal filter); `refine` once per frame in stamp order."""

    def __init__(self, config: RefineConfig = RefineConfig()) -> None:
        self._config = config
        self.anchoring = ScaleAnchoring(config.anchoring)
        self.temporal = TemporalFilter(config.temporal) if config.temporal is not None else None

    @property
    def config(self) -> RefineConfig:
        return self._config

    @config.setter
    def config(self, config: RefineConfig) -> None:
        """Swap settings at run time, keeping the filters' state where they stay on."""
        self._config = config
        self.anchoring.config = config.anchoring
        if config.temporal is None:
            self.temporal = None
        elif self.temporal is None:
            self.temporal = TemporalFilter(config.temporal)
        else:
            self.temporal.config = config.temporal

    def refine(self, estimator: "DepthEstimator", result: "DepthResult", rgb: np.ndarray,
               anchors: Anchors | None, stamp_s: float, *, confidence_wanted: bool = True) -> Refined:
        """`confidence_wanted` False: skip the confidence's extra network run unless its threshold marks the
        depth (the node: nobody subscribes to depth/confidence)."""
        config = self._config
        anchors = anchors if anchors is not None else Anchors()
        began = time.perf_counter()
        needed = config.confidence and (confidence_wanted or config.confidence_threshold > 0)
        confidence = flip_confidence(estimator, rgb, result, config.confidence_tolerance) if needed else None
        relative = getattr(result, "relative", None)  # affine-invariant models: scale AND shift are fitted
        depth, estimate = self.anchoring.anchor(result.depth, result.intrinsics, anchors, stamp_s, relative)
        if self.temporal is not None:
            depth = self.temporal.update(depth, stamp_s)
        if confidence is not None:
            depth = mark_unconfident(depth, confidence, config.confidence_threshold)
        if depth is result.depth and not anchors.rejected and not anchors.count():
            return Refined(result, estimate, confidence, anchors)  # nothing to do: the same object
        timings = {**result.timings, "refine": time.perf_counter() - began}
        changes = {"depth": depth, "timings": timings}
        if relative is not None and estimate.applied:
            changes["is_metric"] = True  # a relative model's depth holds metres once anchored
        return Refined(dataclasses.replace(result, **changes), estimate, confidence, anchors)
