"""launch/depth.launch.py, config/depth.yaml and config/depth.rviz against the real node.

launch_ros is not installed here, so the launch file is checked by its syntax tree (and run for
real in the test that importorskips launch_ros); the YAML is loaded into a real DepthNode through
`--ros-args --params-file`, exactly as `ros2 run` / the launch file pass it.
"""
import ast
import fnmatch
import importlib.util
import re
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
import yaml

from mde_ros.inference import Backend
from mde_ros.models.card import ModelCard
from mde_ros.pipeline.estimator import DepthEstimator
from mde_ros.ros.depth_node import NODE_NAME, DepthNode
from mde_ros.ros.parameters import PARAMETERS

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch" / "depth.launch.py"
PARAMS = ROOT / "config" / "depth.yaml"
RVIZ = ROOT / "config" / "depth.rviz"
LAUNCH_ARGUMENTS = {"params_file", "use_sim_time", "backend", "model", "device", "image_transport",
                    "scan_output_frame", "image_topic", "camera_info_topic", "namespace", "node_name", "use_rviz",
                    "fastdds_profile", "rviz_fixed_frame", "lifecycle"}
YAML_NODE_KEY = "/**"  # any node name: `-r __node:=front_depth` keeps every setting


class ConstantBackend(Backend):
    name = "constant-test-double"

    def infer(self, batch):
        return np.ones((batch.shape[0], 1) + batch.shape[2:], np.float32)

    def describe(self):
        return {"backend": self.name, "device": "cpu", "precision": "fp32"}


def estimator():
    return DepthEstimator(ConstantBackend(), ModelCard(name="c", architecture="external", input_height=8,
                                                       input_width=8))


def calls(tree, name):
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", None)) == name]


def keywords(call):
    return {kw.arg: kw.value for kw in call.keywords}


def launch_tree():
    source = LAUNCH.read_text()
    compile(source, str(LAUNCH), "exec")
    return ast.parse(source)


def console_scripts():
    """name -> 'module:function' from setup.py's entry_points, read without running setup()."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    entry_points = next(keywords(c)["entry_points"] for c in calls(tree, "setup"))
    scripts = ast.literal_eval(entry_points)["console_scripts"]
    return dict(re.fullmatch(r"\s*(\S+)\s*=\s*(\S+)\s*", line).groups() for line in scripts)


def test_launch_file_declares_the_arguments_and_starts_the_installed_depth_node():
    tree = launch_tree()
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)
    declared = {c.args[0].value for c in calls(tree, "DeclareLaunchArgument") if isinstance(c.args[0], ast.Constant)}
    assert LAUNCH_ARGUMENTS <= declared
    used = {c.args[0].value for c in calls(tree, "LaunchConfiguration") if isinstance(c.args[0], ast.Constant)}
    assert used <= declared, f"LaunchConfiguration of undeclared arguments: {used - declared}"
    for call in calls(tree, "DeclareLaunchArgument"):  # the backend options' come from their table, described
        assert keywords(call).get("description") is not None, ast.unparse(call)

    nodes = [keywords(c) for c in calls(tree, "Node")]
    depth_nodes = [kw for kw in nodes if ast.literal_eval(kw["package"]) == "mde_ros"]
    assert len(depth_nodes) == 1
    node = depth_nodes[0]
    name = next(c for c in calls(tree, "DeclareLaunchArgument") if c.args[0].value == "node_name")
    assert ast.unparse(node["name"]) == "LaunchConfiguration('node_name')"
    assert ast.literal_eval(keywords(name)["default_value"]) == NODE_NAME
    executable = ast.literal_eval(node["executable"])
    module, function = console_scripts()[executable].split(":")
    assert (module, function) == ("mde_ros.ros.depth_node", "main")
    # image always remapped; camera_info only when given (else the image topic's sibling)
    remaps = {ast.unparse(c.args[0]) for c in calls(tree, "append") if isinstance(c.args[0], ast.Tuple)}
    assert remaps == {"('camera_info', camera_info)"}
    assert "('image', LaunchConfiguration('image_topic').perform(context))" in ast.unparse(tree)
    assert "params_file" in ast.unparse(node["parameters"])


def test_setup_installs_the_launch_file_and_configs():
    tree = ast.parse((ROOT / "setup.py").read_text())
    patterns = [c.args[1].value for c in calls(tree, "share")]
    for path in (LAUNCH, PARAMS, RVIZ):
        relative = str(path.relative_to(ROOT))
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), relative


def test_launch_file_builds_a_launch_description():
    pytest.importorskip("launch_ros")
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument

    spec = importlib.util.spec_from_file_location("depth_launch", LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    assert isinstance(description, LaunchDescription)
    arguments = {e.name: e for e in description.entities if isinstance(e, DeclareLaunchArgument)}
    assert LAUNCH_ARGUMENTS <= set(arguments)
    assert Path(arguments["params_file"].default_value[0].text).name == "depth.yaml"


def launched_depth_node(given: dict):
    """Evaluate the launch file as `ros2 launch mde_ros depth.launch.py k:=v ...` would, up to the
    depth node's launch_ros Node action (its constructor arguments and expanded remappings)."""
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.utilities import perform_substitutions
    from launch_ros.actions import Node

    spec = importlib.util.spec_from_file_location("depth_launch", LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    made = []

    class RecordingNode(Node):  # the real launch_ros Node, its arguments kept for the test
        def __init__(self, **kwargs):
            made.append(kwargs)
            super().__init__(**kwargs)

    module.Node = RecordingNode
    description = module.generate_launch_description()
    context = LaunchContext()
    for entity in description.entities:
        if isinstance(entity, DeclareLaunchArgument):
            context.launch_configurations[entity.name] = perform_substitutions(context, entity.default_value)
    context.launch_configurations.update(given)
    opaque = next(e for e in description.entities if isinstance(e, OpaqueFunction))
    (node,) = opaque.execute(context)
    node._perform_substitutions(context)  # what executing the action does first (Humble and Jazzy)
    kwargs = made[-1]
    return node, dict(node.expanded_remapping_rules), kwargs["parameters"][1]


def test_launch_pairs_camera_info_with_the_image_and_passes_use_sim_time():
    pytest.importorskip("launch_ros")
    node, remaps, overrides = launched_depth_node({"image_topic": "/camera/color/image_raw"})
    assert remaps == {"image": "/camera/color/image_raw"}  # camera_info: the image's sibling, in the node
    assert node.node_name.endswith("/" + NODE_NAME) and overrides == {"use_sim_time": False}

    node, remaps, overrides = launched_depth_node({
        "image_topic": "/cam/image_raw", "camera_info_topic": "/cam/calib", "use_sim_time": "true",
        "backend": "onnxruntime", "scan_output_frame": "base_scan", "image_transport": "compressed",
        "node_name": "front_depth", "namespace": "front"})
    assert remaps == {"image": "/cam/image_raw", "camera_info": "/cam/calib"}
    assert node.node_name == "/front/front_depth"
    assert overrides == {"use_sim_time": True, "backend": "onnxruntime", "scan.output_frame": "base_scan",
                         "image_transport": "compressed"}


def flatten(tree, prefix=""):
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def shipped_parameters():
    data = yaml.safe_load(PARAMS.read_text())
    assert list(data) == [YAML_NODE_KEY] and list(data[YAML_NODE_KEY]) == ["ros__parameters"]
    return flatten(data[YAML_NODE_KEY]["ros__parameters"])


def leaf_comments():
    """Parameter name -> the comment lines right above its leaf line in config/depth.yaml."""
    comments, path, lines = {}, [], PARAMS.read_text().splitlines()
    for number, line in enumerate(lines):
        match = re.fullmatch(r"(\s*)(\w+):(.*)", line.split(" #")[0] if not line.lstrip().startswith("#") else "")
        if not match or match.group(2) == "ros__parameters":
            continue
        depth = (len(match.group(1)) - 4) // 2  # '/**:' 0, 'ros__parameters:' 2, parameters from 4
        path[depth:] = [match.group(2)]
        if match.group(3).strip():  # a leaf "key: value" line
            above = []
            for previous in reversed(lines[:number]):
                if not previous.strip().startswith("#"):
                    break
                above.insert(0, previous.strip().lstrip("#").strip())
            comments[".".join(path)] = " ".join(above)
    return comments


def test_params_file_lists_every_parameter_of_the_table_with_its_default_and_a_comment():
    """config/depth.yaml is the documentation of the one parameter table (ros/parameters): every row
    with its default and type, a comment above each, naming every choice a row allows."""
    values, comments = shipped_parameters(), leaf_comments()
    assert set(values) == {spec.name for spec in PARAMETERS} == set(comments)
    for spec in PARAMETERS:
        assert values[spec.name] == spec.default and type(values[spec.name]) is type(spec.default), spec.name
        assert comments[spec.name], f"undocumented parameter: {spec.name}"
        for choice in spec.choices:
            assert re.search(rf"\b{re.escape(choice)}\b", comments[spec.name]), (spec.name, choice)


def test_the_node_declares_the_table_with_its_descriptors(rclpy_context):
    """Every row declared once, with the table's description, read-only flag and range."""
    node = start_node(rclpy_context, PARAMS, "table")
    try:
        names = [spec.name for spec in PARAMETERS]
        for spec, descriptor in zip(PARAMETERS, node.describe_parameters(names)):
            assert (descriptor.description, descriptor.read_only) == (spec.description, spec.read_only), spec.name
            ranges = [*descriptor.floating_point_range, *descriptor.integer_range]
            assert [(r.from_value, r.to_value) for r in ranges] == ([] if spec.low is None else
                                                                    [(spec.low, spec.high)]), spec.name
            if spec.choices:
                assert descriptor.additional_constraints == "one of: " + ", ".join(spec.choices)
    finally:
        node.destroy_node()


def start_node(context, params_file, namespace):
    return DepthNode(estimator=estimator(), context=context, namespace=namespace,
                     cli_args=["--ros-args", "--params-file", str(params_file)])


def test_params_file_loads_into_the_node(rclpy_context, tmp_path):
    node = start_node(rclpy_context, PARAMS, "shipped")
    try:
        for name, value in shipped_parameters().items():
            assert node.get_parameter(name).value == value, name
    finally:
        node.destroy_node()

    # A user's copy with other values: every one of them reaches the node, in any namespace.
    changed = {"depth_encoding": "16UC1", "cloud": {"decimation": 3, "organized": False},
               "scan": {"output_frame": "base_scan", "range_max": 6.5}, "publish": {"colorized": False},
               "fallback_intrinsics": {"fx": 500.0, "fy": 500.0, "cx": 320.0, "cy": 240.0},
               "qos": {"reliability": "reliable"}, "backend": "onnxruntime"}
    data = yaml.safe_load(PARAMS.read_text())
    for key, value in changed.items():
        target = data[YAML_NODE_KEY]["ros__parameters"]
        if isinstance(value, dict):
            target[key].update(value)
        else:
            target[key] = value
    custom = tmp_path / "custom.yaml"
    custom.write_text(yaml.safe_dump(data))
    node = start_node(rclpy_context, custom, "robot/front_camera")
    try:
        for name, value in flatten(changed).items():
            assert node.get_parameter(name).value == value, name
        assert node.get_parameter("cloud.min_range").value == 0.0  # untouched ones keep the file's value
    finally:
        node.destroy_node()
    # ... and under any node name (`ros2 run ... -r __node:=front_depth`, launch's node_name)
    node = DepthNode(estimator=estimator(), context=rclpy_context, namespace="renamed",
                     cli_args=["--ros-args", "--params-file", str(custom), "-r", "__node:=front_depth"])
    try:
        assert node.get_fully_qualified_name() == "/renamed/front_depth"
        for name, value in flatten(changed).items():
            assert node.get_parameter(name).value == value, name
    finally:
        node.destroy_node()


def test_a_params_file_with_a_bad_value_is_refused_at_start_up(rclpy_context, tmp_path):
    data = yaml.safe_load(PARAMS.read_text())
    data[YAML_NODE_KEY]["ros__parameters"]["scan"]["range_min"] = 20.0
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    from mde_ros.ros.depth_node import StartupError

    with pytest.raises(StartupError, match="scan.range_min"):
        start_node(rclpy_context, bad, "bad")


def test_rviz_config_shows_the_node_outputs_in_a_frame_realsense_publishes(rclpy_context):
    config = yaml.safe_load(RVIZ.read_text())
    manager = config["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "camera_link"  # realsense-ros's root frame
    topics = {d["Class"].split("/")[-1]: d["Topic"]["Value"] for d in manager["Displays"] if "Topic" in d}
    assert topics == {"Image": "depth/colorized", "PointCloud2": "points", "LaserScan": "scan"}

    node = start_node(rclpy_context, PARAMS, "rviz_check")
    probe = rclpy.create_node("rviz_probe", context=rclpy_context)
    try:
        published, deadline = {}, time.monotonic() + 10.0
        while not set(topics.values()) <= set(published) and time.monotonic() < deadline:
            published = {name.removeprefix("/rviz_check/"): types
                         for name, types in probe.get_publisher_names_and_types_by_node(NODE_NAME, "/rviz_check")}
            time.sleep(0.05)
        assert published["depth/colorized"] == ["sensor_msgs/msg/Image"]
        assert published["points"] == ["sensor_msgs/msg/PointCloud2"]
        assert published["scan"] == ["sensor_msgs/msg/LaserScan"]
    finally:
        probe.destroy_node()
        node.destroy_node()


def start_and_read_startup(params_file, *ros_args, timeout=90.0):
    """`python -m mde_ros.ros.depth_node --ros-args --params-file F` as `ros2 run` starts it (a tiny ONNX
    model, onnxruntime); its output up to "listening on" (the end of start-up), then Ctrl-C."""
    import os
    import select
    import subprocess
    import sys

    from mde_ros.processes import interrupt
    from test_ros_node import tiny_onnx_model

    model = tiny_onnx_model(Path(params_file).parent, 2.0)
    process = subprocess.Popen([sys.executable, "-m", "mde_ros.ros.depth_node", "--ros-args", "--params-file",
                                str(params_file), "-p", f"model:={model}", "-p", "backend:=onnxruntime", *ros_args],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ))
    lines, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if select.select([process.stdout], [], [], 1.0)[0]:
                lines.append(process.stdout.readline())
                if "listening on" in lines[-1]:
                    break
    finally:
        lines.append(interrupt(process) or "")
    output = "".join(lines)
    assert "listening on" in output, output
    return output


def test_a_clean_first_launch_warns_nothing_about_the_shipped_params_file(tmp_path):
    """Issue 18: every scale.* / temporal.* / confidence.* key of config/depth.yaml was warned "unknown
    parameter ... ignored" (the known names were taken before the anchors declared theirs)."""
    shipped = tmp_path / "depth.yaml"
    shipped.write_text(PARAMS.read_text())
    output = start_and_read_startup(shipped)
    assert "unknown parameter" not in output and "WARN" not in output, output


def test_a_real_unknown_key_is_still_warned_with_a_hint_from_every_declared_name(tmp_path):
    data = yaml.safe_load(PARAMS.read_text())
    params = data[YAML_NODE_KEY]["ros__parameters"]
    params["scale"]["range"]["enabeld"] = True  # misspelt anchor parameter
    params["temporal"]["time_constnat"] = 0.5  # another
    params["zzz_unrelated"] = 1
    custom = tmp_path / "custom.yaml"
    custom.write_text(yaml.safe_dump(data))
    output = start_and_read_startup(custom)
    assert "unknown parameter 'scale.range.enabeld' ignored: did you mean scale.range.enabled?" in output, output
    assert "unknown parameter 'temporal.time_constnat' ignored: did you mean temporal.time_constant?" in output
    assert "unknown parameter 'zzz_unrelated' ignored (not a parameter of this node)" in output
    assert output.count("unknown parameter") == 3, output


def test_the_launch_overrides_name_parameters_of_the_table_with_their_types():
    """The launch file's own argument -> parameter rows (backend options come from their table) point at
    rows of ros/parameters with the same value type, so a launch argument always reaches the node."""
    from mde_ros.ros.parameters import SPECS

    tree = launch_tree()
    overrides = next(n.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "OVERRIDES")
    rows = {ast.literal_eval(k): (ast.literal_eval(v.elts[0]), v.elts[1].id)
            for k, v in zip(overrides.keys, overrides.values) if k is not None}
    assert {"backend", "model", "device", "precision", "lifecycle"} <= set(rows)
    for argument, (parameter, kind) in rows.items():
        assert parameter in SPECS, f"launch argument {argument} sets unknown parameter {parameter}"
        assert type(SPECS[parameter].default).__name__ == kind, (argument, parameter, kind)
