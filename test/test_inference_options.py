"""Backend options reach the backend from every entry point: the options table (conversion and
messages), the node's ROS parameters (a real DepthNode with real onnxruntime), the launch file's
arguments and the CLI flags of predict / replay."""
from __future__ import annotations

import argparse
import ast
from pathlib import Path

import pytest

from mde_ros.bags import fixtures
from mde_ros.cli import main
from mde_ros.fileio import write_image
from mde_ros.inference.options import (BACKEND_OPTIONS, BY_PARAM, add_cli_arguments, launch_arguments,
                                       options_from_args, options_from_params, parse_size)
from mde_ros.quantization.calibration import load_calibration_images
from mde_ros.quantization.qdq import quantize_model
from mde_ros.ros.depth_node import DepthNode, StartupError
from mde_ros.ros.parameters import PARAMETERS
from mde_ros.synthetic import render_frame

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny real model and its Q/DQ int8 model beside it (MODEL.int8.onnx)."""
    folder = tmp_path_factory.mktemp("models")
    model = fixtures.export_test_model(folder / "tiny.onnx")
    calib = folder / "calib"
    calib.mkdir()
    for seed in range(900, 903):
        write_image(calib / f"{seed}.png", render_frame(seed, 96, 72).rgb)
    int8 = folder / "tiny.int8.onnx"
    quantize_model(model, int8, load_calibration_images(calib), target="onnxruntime")
    return model, int8


# ---------------------------------------------------------------- the table

def test_every_option_has_a_ros_parameter_a_launch_argument_and_a_flag():
    params = {spec.name for spec in PARAMETERS}
    launch = ast.parse((ROOT / "launch" / "depth.launch.py").read_text())
    # the launch file makes the backend options' arguments and parameter overrides from the table
    assigned = {n.targets[0].id: n.value for n in launch.body if isinstance(n, ast.Assign)}
    assert ast.unparse(assigned["BACKEND_ARGUMENTS"]) == "launch_arguments()"
    spread = [v for k, v in zip(assigned["OVERRIDES"].keys, assigned["OVERRIDES"].values) if k is None]
    assert len(spread) == 1 and ast.unparse(spread[0].generators[0].iter) == "BACKEND_ARGUMENTS"
    declared_from_table = [n for n in ast.walk(launch) if isinstance(n, ast.GeneratorExp)
                           and ast.unparse(n.generators[0].iter) == "BACKEND_ARGUMENTS"
                           and getattr(n.elt.func, "id", None) == "DeclareLaunchArgument"]
    assert len(declared_from_table) == 1
    arguments = {argument: (param, kind) for argument, param, kind, _ in launch_arguments()}
    assert len(arguments) == len(BACKEND_OPTIONS)
    for option in BACKEND_OPTIONS:
        assert option.param in params
        assert arguments[option.launch] == (option.param, {"int": int, "bool": bool}.get(option.kind, str))
        assert option.flag.startswith("--")
    declared = {c.args[0].value for c in ast.walk(launch) if isinstance(c, ast.Call)
                and getattr(c.func, "id", None) == "DeclareLaunchArgument" and isinstance(c.args[0], ast.Constant)}
    assert {"precision", "device"} <= declared and {"precision", "device"} <= set(arguments) | declared


def test_options_come_from_the_backend_specs():
    """Each backend's own rows, the shared profile rows once, and the model-file rows for int8 backends."""
    from mde_ros.inference import SPECS

    by_spec = {spec.name: set(spec.option_names) for spec in SPECS}
    for option in BACKEND_OPTIONS:
        takers = {name for name, names in by_spec.items() if option.option in names}
        assert set(option.backends) == (takers or {"onnxruntime", "tensorrt"}), option.option
    assert {"fast_path", "graph_cache_size"} <= by_spec["torch"]
    assert BY_PARAM["torch.fast_path"].kind == "switch"


def test_conversion_and_defaults():
    values = {o.param: o.unset for o in BACKEND_OPTIONS}
    assert options_from_params(values, "tensorrt") == {}
    values.update({"tensorrt.workspace_mb": 256, "tensorrt.dla_core": 0, "tensorrt.min_size": "120x160",
                   "tensorrt.typing": "strong", "tensorrt.rebuild": True})
    assert options_from_params(values, "tensorrt") == {"workspace_bytes": 256 << 20, "dla_core": 0,
                                                        "min_size": (120, 160), "typing": "strong",
                                                        "rebuild": True}
    assert parse_size(" 240 x 320 ") == (240, 320)


@pytest.mark.parametrize("values,backend,precision,message", [
    ({"tensorrt.min_size": "240by320"}, "tensorrt", "fp32", "tensorrt.min_size must be HEIGHTxWIDTH"),
    ({"tensorrt.typing": "loose"}, "tensorrt", "fp32", "tensorrt.typing must be one of auto, strong, weak"),
    ({"tensorrt.dla_core": -2}, "tensorrt", "fp16", r"tensorrt.dla_core must be in -1..15"),
    ({"tensorrt.dla_core": 0}, "onnxruntime", "fp16", "backend 'onnxruntime' does not use it"),
    ({"int8.model": "m.int8.onnx"}, "auto", "fp32", "precision is 'fp32'"),
    ({"onnxruntime.trt_provider": "yes"}, "onnxruntime", "fp32", "true or false"),
])
def test_bad_values_name_the_parameter(values, backend, precision, message):
    with pytest.raises(ValueError, match=message):
        options_from_params(values, backend, precision)


def test_cli_flags_use_the_same_table_and_speak_in_flags():
    parser = argparse.ArgumentParser()
    add_cli_arguments(parser)
    args = parser.parse_args(["--dla-core", "1", "--workspace-mb", "64", "--max-size", "480x640", "--rebuild-engine"])
    assert options_from_args(args, "tensorrt", "fp16") == {"dla_core": 1, "workspace_bytes": 64 << 20,
                                                           "max_size": (480, 640), "rebuild": True}
    with pytest.raises(ValueError, match="--max-size must be HEIGHTxWIDTH"):
        options_from_args(parser.parse_args(["--max-size", "big"]), "tensorrt")


# ---------------------------------------------------------------- the node

def start(rclpy_context, *overrides: str, namespace: str = "opts") -> DepthNode:
    args = ["--ros-args"] + [a for o in overrides for a in ("-p", o)]
    return DepthNode(context=rclpy_context, namespace=namespace, cli_args=args)


def test_node_precision_int8_runs_the_qdq_model_beside_the_model(rclpy_context, models):
    model, int8 = models
    node = start(rclpy_context, f"model:={model}", "backend:=onnxruntime", "precision:=int8",
                 "onnxruntime.intra_op_threads:=1")
    try:
        info = node._estimator.backend.describe()
        assert info["model"] == str(int8) and info["precision"] == "int8" and info["intra_op_threads"] == 1
        assert node.get_parameter("tensorrt.dla_core").value == -1
    finally:
        node.destroy_node()


def test_node_refuses_bad_backend_parameters_with_their_names(rclpy_context, models):
    model, _ = models
    with pytest.raises(StartupError, match="tensorrt.min_size must be HEIGHTxWIDTH"):
        start(rclpy_context, f"model:={model}", "backend:=tensorrt", "tensorrt.min_size:=huge", namespace="bad1")
    with pytest.raises(StartupError, match="int8.calibration is set, but precision is 'fp32'"):
        start(rclpy_context, f"model:={model}", "int8.calibration:=/data/bag", namespace="bad2")
    with pytest.raises(StartupError, match="mde-ros quantize"):  # int8 without any Q/DQ model: says how
        start(rclpy_context, f"model:={fixtures.export_test_model(model.parent / 'other.onnx')}",
              "precision:=int8", namespace="bad3")


def test_torch_fast_path_and_graph_cache_size_reach_the_backend(rclpy_context, tmp_path):
    """torch's options are parameters like the others: the runner on the CPU (fast_path on) with its
    shape cache at the size asked; auto leaves the backend's default (off on the CPU)."""
    pytest.importorskip("torch")
    from mde_ros.models.bundle import save_bundle
    from mde_ros.models.card import ModelCard
    from mde_ros.models.registry import build_model

    card = ModelCard(name="plain-small", architecture="unet_plain", arch_kwargs={"base_channels": 4, "depth": 2},
                     input_height=32, input_width=48)
    bundle = save_bundle(tmp_path / "plain.pt", build_model(card.architecture, **card.arch_kwargs).eval(), card)
    assert options_from_params({"torch.fast_path": "never", "torch.graph_cache_size": 0}, "torch") == {"fast_path": False}
    with pytest.raises(ValueError, match="torch.fast_path must be one of auto, always, never"):
        options_from_params({"torch.fast_path": "on"}, "torch")
    node = start(rclpy_context, f"model:={bundle}", "backend:=torch", "torch.fast_path:=always",
                 "torch.graph_cache_size:=2", namespace="torch_opts")
    try:
        runner = node._estimator.backend.fused_pipeline()
        assert runner is not None and runner.cache.capacity == 2
    finally:
        node.destroy_node()
    node = start(rclpy_context, f"model:={bundle}", "backend:=torch", namespace="torch_default")
    try:
        assert node._estimator.backend.fused_pipeline() is None
    finally:
        node.destroy_node()


# ---------------------------------------------------------------- the CLI

def test_predict_takes_the_backend_flags(models, tmp_path, capsys):
    model, int8 = models
    image = tmp_path / "in.png"
    write_image(image, render_frame(3, 96, 72).rgb)
    code = main(["predict", str(image), "--model", str(model), "--precision", "int8", "--int8-model", str(int8),
                 "--threads", "1", "--out", str(tmp_path / "out")])
    assert code == 0 and (tmp_path / "out" / "in_depth.npy").is_file()
    code = main(["predict", str(image), "--model", str(model), "--backend", "onnxruntime", "--dla-core", "0",
                 "--out", str(tmp_path / "out2")])
    err = capsys.readouterr().err
    assert code == 1 and "--dla-core is set, but backend 'onnxruntime' does not use it" in err
    assert len(err.strip().splitlines()) == 1


def test_replay_takes_the_backend_flags(models, tmp_path, capsys):
    model, int8 = models
    code = main(["replay", str(fixtures.FIXTURE_DIR / fixtures.fixture_name("mcap")), "--out", str(tmp_path / "o"),
                 "--model", str(model), "--precision", "int8", "--int8-model", str(int8), "--no-progress",
                 "--no-points", "--no-scan", "--no-colorized", "--summary", str(tmp_path / "s.json")])
    assert code == 0
    import json

    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["processed"] == fixtures.N_FRAMES
    code = main(["replay", str(fixtures.FIXTURE_DIR / fixtures.fixture_name("mcap")), "--out", str(tmp_path / "p"),
                 "--model", str(model), "--typing", "weak", "--backend", "onnxruntime"])
    assert code == 2 and "--typing is set, but backend 'onnxruntime'" in capsys.readouterr().err


def test_param_table_matches_the_node_parameter_specs():
    for spec in PARAMETERS:
        if spec.name in BY_PARAM:
            assert spec.read_only and spec.default == BY_PARAM[spec.name].unset


def test_onnxruntime_tensorrt_provider_gets_profile_shapes_and_a_versioned_cache(tmp_path):
    from mde_ros.inference.onnxruntime_backend import select_providers
    from mde_ros.inference.tensorrt_build import ort_trt_cache_dir

    cache = ort_trt_cache_dir("1.31.1", "cuda0", root=tmp_path)
    assert cache == tmp_path / "ort-tensorrt" / "ort1.31.1-cuda0"
    profile = {"trt_profile_min_shapes": "image:1x3x240x320", "trt_profile_opt_shapes": "image:1x3x240x320",
               "trt_profile_max_shapes": "image:2x3x480x640"}
    providers = select_providers("cuda:0", ["TensorrtExecutionProvider", "CUDAExecutionProvider",
                                            "CPUExecutionProvider"], trt_provider=True, fp16=True,
                                 engine_cache=cache, profile_options=profile)
    name, options = providers[0]
    assert name == "TensorrtExecutionProvider" and options["trt_fp16_enable"] is True
    assert {k: options[k] for k in profile} == profile
    assert options["trt_engine_cache_path"] == str(cache) and options["trt_timing_cache_path"] == str(cache)
    assert [p if isinstance(p, str) else p[0] for p in providers[1:]] == ["CUDAExecutionProvider",
                                                                        "CPUExecutionProvider"]
