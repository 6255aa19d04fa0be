"""Image <-> CameraInfo pairing decisions, driven with explicit stamps and arrival times."""
import pytest

from mde_ros.pipeline.pairing import LAG_MARGIN, LAG_SLACK_S, MIN_WAIT_S, CameraInfoPairer

MS = 1_000_000  # ns


def stamp(i, period_ms=33):
    return 1_000_000_000 + i * period_ms * MS


def test_info_before_image_pairs_without_waiting():
    p = CameraInfoPairer(0.05)
    p.add_info(stamp(0), "info0", arrival_s=10.000)
    p.add_image(stamp(0), arrival_s=10.002)
    assert p.match(stamp(0)) == "info0"
    assert p.wait_s(stamp(0), 10.002, now_s=10.003) == 0.0
    assert p.measured_lag_s == 0.0


def test_image_before_info_first_frame_waits_up_to_the_tolerance_then_the_measured_lag():
    p = CameraInfoPairer(0.05)
    p.add_image(stamp(0), arrival_s=10.000)
    # Nothing known yet: the very first frame of a CameraPublisher may wait the whole tolerance.
    assert p.wait_s(stamp(0), 10.000, now_s=10.001, publishers=1) == pytest.approx(0.049)
    p.add_info(stamp(0), "info0", arrival_s=10.020)
    assert p.match(stamp(0)) == "info0" and p.measured_lag_s == pytest.approx(0.020)
    # From now on the bound follows the camera: 20 ms lag -> max(40 ms, 1.5 x 20 + 5 = 35 ms) = 40 ms
    # (DDS delivery jitter on a loaded machine: never wait less).
    assert p.wait_bound_s() == pytest.approx(max(MIN_WAIT_S, 0.020 * LAG_MARGIN + LAG_SLACK_S)) == pytest.approx(0.040)
    p.add_image(stamp(1), arrival_s=10.033)
    assert p.wait_s(stamp(1), 10.033, now_s=10.034) == pytest.approx(0.039)


@pytest.mark.parametrize("tolerance", [0.05, 0.02])
def test_every_frame_pairs_with_a_lagging_driver_and_one_missing_info_costs_one_frame(tolerance):
    p = CameraInfoPairer(tolerance)
    paired = []
    for i in range(30):
        t_image = 10 + i * 0.033
        p.add_image(stamp(i), t_image)
        lag = 0.010 + 0.010 * (i % 3)  # 10..30 ms after the image, like a loaded machine
        if tolerance < lag:
            lag = tolerance * 0.9
        deadline = t_image + p.wait_s(stamp(i), t_image, t_image, publishers=1)
        if i != 12:  # frame 12's CameraInfo is lost
            assert t_image + lag <= deadline, i  # the wait covered the lag
            p.add_info(stamp(i), f"info{i}", t_image + lag)
        paired.append(p.match(stamp(i)))
        if i == 12 and paired[-1] is None:
            kind, message = p.explain(stamp(12), waited_s=deadline - t_image, now_s=deadline)
            assert kind == "camera_info_late" and "CameraInfo is late" in message and "waited up to" in message
    expected = [f"info{i}" for i in range(30)]
    # 33 ms apart: within 50 ms the neighbour's CameraInfo stands in; within 20 ms nothing does.
    expected[12] = "info11" if tolerance > 0.033 else None
    assert paired == expected


def test_no_wait_without_publishers_after_silence_or_when_the_image_is_late():
    p = CameraInfoPairer(0.05)
    p.add_image(stamp(0), 10.0)
    assert p.wait_s(stamp(0), 10.0, 10.0, publishers=0) == 0.0
    assert p.explain(stamp(0), 0.0, 10.0)[0] == "no_camera_info"
    p.add_info(stamp(5), "newer", 10.1)  # a CameraInfo 165 ms newer than the image is already here
    p.add_image(stamp(1), 10.11)
    assert p.wait_s(stamp(1), 10.11, 10.11) == 0.0
    kind, message = p.explain(stamp(1), 0.0, 10.11)
    assert kind == "camera_info_unsynced" and "the image is late" in message and "0.132 s" in message
    # The stream stops: after a second of silence frames are not held, and the message says so...
    p.add_image(stamp(40), 11.5)
    assert p.stream_silent(11.5) and p.wait_s(stamp(40), 11.5, 11.5, publishers=1) == 0.0
    assert "stream stopped" in p.explain(stamp(40), 0.0, 11.5)[1]
    # ...and the first CameraInfo after it makes frames wait (and pair) again: no lock-out.
    p.add_image(stamp(41), 11.6)
    p.add_info(stamp(41), "back", 11.62)
    p.add_image(stamp(42), 11.633)
    assert not p.stream_silent(11.633) and p.wait_s(stamp(42), 11.633, 11.633) > 0
    p.add_info(stamp(42), "paired", 11.65)
    assert p.match(stamp(42)) == "paired"


def test_match_takes_the_newest_stamp_within_tolerance():
    p = CameraInfoPairer(0.05)
    for i, name in ((0, "a"), (1, "b"), (3, "far")):
        p.add_info(stamp(i), name, 10 + i)
    assert p.match(stamp(1) + 10 * MS) == "b"
    assert p.match(stamp(1) + 5 * MS) == "b"  # 'far' is 61 ms away: outside
    assert p.match(stamp(0) + 20 * MS) == "b"  # two within tolerance: the newer
    assert p.match(stamp(1) + 20 * MS) == "far"
    p.tolerance_s = 0.0
    assert p.match(stamp(2)) is None and p.match(stamp(3)) == "far"


def test_a_camera_with_exact_stamps_waits_for_its_own_info_not_the_previous_frames():
    p = CameraInfoPairer(0.05)
    p.add_image(stamp(0), 10.0)
    p.add_info(stamp(0), "info0", 10.02)
    p.add_image(stamp(1), 10.033)  # 33 ms later: info0 is within tolerance, but info1 is coming
    assert p.match(stamp(1)) == "info0"
    assert p.wait_s(stamp(1), 10.033, 10.034) > 0
    p.add_info(stamp(1), "info1", 10.05)
    assert p.match(stamp(1)) == "info1" and p.wait_s(stamp(1), 10.033, 10.05) == 0.0


def test_synced_infos_let_a_waiting_thread_pair_with_an_info_that_arrives_later():
    import threading
    import time

    from mde_ros.pipeline.pairing import SyncedCameraInfos

    sync = SyncedCameraInfos(1.0)  # far above the 30 ms: a stalled timer thread (loaded CI) still pairs
    arrival = time.perf_counter()
    sync.add_image(stamp(0), arrival)
    late = threading.Timer(0.03, lambda: sync.add_info(stamp(0), "info0"))
    late.start()
    pairing = sync.pair(stamp(0), arrival, publishers=1)
    late.join()
    assert pairing.info == "info0" and pairing.problem is None and 0.02 < pairing.waited_s < 1.0
    # The next frame's CameraInfo never comes: the wait is bounded by the measured lag, then explained.
    arrival = time.perf_counter()
    sync.add_image(stamp(1), arrival)
    pairing = sync.pair(stamp(1), arrival, publishers=1)
    assert pairing.info == "info0"  # 33 ms away: the neighbour stands in within the tolerance
    sync.tolerance_s = 0.01
    arrival = time.perf_counter()
    sync.add_image(stamp(2), arrival)
    pairing = sync.pair(stamp(2), arrival, publishers=1)
    assert pairing.info is None and pairing.problem[0] == "camera_info_late"
    assert pairing.waited_s <= 0.01 + 0.05
    assert MIN_WAIT_S <= 0.05
