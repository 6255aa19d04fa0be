"""QoS profiles: sensor-data subscriptions, reliable publishers (REP 2003, image_pipeline)."""
from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

RELIABILITIES = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}


def subscription_qos(reliability: str = "best_effort", depth: int = 5) -> QoSProfile:
    """Best effort by default: it matches both best-effort and reliable camera drivers."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=RELIABILITIES[reliability],
                      durability=DurabilityPolicy.VOLATILE)


def publisher_qos(depth: int = 5) -> QoSProfile:
    """Reliable (system default): what RViz and rosbag2 subscribers expect; best-effort ones still match."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)
