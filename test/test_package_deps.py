"""package.xml declares what the code imports, with rosdep keys that exist (`rosdep install` aborts on
one unknown key), and the requirement files keep torch/onnx out of the runtime."""
import ast
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# ROS packages (resolved by rosdep from the distribution: Humble and Jazzy both release all of them).
ROS_PACKAGES = {"rclpy", "rcl_interfaces", "std_msgs", "sensor_msgs", "diagnostic_msgs", "ament_index_python",
                "launch", "launch_ros", "rviz2", "builtin_interfaces", "geometry_msgs", "tf2_ros_py"}
# Python modules whose ROS package has another name.
ROS_MODULE_PACKAGES = {"tf2_ros": "tf2_ros_py"}
# rosdep keys checked by hand in ros/rosdistro rosdep/python.yaml (commit 8468e88ccd): these exist;
# `python3-onnx` and `python3-onnxruntime` do not (only the -pip keys for onnxruntime).
ROSDEP_KEYS = {"python3-numpy", "python3-opencv", "python3-yaml", "python3-tqdm", "python3-onnxruntime-pip",
               "python3-onnxruntime-gpu-pip", "python3-rosbags-pip", "python3-skimage", "python3-pytest",
               "python3-scipy", "python3-h5py", "python3-torch", "python3-pytorch-pip"}
# Third-party modules the runtime imports -> the key that provides them.
RUNTIME_MODULES = {"numpy": "python3-numpy", "cv2": "python3-opencv", "yaml": "python3-yaml", "tqdm": "python3-tqdm",
                   "onnxruntime": "python3-onnxruntime-pip", "rosbags": "python3-rosbags-pip",
                   "apsw": "python3-rosbags-pip",  # rosbags' sqlite3 driver
                   "skimage": "python3-skimage"}
# Imported only by optional paths (torch backend, export, training, TensorRT, benchmarks): not exec_depends.
OPTIONAL_MODULES = {"torch", "torchvision", "onnx", "onnxconverter_common", "tensorrt", "cuda", "h5py", "scipy",
                    "open3d", "tensorboard", "timm", "pytest"}


def declared():
    root = ET.parse(ROOT / "package.xml").getroot()
    return {e.text for e in root if e.tag in ("exec_depend", "depend", "test_depend")}


def imported_modules():
    modules = set()
    for path in [*(ROOT / "mde_ros").rglob("*.py"), *(ROOT / "launch").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    modules = {ROS_MODULE_PACKAGES.get(m, m) for m in modules}
    return modules - set(sys.stdlib_module_names) - {"mde_ros", "training", "__future__"}


def test_every_rosdep_key_exists_and_every_import_is_declared():
    deps = declared()
    keys = {d for d in deps if d not in ROS_PACKAGES}
    assert keys <= ROSDEP_KEYS, f"not rosdep keys (check ros/rosdistro rosdep/*.yaml): {keys - ROSDEP_KEYS}"
    imported = imported_modules()
    unknown = imported - ROS_PACKAGES - set(RUNTIME_MODULES) - OPTIONAL_MODULES
    assert not unknown, f"imported but neither declared nor optional: {unknown}"
    ros_used = imported & ROS_PACKAGES
    assert ros_used - deps == set(), f"ROS packages imported but not in package.xml: {ros_used - deps}"
    assert {RUNTIME_MODULES[m] for m in imported & set(RUNTIME_MODULES)} <= deps
    unused = (deps & ROS_PACKAGES) - ros_used - {"rviz2"}  # rviz2: started by the launch file, not imported
    assert not unused, f"declared but never used: {unused}"
    assert not deps & {"python3-torch", "python3-pytorch-pip", "python3-onnx"}, "torch/onnx are not runtime deps"


def requirement_names(path):
    names = set()
    for line in (ROOT / path).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            names.add(re.match(r"[A-Za-z0-9_.\-]+", line).group(0).lower())
    return names


def test_runtime_requirements_are_ranges_without_torch_or_onnx():
    runtime = (ROOT / "requirements.txt").read_text()
    names = requirement_names("requirements.txt")
    assert not names & {"torch", "onnx", "onnxconverter-common", "tensorrt"}
    assert not any(name.startswith("ros-") for name in names), "ROS wheels are x86_64-only: requirements-ros.txt"
    assert "==" not in runtime, "exact pins belong in constraints*.txt"
    pinned = requirement_names("constraints.txt")
    assert names <= pinned, f"runtime packages without a CI pin: {names - pinned}"
    assert names <= requirement_names("constraints-py310.txt")
    assert re.search(r"^pytest>=8\.0,<9$", (ROOT / "requirements-test.txt").read_text(), re.M)
