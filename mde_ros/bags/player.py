"""`mde-ros play BAG`: publish a rosbag2 bag into a live ROS graph, for machines without ros2bag.

The bag's CDR bytes go out unchanged through rclpy's serialized publish (`Publisher.publish(bytes)`),
so no message is decoded or re-encoded; rclpy only needs the message class to create the publisher.
Timing follows the bag's receive timestamps, scaled by `rate`, like `ros2 bag play`.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from mde_ros.bags.io import BagError, BagReadError, describe_topics, list_topics, open_reader, read_messages
from mde_ros.stopping import StopRequest, exit_code

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
    expected: int = 0  # messages of the played topics that metadata.yaml promises (one pass)
    read_error: str | None = None  # a damaged part of the bag ended playback


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
            stats.expected = sum(available[t].msgcount for t in stats.published)
            while not stats.stopped:
                try:
                    played = _play_pass(reader, connections, start, rate, stop, publishers, stats,
                                        node.context.ok)
                except BagReadError as exc:
                    stats.read_error = str(exc)
                    break
                stats.loops += 1
                if not loop or not played:
                    break
    finally:
        if own_node:
            node.destroy_node()
        else:
            for publisher in set(publishers.values()):
                node.destroy_publisher(publisher)
    return stats


def _play_pass(reader: Any, connections: Sequence[Any], start: int, rate: float, stop: threading.Event,
               publishers: Mapping[int, Any], stats: PlayStats, context_ok: Any = lambda: True) -> bool:
    """Publish the bag once from `start`; False when there was nothing to play."""
    first_stamp, first_wall = None, 0.0
    for conn, timestamp, data in read_messages(reader, connections, start=start):
        if first_stamp is None:
            first_stamp, first_wall = timestamp, time.monotonic()
        if not _sleep_until(first_wall + (timestamp - first_stamp) / 1e9 / rate, stop):
            stats.stopped = True
            break
        try:
            publishers[conn.id].publish(bytes(data))
        except Exception:  # the context was shut down under us (a signal to rclpy): stop, not a traceback
            if stop.is_set() or not context_ok():
                stats.stopped = True
                break
            raise
        stats.published[conn.topic] += 1
    return first_stamp is not None


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
    parser.add_argument("--allow-partial", action="store_true",
                        help="a damaged bag (fewer messages readable than its metadata promises) is not an error")


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
    problem = _argument_problem(args, remap)
    if problem:
        print(f"mde-ros play: {problem}", file=sys.stderr)
        return 2
    try:  # Ctrl-C / SIGTERM end playback between messages (StopRequest), not inside rclpy's publish
        from rclpy.signals import SignalHandlerOptions

        rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    except (ImportError, TypeError):  # an rclpy without the option
        rclpy.init()
    stop = threading.Event()
    try:
        with StopRequest(stop) as request:
            stats = play_bag(args.bag, rate=args.rate, loop=args.loop, start_offset=args.start_offset,
                             topics=args.topics, remap=remap, delay=args.delay, stop=stop)
    except (BagError, ValueError) as exc:
        print(f"mde-ros play: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        print("mde-ros play: interrupted", file=sys.stderr)
        return exit_code(getattr(signal, "SIGINT"))
    finally:
        rclpy.utilities.try_shutdown()
    total = sum(stats.published.values())
    print(f"published {total} messages on {len(stats.published)} topics"
          + (f" ({stats.loops} loops)" if args.loop else ""))
    if request.requested and not args.loop:  # --loop is meant to be ended by Ctrl-C
        print(f"mde-ros play: stopped by {request.describe()} after {total} of {stats.expected} messages",
              file=sys.stderr)
        return exit_code(request.signum)
    if stats.read_error is not None or (total < stats.expected and not args.start_offset and not request.requested):
        print(f"mde-ros play: {args.bag} is damaged: read {total} of the {stats.expected} messages its "
              f"metadata.yaml promises" + (f" ({stats.read_error})" if stats.read_error else "")
              + ("" if args.allow_partial else " (--allow-partial accepts a damaged bag)"), file=sys.stderr)
        return 0 if args.allow_partial else 1
    return 0


def _argument_problem(args: argparse.Namespace, remap: Mapping[str, str]) -> str | None:
    """Values rclpy or the player would fail on later (with a traceback), refused first."""
    import math

    from rclpy.validate_topic_name import validate_topic_name

    if not (math.isfinite(args.rate) and args.rate > 0):
        return f"--rate must be a finite factor > 0, got {args.rate}"
    for name in ("start_offset", "delay"):
        value = getattr(args, name)
        if not (math.isfinite(value) and value >= 0):
            return f"--{name.replace('_', '-')} must be a finite number of seconds >= 0, got {value}"
    for source, target in remap.items():
        try:
            validate_topic_name(target)
        except Exception as exc:  # rclpy's InvalidTopicNameException, with a caret drawing below
            return f"--remap {source}:={target}: {str(exc).splitlines()[0].rstrip(':')}"
    return None
