"""Node health for /diagnostics: rates, per-stage latency, drops and input problems.

`NodeStats` is updated from the subscription callbacks and the inference thread and read by the
diagnostics timer, so every access holds its lock. `diagnostic_status` turns one window of it
into the DiagnosticStatus that rqt_robot_monitor and diagnostic_aggregator show.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Sequence

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

# queue: waiting for the inference thread; decode: message -> RGB and CameraInfo pairing.
STAGES = ("queue", "decode", "preprocess", "network", "postprocess", "outputs", "publish")
# With the newest-frame policy some drops are normal (camera faster than the network); losing more
# than this share of the frames means the outputs lag far behind the camera rate.
HEAVY_DROP_FRACTION = 0.5


@dataclass
class StatsWindow:
    """What happened since the previous window, plus running totals."""

    seconds: float
    received: int
    published: int
    dropped: int
    latency_ms: dict[str, float]
    problems: Counter
    total_received: int
    total_published: int
    total_dropped: int
    total_problems: Counter
    last_warning: str
    intrinsics_source: str
    valid_fraction: float | None
    findings: tuple = ()  # pipeline.health.Finding of the last published frame
    # CPU ms per published frame of the inference thread: "frame" (all its work for the frame), "network"
    # (inside the backend call); the executor's and DDS's threads are not in it.
    cpu_ms: dict[str, float] = field(default_factory=dict)

    @property
    def input_hz(self) -> float:
        return self.received / self.seconds if self.seconds > 0 else 0.0

    @property
    def output_hz(self) -> float:
        return self.published / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Window:
    received: int = 0
    published: int = 0
    dropped: int = 0
    latency_sums: dict[str, float] = field(default_factory=dict)
    cpu_sums: dict[str, float] = field(default_factory=dict)
    problems: Counter = field(default_factory=Counter)


class NodeStats:
    """Thread-safe counters shared by the callbacks, the inference thread and the diagnostics timer."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._window = _Window()
        self._window_start = clock()
        self._totals = _Window()
        self._last_warning = ""
        self._intrinsics_source = "none yet"
        self._valid_fraction: float | None = None
        self._findings: tuple = ()
        self._last_latency_ms: dict[str, float] = {}
        self._last_cpu_ms: dict[str, float] = {}

    def frame_received(self) -> None:
        with self._lock:
            self._window.received += 1
            self._totals.received += 1

    def frame_dropped(self) -> None:
        with self._lock:
            self._window.dropped += 1
            self._totals.dropped += 1

    def frame_published(self, timings_s: dict[str, float], intrinsics_source: str, valid_fraction: float,
                        findings: Sequence = (), cpu_s: dict[str, float] | None = None) -> None:
        """`valid_fraction`: after REP 117 marking; `findings`: pipeline.health findings of this frame;
        `cpu_s`: the inference thread's CPU seconds for it (StatsWindow.cpu_ms)."""
        with self._lock:
            self._findings = tuple(findings)
            self._window.published += 1
            self._totals.published += 1
            for stage, seconds in timings_s.items():
                self._window.latency_sums[stage] = self._window.latency_sums.get(stage, 0.0) + seconds
            for part, seconds in (cpu_s or {}).items():
                self._window.cpu_sums[part] = self._window.cpu_sums.get(part, 0.0) + seconds
            self._intrinsics_source = intrinsics_source
            self._valid_fraction = valid_fraction

    def problem(self, kind: str, message: str) -> None:
        with self._lock:
            self._window.problems[kind] += 1
            self._totals.problems[kind] += 1
            self._last_warning = message

    def note(self, message: str) -> None:
        with self._lock:
            self._last_warning = message

    def totals(self) -> tuple[int, int, int, Counter]:
        """(received, published, dropped, problems) since start."""
        with self._lock:
            t = self._totals
            return t.received, t.published, t.dropped, Counter(t.problems)

    def take_window(self) -> StatsWindow:
        """The current window's figures; starts the next window."""
        with self._lock:
            now = self._clock()
            window, self._window = self._window, _Window()
            seconds, self._window_start = now - self._window_start, now
            if window.published:
                # A model slower than the diagnostics period still shows its last known latency.
                self._last_latency_ms = {k: 1000.0 * v / window.published for k, v in window.latency_sums.items()}
                self._last_cpu_ms = {k: 1000.0 * v / window.published for k, v in window.cpu_sums.items()}
            return StatsWindow(
                seconds=seconds, received=window.received, published=window.published, dropped=window.dropped,
                latency_ms=dict(self._last_latency_ms),
                problems=window.problems, total_received=self._totals.received,
                total_published=self._totals.published, total_dropped=self._totals.dropped,
                total_problems=Counter(self._totals.problems), last_warning=self._last_warning,
                intrinsics_source=self._intrinsics_source, valid_fraction=self._valid_fraction,
                findings=self._findings, cpu_ms=dict(self._last_cpu_ms))


class ThrottledWarnings:
    """Count every problem, log each kind at most once per period.

    rclpy's own throttle is per call site, which would let one noisy problem hide another that is
    logged through the same helper; this throttles per kind instead.
    """

    def __init__(self, log: Callable[[str], None], stats: NodeStats, period_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = log
        self._stats = stats
        self._period = period_s
        self._clock = clock
        self._last_logged: dict[str, float] = {}
        self._lock = threading.Lock()

    def warn(self, kind: str, message: str, count: bool = True) -> None:
        """Log `message` unless `kind` was logged within the period; `count` adds it to the
        problem counters (off for conditions that are states, not rejected frames)."""
        if count:
            self._stats.problem(kind, message)
        else:
            self._stats.note(message)
        now = self._clock()
        with self._lock:
            last = self._last_logged.get(kind)
            if last is not None and now - last < self._period:
                return
            self._last_logged[kind] = now
        self._log(message)


def diagnostic_status(window: StatsWindow, *, name: str, hardware_id: str, backend: str, model: str,
                      input_topic: str, intrinsics_missing: bool,
                      extra: dict[str, str] | None = None) -> DiagnosticStatus:
    """One DiagnosticStatus: ERROR for an error finding of the last frame (almost no valid depth, an
    implausible rescale); WARN when most depth is invalid, when dropping heavily, without intrinsics, or
    after problems (bad input, failed inference) in this window."""
    reasons = []
    if window.total_received == 0:
        reasons.append(f"waiting for images on {input_topic}")
    if window.received >= 4 and window.dropped > HEAVY_DROP_FRACTION * window.received:
        reasons.append(f"dropping {window.dropped} of {window.received} frames: inference "
                       f"({window.output_hz:.1f} Hz) is slower than the camera ({window.input_hz:.1f} Hz)")
    if intrinsics_missing:
        reasons.append("no usable CameraInfo or fallback_intrinsics: points and scan are off")
    errors = [f.message for f in window.findings if f.level == "error"]
    reasons[:0] = errors + [f.message for f in window.findings if f.level != "error"]
    if window.problems:
        reasons.append("problems: " + ", ".join(f"{k} x{n}" for k, n in sorted(window.problems.items())))
    level = DiagnosticStatus.ERROR if errors else DiagnosticStatus.WARN if reasons else DiagnosticStatus.OK
    message = "; ".join(reasons) if reasons else (
        f"ok: {window.input_hz:.1f} Hz in, {window.output_hz:.1f} Hz out")
    values = {
        "input rate (Hz)": f"{window.input_hz:.2f}",
        "output rate (Hz)": f"{window.output_hz:.2f}",
        "dropped frames (window)": str(window.dropped),
        "dropped frames (total)": str(window.total_dropped),
        "frames received (total)": str(window.total_received),
        "frames published (total)": str(window.total_published),
        "backend": backend,
        "model": model,
        "intrinsics": window.intrinsics_source,
        # After REP 117 marking: finite and within min_depth..max_depth.
        "valid depth (%)": "n/a" if window.valid_fraction is None else f"{100.0 * window.valid_fraction:.1f}",
        "last warning": window.last_warning,
    }
    values.update(extra or {})  # e.g. the scale anchoring's factor, source, confidence (ros/anchors)
    for stage in (*STAGES, *sorted(set(window.latency_ms) - set(STAGES))):  # optional stages (refine) too
        if stage in window.latency_ms:
            values[f"latency {stage} (ms)"] = f"{window.latency_ms[stage]:.2f}"
    if window.latency_ms:
        values["latency total (ms)"] = f"{sum(window.latency_ms.values()):.2f}"  # image received -> published
    for part, label in (("frame", "cpu inference thread per frame (ms)"), ("network", "cpu network per frame (ms)")):
        if part in window.cpu_ms:
            values[label] = f"{window.cpu_ms[part]:.2f}"
    for kind, count in sorted(window.total_problems.items()):
        values[f"problem {kind} (total)"] = str(count)
    return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                            values=[KeyValue(key=k, value=v) for k, v in values.items()])
