"""The node's `executor` parameter (mde_ros.ros.executor): the choice, and the real node process spun by
each executor with frames, a parameter change through its services, /diagnostics and a clean stop."""
import subprocess
import sys

import pytest

from mde_ros.processes import interrupt
from mde_ros.ros.executor import choose_executor, events_executor_class
from test_ros_node import Rig, wait_for

pytest.importorskip("rclpy")


def test_auto_takes_the_events_executor_where_rclpy_has_one_and_a_missing_one_is_explained():
    assert choose_executor("auto", True) == "events"
    assert choose_executor("auto", False) == "single_threaded"  # Humble's rclpy
    assert choose_executor("single_threaded", True) == "single_threaded"
    assert choose_executor("events", True) == "events"
    with pytest.raises(ValueError, match="EventsExecutor.*auto or single_threaded"):
        choose_executor("events", False)
    with pytest.raises(ValueError, match="one of auto, events, single_threaded"):
        choose_executor("multi_threaded", True)


def _node_process(namespace: str, *params: str) -> subprocess.Popen:
    from mde_ros.resources import default_model_path

    command = [sys.executable, "-m", "mde_ros.ros.depth_node", "--ros-args", "-r", f"__ns:=/{namespace}",
               "-p", f"model:={default_model_path()}", "-p", "backend:=onnxruntime",
               "-p", "onnxruntime.intra_op_threads:=1"]
    for param in params:
        command += ["-p", param]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.parametrize("executor", ["events", "single_threaded"])
def test_the_node_process_serves_frames_parameters_and_diagnostics_and_stops_cleanly_with_each_executor(
        rclpy_context, executor):
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient

    if executor == "events" and events_executor_class() is None:
        pytest.skip("this rclpy has no EventsExecutor (Humble, Jazzy before 7.1.4)")
    namespace = f"exec_{executor}"
    process = _node_process(namespace, f"executor:={executor}")
    r = None
    try:
        r = Rig(rclpy_context, namespace, local_node=False, discovery_timeout=40.0,
                alive=lambda: process.poll() is None)
        r.exchange(1.0, need=("depth/image", "depth/camera_info", "points", "scan"))
        # The parameter services are served by the same executor.
        client = AsyncParameterClient(r.probe, r.fqn)
        assert client.wait_for_services(timeout_sec=20.0)
        future = client.set_parameters([Parameter("cloud.decimation", value=2)])
        wait_for(future.done, timeout=10.0)
        assert future.result().results[0].successful
        future = client.get_parameters(["cloud.decimation", "executor", "opencv_threads"])
        wait_for(future.done, timeout=10.0)
        assert [v.integer_value or v.string_value for v in future.result().values] == [2, executor, 1]
        # The inference thread's CPU per frame, and the network's inside it, reach /diagnostics.
        for t in (2.0, 2.1, 2.2):
            r.exchange(t)
        status = r.diagnostics(lambda values: "cpu network per frame (ms)" in values)
        values = {kv.key: float(kv.value) for kv in status.values if kv.key.startswith("cpu ")}
        assert 0 < values["cpu network per frame (ms)"] < values["cpu inference thread per frame (ms)"]
    finally:
        if r is not None:
            r.close()
        output = interrupt(process, timeout=30)
    assert process.returncode == 0, output[-3000:]
    name = "EventsExecutor" if executor == "events" else "SingleThreadedExecutor"
    assert f"spinning with rclpy {name}" in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]


def test_an_executor_this_rclpy_cannot_give_is_a_one_line_fatal_error():
    process = _node_process("exec_bad", "executor:=multi_threaded")
    try:
        output, _ = process.communicate(timeout=90)
    finally:
        interrupt(process)
    assert process.returncode == 1, output[-3000:]
    assert "executor" in output and "Traceback" not in output, output[-3000:]


def test_on_an_rclpy_without_the_events_executor_auto_spins_with_the_single_threaded_one(monkeypatch, rclpy_context):
    """Humble's rclpy (stand-in: rclpy.experimental made unimportable) gets the SingleThreadedExecutor."""
    from rclpy.executors import SingleThreadedExecutor

    from mde_ros.ros.executor import make_executor

    monkeypatch.setitem(sys.modules, "rclpy.experimental", None)  # `import` raises ImportError
    assert events_executor_class() is None
    executor, name = make_executor("auto", rclpy_context)
    assert isinstance(executor, SingleThreadedExecutor) and name == "rclpy SingleThreadedExecutor"
    executor.shutdown()
    with pytest.raises(ValueError, match="EventsExecutor"):
        make_executor("events", rclpy_context)
