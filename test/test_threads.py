"""mde_ros.threads: OpenCV's pool size and the OS names of the node's threads (issue 20's CPU budget)."""
import sys
import threading

import cv2
import numpy as np
import pytest

from mde_ros.threads import name_current_thread, set_opencv_threads


@pytest.fixture
def restore_opencv_threads():
    before = cv2.getNumThreads()
    yield
    cv2.setNumThreads(before)


def test_opencv_runs_in_the_callers_thread_with_one_and_returns_to_its_default_with_zero(restore_opencv_threads):
    default = set_opencv_threads(0)
    assert default == cv2.getNumThreads() >= 1
    assert set_opencv_threads(1) == 1
    image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), np.uint8)
    expected = cv2.resize(image, (160, 128), interpolation=cv2.INTER_AREA)
    assert set_opencv_threads(3) == 3
    assert np.array_equal(cv2.resize(image, (160, 128), interpolation=cv2.INTER_AREA), expected)  # same pixels
    assert set_opencv_threads(0) == default
    with pytest.raises(ValueError, match=">= 0"):
        set_opencv_threads(-1)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="OS thread names are read from /proc")
def test_a_thread_gets_its_os_name_and_threads_it_starts_inherit_it():
    """The node benchmark finds the inference thread by this name; a pool thread started from it later
    carries the same name, which is why the bench takes the first thread so named."""
    names = {}

    def child():
        names["child"] = open(f"/proc/self/task/{threading.get_native_id()}/comm").read().strip()

    def named():
        names["ok"] = name_current_thread("mde_inference_and_more")
        names["self"] = open(f"/proc/self/task/{threading.get_native_id()}/comm").read().strip()
        started = threading.Thread(target=child)
        started.start()
        started.join()

    worker = threading.Thread(target=named)
    worker.start()
    worker.join()
    assert names == {"ok": True, "self": "mde_inference_a", "child": "mde_inference_a"}  # 15 bytes kept
    assert open(f"/proc/self/task/{threading.get_native_id()}/comm").read().strip() != "mde_inference_a"
