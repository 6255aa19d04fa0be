"""`mde-ros`: one entry point for predict, demo, bench, export, quantize, card, node, replay and play."""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

# name -> (module, help). Modules are imported only when their command runs, so `--help` stays fast
# and the node never pays for torch.
COMMANDS = {
    "predict": ("mde_ros.commands.predict", "depth, colourised preview and point cloud for image files"),
    "demo": ("mde_ros.commands.demo", "run the shipped model over the built-in demo sequence"),
    "bench": ("mde_ros.commands.bench", "per-stage timings of backends, node outputs and bag replay"),
    "stability": ("mde_ros.commands.stability", "figures for the temporal filter and scale anchoring on synthetic "
                  "sequences"),
    "yardstick": ("mde_ros.commands.yardstick", "the held-out synthetic benchmark models are chosen with (AbsRel per "
                  "kind, mean over kinds)"),
    "export": ("mde_ros.commands.export", "export a .pt model bundle to ONNX (with its card)"),
    "quantize": ("mde_ros.commands.quantize", "INT8 Q/DQ ONNX of a model, calibrated on images or a bag"),
    "card": ("mde_ros.commands.card", "write (--preset) or check the card of a bring-your-own ONNX model"),
    "replay": ("mde_ros.bags.replay", "run a rosbag2 bag through the pipeline into a new bag"),
    "play": ("mde_ros.bags.player", "publish a rosbag2 bag into a live ROS graph"),
}


# The launch file's arguments that are remaps, not parameters (launch/depth.launch.py).
LAUNCH_REMAPS = {"image_topic": "image", "camera_info_topic": "camera_info", "namespace": "__ns",
                 "node_name": "__node"}
# Its arguments named otherwise than their parameter (the backend options' come from their table).
LAUNCH_RENAMES = {"scan_output_frame": "scan.output_frame"}


def launch_parameter_names() -> dict[str, str]:
    """launch argument -> node parameter, where the names differ (dla_core -> tensorrt.dla_core, ...)."""
    from mde_ros.inference.options import launch_arguments

    renames = {argument: param for argument, param, _, _ in launch_arguments() if argument != param}
    return {**renames, **LAUNCH_RENAMES}


def launch_style_arguments(argv: Sequence[str]) -> list[str]:
    """`name:=value` words as `ros2 launch mde_ros depth.launch.py` takes them, as ROS arguments: the
    launch file's remap arguments become `-r` remaps (image_topic, camera_info_topic, namespace,
    node_name), `params_file:=F` becomes --params-file F, every other one a parameter `-p name:=value`
    under its parameter name (dla_core:=0 -> tensorrt.dla_core, scan_output_frame -> scan.output_frame).
    Words after an explicit --ros-args, and words after -p/-r/--param/--remap, are left as they are."""
    out: list[str] = []
    raw = False
    previous = ""
    renames = launch_parameter_names()
    for word in argv:
        if raw or word == "--ros-args":
            raw = True
            out.append(word)
            continue
        name, sep, value = word.partition(":=")
        if not sep or word.startswith("-") or previous in ("-p", "-r", "--param", "--remap", "--params-file"):
            out.append(word)
        elif name == "params_file":
            out += ["--params-file", value]
        elif name in LAUNCH_REMAPS:
            if name == "namespace" and value and not value.startswith("/"):
                value = "/" + value
            out += ["-r", f"{LAUNCH_REMAPS[name]}:={value}"]
        else:
            out += ["-p", f"{renames.get(name, name)}:={value}"]
        previous = word
    return out


def _node(argv: Sequence[str]) -> int:
    """`mde-ros node [--params-file F] [ROS args]`: the same node as `ros2 run mde_ros depth_node`.

    Launch-style `name:=value` words (model:=X, backend:=tensorrt, image_topic:=/cam/image_raw) are
    accepted as `ros2 launch` takes them (launch_style_arguments)."""
    parser = argparse.ArgumentParser(prog="mde-ros node", description="run the depth node")
    parser.add_argument("--params-file", help="ROS parameter YAML (default: the shipped config/depth.yaml)")
    args, ros_args = parser.parse_known_args(launch_style_arguments(argv))
    from mde_ros.resources import default_params_file
    from mde_ros.ros import depth_node

    params = args.params_file or default_params_file()
    # The params file comes first so the user's own `-p name:=value` overrides it.
    ros = ["--ros-args", "--params-file", str(params)] if params else ["--ros-args"]
    return depth_node.main([sys.argv[0], *ros, *ros_args]) or 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "node":
        return _node(argv[1:])
    parser = argparse.ArgumentParser(prog="mde-ros", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("node", help="run the ROS 2 depth node (same as `ros2 run mde_ros depth_node`)")
    for name, (module, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(_module=module)
        # Argument definitions need the module; import it only for the command being run.
        if argv and argv[0] == name:
            importlib.import_module(module).add_arguments(command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return _run(args)


TRACEBACK_ENV = "MDE_ROS_TRACEBACK"  # "1": let an unexpected error show its traceback


def _run(args: argparse.Namespace) -> int:
    """A command's run(): Ctrl-C / SIGTERM and unexpected errors become one line and a non-zero exit
    (130 / 143 / 1), never a traceback; replay and predict stop at a frame boundary themselves."""
    import os
    import signal

    from mde_ros import stopping

    stopping.raise_on_sigterm()
    prog = f"mde-ros {args.command}"
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (stopping.Terminated)
        signum = getattr(exc, "signum", signal.SIGINT)
        print(f"{prog}: interrupted ({stopping.signal_name(signum)})", file=sys.stderr)
        return stopping.exit_code(signum)
    except ModuleNotFoundError as exc:  # a runtime-only install running a torch command, say
        if os.environ.get(TRACEBACK_ENV) == "1":
            raise
        print(f"{prog}: needs the Python package {exc.name!r}, which is not installed here", file=sys.stderr)
        return 1
    except Exception as exc:
        if os.environ.get(TRACEBACK_ENV) == "1":
            raise
        text = (str(exc).strip().splitlines() or [""])[0]
        print(f"{prog}: unexpected error: {type(exc).__name__}: {text} (set {TRACEBACK_ENV}=1 for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
