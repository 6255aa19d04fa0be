"""Temporal stability (opt-in): damp frame-to-frame flicker of static structure, follow motion.

A per-frame network re-guesses every pixel from scratch, so depth of a wall that does not move
flickers by about a percent from frame to frame; costmaps and trackers downstream see that as
motion. This filter smooths each pixel's log depth exponentially (time constant in seconds, from
the stamps), but lets go wherever the residual says the scene changed:

- a pixel whose new depth differs from its filtered value by more than `threshold` (relative)
  takes the new value at once (something moved there, or the camera did);
- when more than `scene_change` of the pixels did so, the camera itself moved: every pixel takes
  the new frame (no smoothing across a moving camera, so no lag on an approaching obstacle);
- a gap in time (longer than `max_gap`), time going backwards, or another image size restarts it.

Pure numpy; the node and replay call `TemporalFilter.update` after anchoring.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TemporalConfig:
    time_constant: float = 0.3  # seconds; at 10 Hz each frame moves the filtered value 28 % of the way
    threshold: float = 0.03  # relative change that counts as real (a few times the network's flicker)
    scene_change: float = 0.1  # share of changed pixels that means the camera moved
    max_gap: float = 1.0  # seconds without frames after which the filter starts over

    def __post_init__(self) -> None:
        if not (math.isfinite(self.time_constant) and self.time_constant > 0):
            raise ValueError(f"temporal.time_constant must be > 0 s, got {self.time_constant}")
        if not (math.isfinite(self.threshold) and self.threshold > 0):
            raise ValueError(f"temporal.threshold must be > 0, got {self.threshold}")
        if not 0 < self.scene_change <= 1:
            raise ValueError(f"temporal.scene_change must be in (0, 1], got {self.scene_change}")
        if not (math.isfinite(self.max_gap) and self.max_gap > 0):
            raise ValueError(f"temporal.max_gap must be > 0 s, got {self.max_gap}")


class TemporalFilter:
    """Per-pixel exponential smoothing of log depth with residual-driven resets (see module doc)."""

    def __init__(self, config: TemporalConfig = TemporalConfig()) -> None:
        self.config = config
        self.reset()

    def reset(self) -> None:
        self._log: np.ndarray | None = None
        self._stamp: float | None = None
        self.last_changed_fraction = 0.0  # share of pixels that reset in the last update (diagnostics)

    def update(self, depth: np.ndarray, stamp_s: float) -> np.ndarray:
        """The filtered depth (float32, a new array); NaN/Inf pixels pass through and restart their pixel."""
        config = self.config
        with np.errstate(divide="ignore", invalid="ignore"):
            x = np.log(np.asarray(depth, np.float32))
        dt = None if self._stamp is None else stamp_s - self._stamp
        if (self._log is None or self._log.shape != x.shape or dt is None or dt <= 0 or dt > config.max_gap):
            self._log, self._stamp = x.copy(), stamp_s
            self.last_changed_fraction = 1.0
            return np.asarray(depth, np.float32).copy()
        self._stamp = stamp_s
        residual = x - self._log
        finite = np.isfinite(residual)
        changed = ~(np.abs(residual) <= np.float32(math.log1p(config.threshold)))  # NaN counts as changed
        n_finite = int(finite.sum())
        self.last_changed_fraction = float((changed & finite).sum() / n_finite) if n_finite else 1.0
        if self.last_changed_fraction > config.scene_change:
            self._log = x.copy()
        else:
            alpha = np.float32(1.0 - math.exp(-dt / config.time_constant))
            with np.errstate(invalid="ignore"):
                smoothed = self._log + alpha * residual
            self._log = np.where(changed, x, smoothed)
        with np.errstate(over="ignore"):
            out = np.exp(self._log).astype(np.float32)
        invalid = ~np.isfinite(x)
        out[invalid] = np.asarray(depth, np.float32)[invalid]  # NaN/-Inf/+Inf marks kept as they came
        return out
