"""Every backend option, once: its create_backend keyword, ROS parameter, launch argument and CLI flag.

The rows come from the backends' specs (mde_ros.inference.spec: each backend module declares its own)
plus the model-file options below (used by mde_ros.modelfiles, which makes the file a backend runs).
The node, the launch file and the commands (`predict`, `replay`, `bench`) all read this table, so an
option reachable in one place is reachable in all, with the same validation and messages.
ROS parameters cannot be "unset", so each has a value meaning "the backend's default" (0, -1, "").
"""
from __future__ import annotations

import argparse
import dataclasses
import re
from typing import Any

from mde_ros.inference.registry import SPECS
from mde_ros.inference.spec import AUTO, SWITCH_CHOICES, BackendOption

__all__ = ["BackendOption", "BACKEND_OPTIONS", "MODEL_FILE_OPTIONS", "BY_PARAM", "BY_OPTION", "parse_size",
           "convert", "options_from_params", "add_cli_arguments", "options_from_args", "launch_arguments"]

# Options of the model file (mde_ros.modelfiles), for the backends that run int8.
MODEL_FILE_OPTIONS: tuple[BackendOption, ...] = (
    BackendOption("int8_model", "int8.model", "int8_model", "--int8-model", "path", "",
                  "precision int8: the Q/DQ model to run; empty: MODEL.int8.<target>.onnx / MODEL.int8.onnx "
                  "beside the model"),
    BackendOption("calibration", "int8.calibration", "calibration", "--calibration", "path", "",
                  "precision int8 without a Q/DQ model: a folder of images or a rosbag2 folder to build one "
                  "from (mde-ros quantize, once; cached)"),
)
INT8 = "int8"
_MODEL_FILE_NAMES = frozenset(o.option for o in MODEL_FILE_OPTIONS)


def _table() -> tuple[BackendOption, ...]:
    """Each option once, in spec order, with the backends that take it."""
    rows: dict[str, BackendOption] = {}
    takers: dict[str, list[str]] = {}
    for spec in SPECS:
        for row in spec.options:
            if rows.setdefault(row.option, row) != row:
                raise ValueError(f"option {row.option!r} is declared twice, differently ({spec.name})")
            takers.setdefault(row.option, []).append(spec.name)
    int8_backends = [s.name for s in SPECS if any(INT8 in s.runs(d, INT8, {o: True for o in s.option_precisions})
                                                  for d in s.devices)]
    for row in MODEL_FILE_OPTIONS:
        rows[row.option], takers[row.option] = row, int8_backends
    return tuple(dataclasses.replace(row, backends=tuple(takers[name])) for name, row in rows.items())


BACKEND_OPTIONS: tuple[BackendOption, ...] = _table()
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
    if spec.kind == "switch":
        if value not in SWITCH_CHOICES:
            raise ValueError(f"{name} must be one of {', '.join(SWITCH_CHOICES)}, got {value!r}")
        return True, value == SWITCH_CHOICES[1]
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
        if backend != AUTO and backend not in spec.backends:
            raise ValueError(f"{param} is set, but backend {backend!r} does not use it "
                             f"(it is for {' / '.join(spec.backends)})")
        if spec.option in _MODEL_FILE_NAMES and precision != INT8:
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


def launch_arguments() -> list[tuple[str, str, type, str]]:
    """(launch argument, node parameter, type, description) of every option, for launch/depth.launch.py:
    passed to the node only when given, so a params file stays authoritative."""
    return [(o.launch, o.param, o.ros_type, f"{o.param}: {o.help}; empty: the params file's")
            for o in BACKEND_OPTIONS]
