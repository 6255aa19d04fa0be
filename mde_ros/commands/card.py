"""`mde-ros card`: write or check the sidecar card of a bring-your-own ONNX depth network.

    mde-ros card --preset depth-anything-v2-metric-indoor model.onnx   # -> model.card.json
    mde-ros card --check model.onnx                                    # the card against the graph
    mde-ros card --list                                                # presets and their export commands
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mde_ros.models.presets import PRESETS

    parser.add_argument("model", type=Path, nargs="?", help="the ONNX file")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--preset", choices=sorted(PRESETS), help="write this family's card for MODEL")
    action.add_argument("--check", action="store_true", help="check MODEL's existing card against its graph")
    action.add_argument("--list", action="store_true", help="list the presets with their export commands")
    parser.add_argument("--out", type=Path, default=None, help="card path (default: MODEL.card.json beside it)")
    parser.add_argument("--name", default=None, help="card name (default: the model file's stem)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing card")


def _fail(message: str, code: int = 1) -> int:
    print(f"mde-ros card: {message}", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    from mde_ros.models.card import CardError, card_path_for, load_card_for
    from mde_ros.models.onnx_io import check_model_io
    from mde_ros.models.preset_checks import checked_card_for_preset
    from mde_ros.models.presets import PRESETS

    if args.list:
        for name, preset in PRESETS.items():
            print(f"{name}: {preset.description}\n  export: {preset.export}")
        return 0
    if args.model is None or not (args.preset or args.check):
        return _fail("give --preset NAME MODEL.onnx, --check MODEL.onnx or --list", 2)
    if args.model.suffix != ".onnx" or not args.model.is_file():
        return _fail(f"{args.model}: expected an existing .onnx file", 2)
    try:
        if args.check:
            card = load_card_for(args.model)
            check_model_io(args.model, card)
            print(f"{args.model}: card {card.name!r} fits ({card.output}, {card.input_height}x{card.input_width}, "
                  f"{card.resize_policy})")
            return 0
        out = args.out or card_path_for(args.model)
        if out.exists() and not args.force:
            return _fail(f"{out} exists: pass --force to overwrite it")
        card = checked_card_for_preset(args.preset, args.model, args.name)
        card.save(out)
    except CardError as exc:
        return _fail(str(exc))
    except OSError as exc:  # --out in a missing or read-only folder, a full disk
        return _fail(f"cannot write {out}: {exc.strerror or exc}")
    print(f"wrote {out}: {card.output}, input {card.input_height}x{card.input_width} ({card.resize_policy}), "
          f"depth output {card.output_name!r}" + (f", sky output {card.sky_output!r}" if card.sky_output else ""))
    if card.is_relative:
        print("  relative model: the node publishes depth/relative; metres need scale anchors")
    return 0
