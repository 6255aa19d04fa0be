"""Every backend option, once: its create_backend keyword, ROS parameter, launch argument and CLI flag.

The node, the launch file and the commands (`predict`, `replay`, `bench`) all read this table, so
an option reachable in one place is reachable in all, with the same validation and messages.
ROS parameters cannot be "unset", so each has a value meaning "the backend's default" (0, -1, "").
"""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from typing import Any

from mde_ros.inference.tensorrt_build import TYPING_MODES


@dataclass(frozen=True)
class BackendOption:
    option: str                 # create_backend keyword
    param: str                  # ROS parameter (read-only)
    launch: str                 # launch argument
    flag: str                   # CLI flag
    kind: str                   # "int" | "bool" | "str" | "size" | "path"
    unset: Any                  # the ROS value meaning "backend default"
    help: str
    backends: tuple[str, ...]
    low: int | None = None      # inclusive range of an int
    high: int | None = None
    choices: tuple[str, ...] = ()
    scale: int = 1              # ROS/CLI value * scale = option value (workspace in MiB -> bytes)


BACKEND_OPTIONS: tuple[BackendOption, ...] = (
    BackendOption("intra_op_threads", "onnxruntime.intra_op_threads", "intra_op_threads", "--threads", "int", 0,
                  "onnxruntime intra-op threads; 0: onnxruntime's default (one per core)", ("onnxruntime",),
                  low=0, high=1024),
    BackendOption("trt_provider", "onnxruntime.trt_provider", "trt_provider", "--trt-provider", "bool", False,
                  "onnxruntime on cuda: put its TensorRT execution provider first (needs onnxruntime-gpu "
                  "built with TensorRT)", ("onnxruntime",)),
    BackendOption("workspace_bytes", "tensorrt.workspace_mb", "workspace_mb", "--workspace-mb", "int", 1024,
                  "TensorRT builder workspace in MiB", ("tensorrt",), low=1, high=1 << 20, scale=1 << 20),
    BackendOption("dla_core", "tensorrt.dla_core", "dla_core", "--dla-core", "int", -1,
                  "Jetson DLA core for the TensorRT engine (fp16/int8, static shape, GPU fallback); -1: GPU",
                  ("tensorrt",), low=-1, high=15),
    BackendOption("max_batch", "tensorrt.max_batch", "max_batch", "--max-batch", "int", 1,
                  "largest batch of the TensorRT engine's profile (also onnxruntime's TensorRT provider)",
                  ("tensorrt", "onnxruntime"), low=1, high=256),
    BackendOption("min_size", "tensorrt.min_size", "min_size", "--min-size", "size", "",
                  "smallest input HxW of the TensorRT profile, e.g. 240x320; empty: the card's size",
                  ("tensorrt", "onnxruntime")),
    BackendOption("max_size", "tensorrt.max_size", "max_size", "--max-size", "size", "",
                  "largest input HxW of the TensorRT profile; empty: the card's size", ("tensorrt", "onnxruntime")),
    BackendOption("typing", "tensorrt.typing", "typing", "--typing", "str", "auto",
                  "TensorRT network typing: auto (strongly typed; 10.x DLA: builder flags), strong, weak "
                  "(builder flags; TensorRT 10.x only)", ("tensorrt",), choices=TYPING_MODES),
    BackendOption("rebuild", "tensorrt.rebuild", "rebuild_engine", "--rebuild-engine", "bool", False,
                  "rebuild the TensorRT engine even if a cached one fits", ("tensorrt",)),
    BackendOption("int8_model", "int8.model", "int8_model", "--int8-model", "path", "",
                  "precision int8: the Q/DQ model to run; empty: MODEL.int8.<target>.onnx / MODEL.int8.onnx "
                  "beside the model", ("tensorrt", "onnxruntime")),
    BackendOption("calibration", "int8.calibration", "calibration", "--calibration", "path", "",
                  "precision int8 without a Q/DQ model: a folder of images or a rosbag2 folder to build one "
                  "from (mde-ros quantize, once; cached)", ("tensorrt", "onnxruntime")),
)
BY_PARAM = {o.param: o for o in BACKEND_OPTIONS}
BY_OPTION = {o.option: o for o in BACKEND_OPTIONS}


def parse_size(text: str, name: str = "size") -> tuple[int, int]:
    """'240x320' (height x width) -> (240, 320); ValueError with the expected form otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if not match or min(int(match.group(1)), int(match.group(2))) < 1:
        raise ValueError(f"{name} must be HEIGHTxWIDTH with positive integers, e.g. 240x320; got {text!r}")
    return int(match.group(1)), int(match.group(2))


def convert(spec: BackendOption, value: Any, name: str | None = None) -> tuple[bool, Any]:
    """(is set, backend option value) of one ROS/CLI value; ValueError naming `name` if it is bad."""
    name = name or spec.param
    if value is None or value == spec.unset:
        return False, None
    if spec.kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false, got {value!r}")
        return True, value
    if spec.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        if (spec.low is not None and value < spec.low) or (spec.high is not None and value > spec.high):
            raise ValueError(f"{name} must be in {spec.low}..{spec.high}, got {value}")
        return True, value * spec.scale
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {value!r}")
    if spec.kind == "size":
        return True, parse_size(value, name)
    if spec.choices and value not in spec.choices:
        raise ValueError(f"{name} must be one of {', '.join(spec.choices)}, got {value!r}")
    return True, value


def options_from_params(values: dict[str, Any], backend: str, precision: str = "fp32") -> dict[str, Any]:
    """create_backend keyword options from ROS parameter values (param name -> value).

    Unset values are left out; a value set for options the chosen backend does not take is an error
    naming the parameter (with backend 'auto' each candidate takes what it understands).
    """
    options = {}
    for param, value in values.items():
        spec = BY_PARAM[param]
        is_set, converted = convert(spec, value)
        if not is_set:
            continue
        if backend != "auto" and backend not in spec.backends:
            raise ValueError(f"{param} is set, but backend {backend!r} does not use it "
                             f"(it is for {' / '.join(spec.backends)})")
        if spec.option in ("int8_model", "calibration") and precision != "int8":
            raise ValueError(f"{param} is set, but precision is {precision!r}: it is used with precision int8")
        options[spec.option] = converted
    return options


def add_cli_arguments(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """The backend options as CLI flags (a group "backend options"); `skip` names options a command
    already has its own flag for."""
    group = parser.add_argument_group("backend options", "as the node's parameters of the same names")
    for spec in BACKEND_OPTIONS:
        if spec.option in skip:
            continue
        dest = f"backend_{spec.option}"
        if spec.kind == "bool":
            group.add_argument(spec.flag, dest=dest, action="store_true", help=f"{spec.help} ({spec.param})")
        else:
            group.add_argument(spec.flag, dest=dest, default=None, type=int if spec.kind == "int" else str,
                               choices=spec.choices or None, metavar=None if spec.choices else spec.kind.upper(),
                               help=f"{spec.help} ({spec.param})")


def options_from_args(args: argparse.Namespace, backend: str, precision: str = "fp32") -> dict[str, Any]:
    """create_backend options from the flags of add_cli_arguments (ValueError names the flag)."""
    values = {}
    for spec in BACKEND_OPTIONS:
        dest = f"backend_{spec.option}"
        if hasattr(args, dest):
            value = getattr(args, dest)
            values[spec.param] = spec.unset if value is None or value is False else value
    try:
        return options_from_params(values, backend, precision)
    except ValueError as exc:
        message = str(exc)
        for spec in BACKEND_OPTIONS:  # speak the command line's language
            message = message.replace(spec.param, spec.flag)
        raise ValueError(message) from exc
