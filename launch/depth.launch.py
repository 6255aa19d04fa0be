"""Monocular depth from one camera: the mde_depth node, its parameters, optionally RViz.

    ros2 launch mde_ros depth.launch.py image_topic:=/camera/image_raw camera_info_topic:=/camera/camera_info
    ros2 launch mde_ros depth.launch.py params_file:=my_depth.yaml backend:=tensorrt use_rviz:=true

backend, model, device, precision and the backend options (dla_core, workspace_mb, int8_model, ...)
override the params file only when given, so a params file stays authoritative:

    ros2 launch mde_ros depth.launch.py backend:=tensorrt device:=cuda precision:=int8 dla_core:=0
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


# launch argument -> (node parameter, type); mde_ros.inference.options.BACKEND_OPTIONS is the source.
OVERRIDES = {
    "backend": ("backend", str), "model": ("model", str), "device": ("device", str),
    "precision": ("precision", str), "intra_op_threads": ("onnxruntime.intra_op_threads", int),
    "trt_provider": ("onnxruntime.trt_provider", bool), "workspace_mb": ("tensorrt.workspace_mb", int),
    "dla_core": ("tensorrt.dla_core", int), "max_batch": ("tensorrt.max_batch", int),
    "min_size": ("tensorrt.min_size", str), "max_size": ("tensorrt.max_size", str),
    "typing": ("tensorrt.typing", str), "rebuild_engine": ("tensorrt.rebuild", bool),
    "int8_model": ("int8.model", str), "calibration": ("int8.calibration", str),
}


def _typed(text: str, kind: type):
    if kind is bool:
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"expected true or false, got {text!r}")
        return text.lower() in ("true", "1")
    return kind(text)


def _depth_node(context):
    overrides = {}
    for argument, (parameter, kind) in OVERRIDES.items():
        text = LaunchConfiguration(argument).perform(context)
        if text:
            try:
                overrides[parameter] = _typed(text, kind)
            except ValueError as exc:
                raise RuntimeError(f"launch argument {argument}:={text}: {exc}") from exc
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
        DeclareLaunchArgument("device", default_value="", description="cpu | cuda | cuda:N; empty: the params file's"),
        DeclareLaunchArgument("precision", default_value="",
                              description="fp32 | fp16 | int8 (the Q/DQ model); empty: the params file's"),
        DeclareLaunchArgument("intra_op_threads", default_value="",
                              description="onnxruntime.intra_op_threads; empty: the params file's"),
        DeclareLaunchArgument("trt_provider", default_value="",
                              description="onnxruntime.trt_provider (true/false); empty: the params file's"),
        DeclareLaunchArgument("workspace_mb", default_value="",
                              description="tensorrt.workspace_mb; empty: the params file's"),
        DeclareLaunchArgument("dla_core", default_value="",
                              description="tensorrt.dla_core (-1: GPU); empty: the params file's"),
        DeclareLaunchArgument("max_batch", default_value="", description="tensorrt.max_batch; empty: the params file's"),
        DeclareLaunchArgument("min_size", default_value="",
                              description="tensorrt.min_size HxW; empty: the params file's"),
        DeclareLaunchArgument("max_size", default_value="",
                              description="tensorrt.max_size HxW; empty: the params file's"),
        DeclareLaunchArgument("typing", default_value="",
                              description="tensorrt.typing auto | strong | weak; empty: the params file's"),
        DeclareLaunchArgument("rebuild_engine", default_value="",
                              description="tensorrt.rebuild (true/false); empty: the params file's"),
        DeclareLaunchArgument("int8_model", default_value="", description="int8.model; empty: the params file's"),
        DeclareLaunchArgument("calibration", default_value="",
                              description="int8.calibration (images folder or bag); empty: the params file's"),
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
