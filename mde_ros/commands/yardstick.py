"""`mde-ros yardstick [MODEL ...]`: the held-out synthetic benchmark every model choice is made with
(mde_ros.yardstick): AbsRel / delta1 / RMSE per kind (table-top, room, hall of the wider synthetic world
at 640x480 and 1280x720, and the old generator's rooms) and the mean over kinds, in metres, through the
node's pipeline. With several models the first is the reference: each other one is said to beat it
only when its mean over kinds AND every kind are better.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="*", type=Path,
                        help="models (.onnx with card, or .pt bundle); default: the shipped model. The first is the "
                             "reference the others are compared with")
    parser.add_argument("--backend", default="onnxruntime", help="inference backend (default onnxruntime)")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: its default)")
    parser.add_argument("--scenes", type=int, default=8, help="scenes per world kind (default 8)")
    parser.add_argument("--views", type=int, default=1, help="views per scene and frame size (default 1)")
    parser.add_argument("--classic", type=int, default=16, help="frames of the old generator (default 16)")
    parser.add_argument("--json", type=Path, default=None, help="write every model's results here")


def _fail(message: str) -> int:
    print(f"mde-ros yardstick: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:


    from mde_ros.pipeline.estimator import DepthEstimator, EstimatorConfig
    from mde_ros.resources import default_model_path
    from mde_ros.yardstick import YardstickSpec, beats, format_table, score_frames, yardstick_frames

    try:
        spec = YardstickSpec(scenes=args.scenes, views=args.views, classic=args.classic)
    except ValueError as exc:
        return _fail(str(exc))
    if args.threads < 0:
        return _fail(f"--threads must be >= 0, got {args.threads}")
    models = list(args.models) or [default_model_path()]
    missing = [str(m) for m in models if not Path(m).is_file()]
    if missing:
        return _fail(f"model file(s) not found: {', '.join(missing)}")
    estimators = {}
    for model in models:
        options = {"intra_op_threads": args.threads} if args.threads and args.backend == "onnxruntime" else {}
        try:
            estimators[str(model)] = DepthEstimator.from_model(
                model, backend=args.backend, config=EstimatorConfig(camera_aware_rescale=True), **options)
        except Exception as exc:  # one line, not a traceback: a bad card, a missing runtime, a corrupt file
            return _fail(f"cannot load {model}: {type(exc).__name__}: {exc}")
    print(f"yardstick: {spec.n_frames} frames per model ({spec.scenes} scenes x {spec.views} view(s) x 2 sizes per "
          f"world kind, {spec.classic} classic), {len(models)} model(s)", flush=True)
    frames = list(yardstick_frames(spec))   # rendered once, scored by every model
    results, seconds = {}, {}
    for name, estimator in estimators.items():
        start = time.perf_counter()
        results[name] = score_frames(lambda rgb, intr: estimator.estimate(rgb, intr).depth, iter(frames))
        seconds[name] = time.perf_counter() - start
        results[name]["model"] = {"path": name, "card": estimator.card.name,
                                  "input": [estimator.card.input_height, estimator.card.input_width]}
    print(format_table({Path(n).name: r for n, r in results.items()}))
    reference = next(iter(results))
    for name, result in results.items():
        worst = result["worst_kind"]
        line = (f"{Path(name).name}: mean over kinds AbsRel {result['mean_over_kinds']['abs_rel']:.3f}, worst kind "
                f"{worst['kind']} {worst['abs_rel']:.3f} ({seconds[name]:.0f} s)")
        if name != reference:
            better, reasons = beats(result, results[reference])
            result["beats_reference"] = {"reference": reference, "beats": better, "reasons": reasons}
            line += f"; beats {Path(reference).name}: " + ("yes" if better else "no (" + "; ".join(reasons) + ")")
        print(line)
    if args.json is not None:
        try:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=1, default=float) + "\n")
        except OSError as exc:
            return _fail(f"cannot write {args.json}: {exc}")

    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mde-ros yardstick", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
