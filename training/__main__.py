"""``python -m training train|evaluate|export ...``: one entry point for the three training tools."""
from __future__ import annotations

import sys

COMMANDS = {
    "train": "training.train",
    "evaluate": "training.evaluate",
    "export": "training.export_model",
}
USAGE = ("usage: python -m training {train,evaluate,export} ...\n"
         "  train     train from a recipe        (python -m training train --config training/configs/X.yaml)\n"
         "  evaluate  score a checkpoint/bundle  (python -m training evaluate RUN/best.pt --split test)\n"
         "  export    bundle + ONNX for the node (python -m training export RUN --out models/NAME)\n"
         "'python -m training COMMAND --help' for a command's options.")


def main(argv: list[str] | None = None) -> int:
    from importlib import import_module

    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        print(f"python -m training: unknown command {argv[0]!r}\n{USAGE}", file=sys.stderr)
        return 2
    return import_module(COMMANDS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
