"""DDS discovery kept on this machine, for the ROS 2 distro at hand (pure: no rclpy import, so it can
run before rclpy is first imported).

Humble (and older) read ROS_LOCALHOST_ONLY=1; Iron+ read ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and
log a deprecation warning at every node start when ROS_LOCALHOST_ONLY is set at all (to 0 or 1), so
it is only set where it is the variable that works. The distro is ROS_DISTRO (set by sourcing a
ROS install); without it, the ros-jazzy PyPI wheels are what this project runs on.
"""
from __future__ import annotations

from typing import Mapping

PRE_IRON_DISTROS = ("foxy", "galactic", "humble")


def localhost_discovery_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables to add to `environ` (values the user set are not overridden by the caller)."""
    env = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}  # Iron+; ignored by Humble
    if environ.get("ROS_DISTRO", "") in PRE_IRON_DISTROS:
        env["ROS_LOCALHOST_ONLY"] = "1"
    return env
