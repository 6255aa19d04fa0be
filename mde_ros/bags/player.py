"""`mde-ros play BAG`: publish a rosbag2 bag into a live ROS graph, for machines without ros2bag.

The bag's CDR bytes go out unchanged through rclpy's serialized publish (`Publisher.publish(bytes)`),
so no message is decoded or re-encoded; rclpy only needs the message class to create the publisher.
Timing follows the bag's receive timestamps, scaled by `rate`, like `ros2 bag play`.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from mde_ros.bags.io import BagError, describe_topics, list_topics, open_reader

if TYPE_CHECKING:
    from rclpy.node import Node

log = logging.getLogger(__name__)
NODE_NAME = "mde_bag_player"
# How often a long wait between two messages looks at the stop event.
STOP_POLL_S = 0.05


@dataclass
class PlayStats:
    published: dict[str, int] = field(default_factory=dict)
    loops: int = 0
    skipped_topics: dict[str, str] = field(default_factory=dict)  # topic -> why it is not played
    stopped: bool = False


def message_class(msgtype: str) -> type:
    """'sensor_msgs/msg/Image' -> sensor_msgs.msg.Image (rosidl_runtime_py's get_message, without it)."""
    package, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


def _qos_for(connections: Sequence[Any]) -> Any:
    """Reliable, keep-last 10, transient-local only where the recorder offered it (/tf_static)."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from rosbags.interfaces import QosDurability

    latched = any(q.durability == QosDurability.TRANSIENT_LOCAL
                  for c in connections for q in c.ext.offered_qos_profiles)
    return QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


def _sleep_until(deadline: float, stop: threading.Event) -> bool:
    """Wait for a monotonic deadline; False if asked to stop first."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return not stop.is_set()
        if stop.wait(min(remaining, STOP_POLL_S)):
            return False


def play_bag(bag: str | Path, *, rate: float = 1.0, loop: bool = False, start_offset: float = 0.0,
             topics: Sequence[str] | None = None, node: "Node | None" = None,
             remap: Mapping[str, str] | None = None, delay: float = 0.0,
             stop: threading.Event | None = None) -> PlayStats:
    """Publish a bag's messages with their recorded spacing divided by `rate`.

    `node`: publish through this node (its publishers are destroyed afterwards); by default a
    node named mde_bag_player is created (and rclpy initialised if needed). `remap`: bag topic ->
    published topic. `delay`: seconds to wait after creating the publishers (discovery) before
    the first message. `stop`: set it from another thread to end playback early.
    """
    import rclpy

    if not rate > 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    if start_offset < 0 or delay < 0:
        raise ValueError("start_offset and delay must be >= 0 seconds")
    stop = stop or threading.Event()
    remap = dict(remap or {})
    own_node = node is None
    if own_node:
        if not rclpy.ok():
            rclpy.init()
        node = rclpy.create_node(NODE_NAME)
    stats = PlayStats()
    publishers: dict[int, Any] = {}
    try:
        with open_reader(bag) as reader:
            available = reader.topics
            wanted = list(topics) if topics else sorted(available)
            missing = [t for t in wanted if t not in available]
            if missing:
                raise BagError(f"topics {missing} are not in {bag}; topics present: "
                               f"{describe_topics(list_topics(reader))}")
            for topic in wanted:
                info = available[topic]
                try:
                    cls = message_class(info.msgtype)
                except (ImportError, AttributeError, ValueError) as exc:
                    stats.skipped_topics[topic] = f"message type {info.msgtype} is not installed ({exc})"
                    log.warning("not playing %s: %s", topic, stats.skipped_topics[topic])
                    continue
                publisher = node.create_publisher(cls, remap.get(topic, topic), _qos_for(info.connections))
                for conn in info.connections:
                    publishers[conn.id] = publisher
                stats.published[topic] = 0
            if not publishers:
                raise BagError(f"nothing to play in {bag}: {stats.skipped_topics}")
            connections = [c for c in reader.connections if c.id in publishers]
            start = reader.start_time + int(round(start_offset * 1e9))
            if delay and not _sleep_until(time.monotonic() + delay, stop):
                stats.stopped = True
                return stats
            while not stats.stopped:
                first_stamp, first_wall = None, 0.0
                for conn, timestamp, data in reader.messages(connections, start=start):
                    if first_stamp is None:
                        first_stamp, first_wall = timestamp, time.monotonic()
                    if not _sleep_until(first_wall + (timestamp - first_stamp) / 1e9 / rate, stop):
                        stats.stopped = True
                        break
                    publishers[conn.id].publish(bytes(data))
                    stats.published[conn.topic] += 1
                stats.loops += 1
                if not loop or first_stamp is None:
                    break
    finally:
        if own_node:
            node.destroy_node()
        else:
            for publisher in set(publishers.values()):
                node.destroy_publisher(publisher)
    return stats


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", type=Path, help="rosbag2 folder (metadata.yaml + .mcap or .db3)")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1.0)")
    parser.add_argument("--loop", action="store_true", help="start again at the end until Ctrl-C")
    parser.add_argument("--start-offset", type=float, default=0.0, metavar="SECONDS",
                        help="skip this many seconds at the start of the bag")
    parser.add_argument("--topics", nargs="+", metavar="TOPIC", help="play only these topics")
    parser.add_argument("--remap", nargs="+", default=[], metavar="FROM:=TO",
                        help="publish a bag topic under another name, e.g. /camera/color/image_raw:=/image")
    parser.add_argument("--delay", type=float, default=0.5, metavar="SECONDS",
                        help="wait after creating publishers so subscribers can connect (default 0.5)")


def _parse_remaps(items: Sequence[str]) -> dict[str, str]:
    remaps = {}
    for item in items:
        source, sep, target = item.partition(":=")
        if not sep or not source or not target:
            raise ValueError(f"--remap expects FROM:=TO, got {item!r}")
        remaps[source] = target
    return remaps


def run(args: argparse.Namespace) -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException

    try:
        remap = _parse_remaps(args.remap)
    except ValueError as exc:
        print(f"mde-ros play: {exc}", file=sys.stderr)
        return 2
    rclpy.init()
    try:
        stats = play_bag(args.bag, rate=args.rate, loop=args.loop, start_offset=args.start_offset,
                         topics=args.topics, remap=remap, delay=args.delay)
    except (BagError, ValueError) as exc:
        print(f"mde-ros play: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    finally:
        rclpy.utilities.try_shutdown()
    total = sum(stats.published.values())
    print(f"published {total} messages on {len(stats.published)} topics"
          + (f" ({stats.loops} loops)" if args.loop else ""))
    return 0
