"""The model flags shared by every command that runs a model (predict, demo, replay) and the estimator they name.

Below the commands and bags/replay (both use it), above the loader (mde_ros.modelfiles) it calls.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from mde_ros.inference import BACKEND_NAMES, BackendUnavailable
from mde_ros.inference.base import PRECISIONS
from mde_ros.pipeline.preprocess import RESIZE_POLICIES


class CommandError(RuntimeError):
    """A user-facing failure: printed as one line, exit code 1."""


def add_model_arguments(parser: argparse.ArgumentParser, skip_options: tuple[str, ...] = ()) -> None:
    """--model/--backend/--device/--precision/... and every backend option (mde_ros.inference.options),
    except those in `skip_options` (a command's own flag for one, e.g. replay's --threads)."""
    from mde_ros.inference.options import add_cli_arguments

    group = parser.add_argument_group("model")
    group.add_argument("--model", type=Path, default=None,
                       help="model file (.onnx with its card, or a .pt bundle); default: the shipped demo model")
    group.add_argument("--backend", choices=BACKEND_NAMES, default="auto")
    group.add_argument("--device", default="cpu", help="cpu or cuda")
    group.add_argument("--precision", default="fp32", choices=PRECISIONS,
                       help="fp16: the model converted to fp16 (GPU backends); int8: the model's Q/DQ int8 model "
                            "(--int8-model, MODEL.int8.onnx beside it, or built from --calibration)")
    group.add_argument("--resize-policy", default=None, choices=RESIZE_POLICIES,
                       help="override the model card's resize policy (default: the card's)")
    group.add_argument("--no-rescale", action="store_true",
                       help="disable the camera-aware metric rescale (depth x f_camera / f_training)")
    group.add_argument("--device-pipeline", action="store_true",
                       help="pre/post-processing on the backend's device, as the node's device_pipeline: torch on "
                            "CUDA (CUDA graphs), onnxruntime / tensorrt (MODEL.fused.onnx beside the model, for "
                            "images of its camera size); other images and backends: numpy")
    add_cli_arguments(parser, skip=skip_options)


def estimator_config_of(args: argparse.Namespace):
    """The EstimatorConfig of add_model_arguments' flags (predict, replay)."""
    from mde_ros.pipeline.estimator import EstimatorConfig

    return EstimatorConfig(camera_aware_rescale=not args.no_rescale, resize_policy=args.resize_policy,
                           device_pipeline=args.device_pipeline)


def backend_options_of(args: argparse.Namespace) -> dict:
    """create_backend options of the backend flags; CommandError names a bad flag."""
    from mde_ros.inference.options import options_from_args

    try:
        return options_from_args(args, args.backend, args.precision)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc


def build_estimator(args: argparse.Namespace, **backend_options):
    """The DepthEstimator that add_model_arguments' options name; CommandError says why it cannot load."""
    from mde_ros.modelfiles import load_estimator
    from mde_ros.models.card import CardError
    from mde_ros.resources import default_model_path

    try:
        model = args.model if args.model is not None else default_model_path()
    except FileNotFoundError as exc:
        raise CommandError(str(exc)) from exc
    if not Path(model).exists():
        raise CommandError(f"model file not found: {model}")
    config = estimator_config_of(args)
    options = {**backend_options_of(args), **backend_options}
    try:
        return load_estimator(model, backend=args.backend, device=args.device, precision=args.precision,
                              config=config, **options)
    except (CardError, BackendUnavailable, ValueError) as exc:
        raise CommandError(f"cannot load model {model}: {exc}") from exc
    except Exception as exc:  # a runtime's own error for a corrupt file (onnxruntime's InvalidProtobuf, ...)
        raise CommandError(f"cannot load model {model}: {type(exc).__name__}: {exc}") from exc
