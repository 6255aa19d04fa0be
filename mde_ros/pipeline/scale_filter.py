"""The metric scale over time: a robust Kalman filter on log-scale with memory and evidence.

Each frame's anchors give one fit per source (`anchoring.fit_frame`: rangefinder, metric points,
ground plane; one joint fit for affine-invariant models). The filter keeps the log-scale `x` with
two variances:

- `P`, the frame-to-frame uncertainty that gates and weighs new fits. It grows with time (`drift`)
  and with how much the network's own prediction at the anchors changed since the last frame: a
  sensor that jumps 3x while the image and the prediction stay put is a glitch, the same jump after
  the prediction changed (the camera turned to a new view) is a new scale.
- the model-error variance of the evidence (`FrameFit.variance`: the model's error at the anchor
  pixels, which a still camera does not average away), added to `P` for the published error bound.

Per source, the noise that gates and weighs its fits is measured from its accepted innovations
(a glitchy or noisy sensor weighs less). A fit outside the gate (3 sigma, never more than
`jump_threshold`) is not applied; when every source of a frame is outside, the frame starts an
"outlier run", and the run replaces the state only if its fits agree among themselves and either the
prediction changed during it by at least half as much (a new view: two frames) or it lasted
`glitch_frames` frames.

Without fits the state is held for `max_age` seconds ("held"), then `on_expiry` decides: `hold`,
`decay` (back to the model's own metres, time constant max_age; a relative model, which has none,
stops), `stop` (publish nothing) or `nan` (publish NaN depth). Each frame's regime is reported.
Pure numpy, no rclpy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Sequence

import cv2
import numpy as np

from mde_ros.pipeline.anchoring import SOURCES, AnchoringConfig, Anchors, FrameFit, error_bound, fit_frame, relative_depth
from mde_ros.pipeline.intrinsics import Intrinsics

# Regimes of a frame (the `depth/scale` topic and /diagnostics say which):
#   unanchored  never anchored (or the anchoring restarted): the model's own depth, untouched
#   anchored    this frame's anchors were applied (through the filter)
#   held        no usable anchor now: the last factor, younger than max_age (or on_expiry: hold)
#   decaying    expired, on_expiry decay: the factor returns to 1 (the model's own metres)
#   stopped     expired, on_expiry stop: nothing is published
#   invalid     expired, on_expiry nan: NaN depth is published
REGIMES = ("unanchored", "anchored", "held", "decaying", "stopped", "invalid")
MIN_SOURCE_NOISE = 0.005  # a source's frame-to-frame noise is never taken as smaller than this (log)
PRIOR_SOURCE_NOISE = 0.05  # until measured
NOISE_MEMORY = 0.1  # weight of each accepted innovation in a source's measured noise
GATE_SIGMAS = 3.0
VIEW_SHARE = 0.5  # a new view must change the prediction by this share of the factor's jump (log)


@dataclass(frozen=True)
class ScaleEstimate:
    """What is applied to one frame (and reported on depth/scale, /diagnostics and in summaries)."""

    applied: bool  # False: the depth is left exactly as the model made it (unanchored, stopped)
    scale: float = 1.0
    shift: float = 0.0
    source: str = "none"  # "+"-joined sources of the applied fits, "held" while anchors are missing
    confidence: float = 0.0  # 1 - error_bound (0..1)
    n_anchors: int = 0
    frame_scale: float | None = None  # this frame's own (fused) fit, before filtering (None: no fit)
    event: str = ""  # init, reset (new view), persistent (a lasting disagreement believed), outlier, reacquired, expired
    regime: str = "unanchored"
    error_bound: float = float("inf")  # predicted relative error of `scale` (90 % bound)
    age: float = 0.0  # seconds since the last applied fit
    scale_only: bool = False  # affine-invariant model whose shift could not be fitted (held)

    @property
    def publish(self) -> bool:
        """Whether the frame's metric outputs are published at all (on_expiry: stop)."""
        return self.regime != "stopped"

    def as_dict(self) -> dict[str, Any]:
        return {"applied": self.applied, "scale": round(self.scale, 6), "shift": round(self.shift, 6),
                "source": self.source, "confidence": round(self.confidence, 4), "anchors": self.n_anchors,
                "frame_scale": None if self.frame_scale is None else round(self.frame_scale, 6),
                "event": self.event, "regime": self.regime,
                "error_bound": None if not math.isfinite(self.error_bound) else round(self.error_bound, 4),
                "age": round(self.age, 3), "scale_only": self.scale_only}


def _joined(sources) -> str:
    return "+".join(sorted(set(sources), key=lambda s: SOURCES.index(s) if s in SOURCES else len(SOURCES))) or "none"


def _fuse(fits: Sequence[FrameFit], variances: Sequence[float]) -> tuple[float, float]:
    """(log scale, variance) of independent fits combined by inverse variance."""
    w = np.array([1.0 / max(v, 1e-12) for v in variances])
    z = np.array([math.log(f.scale) for f in fits])
    return float(np.sum(w * z) / np.sum(w)), float(1.0 / np.sum(w))


class ScaleFilter:
    """Robust Kalman filter of the log scale (see the module doc). `update` once per frame, in stamp order."""

    def __init__(self, config: AnchoringConfig = AnchoringConfig()) -> None:
        self.config = config
        self.noise: dict[str, float] = {}  # per source: measured frame-to-frame variance of its fits (log)
        self.reset()

    def reset(self) -> None:
        self._x: float | None = None  # log scale
        self._p = 0.0  # frame-to-frame variance of x
        self._model_var = 0.0  # model-error variance of the evidence behind x
        self._shift = 0.0
        self._scale_only = False
        self._last_fit_s: float | None = None
        self._last_s: float | None = None
        self._run: list[tuple[float, float, float, bool]] = []  # outlier run: (log scale, var, shift, new view)
        self._source = "none"

    @property
    def current(self) -> tuple[float, float] | None:
        """The filtered (scale, shift), or None."""
        return None if self._x is None else (math.exp(self._x), self._shift)

    def source_noise(self, source: str) -> float:
        """The measured frame-to-frame noise (relative, 1 sigma) of a source's fits."""
        return math.sqrt(self.noise.get(source, PRIOR_SOURCE_NOISE ** 2))

    def _estimate(self, regime: str, n_anchors: int, event: str, frame: float | None,
                  stamp_s: float) -> ScaleEstimate:
        variance = self._p + self._model_var
        bound = error_bound(variance)
        age = 0.0 if self._last_fit_s is None else max(0.0, stamp_s - self._last_fit_s)
        scale, applied = math.exp(self._x), True
        if regime == "decaying":
            scale = math.exp(self._x * math.exp(-(age - self.config.max_age) / max(self.config.max_age, 1e-3)))
            bound = max(bound, abs(math.expm1(self._x)))  # as wrong as the model's own metres may be
        elif regime == "stopped":
            applied = False
        source = self._source if regime == "anchored" else regime
        return ScaleEstimate(applied, scale, self._shift, source, float(min(1.0, max(0.0, 1.0 - bound))),
                             n_anchors, frame, event, regime, bound, age, self._scale_only)

    def update(self, fits: Sequence[FrameFit] | FrameFit | None, stamp_s: float,
               prediction_change: float | None = None, relative: bool = False) -> ScaleEstimate:
        """The estimate for the frame stamped `stamp_s` from its per-source fits (none: hold/expire).

        `prediction_change`: median |log| change of the network's prediction at this frame's anchor
        pixels since the previous frame (None: unknown, e.g. the first frame)."""
        config = self.config
        if isinstance(fits, FrameFit):
            fits = [fits]
        fits = [f for f in (fits or []) if f.confidence >= config.min_confidence and f.scale > 0
                and math.isfinite(f.scale) and math.isfinite(f.variance)]
        if self._last_s is not None and stamp_s < self._last_s:
            self.reset()  # time went backwards (a bag looped): start over
        dt = 0.0 if self._last_s is None else stamp_s - self._last_s
        self._last_s = stamp_s
        if self._x is not None:  # predict: drift with time, and more when the prediction itself changed
            self._p += config.drift ** 2 * dt + (prediction_change or 0.0) ** 2
        frame = math.exp(_fuse(fits, [f.variance for f in fits])[0]) if fits else None
        n_anchors = sum(f.n_anchors for f in fits)
        if self._x is not None and self._last_fit_s is not None and stamp_s - self._last_fit_s > config.max_age \
                and fits:
            self._x = None  # expired state: re-acquire from scratch
            event = "reacquired"
        else:
            event = ""
        if self._x is None:
            if not fits:
                return ScaleEstimate(False, regime="unanchored")
            self._init(fits, stamp_s)
            return self._estimate("anchored", n_anchors, event or "init", frame, stamp_s)
        if not fits:
            age = stamp_s - (self._last_fit_s if self._last_fit_s is not None else stamp_s)
            if age <= config.max_age or config.on_expiry == "hold":
                return self._estimate("held", 0, "", None, stamp_s)
            regime = {"decay": "stopped" if relative else "decaying", "stop": "stopped", "nan": "invalid"}[config.on_expiry]
            return self._estimate(regime, 0, "expired", None, stamp_s)

        # gate each source's fit against the state, with that source's measured noise
        limit = math.log1p(config.jump_threshold)
        floor = math.log1p(config.inlier_tolerance)
        accepted, rejected = [], []
        for fit in fits:
            r = self._noise_var(fit)
            innovation = math.log(fit.scale) - self._x
            gate = max(floor, min(GATE_SIGMAS * math.sqrt(self._p + r), limit))
            (accepted if abs(innovation) <= gate else rejected).append((fit, r, innovation))
        if not accepted:
            z, var = _fuse([f for f, _, _ in rejected], [f.variance for f, _, _ in rejected])
            # A new view explains a jump of the factor only if the prediction itself changed by a good
            # part of it: walking past things moves the prediction at a range footprint by 10-20 % per
            # frame, while a sensor glitch moves the factor by 100 % (3x) with it.
            new_view = prediction_change is not None and prediction_change >= max(
                config.scene_change, VIEW_SHARE * abs(z - self._x))
            self._run.append((z, var, rejected[0][0].shift, new_view))
            run = self._run
            agree = len(run) >= 2 and max(r[0] for r in run[-2:]) - min(r[0] for r in run[-2:]) <= limit
            persistent = len(run) > config.glitch_frames and \
                max(r[0] for r in run[-config.glitch_frames:]) - min(r[0] for r in run[-config.glitch_frames:]) <= limit
            if agree and any(r[3] for r in run):
                return self._restart(rejected, z, var, stamp_s, "reset", frame, n_anchors)
            if persistent:
                return self._restart(rejected, z, var, stamp_s, "persistent", frame, n_anchors)
            return self._estimate("anchored", n_anchors, "outlier", frame, stamp_s)
        self._run = []
        min_gain = 1.0 if config.time_constant <= 0 else -math.expm1(-max(dt, 0.0) / config.time_constant)
        model_information = 0.0
        for fit, r, _ in accepted:
            innovation = math.log(fit.scale) - self._x  # against the state updated by the previous source
            gain = max(self._p / (self._p + r), min_gain if fit is accepted[0][0] else 0.0)
            self._x += gain * innovation
            self._p = (1.0 - gain) ** 2 * self._p + gain ** 2 * r  # Joseph form: right for any gain
            self._shift += gain * (fit.shift - self._shift)
            source = "+".join(fit.sources) or "none"
            self.noise[source] = max(MIN_SOURCE_NOISE ** 2, (1.0 - NOISE_MEMORY) * self._noise_var(fit)
                                     + NOISE_MEMORY * innovation ** 2)
            model_information += 1.0 / max(fit.variance, 1e-12)
        self._model_var = 1.0 / model_information
        self._scale_only = all(f.scale_only for f, _, _ in accepted)
        self._source = _joined(s for f, _, _ in accepted for s in f.sources)
        self._last_fit_s = stamp_s
        return self._estimate("anchored", n_anchors, "", frame, stamp_s)

    def _noise_var(self, fit: FrameFit) -> float:
        return self.noise.get("+".join(fit.sources) or "none", PRIOR_SOURCE_NOISE ** 2)

    def _init(self, fits: Sequence[FrameFit], stamp_s: float) -> None:
        """Start from the fits that agree with the most certain one (a glitching source among
        several is left out from the first frame on)."""
        best = min(fits, key=lambda f: f.variance)
        limit = math.log1p(self.config.jump_threshold)
        agree = [f for f in fits if abs(math.log(f.scale / best.scale)) <= limit]
        self._adopt(agree, *_fuse(agree, [f.variance for f in agree]), stamp_s)

    def _adopt(self, fits: Sequence[FrameFit], x: float, var: float, stamp_s: float) -> None:
        """The filter's state taken from ``fits`` (a first fit, or a reset/persistent change)."""
        self._x, self._model_var = x, var
        self._p = min(self._noise_var(f) for f in fits)
        self._shift = float(np.mean([f.shift for f in fits]))
        self._scale_only = all(f.scale_only for f in fits)
        self._source = _joined(s for f in fits for s in f.sources)
        self._last_fit_s = stamp_s
        self._run = []

    def _restart(self, rejected, z: float, var: float, stamp_s: float, event: str,
                 frame: float | None, n_anchors: int) -> ScaleEstimate:
        self._adopt([f for f, _, _ in rejected], z, var, stamp_s)
        return self._estimate("anchored", n_anchors, event, frame, stamp_s)


def apply_scale(depth: np.ndarray, estimate: ScaleEstimate, relative: np.ndarray | None = None) -> np.ndarray:
    """The anchored depth: depth * scale for metric models, 1 / (scale * relative + shift) for
    affine-invariant ones; NaN everywhere in the `invalid` regime; `depth` itself when nothing is
    applied (bit-identical output)."""
    if estimate.regime == "invalid":
        return np.full(depth.shape, np.nan, np.float32)
    if not estimate.applied:
        return depth
    if relative is not None:
        return relative_depth(relative, estimate.scale, estimate.shift)
    return (depth * np.float32(estimate.scale)).astype(np.float32, copy=False)


def split_by_source(anchors: Anchors) -> list[Anchors]:
    """One Anchors per source present (sharing the `rejected` counter): each is fitted on its own so
    the filter can gate and weigh each sensor by its own record."""
    parts = []
    if len(anchors.points):
        parts.append(replace(anchors, ranges=[], ground=None))
    if anchors.ranges:
        parts.append(replace(anchors, points=np.zeros((0, 3)), ground=None))
    if anchors.ground is not None:
        parts.append(replace(anchors, points=np.zeros((0, 3)), ranges=[]))
    return parts


STABILITY_BLOCKS = 40  # the prediction is compared over blocks of ~1/40 of the image width


def stability_map(prediction: np.ndarray) -> tuple[np.ndarray, int]:
    """(log |prediction| averaged over blocks, block size): a network's per-pixel flicker averages
    out over a block, a new view does not. A block with an invalid pixel is NaN (not compared)."""
    height, width = prediction.shape
    block = max(1, width // STABILITY_BLOCKS)
    rows, cols = height // block, width // block
    if rows == 0 or cols == 0:
        block, rows, cols = 1, height, width
    values = np.abs(prediction[:rows * block, :cols * block].astype(np.float32, copy=False))
    means = cv2.resize(values, (cols, rows), interpolation=cv2.INTER_AREA) if block > 1 else values
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.where(np.isfinite(means) & (means > 0), np.log(means), np.nan)
    return logs, block


def prediction_change(previous: tuple[np.ndarray, int] | None, current: tuple[np.ndarray, int],
                      fits: Sequence[FrameFit]) -> float | None:
    """Median |log| change of the prediction (stability_map blocks) at the fits' pixels between two
    frames; None when unknown (first frame, another resolution, no pixels)."""
    if previous is None or previous[0].shape != current[0].shape or previous[1] != current[1]:
        return None
    us = [f.u for f in fits if f.u is not None and len(f.u)]
    vs = [f.v for f in fits if f.v is not None and len(f.v)]
    if not us:
        return None
    block = current[1]
    rows, cols = current[0].shape
    u = np.clip(np.concatenate(us) // block, 0, cols - 1)
    v = np.clip(np.concatenate(vs) // block, 0, rows - 1)
    change = np.abs(current[0][v, u] - previous[0][v, u])
    change = change[np.isfinite(change)]
    return float(np.median(change)) if len(change) else None


class ScaleAnchoring:
    """Per-source fits + ScaleFilter + apply_scale for one camera: what the node, replay and predict call.

    `anchor(depth, intr, anchors, stamp_s, relative)` -> (anchored depth, ScaleEstimate)."""

    def __init__(self, config: AnchoringConfig = AnchoringConfig()) -> None:
        self.filter = ScaleFilter(config)
        self._previous: tuple[np.ndarray, int] | None = None

    @property
    def config(self) -> AnchoringConfig:
        return self.filter.config

    @config.setter
    def config(self, config: AnchoringConfig) -> None:
        self.filter.config = config

    def fits(self, depth: np.ndarray, intr: Intrinsics | None, anchors: Anchors,
             relative: np.ndarray | None = None) -> list[FrameFit]:
        """This frame's fits: one per source for metric models, one joint fit (scale and shift) for
        affine-invariant ones."""
        if not anchors:
            return []
        if relative is not None:
            fit = fit_frame(depth, intr, anchors, self.config, relative, self.filter.current)
            return [fit] if fit is not None else []
        found = []
        for part in split_by_source(anchors):
            fit = fit_frame(depth, intr, part, self.config)
            if fit is not None:
                found.append(fit)
        return found

    def anchor(self, depth: np.ndarray, intr: Intrinsics | None, anchors: Anchors, stamp_s: float,
               relative: np.ndarray | None = None) -> tuple[np.ndarray, ScaleEstimate]:
        fits = self.fits(depth, intr, anchors, relative)
        prediction = relative if relative is not None else depth
        stability = stability_map(prediction)
        change = prediction_change(self._previous, stability, fits)
        self._previous = stability
        estimate = self.filter.update(fits, stamp_s, change, relative is not None)
        return apply_scale(depth, estimate, relative), estimate


