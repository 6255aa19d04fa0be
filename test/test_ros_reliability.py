"""The node under real camera traffic (issue 9): real rclpy publishers, short bursts, small images.

CameraInfo pairing with lagging drivers, the per-frame budget, diagnostics that tell the truth,
sender-controlled text, corrupt/odd compressed images, unknown parameters, bounded memory.
"""
import os
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from sensor_msgs.msg import CompressedImage

from mde_ros.models.card import ModelCard
from mde_ros.processes import interrupt
from test_pipeline_imagecodec import big_black_png
from test_ros_node import (FX, HEIGHT, ROOT, WIDTH, PlaneBackend, Rig, bad_image, image_msg,
                           info_msg, seconds_of, stamp_of, tiny_onnx_model, wait_for)

DEPTH = "depth/image"


@pytest.fixture
def rig(rclpy_context, request):
    rigs = []

    def make(**kwargs):
        rigs.append(Rig(rclpy_context, f"r_{request.node.name[5:25]}_{len(rigs)}".replace("[", "_").replace("]", "")
                        .replace("-", "_"), **kwargs))
        return rigs[-1]
    yield make
    for r in rigs:
        r.close()


def compressed(t, data, image_format, frame_id="camera_optical_frame"):
    msg = CompressedImage(format=image_format, data=data)
    msg.header.stamp, msg.header.frame_id = stamp_of(t), frame_id
    return msg


def last_values(r, predicate):
    status = r.diagnostics(lambda values: predicate(values))
    return status, {kv.key: kv.value for kv in status.values}


# ---- pairing ---------------------------------------------------------------------------------------

def retried_once(body, rig) -> None:
    """Run a live pairing check; after a failure, once more on a fresh node (the failure is printed).

    These checks time the node's bounded wait for a CameraInfo against deliveries 20-40 ms apart, with the
    node in the test process: in 3 of 6 full suite runs on 2026-12-07 (and once in ~35 runs of these two
    tests alone) the test process stalled 0.25-1 s between an image and its CameraInfo and the wait
    expired, as it should. A retry keeps the check (two failures fail it) without the stall's noise."""
    try:
        body(rig)
    except AssertionError as exc:
        print(f"first attempt failed, retried once on a fresh node: {str(exc)[:300]}")
        body(rig)


def test_camera_info_after_its_image_pairs_every_frame_from_the_first(rig):
    """image_transport's CameraPublisher order (image, then CameraInfo 20 ms later) from frame one."""
    retried_once(_camera_info_after_its_image, rig)


def _camera_info_after_its_image(rig) -> None:
    r = rig(params={"sync_tolerance": 0.2})  # stamps 0.25 s apart: no neighbour can stand in;
    # 0.2 s: a loaded 2-core machine (Python 3.10 run) once delivered a 20 ms-late CameraInfo 123 ms late
    r.exchange(0.2, info=None)  # discovery done; no CameraInfo seen yet
    stamps = [1.0 + 0.25 * i for i in range(10)]
    for i, t in enumerate(stamps):  # each frame's own fx, so a neighbour's CameraInfo would show
        r.image_pub.publish(image_msg(t))
        time.sleep(0.02)
        r.info_pub.publish(info_msg(t, fx=FX + i))
        time.sleep(0.2)  # a frame period the node keeps up with on a loaded 2-core machine (queue depth 1)
    wait_for(lambda: all(r.with_stamp("depth/camera_info", t) for t in stamps))
    assert [r.with_stamp("depth/camera_info", t)[-1].k[0] for t in stamps] == [FX + i for i in range(10)]
    wait_for(lambda: all(r.with_stamp("points", t) for t in stamps))  # published after depth/camera_info
    # ... and the other order (CameraInfo first) pairs as well.
    for i, t in enumerate(s + 3.0 for s in stamps):
        r.publish(image_msg(t), info_msg(t, fx=FX + 20 + i))
        time.sleep(0.2)
    wait_for(lambda: all(r.with_stamp("depth/camera_info", s + 3.0) for s in stamps))
    assert not r.problems()["camera_info_late"]


def test_one_lost_camera_info_costs_one_frame_and_the_message_names_the_late_side(rig):
    retried_once(_one_lost_camera_info, rig)


def _one_lost_camera_info(rig) -> None:
    r = rig(params={"sync_tolerance": 0.2})
    r.exchange(0.2, need=("points",))
    for t in (0.4, 0.6, 0.8):  # the camera's CameraInfo comes 40 ms after its image: the node learns that lag
        r.image_pub.publish(image_msg(t))
        time.sleep(0.04)
        r.info_pub.publish(info_msg(t))
        time.sleep(0.1)
    wait_for(lambda: r.with_stamp("points", 0.8))  # (the first 40 ms lag, beyond a 20 ms bound, cost 0.4)
    late_before = r.problems()["camera_info_late"]
    stamps = [1.0 + 0.25 * i for i in range(10)]
    for i, t in enumerate(stamps):
        r.image_pub.publish(image_msg(t))  # image first, its CameraInfo right after (a CameraPublisher)
        if i != 4:  # this CameraInfo is lost
            r.info_pub.publish(info_msg(t))
        time.sleep(0.35)  # longer than the lost frame's bounded wait: a frame period the node keeps up with on a loaded 2-core machine (queue depth 1)
    wait_for(lambda: all(r.with_stamp(DEPTH, t) for t in stamps))
    wait_for(lambda: all(r.with_stamp("points", t) for i, t in enumerate(stamps) if i != 4))
    assert not r.with_stamp("points", stamps[4]) and not r.with_stamp("depth/camera_info", stamps[4])
    assert r.problems()["camera_info_late"] == late_before + 1
    _, values = last_values(r, lambda v: "CameraInfo is late" in v["last warning"])
    assert "waited up to" in values["last warning"]

    # The other side: an image stamped 0.5 s before the CameraInfos that already arrived.
    r.info_pub.publish(info_msg(4.0))
    time.sleep(0.05)
    r.image_pub.publish(image_msg(3.5))
    wait_for(lambda: r.with_stamp(DEPTH, 3.5))
    assert r.problems()["camera_info_unsynced"] == 1
    last_values(r, lambda v: "the image is late" in v["last warning"])


# ---- budget ----------------------------------------------------------------------------------------

def test_frames_over_the_budget_are_rejected_before_decoding(rig):
    r = rig(transport="compressed")
    png = cv2.imencode(".png", np.zeros((HEIGHT, WIDTH, 3), np.uint8))[1].tobytes()
    r.exchange(0.5, image=compressed(0.5, png, "png"))
    huge = compressed(1.0, big_black_png(8000, 6000), "png")  # 144 MB of pixels in ~140 KB
    r.publish(huge)
    wait_for(lambda: r.problems()["over_budget"] == 1)  # from the header, never decoded (memory: see below)
    assert not r.with_stamp(DEPTH, 1.0)
    _, values = last_values(r, lambda v: "budget" in v["last warning"])
    assert "8000x6000" in values["last warning"] and "budget.max_pixels" in values["last warning"]
    r.exchange(1.5, image=compressed(1.5, png, "png"))  # and the next good frame goes through


def test_budget_parameters_limit_raw_frames_and_outputs(rig):
    r = rig(params={"budget.max_output_bytes": 10_000})
    r.publish(bad_image(1.0, width=8000, height=6000, step=24000))  # a header that claims 144 MB
    wait_for(lambda: r.problems()["over_budget"] == 1)
    r.publish(image_msg(2.0), info_msg(2.0))  # 64x48 with every output: ~70 KB > 10 KB
    wait_for(lambda: r.problems()["over_budget"] == 2)
    assert not r.with_stamp(DEPTH, 2.0)
    assert r.node.set_parameters([rclpy_parameter("budget.max_output_bytes", 0)])[0].successful  # 0: no limit
    r.exchange(3.0)
    assert r.node.set_parameters([rclpy_parameter("budget.max_pixels", 1000)])[0].successful
    r.publish(image_msg(4.0), info_msg(4.0))
    wait_for(lambda: r.problems()["over_budget"] == 3)


def rclpy_parameter(name, value):
    from rclpy.parameter import Parameter
    return Parameter(name, value=value)


# ---- diagnostics -----------------------------------------------------------------------------------

def test_diagnostics_count_valid_depth_after_marking_and_turn_error_when_none_is(rig):
    r = rig(backend=PlaneBackend(depth_m=50.0))  # beyond the card's 10 m: every pixel +Inf
    r.exchange(1.0)
    status, values = last_values(r, lambda v: v["valid depth (%)"] != "n/a")
    assert values["valid depth (%)"] == "0.0"
    assert status.level == DiagnosticStatus.ERROR and "only 0.0 % of depth pixels are valid" in status.message


def test_an_implausible_focal_length_is_an_error_naming_k(rig):
    card = ModelCard(name="rescale-card", architecture="external", input_height=24, input_width=32,
                     min_depth=0.1, max_depth=10.0, train_focal_px=20.0)
    r = rig(card=card)
    r.exchange(1.0, need=("points",), info=info_msg(1.0, fx=1.0, fy=1.0))
    # A status published after the frame was counted: one sent while its outputs were on the way (before
    # the node recorded the frame's findings) may still arrive after them (1 OK status in a full run).
    status, _ = last_values(r, lambda v: int(v["frames published (total)"]) >= 1)
    assert status.level == DiagnosticStatus.ERROR
    assert "rescale factor" in status.message and "fx=1 (K[0])" in status.message


# Large messages (16 MB of D, 1 MB strings) need reliable QoS here: this machine's Fast DDS drops
# best-effort samples over ~512 KB on loopback.
BIG = {"qos.reliability": "reliable"}


def test_camera_info_problems_are_named_per_field_and_bounded(rig):
    r = rig(params=BIG)
    r.exchange(0.5, need=("points",))
    nan_cx = info_msg(1.0, cx=float("nan"))
    r.publish(image_msg(1.0), nan_cx)
    wait_for(lambda: r.problems()["camera_info_invalid"] == 1)
    _, values = last_values(r, lambda v: "cx=nan" in v["last warning"])
    assert "fx" not in values["last warning"].split("CameraInfo")[1].split(";")[0]

    huge_d = info_msg(2.0)
    huge_d.d = np.zeros(2_000_000)
    r.info_pub.publish(huge_d)  # 16 MB: may take a while to arrive on a loaded machine

    def image_paired_with_it():
        r.image_pub.publish(image_msg(2.0))
        time.sleep(0.2)
        return r.problems()["camera_info_invalid"] >= 2
    wait_for(image_paired_with_it, timeout=30)
    wait_for(lambda: r.with_stamp(DEPTH, 2.0))
    assert not r.with_stamp("depth/camera_info", 2.0)  # never copied into our output
    _, values = last_values(r, lambda v: "2000000 values" in v["last warning"])
    assert len(values["last warning"]) < 300


def test_sender_strings_are_cut_before_logs_diagnostics_and_outputs(rig):
    r = rig(params=BIG)
    r.exchange(0.5)
    r.publish(bad_image(1.0, encoding="e" * 1_000_000))
    wait_for(lambda: r.problems()["bad_image"] == 1)
    status, values = last_values(r, lambda v: "1000000 characters" in v["last warning"])
    assert len(values["last warning"]) < 400
    assert all(len(kv.value) < 1000 for kv in status.values) and len(status.message) < 1000
    r.publish(image_msg(2.0, frame_id="f" * 1_000_000), info_msg(2.0))
    wait_for(lambda: r.problems()["bad_image"] == 2)
    assert not r.with_stamp(DEPTH, 2.0)


# ---- compressed input ------------------------------------------------------------------------------

def test_compressed_format_is_honoured_and_corrupt_images_are_rejected_quietly(rig, capfd):
    r = rig(transport="compressed")
    smooth = np.dstack([*np.meshgrid(np.arange(WIDTH) * 4, np.arange(HEIGHT) * 5), np.full((HEIGHT, WIDTH), 90)])
    jpeg = cv2.imencode(".jpg", smooth.astype(np.uint8))[1].tobytes()
    r.exchange(0.5, image=compressed(0.5, jpeg, "bgr8; jpeg compressed bgr8"))
    depth16 = cv2.imencode(".png", np.full((HEIGHT, WIDTH), 1500, np.uint16))[1].tobytes()
    damaged = bytearray(jpeg)
    start = jpeg.index(b"\xff\xda") + 20
    damaged[start:start + 40] = b"\xff\xd0" * 20
    cases = [
        (compressed(1.0, depth16, "16UC1; png compressed"), "not an 8-bit colour"),
        (compressed(1.1, depth16, "png"), "16-bit greyscale PNG"),
        (compressed(1.2, cv2.imencode(".bmp", smooth.astype(np.uint8))[1].tobytes(), "bmp"), "not JPEG or PNG"),
        (compressed(1.3, jpeg[: len(jpeg) // 2], "jpeg"), "truncated JPEG"),
    ] + [(compressed(2.0 + 0.1 * i, bytes(damaged), "jpeg"), "Corrupt JPEG") for i in range(5)]
    for count, (msg, expected) in enumerate(cases, start=1):
        r.publish(msg)
        wait_for(lambda: r.problems()["bad_image"] == count)
        last_values(r, lambda v: expected in v["last warning"])
        assert not r.with_stamp(DEPTH, seconds_of(msg.header))
    # libjpeg's own stderr line is captured: only the node's throttled warning may mention it.
    err = capfd.readouterr().err
    assert err.count("Corrupt JPEG data") <= 1, err


# ---- configuration ---------------------------------------------------------------------------------

def test_misspelt_parameters_are_warned_about_at_start_up(rig, capfd):
    rig(params={"cloud.decimaton": 2, "scan.range_mx": 3.0})
    err = capfd.readouterr().err
    assert "unknown parameter 'cloud.decimaton' ignored: did you mean cloud.decimation?" in err
    assert "did you mean scan.range_max?" in err


def test_a_params_file_for_another_node_is_warned_about(tmp_path):
    model = tiny_onnx_model(tmp_path, 2.0)
    params = tmp_path / "other.yaml"
    params.write_text("other_node:\n  ros__parameters:\n    cloud:\n      decimation: 2\n")
    process = subprocess.Popen([sys.executable, "-m", "mde_ros.ros.depth_node", "--ros-args", "--params-file",
                                str(params), "-p", f"model:={model}", "-p", "backend:=onnxruntime",
                                "-r", "__ns:=/paramfile"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=dict(os.environ))
    try:
        output = ""
        deadline = time.monotonic() + 40
        while "has no entry for this node" not in output and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            output += line
        assert "has no entry for this node (/paramfile/mde_depth)" in output, output
        assert "other_node" in output
    finally:
        interrupt(process)


# ---- memory ----------------------------------------------------------------------------------------

def node_memory_mb(pid):
    """(resident, peak resident) MiB of a process, from /proc. Resident leaves out shared memory
    (RssShmem): the Fast DDS profile's shared-memory segment is a fixed, configured size (64 MiB,
    config/fastdds_large_data.xml) whose pages a large sample touches once; it is not frame memory held."""
    status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status").read().splitlines() if ":" in line)
    shared = int(status.get("RssShmem", "0 kB").split()[0])
    return (int(status["VmRSS"].split()[0]) - shared) / 1024, int(status["VmHWM"].split()[0]) / 1024


def test_memory_returns_to_the_steady_state_after_rejected_and_accepted_large_frames(rclpy_context, tmp_path):
    """The node process measured from outside: a 140 KB 8000x6000 PNG is rejected at its header (no
    growth at all); a 4K JPEG is processed and its memory returned once the next frames are done.

    The node returns its own memory (mde_ros.memory); Fast DDS's sample pools shrink only with the
    shipped config/fastdds_low_memory.xml (DYNAMIC history memory), which this node process uses.
    """
    from mde_ros.resources import default_model_path

    profile = str(ROOT / "config" / "fastdds_low_memory.xml")
    env = {**os.environ, "FASTDDS_DEFAULT_PROFILES_FILE": profile, "FASTRTPS_DEFAULT_PROFILES_FILE": profile,
           "RMW_FASTRTPS_USE_QOS_FROM_XML": "1"}

    process = subprocess.Popen([sys.executable, "-m", "mde_ros.ros.depth_node", "--ros-args", "-r", "__ns:=/mem",
                                "-p", f"model:={default_model_path()}", "-p", "backend:=onnxruntime",
                                "-p", "image_transport:=compressed", "-p", "qos.reliability:=reliable",
                                "-p", "publish.points:=false",
                                "-p", "publish.scan:=false", "-p", "publish.colorized:=false"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        r = Rig(rclpy_context, "mem", local_node=False, transport="compressed", discovery_timeout=40.0,
                alive=lambda: process.poll() is None)
        rng = np.random.default_rng(0)
        small = cv2.imencode(".jpg", rng.integers(0, 255, (240, 320, 3), dtype=np.uint8))[1].tobytes()
        large = cv2.imencode(".jpg", rng.integers(0, 255, (2160, 3840, 3), dtype=np.uint8))[1].tobytes()
        huge = big_black_png(8000, 6000)
        t = 1.0
        for _ in range(8):
            r.exchange(t, image=compressed(t, small, "jpeg"), info=None)
            t += 1
        steady, steady_peak = node_memory_mb(process.pid)
        for _ in range(3):  # rejected: no output to wait for, so give each its own moment
            r.publish(compressed(t, huge, "png"))
            time.sleep(0.5)
            t += 1
        r.exchange(t, image=compressed(t, small, "jpeg"), info=None)
        t += 1
        rejected, rejected_peak = node_memory_mb(process.pid)
        r.publish(compressed(t, large, "jpeg"))  # once: 4K takes a few seconds on a loaded machine
        wait_for(lambda: r.with_stamp(DEPTH, t), timeout=60)
        t += 1
        large_peak = node_memory_mb(process.pid)[1]
        for _ in range(8):
            r.exchange(t, image=compressed(t, small, "jpeg"), info=None)
            t += 1
        after = node_memory_mb(process.pid)[0]
        r.close()
    finally:
        interrupt(process)
    figures = dict(steady=steady, steady_peak=steady_peak, rejected=rejected, rejected_peak=rejected_peak,
                   large_peak=large_peak, after=after)
    print("node memory (MiB):", {k: round(v, 1) for k, v in figures.items()})  # README figures (pytest -s)
    # Rejected frames cost no more than their message: the peak does not move beyond noise.
    assert rejected_peak - steady_peak < 20, figures
    assert rejected - steady < 20, figures
    # A 4K frame takes what it needs (hundreds of MB), then the process returns to the steady state.
    assert large_peak - steady_peak > 100, figures
    assert after - steady < 20, str(figures)


def test_a_refused_huge_raw_frame_and_frames_of_random_sizes_leave_no_memory_held(rclpy_context):
    """Issue 22: a 144 MB raw rgb8 8000x6000 frame (over budget.max_message_bytes) once kept +138 MiB for
    the life of the process, and frames of varying sizes left +150..320 MiB after returning to 640x480.
    Now the refused message leaves < 10 MiB, 100 random sizes end within 20 MiB of the steady state."""
    from sensor_msgs.msg import Image

    from mde_ros.resources import default_model_path

    # The node's own default (no profile in the environment): it selects the shipped Fast DDS profile.
    env = {k: v for k, v in os.environ.items() if "PROFILES_FILE" not in k and k != "RMW_FASTRTPS_USE_QOS_FROM_XML"}
    process = subprocess.Popen([sys.executable, "-m", "mde_ros.ros.depth_node", "--ros-args", "-r", "__ns:=/mem2",
                                "-p", f"model:={default_model_path()}", "-p", "backend:=onnxruntime",
                                "-p", "qos.reliability:=reliable", "-p", "publish.points:=false",
                                "-p", "publish.scan:=false", "-p", "publish.colorized:=false"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)

    def raw(t, width, height, rng):
        msg = Image(height=height, width=width, encoding="rgb8", step=width * 3)
        msg.header.stamp, msg.header.frame_id = stamp_of(t), "camera_optical_frame"
        msg.data = rng.integers(0, 255, width * height * 3, dtype=np.uint8).tobytes()
        return msg

    try:
        r = Rig(rclpy_context, "mem2", local_node=False, discovery_timeout=40.0, alive=lambda: process.poll() is None)
        rng = np.random.default_rng(1)
        t = 1.0
        for _ in range(8):
            r.exchange(t, image=raw(t, 320, 240, rng), info=None)
            t += 1
        steady = node_memory_mb(process.pid)[0]
        huge = Image(height=6000, width=8000, encoding="rgb8", step=24000)
        huge.header.stamp, huge.header.frame_id = stamp_of(t), "camera_optical_frame"
        huge.data = bytes(144_000_000)
        r.publish(huge)
        del huge
        time.sleep(3.0)  # 144 MB over loopback, then refused: no output to wait for
        t += 1
        for _ in range(3):
            r.exchange(t, image=raw(t, 320, 240, rng), info=None)
            t += 1
        refused = node_memory_mb(process.pid)[0]
        for _ in range(100):
            width, height = int(rng.integers(16, 1281)), int(rng.integers(16, 961))
            r.exchange(t, image=raw(t, width, height, rng), info=None)
            t += 1
        for _ in range(8):
            r.exchange(t, image=raw(t, 320, 240, rng), info=None)
            t += 1
        after = node_memory_mb(process.pid)[0]
        r.close()
    finally:
        interrupt(process)
    figures = dict(steady=steady, refused=refused, after_random=after)
    print("node memory (MiB):", {k: round(v, 1) for k, v in figures.items()})
    assert refused - steady < 10, figures
    assert after - steady < 20, figures


@pytest.mark.parametrize("signum", [2, 15])  # SIGINT, SIGTERM
def test_the_node_stops_on_a_signal_while_frames_flow_without_a_traceback_or_a_late_publish(rclpy_context, signum):
    """Issue 22: a clean SIGINT/SIGTERM while frames flowed logged "frame skipped: RCLError ... context is
    invalid" in 8 of 12 runs (the inference thread publishing after rclpy's handler ended the context)."""
    import signal
    import threading

    from mde_ros.resources import default_model_path

    process = subprocess.Popen([sys.executable, "-m", "mde_ros.ros.depth_node", "--ros-args", "-r",
                                f"__ns:=/stop{signum}", "-p", f"model:={default_model_path()}",
                                "-p", "backend:=onnxruntime", "-p", "qos.reliability:=reliable"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    streaming = threading.Event()
    try:
        r = Rig(rclpy_context, f"stop{signum}", local_node=False, discovery_timeout=40.0,
                alive=lambda: process.poll() is None)
        r.exchange(1.0, need=("depth/image", "points"))

        def stream():
            t = 2.0
            while not streaming.is_set():
                r.publish(image_msg(t), info_msg(t))
                t += 0.05
                time.sleep(0.02)  # faster than the node: a frame is always in flight
        thread = threading.Thread(target=stream, daemon=True)
        thread.start()
        time.sleep(1.0)
        process.send_signal(signum)
        output, _ = process.communicate(timeout=30)
        streaming.set()
        thread.join(timeout=5)
        r.close()
    finally:
        streaming.set()
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output[-3000:]
    assert "Traceback" not in output and "context is invalid" not in output and "frame skipped" not in output, \
        output[-3000:]
    assert signal.Signals(signum).name in ("SIGINT", "SIGTERM")
