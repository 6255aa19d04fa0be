"""Start-up checks of the node's configuration that rclpy does not make (ROS-free: plain Python).

rcl silently ignores a params file keyed to another node name and rclpy silently keeps a
misspelt parameter (`cloud.decimaton`) as an undeclared override, so the node would start with
defaults and no word. These functions find both, and turn a missing or malformed params file
into one line before rclpy.init prints a traceback for it.
"""
from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Iterable, Sequence

import yaml

# Parameters every rclpy node may be given that are not ours.
ROS_PARAMETERS = ("use_sim_time", "start_type_description_service")
ROS_PREFIXES = ("qos_overrides.",)


def params_files(argv: Sequence[str]) -> list[str]:
    """The `--params-file FILE` arguments inside `--ros-args ... [--]` sections of argv."""
    files, in_ros, i = [], False, 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--ros-args":
            in_ros = True
        elif arg == "--" and in_ros:
            in_ros = False
        elif in_ros and arg == "--params-file" and i + 1 < len(argv):
            files.append(argv[i + 1])
            i += 1
        i += 1
    return files


def params_file_problem(path: str | Path) -> str | None:
    """Why rcl would refuse this params file (missing, unreadable, not YAML, not the
    `node: {ros__parameters: {...}}` layout), in one line; None when it is usable."""
    path = Path(path)
    if not path.is_file():
        return f"params file {path} does not exist" if not path.exists() else f"params file {path} is not a file"
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        return f"cannot read params file {path}: {exc.strerror or exc}"
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        return f"params file {path} is not valid YAML{where}: {getattr(exc, 'problem', None) or exc}"
    if not isinstance(data, dict) or not data:
        return f"params file {path} must map node names to {{ros__parameters: {{...}}}}, e.g. '/**:'"
    for key, value in data.items():
        if not isinstance(key, str):
            return f"params file {path}: node name {key!r} must be a string"
        if not isinstance(value, dict) or not isinstance(value.get("ros__parameters"), dict):
            return f"params file {path}: '{key}' needs a 'ros__parameters:' mapping under it"
    return None


def node_key_matches(key: str, fully_qualified_name: str) -> bool:
    """rcl's rule for a params-file key: '/**' any number of namespace tokens, '*' one token,
    a key without a leading '/' is taken from the root."""
    tokens = [t for t in key.strip().split("/") if t]
    pattern = "".join(r"(?:/[^/]+)*" if t == "**" else r"/[^/]+" if t == "*" else "/" + re.escape(t)
                      for t in tokens)
    return re.fullmatch(pattern or "/", fully_qualified_name) is not None


def unmatched_params_files(files: Iterable[str | Path], fully_qualified_name: str) -> list[str]:
    """A warning for each params file none of whose keys applies to this node."""
    warnings = []
    for path in files:
        try:
            data = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError):
            continue  # params_file_problem reports these
        if not isinstance(data, dict):
            continue
        keys = [str(k) for k in data]
        if not any(node_key_matches(k, fully_qualified_name) for k in keys):
            warnings.append(f"params file {path} has no entry for this node ({fully_qualified_name}): its keys "
                            f"{keys[:5]} match other nodes, so none of its parameters apply (use '/**:' or "
                            f"'{fully_qualified_name}:')")
    return warnings


def unknown_parameters(given: Iterable[str], known: Iterable[str]) -> list[str]:
    """A warning for each given parameter name this node does not have, with the closest known
    name when there is one ("cloud.decimaton: did you mean cloud.decimation?")."""
    known = list(known)
    warnings = []
    for name in sorted(set(given)):
        if name in known or name in ROS_PARAMETERS or name.startswith(ROS_PREFIXES):
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f": did you mean {close[0]}?" if close else " (not a parameter of this node)"
        warnings.append(f"unknown parameter {name!r} ignored{hint}")
    return warnings
