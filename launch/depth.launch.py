"""Monocular depth from one camera: the mde_depth node, its parameters, optionally RViz.

    ros2 launch mde_ros depth.launch.py image_topic:=/camera/image_raw camera_info_topic:=/camera/camera_info
    ros2 launch mde_ros depth.launch.py params_file:=my_depth.yaml backend:=tensorrt use_rviz:=true

backend and model override the params file only when given, so a params file stays authoritative.
"""
import os
from pathlib import Path

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def _share_dir() -> str:
    """share/mde_ros of the install; the source tree when run from a checkout or a pip install."""
    try:
        return get_package_share_directory("mde_ros")
    except PackageNotFoundError:
        return str(Path(__file__).resolve().parents[1])


def _depth_node(context):
    overrides = {name: LaunchConfiguration(name).perform(context) for name in ("backend", "model")}
    overrides = {name: value for name, value in overrides.items() if value}
    return [Node(
        package="mde_ros",
        executable="depth_node",
        name="mde_depth",
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("params_file"), overrides],
        remappings=[("image", LaunchConfiguration("image_topic")),
                    ("camera_info", LaunchConfiguration("camera_info_topic"))],
        output="screen",
        emulate_tty=True,
    )]


def generate_launch_description() -> LaunchDescription:
    share = _share_dir()
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "depth.yaml"),
                              description="parameter YAML of the depth node"),
        DeclareLaunchArgument("backend", default_value="",
                              description="auto | torch | onnxruntime | tensorrt; empty: the params file's"),
        DeclareLaunchArgument("model", default_value="",
                              description="model file (.onnx with card or .pt bundle); empty: the params file's"),
        DeclareLaunchArgument("image_topic", default_value="image",
                              description="input sensor_msgs/Image (rgb8, bgr8, mono8, rgba8, bgra8)"),
        DeclareLaunchArgument("camera_info_topic", default_value="camera_info",
                              description="input sensor_msgs/CameraInfo of that image"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its topics"),
        DeclareLaunchArgument("use_rviz", default_value="false", description="start RViz2 with config/depth.rviz"),
        OpaqueFunction(function=_depth_node),
        Node(
            package="rviz2",
            executable="rviz2",
            name="rviz2",
            namespace=LaunchConfiguration("namespace"),
            arguments=["-d", os.path.join(share, "config", "depth.rviz")],
            condition=IfCondition(LaunchConfiguration("use_rviz")),
        ),
    ])
