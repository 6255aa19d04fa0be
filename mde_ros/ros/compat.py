"""rclpy differences between the distros robots run (Humble, Jazzy, Kilted, Rolling), feature-detected.

Detect the method, never the distro name: the ros-jazzy PyPI wheels, a sourced /opt/ros/humble and a
source build all answer the same way.
"""
from __future__ import annotations

from typing import Callable

from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter

# Node methods the node uses only when present (both arrived in Iron; Humble lacks them).
POST_SET_PARAMETERS = "add_post_set_parameters_callback"


def add_parameter_callbacks(node: Node, check: Callable[[list[Parameter]], SetParametersResult],
                            apply: Callable[[list[Parameter]], None]) -> None:
    """`check` validates a parameter change, `apply` acts on an accepted one.

    Iron+: `apply` runs after rclpy stored the values (post-set callback). Humble has only the
    on-set callback: `apply` runs inside it once `check` accepted the change, i.e. just before
    rclpy stores the same values; the node's own snapshot of its settings is what `apply` updates,
    so the order makes no difference to it.
    """
    post_set = getattr(node, POST_SET_PARAMETERS, None)
    if post_set is not None:
        node.add_on_set_parameters_callback(check)
        post_set(apply)
        return

    def check_then_apply(params: list[Parameter]) -> SetParametersResult:
        result = check(params)
        if result.successful:
            apply(params)
        return result

    node.add_on_set_parameters_callback(check_then_apply)
