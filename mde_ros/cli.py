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


def _node(argv: Sequence[str]) -> int:
    """`mde-ros node [--params-file F] [ROS args]`: the same node as `ros2 run mde_ros depth_node`."""
    parser = argparse.ArgumentParser(prog="mde-ros node", description="run the depth node")
    parser.add_argument("--params-file", help="ROS parameter YAML (default: the shipped config/depth.yaml)")
    args, ros_args = parser.parse_known_args(argv)
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
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
