"""QoS profiles: sensor-data subscriptions, reliable publishers (REP 2003, image_pipeline)."""
from __future__ import annotations

from typing import Callable

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

RELIABILITIES = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}
# Chosen by measured delivery (`mde-ros bench --sections delivery`, README "Delivery"): from a reliable
# camera (realsense-ros, most drivers: the system default) a best-effort subscription loses most 640x480
# frames on stock Fast DDS, a reliable one gets them resent. A best-effort driver needs best_effort (a
# reliable subscription does not match it; the node warns when it sees one).
DEFAULT_RELIABILITY = "reliable"


def subscription_qos(reliability: str = DEFAULT_RELIABILITY, depth: int = 5) -> QoSProfile:
    """Keep-last `depth`, volatile; reliable by default like image_pipeline's subscribers."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=RELIABILITIES[reliability],
                      durability=DurabilityPolicy.VOLATILE)


def publisher_qos(depth: int = 5) -> QoSProfile:
    """Reliable (system default): what RViz and rosbag2 subscribers expect; best-effort ones still match."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


def incompatible_publisher_callbacks(warn: Callable[[str], None], topic: str, reliability: str):
    """Subscription event callbacks that say what to change when a publisher's QoS does not match.

    rclpy's own warning names the policy only; a best-effort camera against the reliable default is
    the case users hit, so the hint names the parameter. (rclpy.event_handler: Iron+; qos_event: Humble.)
    """
    try:
        from rclpy.event_handler import SubscriptionEventCallbacks
    except ImportError:  # Humble
        from rclpy.qos_event import SubscriptionEventCallbacks

    def on_incompatible(info) -> None:
        hint = (" (a best-effort camera driver: set qos.reliability to best_effort)"
                if reliability == "reliable" else "")
        warn(f"a publisher on {topic} offers QoS this subscription cannot match "
             f"(policy {getattr(info.last_policy_kind, 'name', info.last_policy_kind)}): no messages from it{hint}")

    return SubscriptionEventCallbacks(incompatible_qos=on_incompatible)
