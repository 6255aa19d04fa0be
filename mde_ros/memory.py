"""Give a large frame's memory back to the system once it is processed (ROS-free).

glibc serves numpy's large temporaries from mmap until one is freed, then raises its mmap threshold
(up to 32 MB) and serves later ones from per-thread heaps; after a single 4K frame in a 640x480
stream those heaps keep ~300 MB that the small frames never use again (issue 9 saw 1.3 GB kept
after one 8000x6000 frame). `LargeFrameTrim` calls malloc_trim(0) after a frame much larger than the
recent ones (when the next normal frames are done), so RSS returns to the steady state; a camera that
switches to a larger resolution for good is trimmed once, when its new size has become the normal.

malloc_trim(0) returns the free chunks of every arena but shrinks the top of the main arena only: a
thread arena's top (the inference thread's, the executor's that deserialised the message) is shrunk
only by a free() in that arena once the top exceeds the trim threshold, which map_large_arrays fixes
at 64 MiB. So after a large frame the threshold goes down to glibc's default for a few normal frames
(their frees return the tops as they happen) and back up after the final trim. Measured: with the
trim alone, a 4K JPEG in a 320x240 stream left +36 MiB (a thread arena's top) in 1-2 of 4 node runs.
"""
from __future__ import annotations

import collections
import ctypes
import ctypes.util
import statistics

RECENT_FRAMES = 30
LARGE_FACTOR = 2.0  # pixels > 2 x the recent median: a one-off large frame
M_TRIM_THRESHOLD = -1  # glibc mallopt parameters
M_MMAP_THRESHOLD = -3
DEFAULT_TRIM_THRESHOLD = 128 << 10  # glibc's own: every top above it is returned at the next free
# Normal frames after a large run that run with the default trim threshold before the final trim.
TRIM_FRAMES_AFTER_LARGE = 3
# 32 MiB, glibc's own upper bound for its dynamic threshold: a 1080p frame's arrays (cloud 33.2 MB) stay
# in the heap as before (no per-frame page faults); what matters is that the threshold is fixed.
LARGE_ARRAY_BYTES = 32 << 20


def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def release_free_memory() -> bool:
    """glibc malloc_trim(0): free heap pages of every arena go back to the OS. False where unavailable."""
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is None:  # not glibc (musl, macOS)
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)
    return True


def map_large_arrays(threshold_bytes: int = LARGE_ARRAY_BYTES) -> bool:
    """Fix glibc's mmap threshold, so a one-off large frame's memory goes back to the system.

    By default glibc raises its mmap threshold (up to 32 MiB) after the first large array is freed,
    and with it the heap trim threshold (to twice that): a 4K frame's arrays then land in arena heaps
    that are never trimmed, and ~27 MiB stayed resident after one 4K JPEG in a 320x240 stream, even
    after malloc_trim. Setting the threshold (what MALLOC_MMAP_THRESHOLD_ does) stops both adjustments;
    in the same measurement RSS then ended below the steady state (8, 16 and 32 MiB alike). Call once,
    at start-up."""
    # The trim threshold too, at twice the mmap threshold (glibc's own rule when it adjusts them):
    # fixing only the mmap threshold leaves trimming at 128 KiB, so every freed per-frame buffer at
    # the heap's top (rclpy's C copy of a 4.9 MB cloud, its CDR buffer) went back to the system and
    # was faulted in again the next frame: +3 ms CPU per 640x480 cloud published (issue 20).
    # One-off large frames are still returned: LargeFrameTrim lowers it for a few frames, then trims.
    return _mallopt(M_MMAP_THRESHOLD, threshold_bytes) and set_trim_threshold(2 * int(threshold_bytes))


def set_trim_threshold(threshold_bytes: int) -> bool:
    """glibc's M_TRIM_THRESHOLD: free memory above it at the top of an arena goes back at the next free."""
    return _mallopt(M_TRIM_THRESHOLD, threshold_bytes)


def _mallopt(parameter: int, value: int) -> bool:
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is None:  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(parameter, int(value)) == 1


class LargeFrameTrim:
    """Decides after each frame whether its memory is worth returning (and returns it)."""

    def __init__(self, release=release_free_memory, set_trim_threshold=set_trim_threshold,
                 steady_trim_threshold: int = 2 * LARGE_ARRAY_BYTES) -> None:
        self._recent: collections.deque[int] = collections.deque(maxlen=RECENT_FRAMES)
        self._release = release
        self._set_trim_threshold = set_trim_threshold
        self._steady_trim_threshold = steady_trim_threshold
        self._normal_frames_left = 0  # > 0: returning a large run's memory, that many normal frames to go

    def after_frame(self, pixels: int, message_bytes: int = 0) -> bool:
        """Call when a frame's arrays are gone (pixels 0 for a rejected frame). True when this frame
        ended the return of a large run's memory (the large frames' memory is unused now).

        A rejected message of more than LARGE_ARRAY_BYTES (a 144 MB raw frame over the budget) counts
        as a large frame: its buffers and the heap pages deserialising it touched are not needed again;
        it is returned at once as well, since no normal frame may follow."""
        if pixels <= 0:
            if message_bytes <= LARGE_ARRAY_BYTES:
                return False
            self._start_returning()
            return bool(self._release())
        large = bool(self._recent) and pixels > LARGE_FACTOR * statistics.median(self._recent)
        self._recent.append(int(pixels))
        if large:
            self._start_returning()
            return False
        if self._normal_frames_left == 0:
            return False
        self._normal_frames_left -= 1
        if self._normal_frames_left:
            return False
        self._set_trim_threshold(self._steady_trim_threshold)
        return bool(self._release())

    def _start_returning(self) -> None:
        if self._normal_frames_left == 0:
            self._set_trim_threshold(DEFAULT_TRIM_THRESHOLD)
        self._normal_frames_left = TRIM_FRAMES_AFTER_LARGE
