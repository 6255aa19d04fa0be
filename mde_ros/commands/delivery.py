"""`mde-ros bench --sections delivery`: do the node's outputs and its camera input arrive over real DDS?

Every role is its own process, as deployed, so samples cross the real transport (Fast DDS shared
memory / UDP loopback), not rclpy's intra-process path:

- `node` plays the node's publishers: depth/image, points and scan at 15 Hz with its publisher QoS
  (mde_ros.ros.qos.publisher_qos) and its default output settings (an obstacle-sized cloud), plus the
  full organised xyzrgb cloud on points_full (what cloud.decimation 1, cloud.organized true, cloud.rgb
  true give; up to 640x480);
- `camera` publishes image_raw twice: reliable (realsense-ros, most drivers: the system default) and
  best effort (sensor-data drivers);
- a `reliable` subscriber (reliable, keep last 10: rclcpp's default QoS, RViz, depth_image_proc, rosbag2;
  SYSTEM_DEFAULT reliability, as depthimage_to_laserscan asks, is a best-effort reader on Fast DDS);
- a `sensor_data` subscriber (rclpy's qos_profile_sensor_data: best effort, keep last 5: nav2's
  obstacle and voxel layers);
- `node_input` subscribers with the node's own image subscription QoS (qos.* defaults: reliable, keep
  last 1), and with `qos.reliability: best_effort`.

Each subscriber counts the distinct frames it got per topic (raw subscriptions: no deserialisation);
the table prints delivered / sent, per size and per choice of which processes run with the shipped
profile (PROFILE_ROLES). Goal (issue 18): >= 95 % to both kinds of subscriber at 15 Hz 640x480 with
the launch file's defaults (the `node` choice).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

from mde_ros.processes import interrupt

PROFILE_FILE = "fastdds_large_data.xml"  # mde_ros.ros.fastdds.PROFILE_FILE
RATE_HZ = 15.0
SIZES = ((640, 480), (1280, 720))
OUTPUT_TOPICS = ("depth/image", "points", "points_full", "scan")
CAMERA_TOPICS = ("camera_reliable/image_raw", "camera_best_effort/image_raw")
SUBSCRIBERS = ("reliable", "sensor_data", "node_input", "node_input_best_effort")
MATCH_TIMEOUT_S = 10.0
# points_full only up to 640x480: 1280x720's is 29.5 MB a frame, more than a loaded 2-core machine copies at
# 15 Hz next to everything else (the publishers fell seconds behind and took every other row with them).
FULL_CLOUD_MAX_PIXELS = 640 * 480
DRAIN_S = 2.0  # after the last frame: reliable retransmissions finish


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("delivery section")
    from mde_ros.argtypes import int_range

    group.add_argument("--delivery-frames", type=int_range(1), default=60, help="frames per run (at 15 Hz)")
    group.add_argument("--delivery-sizes", default=",".join(f"{w}x{h}" for w, h in SIZES),
                       help="comma-separated WIDTHxHEIGHT list")
    group.add_argument("--delivery-profiles", default="none,node,all",
                       help="comma-separated: which processes use config/fastdds_large_data.xml: none, node "
                            "(the depth node's process: the launch file's default), all")


def profile_env(use: str, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of one process: `node` as the depth node selects it for itself (the shipped profile
    and its XML history policies), `transport` the profile file only (what the README tells the other
    processes to export), `none` every profile variable removed (stock Fast DDS)."""
    from mde_ros.ros import fastdds

    env = dict(os.environ if environ is None else environ)
    for name in (*fastdds.PROFILE_VARIABLES, fastdds.XML_QOS, fastdds.PROFILE_ENV):
        env.pop(name, None)
    if use in ("node", "transport"):
        env.update(fastdds.profile_environment({**env, fastdds.PROFILE_ENV: "true"})[0])
    if use == "transport":
        env.pop(fastdds.XML_QOS, None)
    return env


# ---- the roles, each in its own process ---------------------------------------------------------------

def _subscriber_qos(kind: str):
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

    from mde_ros.ros.qos import subscription_qos

    if kind == "reliable":
        return QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)  # rclcpp's default QoS
    if kind == "sensor_data":
        return qos_profile_sensor_data
    if kind == "node_input_best_effort":
        return subscription_qos("best_effort", 1)  # the node with qos.reliability: best_effort
    from mde_ros.ros.parameters import SPECS

    return subscription_qos(SPECS["qos.reliability"].default, 1)  # the node's image subscription


def _stamp_sec(serialized: bytes) -> int:
    """header.stamp.sec of a serialized Image / PointCloud2 / LaserScan: the first field after the
    4-byte CDR encapsulation header (little-endian int32), read without deserializing the message."""
    return int.from_bytes(serialized[4:8], "little" if serialized[1] == 1 else "big", signed=True)


def subscribe(kind: str, namespace: str) -> int:
    """Count distinct stamps per topic until SIGINT; print {topic: count} as JSON.

    Raw (serialized) subscriptions: the count measures the transport, not how fast Python turns a
    10 MB cloud into a message object on a loaded machine.
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from sensor_msgs.msg import Image, LaserScan, PointCloud2

    rclpy.init()
    node = rclpy.create_node(f"delivery_{kind}", namespace=namespace)
    stamps: dict[str, set[int]] = {}
    types = {"depth/image": Image, "points": PointCloud2, "points_full": PointCloud2, "scan": LaserScan}
    topics = dict.fromkeys(CAMERA_TOPICS, Image) if kind.startswith("node_input") else types
    for topic, msg_type in topics.items():
        stamps[topic] = set()
        node.create_subscription(msg_type, topic, lambda data, t=topic: stamps[t].add(_stamp_sec(data)),
                                 _subscriber_qos(kind), raw=True)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    print(json.dumps({topic: len(seen) for topic, seen in stamps.items()}), flush=True)
    return 0


def _frame_messages(role: str, width: int, height: int):
    """{topic: message} for one frame: the node's outputs built as the node builds them (its default
    output settings), or the camera's two image topics."""
    import math

    from std_msgs.msg import Header

    from mde_ros.pipeline.outputs import pack_image
    from mde_ros.ros import messages
    from mde_ros.synthetic import render_frame

    frame = render_frame(3, width, height)
    header = Header(frame_id="camera_color_optical_frame")
    if role == "camera":
        return {topic: messages.image_msg(pack_image(frame.rgb, "rgb8"), header) for topic in CAMERA_TOPICS}
    from mde_ros.pipeline.geometry import depth_to_scan, pack_cloud
    from mde_ros.ros.parameters import SPECS

    default = {name: spec.default for name, spec in SPECS.items()}
    cloud = pack_cloud(frame.depth, frame.intrinsics, frame.rgb if default["cloud.rgb"] else None,
                       default["cloud.decimation"], default["cloud.min_range"],
                       default["cloud.max_range"] or math.inf, default["cloud.organized"])
    scan = depth_to_scan(frame.depth, frame.intrinsics, default["scan.scan_height"], default["scan.range_min"],
                         default["scan.range_max"])
    outputs = {"depth/image": messages.image_msg(pack_image(frame.depth, "32FC1"), header),
               "points": messages.point_cloud_msg(cloud, header),
               "scan": messages.laser_scan_msg(scan, header, default["scan.scan_time"])}
    if width * height <= FULL_CLOUD_MAX_PIXELS:
        outputs["points_full"] = messages.point_cloud_msg(pack_cloud(frame.depth, frame.intrinsics, frame.rgb), header)
    return outputs


def publish(role: str, namespace: str, width: int, height: int, frames: int, subscribers: int) -> int:
    """Wait for the subscribers, publish `frames` frames at 15 Hz (stamp.sec = frame number), drain.

    role node: the node's outputs with its publisher QoS; role camera: image_raw reliable (realsense-ros
    and most drivers: the system default) and best effort (sensor-data drivers)."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

    from mde_ros.ros.parameters import SPECS
    from mde_ros.ros.qos import publisher_qos

    rclpy.init()
    node = rclpy.create_node(f"delivery_{role}", namespace=namespace)
    messages = _frame_messages(role, width, height)
    if role == "camera":
        qos = {CAMERA_TOPICS[0]: QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE),
               CAMERA_TOPICS[1]: qos_profile_sensor_data}
    else:
        qos = dict.fromkeys(messages, publisher_qos(SPECS["qos.depth"].default))
    pubs = {topic: node.create_publisher(type(msg), topic, qos[topic]) for topic, msg in messages.items()}
    # A reliable subscription does not match a best-effort publisher: wait for the first camera topic only.
    waited = [CAMERA_TOPICS[0]] if role == "camera" else list(messages)
    deadline = time.monotonic() + MATCH_TIMEOUT_S
    while time.monotonic() < deadline and any(pubs[t].get_subscription_count() < subscribers for t in waited):
        time.sleep(0.05)
    time.sleep(1.0)  # the subscribers' side of the match
    start = time.monotonic()
    for i in range(1, frames + 1):
        for topic, msg in messages.items():
            msg.header.stamp.sec = i
            pubs[topic].publish(msg)
        delay = start + i / RATE_HZ - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    late = time.monotonic() - start - frames / RATE_HZ
    time.sleep(DRAIN_S)
    print(json.dumps({"late_s": late}), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


# ---- the bench ----------------------------------------------------------------------------------------

# Which processes run with the shipped profile: none (the node with fastdds_profile:=false); node: the
# depth node's process as it starts by default (its outputs' publisher and its image subscription);
# all: the node so, and the camera and the consumers with FASTDDS_DEFAULT_PROFILES_FILE exported.
NODE_ROLES = ("node", "node_input", "node_input_best_effort")
PROFILE_ROLES = {"none": {}, "node": dict.fromkeys(NODE_ROLES, "node"),
                 "all": {**dict.fromkeys(("camera", "reliable", "sensor_data"), "transport"),
                         **dict.fromkeys(NODE_ROLES, "node")}}


def _module_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "mde_ros.commands.delivery", *args]


def run_once(width: int, height: int, frames: int, profile: str) -> tuple[dict[str, dict[str, int]], float]:
    """One run: ({subscriber: {topic: frames received}}, seconds the slower publisher fell behind 15 Hz)."""
    from mde_ros.ros.discovery import localhost_discovery_env

    envs = {}
    for role in ("node", "camera", *SUBSCRIBERS):
        env = profile_env(PROFILE_ROLES[profile].get(role, "none"))
        for key, value in localhost_discovery_env(env).items():
            env.setdefault(key, value)
        envs[role] = env
    namespace = f"/mde_delivery_{os.getpid()}_{width}x{height}_{profile}"
    subs = {kind: subprocess.Popen(_module_command("subscribe", kind, namespace), env=envs[kind],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for kind in SUBSCRIBERS}
    counts: dict[str, dict[str, int]] = {}
    late = 0.0
    try:
        timeout = MATCH_TIMEOUT_S + 60 + 3 * frames
        publishers = {role: subprocess.Popen(_module_command("publish", role, namespace, str(width), str(height),
                                                             str(frames), "2"),
                                             env=envs[role], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                      for role in ("node", "camera")}
        for role, process in publishers.items():
            try:
                out, err = process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                out, err = process.communicate()
            if process.returncode == 0 and out.strip():
                late = max(late, json.loads(out.strip().splitlines()[-1])["late_s"])
            else:
                print(f"  {role} publisher failed (exit {process.returncode}): {err.strip()[-300:]}")
    finally:
        for kind, process in subs.items():
            output = interrupt(process) or ""
            lines = [line for line in output.splitlines() if line.startswith("{")]
            counts[kind] = json.loads(lines[-1]) if lines else {}
    return counts, late


def _cell(count: int | None, frames: int) -> str:
    return "-" if count is None else f"{100.0 * count / frames:.1f}"


def bench_delivery(args: argparse.Namespace) -> None:
    frames = int(getattr(args, "delivery_frames", 60))
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in
             str(getattr(args, "delivery_sizes", "640x480,1280x720")).split(",") if s.strip()]
    profiles = [p.strip() for p in str(getattr(args, "delivery_profiles", ",".join(PROFILE_ROLES))).split(",")
                if p.strip()]
    unknown = sorted(set(profiles) - set(PROFILE_ROLES))
    if unknown:
        print(f"\n## delivery: unknown profile choice {unknown}; choose from {', '.join(PROFILE_ROLES)}")
        return
    from mde_ros.ros.parameters import SPECS

    print(f"\n## delivery: % of {frames} frames at {RATE_HZ:g} Hz received; camera, node and each subscriber in "
          f"its own process; node defaults: qos.reliability {SPECS['qos.reliability'].default}, points = "
          f"cloud.decimation {SPECS['cloud.decimation'].default}, cloud.organized {SPECS['cloud.organized'].default}, "
          f"cloud.max_range {SPECS['cloud.max_range'].default}, cloud.rgb {SPECS['cloud.rgb'].default}; points_full = "
          f"organised xyzrgb; profile: who runs with config/{PROFILE_FILE} (node = the launch file's default)")
    print("| size | profile | subscriber | depth/image | points | points_full | scan | "
          "camera reliable -> node | camera best effort -> node |")
    print("|---|---|---|---|---|---|---|---|---|")
    for width, height in sizes:
        for profile in profiles:
            counts, late = run_once(width, height, frames, profile)
            note = f" (publishers {late:.2f} s behind 15 Hz)" if late > 0.1 else ""
            for kind in ("reliable", "sensor_data"):
                got = counts.get(kind, {})
                cells = [_cell(None if t == "points_full" and width * height > FULL_CLOUD_MAX_PIXELS else got.get(t),
                               frames) for t in OUTPUT_TOPICS]
                print(f"| {width}x{height} | {profile} | {kind} | " + " | ".join(cells) + " | | |")
            for kind, label in (("node_input", f"node input ({SPECS['qos.reliability'].default}, the default)"),
                                ("node_input_best_effort", "node input (qos.reliability best_effort)")):
                node = counts.get(kind, {})
                print(f"| {width}x{height} | {profile} | {label} | | | | | "
                      + " | ".join(_cell(node.get(t), frames) for t in CAMERA_TOPICS) + " |")
            if note:
                print(f"|  |  | {note.strip()} | | | | | | |")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    role, rest = argv[0], argv[1:]
    if role == "subscribe":
        signal.signal(signal.SIGINT, signal.default_int_handler)
        return subscribe(rest[0], rest[1])
    if role == "publish":
        return publish(rest[0], rest[1], int(rest[2]), int(rest[3]), int(rest[4]), int(rest[5]))
    raise SystemExit(f"unknown role {role!r}: subscribe KIND NAMESPACE | "
                     "publish node|camera NAMESPACE W H FRAMES SUBSCRIBERS")


if __name__ == "__main__":
    sys.exit(main())
