"""The CPU threads of a node process: OpenCV's worker pool and the OS names of the node's own threads.

OpenCV parallelises resize and applyColorMap over a pool of one worker per core, and its workers wait
for the next job by spinning (sched_yield) for a while after each one. In the node, where a frame's few
sub-millisecond OpenCV calls are spread over 30 ms, that pool cost 1.3 ms of CPU per 640x480 frame and
saved ~0.2 ms of wall time (issue 20, README "Node CPU per frame"); the node therefore runs OpenCV in
the frame's own thread by default (`opencv_threads: 1`).

Named threads show up as such in `top -H`, py-spy and /proc/<pid>/task/*/comm, which is how the node
benchmark attributes CPU to the inference thread, the executor and Fast DDS's own threads.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

import cv2

PR_SET_NAME = 15  # linux/prctl.h
OS_NAME_BYTES = 15  # the kernel keeps 16 bytes with the terminating NUL


def set_opencv_threads(threads: int) -> int:
    """OpenCV's threads for this process: 1 runs every call in its caller's thread, n > 1 a pool of n,
    0 OpenCV's default (one per core). Returns the number OpenCV reports afterwards."""
    if threads < 0:
        raise ValueError(f"opencv threads must be >= 0, got {threads}")
    cv2.setNumThreads(threads if threads > 0 else -1)  # OpenCV: a negative value restores its default
    return cv2.getNumThreads()


def name_current_thread(name: str) -> bool:
    """Give the calling thread `name` (first 15 bytes) as its OS name on Linux; False where that is not
    possible (another OS, no libc): the name is a convenience, never required."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_NAME, name.encode()[:OS_NAME_BYTES], 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
