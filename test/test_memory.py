"""Returning a one-off large frame's memory (the node-level measurement is in test_ros_reliability)."""
import threading

from mde_ros.memory import (DEFAULT_TRIM_THRESHOLD, TRIM_FRAMES_AFTER_LARGE, LargeFrameTrim, map_large_arrays,
                            release_free_memory)


def resident_mb():
    fields = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024


def test_memory_is_returned_once_after_a_run_of_large_frames():
    calls, thresholds = [], []
    trim = LargeFrameTrim(release=lambda: calls.append(1) or True,
                          set_trim_threshold=lambda t: thresholds.append(t) or True, steady_trim_threshold=64 << 20)
    assert not trim.after_frame(640 * 480)  # nothing to compare with yet
    for _ in range(10):
        assert not trim.after_frame(640 * 480)
    assert not trim.after_frame(3840 * 2160)  # the large frame itself: tops are returned from now on
    assert thresholds == [DEFAULT_TRIM_THRESHOLD]
    assert not trim.after_frame(0)  # a rejected frame in between: still large memory around
    for _ in range(TRIM_FRAMES_AFTER_LARGE - 1):
        assert not trim.after_frame(640 * 480)
    assert trim.after_frame(640 * 480) and len(calls) == 1  # back to normal: returned once
    assert thresholds == [DEFAULT_TRIM_THRESHOLD, 64 << 20]  # and the steady threshold is back
    for _ in range(10):
        assert not trim.after_frame(640 * 480)
    for _ in range(40):  # the camera switches to 4K for good: returned once more when 4K is the normal
        trim.after_frame(3840 * 2160)
    assert len(calls) == 2 and thresholds[-1] == 64 << 20


def test_a_rejected_large_message_is_returned_at_once_and_by_the_next_frames():
    calls, thresholds = [], []
    trim = LargeFrameTrim(release=lambda: calls.append(1) or True,
                          set_trim_threshold=lambda t: thresholds.append(t) or True)
    for _ in range(5):
        trim.after_frame(640 * 480)
    assert not trim.after_frame(0, message_bytes=1000)  # a small rejected message: nothing to return
    assert trim.after_frame(0, message_bytes=144 << 20) and len(calls) == 1
    for _ in range(TRIM_FRAMES_AFTER_LARGE):
        trim.after_frame(640 * 480)
    assert len(calls) == 2 and thresholds[0] == DEFAULT_TRIM_THRESHOLD and thresholds[-1] != DEFAULT_TRIM_THRESHOLD


def test_a_thread_arenas_top_is_returned_after_a_large_frame():
    """A large frame processed in a worker thread (the node's inference thread) lands in that thread's
    arena; malloc_trim(0) does not shrink a thread arena's top (measured: 60 MB stayed), the frees of
    the next normal frames under the lowered threshold do."""
    import numpy as np

    assert map_large_arrays()
    figures = {}

    def frame(nbytes):
        arrays = [np.ones(nbytes, np.uint8) for _ in range(3)]
        return sum(int(a[0]) for a in arrays)

    def camera():
        trim = LargeFrameTrim()
        for _ in range(10):
            frame(1 << 20)
            trim.after_frame(640 * 480)
        figures["steady"] = resident_mb()
        frame(20 << 20)  # under the fixed 32 MiB mmap threshold: served by the heap
        trim.after_frame(3840 * 2160)
        for _ in range(TRIM_FRAMES_AFTER_LARGE + 2):
            frame(1 << 20)
            trim.after_frame(640 * 480)
        figures["after"] = resident_mb()

    worker = threading.Thread(target=camera)
    worker.start()
    worker.join()
    assert figures["after"] - figures["steady"] < 10, figures


def test_release_free_memory_runs_on_glibc():
    assert release_free_memory() in (True, False)
    assert release_free_memory()  # this project's machines are glibc Linux


def test_large_arrays_are_mapped_and_returned_when_freed():
    """After map_large_arrays a freed 64 MB array leaves the process at once (munmap, no trim needed).

    Checked in a fresh interpreter, as the node sets it at start: in a long test session glibc may serve the
    array from free room already at the top of its main heap (mmap is only its way to grow), which says
    nothing about the setting (1 failure in a full Python 3.10 run: the address lay in [heap])."""
    import os
    import subprocess
    import sys

    code = (
        "import numpy as np, test_memory as t\n"
        "from mde_ros.memory import map_large_arrays\n"
        "assert map_large_arrays()\n"
        "before = t.resident_mb()\n"
        "big = np.ones(64 << 20, np.uint8)\n"
        "grown = t.resident_mb() - before\n"
        "address = big.ctypes.data\n"
        "inside = t.mapped(address)\n"
        "del big\n"
        "print(grown > 60, inside, t.mapped(address), t.resident_mb() - before < 10)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.path.dirname(__file__),
                                                                       os.environ.get("PYTHONPATH")]))}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == 0, run.stderr
    grown, inside, still_mapped, returned = run.stdout.split()
    assert (grown, inside) == ("True", "True")
    assert (still_mapped, returned) == ("False", "True")  # its own mapping is gone, and so is its memory


def mapped(address: int) -> bool:
    """Whether `address` lies in one of this process's memory mappings."""
    with open("/proc/self/maps") as f:
        for line in f:
            start, end = (int(x, 16) for x in line.split()[0].split("-"))
            if start <= address < end:
                return True
    return False


def test_per_frame_buffers_are_reused_without_page_faults():
    """After map_large_arrays a 5 MB buffer freed and allocated again every frame (a 640x480 cloud's
    message copies) comes back from the heap: no fresh page faults per frame (issue 20: the trim
    threshold left at 128 KiB gave ~1200 faults, +3 ms, per published cloud)."""
    import resource

    import numpy as np

    assert map_large_arrays()
    for _ in range(3):  # the heap grows to hold it once
        np.ones(5 << 20, np.uint8)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        np.ones(5 << 20, np.uint8)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert faults < 10 * 1280 / 4, faults  # a quarter of one fault per 4 KiB page per frame


def test_the_node_selects_the_shipped_fast_dds_profile_only_where_the_user_chose_nothing():
    """DYNAMIC history memory (a large sample's buffer returned) comes with the node's default profile;
    the other cases are test_ros_delivery's."""
    from mde_ros.ros.fastdds import profile_environment

    def shipped():
        return "/share/p.xml"

    chosen, _ = profile_environment({}, shipped)
    assert chosen == {"FASTDDS_DEFAULT_PROFILES_FILE": "/share/p.xml", "FASTRTPS_DEFAULT_PROFILES_FILE": "/share/p.xml",
                      "RMW_FASTRTPS_USE_QOS_FROM_XML": "1"}
    assert profile_environment({"RMW_IMPLEMENTATION": "rmw_fastrtps_cpp"}, shipped)[0] != {}
    for environ in ({"FASTDDS_DEFAULT_PROFILES_FILE": "/mine.xml"}, {"RMW_FASTRTPS_USE_QOS_FROM_XML": "0"},
                    {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}, {"MDE_ROS_DDS_PROFILE": "0"}):
        assert profile_environment(environ, shipped)[0] == {}, environ
    assert profile_environment({}, lambda: None)[0] == {}  # profile not installed
