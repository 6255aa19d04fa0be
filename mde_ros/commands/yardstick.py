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
    parser.add_argument("--backend", default="auto",
                        help="inference backend (default auto: onnxruntime for .onnx, torch for a .pt bundle)")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: its default)")
    parser.add_argument("--scenes", type=int, default=12, help="scenes per world kind (default 12)")
    parser.add_argument("--views", type=int, default=1, help="views per scene and frame size (default 1)")
    parser.add_argument("--classic", type=int, default=24, help="frames of the old generator (default 24)")
    parser.add_argument("--json", type=Path, default=None, help="write every model's results here")
    parser.add_argument("--record", action="store_true",
                        help="write each model's figures into its card sidecar (NAME.card.json: metrics.yardstick), "
                             "where the fixture bags' accuracy floor is derived from")


def _fail(message: str) -> int:
    print(f"mde-ros yardstick: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:


    from mde_ros.modelfiles import load_estimator
    from mde_ros.pipeline.estimator import EstimatorConfig
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
        onnx = args.backend == "onnxruntime" or (args.backend == "auto" and Path(model).suffix == ".onnx")
        options = {"intra_op_threads": args.threads} if args.threads and onnx else {}
        try:
            estimators[str(model)] = load_estimator(model, args.backend,
                                                    config=EstimatorConfig(camera_aware_rescale=True), **options)
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
    if args.record:
        for name, result in results.items():
            problem = _record(Path(name), result)
            if problem:
                return _fail(problem)
    if args.json is not None:
        try:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=1, default=float) + "\n")
        except OSError as exc:
            return _fail(f"cannot write {args.json}: {exc}")

    return 0


def _record(model: Path, result: dict) -> str | None:
    """metrics.yardstick of the model's card sidecar := the headline figures of ``result``."""
    from datetime import datetime, timezone

    from mde_ros.models.card import card_path_for, load_card_for

    keep = ("abs_rel", "delta1", "rmse", "n_images")
    card = load_card_for(model)
    card.metrics["yardstick"] = {
        "by_kind": {k: {m: v[m] for m in keep if m in v} for k, v in result["by_kind"].items()},
        "mean_over_kinds": result["mean_over_kinds"], "worst_kind": result["worst_kind"],
        "protocol": result["protocol"], "date": datetime.now(timezone.utc).date().isoformat(),
        "command": "mde-ros yardstick MODEL --record"}
    try:
        card.save(card_path_for(model))
    except OSError as exc:
        return f"cannot write the card of {model}: {exc}"
    print(f"recorded in {card_path_for(model)}")
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mde-ros yardstick", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
