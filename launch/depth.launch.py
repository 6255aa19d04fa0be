"""Monocular depth from one camera: the mde_depth node, its parameters, optionally RViz.

    ros2 launch mde_ros depth.launch.py image_topic:=/camera/color/image_raw
    ros2 launch mde_ros depth.launch.py params_file:=my_depth.yaml backend:=tensorrt use_rviz:=true

camera_info is found as the image topic's sibling (image_transport's rule); camera_info_topic is
only for cameras that put it elsewhere. backend, model, device, precision, image_transport,
scan_output_frame and the backend options (dla_core, workspace_mb, int8_model, ...) override the
params file only when given, so a params file stays authoritative:

    ros2 launch mde_ros depth.launch.py backend:=tensorrt device:=cuda precision:=int8 dla_core:=0

fastdds_profile (default auto) is the node's Fast DDS profile: auto gives it
config/fastdds_large_data.xml unless the environment chose one (FASTDDS_DEFAULT_PROFILES_FILE,
FASTRTPS_DEFAULT_PROFILES_FILE, RMW_FASTRTPS_USE_QOS_FROM_XML; mde_ros.ros.fastdds; README, "Delivery");
false leaves stock Fast DDS.
"""
import os
from pathlib import Path

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from mde_ros.inference import BACKEND_NAMES
from mde_ros.inference.base import PRECISIONS
from mde_ros.inference.options import launch_arguments

# The backend options' arguments come from the backends' specs (mde_ros.inference.options).
BACKEND_ARGUMENTS = launch_arguments()
# launch argument -> (node parameter, type), passed only when the argument is not empty.
OVERRIDES = {
    "backend": ("backend", str), "model": ("model", str), "device": ("device", str),
    "image_transport": ("image_transport", str), "scan_output_frame": ("scan.output_frame", str),
    "precision": ("precision", str), "lifecycle": ("lifecycle", bool),
    **{argument: (parameter, kind) for argument, parameter, kind, _ in BACKEND_ARGUMENTS},
}


def _typed(text: str, kind: type):
    if kind is bool:
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"expected true or false, got {text!r}")
        return text.lower() in ("true", "1")
    return kind(text)


def _share_dir() -> str:
    """share/mde_ros of the install; the source tree when run from a checkout or a pip install."""
    try:
        return get_package_share_directory("mde_ros")
    except (PackageNotFoundError, OSError):  # OSError: no AMENT_PREFIX_PATH at all (a pip install)
        return str(Path(__file__).resolve().parents[1])


def _depth_node(context):
    overrides = {}
    for argument, (parameter, kind) in OVERRIDES.items():
        text = LaunchConfiguration(argument).perform(context)
        if text:
            try:
                overrides[parameter] = _typed(text, kind)
            except ValueError as exc:
                raise RuntimeError(f"launch argument {argument}:={text}: {exc}") from exc
    overrides["use_sim_time"] = LaunchConfiguration("use_sim_time").perform(context).lower() in ("true", "1")
    remappings = [("image", LaunchConfiguration("image_topic").perform(context))]
    camera_info = LaunchConfiguration("camera_info_topic").perform(context)
    if camera_info:
        remappings.append(("camera_info", camera_info))
    return [Node(
        package="mde_ros",
        executable="depth_node",
        name=LaunchConfiguration("node_name"),
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("params_file"), overrides],
        remappings=remappings,
        # read by the node before rclpy starts (mde_ros.ros.fastdds): auto | true | false | XML path
        additional_env={"MDE_ROS_DDS_PROFILE": LaunchConfiguration("fastdds_profile").perform(context)},
        output="screen",
        emulate_tty=True,
    )]


def generate_launch_description() -> LaunchDescription:
    share = _share_dir()
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "depth.yaml"),
                              description="parameter YAML of the depth node (keys under /**: any node name)"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (simulation, bag playback with --clock)"),
        DeclareLaunchArgument("backend", default_value="",
                              description=" | ".join(BACKEND_NAMES) + "; empty: the params file's"),
        DeclareLaunchArgument("model", default_value="",
                              description="model file (.onnx with card or .pt bundle); empty: the params file's"),
        DeclareLaunchArgument("device", default_value="",
                              description="cpu, cuda or cuda:<index>; empty: the params file's"),
        DeclareLaunchArgument("precision", default_value="",
                              description=" | ".join(PRECISIONS) + " (int8: the Q/DQ model); empty: the params file's"),
        *(DeclareLaunchArgument(argument, default_value="", description=description)
          for argument, _, _, description in BACKEND_ARGUMENTS),
        DeclareLaunchArgument("lifecycle", default_value="",
                              description="true: a managed node for a lifecycle manager (nav2): configure loads "
                                          "the model, activate starts publishing; empty: the params file's"),
        DeclareLaunchArgument("image_transport", default_value="",
                              description="raw | compressed (subscribes <image_topic>/compressed); "
                                          "empty: the params file's"),
        DeclareLaunchArgument("scan_output_frame", default_value="",
                              description="frame_id of 'scan' (body convention); empty: the params file's, "
                                          "else the image's optical frame without '_optical'"),
        DeclareLaunchArgument("image_topic", default_value="image",
                              description="input sensor_msgs/Image (rgb8, bgr8, mono8, rgba8, bgra8)"),
        DeclareLaunchArgument("camera_info_topic", default_value="",
                              description="input sensor_msgs/CameraInfo; empty: the image topic's sibling "
                                          "camera_info (image_transport's pairing)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its topics"),
        DeclareLaunchArgument("node_name", default_value="mde_depth", description="name of the depth node"),
        DeclareLaunchArgument("fastdds_profile", default_value="auto",
                              description="Fast DDS profile of the node: auto (config/fastdds_large_data.xml "
                                          "unless FASTDDS_DEFAULT_PROFILES_FILE names one) | true | false | XML path"),
        DeclareLaunchArgument("use_rviz", default_value="false", description="start RViz2 with config/depth.rviz"),
        DeclareLaunchArgument("rviz_fixed_frame", default_value="camera_link",
                              description="RViz fixed frame (realsense: camera_link; without TF: the image's "
                                          "frame_id)"),
        OpaqueFunction(function=_depth_node),
        Node(
            package="rviz2",
            executable="rviz2",
            name="rviz2",
            namespace=LaunchConfiguration("namespace"),
            arguments=["-d", os.path.join(share, "config", "depth.rviz"),
                       "-f", LaunchConfiguration("rviz_fixed_frame")],
            parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}],
            condition=IfCondition(LaunchConfiguration("use_rviz")),
        ),
    ])
