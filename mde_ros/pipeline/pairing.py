"""Image <-> CameraInfo pairing that follows real drivers (pure Python, no ROS).

image_transport's CameraPublisher sends the image and then its CameraInfo, 10-30 ms later on a
loaded machine; other drivers send the CameraInfo first. A frame pairs with the newest CameraInfo
whose stamp is within `tolerance_s` of its own, whichever arrived first. When the image came first
the frame may wait for its CameraInfo, bounded and adaptive:

* the bound is the camera's measured lag (CameraInfo arrival - image arrival of the same stamp,
  recent worst case) x LAG_MARGIN + LAG_SLACK_S, at least MIN_WAIT_S, never more than `tolerance_s`;
  before any lag is measured it is `tolerance_s` (the first frame of a CameraPublisher pairs too).
  A lag that jumps beyond 1.5x the recent worst costs that one frame, then the bound follows it;
* no wait when waiting cannot help: no CameraInfo publisher, a CameraInfo stream silent for
  longer than STREAM_SILENCE_S (or 4 of its periods), or a CameraInfo newer than the image has
  already arrived (the image is the late side).

There is no lock-out state: every decision is made from the CameraInfos and lags seen recently,
so one missed CameraInfo costs one frame, and a stream that comes back pairs again at once.
`explain` says which side is late, and by how much, when a frame does not pair.
"""
from __future__ import annotations

import collections
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

T = TypeVar("T")
HISTORY = 16  # CameraInfos kept (about half a second at 30 Hz)
LAG_WINDOW = 16  # measured lags kept
LAG_MARGIN = 1.5
LAG_SLACK_S = 0.005
MIN_WAIT_S = 0.04  # DDS jitter on a loaded machine: never wait less for a CameraInfo that may come
STREAM_SILENCE_S = 1.0


@dataclass(frozen=True)
class _Entry(Generic[T]):
    stamp_ns: int
    arrival_s: float
    info: T


class CameraInfoPairer(Generic[T]):
    """CameraInfos by stamp and the measured image -> CameraInfo lag of one camera. Not thread-safe:
    the caller holds its lock (the node: the condition its inference thread waits on)."""

    def __init__(self, tolerance_s: float, history: int = HISTORY) -> None:
        self.tolerance_s = float(tolerance_s)
        self._infos: collections.deque[_Entry[T]] = collections.deque(maxlen=history)
        self._images: collections.OrderedDict[int, float] = collections.OrderedDict()  # stamp -> arrival
        self._lags: collections.deque[float] = collections.deque(maxlen=LAG_WINDOW)
        self._first_image_s: float | None = None

    # ---- what arrived --------------------------------------------------------------------------

    def add_info(self, stamp_ns: int, info: T, arrival_s: float) -> None:
        self._infos.append(_Entry(stamp_ns, arrival_s, info))
        image_arrival = self._images.pop(stamp_ns, None)
        if image_arrival is not None:  # this CameraInfo came after its image: a lag to learn
            self._lags.append(max(0.0, arrival_s - image_arrival))

    def add_image(self, stamp_ns: int, arrival_s: float) -> None:
        if self._first_image_s is None:
            self._first_image_s = arrival_s
        if any(entry.stamp_ns == stamp_ns for entry in self._infos):
            self._lags.append(0.0)  # CameraInfo first: no wait needed for this camera
            return
        self._images[stamp_ns] = arrival_s
        while len(self._images) > LAG_WINDOW:
            self._images.popitem(last=False)

    # ---- decisions -----------------------------------------------------------------------------

    def match(self, stamp_ns: int) -> T | None:
        """The CameraInfo with the image's own stamp (what image_transport publishers send, and what
        depth_image_proc's exact sync pairs), else the newest within tolerance (ties: last received)."""
        tolerance_ns = self.tolerance_s * 1e9
        best = None
        for entry in self._infos:
            if entry.stamp_ns == stamp_ns:
                best = entry
            elif (abs(entry.stamp_ns - stamp_ns) <= tolerance_ns and (best is None or best.stamp_ns != stamp_ns)
                  and (best is None or entry.stamp_ns >= best.stamp_ns)):
                best = entry
        return None if best is None else best.info

    def _has_exact(self, stamp_ns: int) -> bool:
        return any(entry.stamp_ns == stamp_ns for entry in self._infos)

    @property
    def measured_lag_s(self) -> float | None:
        """The recent worst CameraInfo-after-image lag, None before one was measured."""
        return max(self._lags) if self._lags else None

    def wait_bound_s(self) -> float:
        """How long after its arrival an image may wait for its CameraInfo."""
        lag = self.measured_lag_s
        if lag is None:
            return self.tolerance_s
        return min(self.tolerance_s, max(MIN_WAIT_S, lag * LAG_MARGIN + LAG_SLACK_S))

    def _info_period_s(self) -> float | None:
        arrivals = [entry.arrival_s for entry in self._infos]
        gaps = [b - a for a, b in zip(arrivals, arrivals[1:]) if b > a]
        return statistics.median(gaps) if gaps else None

    def stream_silent(self, now_s: float) -> bool:
        """No CameraInfo for STREAM_SILENCE_S (or 4 periods of the stream, when longer)."""
        period = self._info_period_s()
        silence = max(STREAM_SILENCE_S, 4 * period) if period else STREAM_SILENCE_S
        last = self._infos[-1].arrival_s if self._infos else self._first_image_s
        return last is not None and now_s - last > silence

    def wait_s(self, stamp_ns: int, image_arrival_s: float, now_s: float, publishers: int | None = None) -> float:
        """Seconds still worth waiting (from now) for this image's CameraInfo; 0 when it is here
        or cannot come. `publishers`: CameraInfo publishers in the graph, when the caller knows.

        A camera whose CameraInfos carry their image's stamp (a lag was measured) waits for that
        exact one, not for a neighbour's within tolerance; other cameras wait only while nothing
        within tolerance is here."""
        if self._has_exact(stamp_ns):
            return 0.0
        exact_camera = bool(self._lags)
        if not exact_camera and self.match(stamp_ns) is not None:
            return 0.0
        if publishers == 0 and not self._infos:
            return 0.0
        if self.stream_silent(now_s):
            return 0.0
        newer_than = stamp_ns if exact_camera else stamp_ns + self.tolerance_s * 1e9
        if any(entry.stamp_ns > newer_than for entry in self._infos):
            return 0.0  # a newer CameraInfo is already here: this image's will not come after it
        return max(0.0, image_arrival_s + self.wait_bound_s() - now_s)

    def explain(self, stamp_ns: int, waited_s: float, now_s: float) -> tuple[str, str]:
        """(problem kind, message) for an image that found no CameraInfo: which side is late, by how much."""
        if not self._infos:
            return "no_camera_info", "no CameraInfo received yet"
        tolerance = self.tolerance_s
        nearest = min(self._infos, key=lambda e: abs(e.stamp_ns - stamp_ns))
        offset = (nearest.stamp_ns - stamp_ns) * 1e-9
        newest = max(self._infos, key=lambda e: e.stamp_ns)
        lag = self.measured_lag_s
        lag_text = f"measured lag {lag * 1000:.0f} ms" if lag is not None else "no lag measured yet"
        if newest.stamp_ns > stamp_ns + tolerance * 1e9:
            return "camera_info_unsynced", (
                f"the image is late: CameraInfo stamped up to {(newest.stamp_ns - stamp_ns) * 1e-9:.3f} s after it "
                f"has already arrived, none within sync_tolerance={tolerance} s of its stamp (nearest "
                f"{offset:+.3f} s): image and CameraInfo stamps disagree or images are delayed")
        silent = now_s - self._infos[-1].arrival_s
        if self.stream_silent(now_s):
            return "camera_info_late", (
                f"CameraInfo is late: none for {silent:.1f} s (the newest is stamped {-offset:.3f} s before this "
                "image): the CameraInfo stream stopped; frames are not held for it until it resumes")
        return "camera_info_late", (
            f"CameraInfo is late: none stamped within sync_tolerance={tolerance} s of this image arrived "
            f"{waited_s * 1000:.0f} ms after it (waited up to {self.wait_bound_s() * 1000:.0f} ms, {lag_text}; "
            f"the newest is stamped {-offset:.3f} s before the image)")


@dataclass(frozen=True)
class Pairing(Generic[T]):
    info: T | None
    waited_s: float
    problem: tuple[str, str] | None  # (kind, message) from CameraInfoPairer.explain when info is None


class SyncedCameraInfos(Generic[T]):
    """A CameraInfoPairer shared by two threads: subscription callbacks add what arrives, the
    inference thread waits (bounded, see CameraInfoPairer.wait_s) and pairs. `clock` must be the
    one the caller's image arrival times come from."""

    def __init__(self, tolerance_s: float, clock: Callable[[], float] = time.perf_counter) -> None:
        self._pairer: CameraInfoPairer[T] = CameraInfoPairer(tolerance_s)
        self._changed = threading.Condition()
        self._clock = clock

    @property
    def tolerance_s(self) -> float:
        return self._pairer.tolerance_s

    @tolerance_s.setter
    def tolerance_s(self, value: float) -> None:
        with self._changed:
            self._pairer.tolerance_s = float(value)

    def add_image(self, stamp_ns: int, arrival_s: float) -> None:
        with self._changed:
            self._pairer.add_image(stamp_ns, arrival_s)

    def add_info(self, stamp_ns: int, info: T) -> None:
        with self._changed:
            self._pairer.add_info(stamp_ns, info, self._clock())
            self._changed.notify_all()

    def pair(self, stamp_ns: int, image_arrival_s: float, publishers: int | None = None) -> Pairing[T]:
        with self._changed:
            start = self._clock()
            while True:
                wait = self._pairer.wait_s(stamp_ns, image_arrival_s, self._clock(), publishers)
                if wait <= 0:
                    break
                self._changed.wait(wait)
            now = self._clock()
            info = self._pairer.match(stamp_ns)
            problem = None if info is not None else self._pairer.explain(stamp_ns, now - image_arrival_s, now)
            return Pairing(info, now - start, problem)
