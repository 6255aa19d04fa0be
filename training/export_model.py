"""Export a trained checkpoint for the node: ``python -m training.export_model RUN_OR_CKPT --out models/NAME``.

Writes ``NAME.pt`` (model bundle: bare network + card, for the torch backend), ``NAME.onnx`` (for
onnxruntime / TensorRT, card in its metadata) and ``NAME.card.json``. The network is exported
WITHOUT its normalisation: the runtime pipeline normalises with the card's mean/std, the very
values training used inside :class:`training.model_wrapper.DepthModel`.

The card's ``train_focal_px`` is the training camera's fx at NETWORK resolution (e.g. NYU's
518.8579 px at 640 wide becomes 259.43 px for a 320-wide network); the node uses it to rescale
depth for a camera with another field of view. It comes from ``--train-focal-px``, else
``export.train_focal_px``, else what training recorded from the dataset's intrinsics.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from mde_ros.models.card import ModelCard

log = logging.getLogger("training.export_model")


def card_from_checkpoint(state: dict, name: str, *, train_focal_px: float | None = None,
                         metrics: dict | None = None, notes: str | None = None) -> ModelCard:
    """The model card of a training checkpoint (see the module docstring for train_focal_px)."""
    from mde_ros.models.registry import without_build_only
    from training.model_wrapper import normalization
    from training.train import git_commit, reproducible_command

    cfg = state["config"]
    export_cfg = cfg.get("export") or {}
    focal = train_focal_px or export_cfg.get("train_focal_px") or state.get("train_focal_px")
    if focal is None:
        log.warning("no training focal length known (the dataset gives no intrinsics): the card's train_focal_px "
                    "stays null and the node cannot rescale depth for other cameras; pass --train-focal-px")
    mean, std = normalization(cfg["model"])
    height, width = cfg["data"]["input_size"]
    kwargs = without_build_only(cfg["model"].get("kwargs") or {})
    card_metrics = metrics if metrics is not None else {
        "split": "val", "epoch": state["epoch"], **state["val_metrics"]}
    return ModelCard(
        name=name, architecture=cfg["model"]["name"], arch_kwargs=kwargs, input_height=int(height),
        input_width=int(width), mean=mean, std=std, output="metric_depth",
        min_depth=float(export_cfg.get("min_depth", ModelCard.min_depth)),
        max_depth=float(export_cfg.get("max_depth") or cfg["data"]["max_depth"]),
        train_focal_px=float(focal) if focal else None,
        provenance={
            "dataset": cfg["data"]["name"], "config": cfg, "command": state["provenance"].get("command"),
            "trained": state["provenance"].get("date"), "git_commit": state["provenance"].get("git_commit"),
            "phase": state.get("phase"), "epoch": state["epoch"], "global_step": state["global_step"],
            "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"), "export_git_commit": git_commit(),
            "export_command": reproducible_command("training.export_model"),
            **({"notes": notes} if notes else {}),
        },
        metrics=card_metrics,
    )


def export(checkpoint_or_dir: str | Path, out_stem: str | Path, *, train_focal_px: float | None = None,
           onnx: bool = True, verify: bool = True, evaluate_split: str | None = None,
           name: str | None = None, notes: str | None = None, overrides: Sequence[str] = (),
           fp16_weights: bool = False, metrics: dict | None = None) -> dict[str, Path]:
    """Bundle (+ ONNX + card) from ``best.pt`` of a run (or the given checkpoint file).

    ``evaluate_split``: score the model on that split first and put those metrics in the card
    (default: the checkpoint's validation metrics, or ``metrics`` when given). ``overrides`` (``key=value``)
    change the checkpoint's config for this export, e.g. ``data.root=`` where the data lives now,
    ``eval.crop=``, ``export.*``; ``model.*`` is fixed by the weights and cannot be overridden.
    ``fp16_weights``: the ONNX stores its weights as fp16 (fp32 I/O and compute).
    Returns {"bundle", "onnx", "card", "submission"} paths (the ones written).
    """
    from mde_ros.models.bundle import save_bundle
    from mde_ros.models.card import card_path_for
    from training.checkpoint import find_checkpoint, load_checkpoint
    from training.model_wrapper import depth_model_from_checkpoint

    checkpoint = find_checkpoint(checkpoint_or_dir, "best")
    state = load_checkpoint(checkpoint)
    if overrides:
        from training.config import ConfigError, apply_overrides

        fixed = [o for o in overrides if o.partition("=")[0].strip().split(".")[0] == "model"]
        if fixed:
            raise ConfigError(f"{fixed[0]!r}: the model section comes with the checkpoint's weights and cannot be "
                              "overridden at export")
        state = {**state, "config": apply_overrides(state["config"], overrides)}
    cfg = state["config"]
    out_stem = Path(out_stem)
    if out_stem.suffix in (".pt", ".onnx"):
        out_stem = out_stem.with_suffix("")
    model = depth_model_from_checkpoint(state).eval()
    if evaluate_split:
        from training.datasets import build_dataset
        from training.evaluate import evaluate

        result = evaluate(model, build_dataset(cfg["data"], evaluate_split), cfg, out_dir=None, num_vis=0)
        metrics = {"split": evaluate_split, **result["metrics"], "by_range": result["metrics_by_range"],
                   "protocol": result["protocol"]}
    card = card_from_checkpoint(state, name or out_stem.name, train_focal_px=train_focal_px, metrics=metrics,
                                notes=notes)
    paths: dict[str, Path] = {"bundle": save_bundle(_with_suffix(out_stem, ".pt"), model.net, card)}
    if onnx:
        from mde_ros.models.export import export_onnx, verify_onnx

        paths["onnx"] = export_onnx(model.net, card, _with_suffix(out_stem, ".onnx"), fp16_weights=fp16_weights)
        if verify:
            diff = verify_onnx(paths["onnx"], model.net)
            log.info("onnxruntime vs torch (dynamic shape): max |diff| = %.2e m", diff)
    else:
        card.save(card_path_for(paths["bundle"]))
    paths["card"] = card_path_for(paths["bundle"])
    submission_cfg = (cfg.get("export") or {}).get("submission")
    if submission_cfg:
        paths["submission"] = write_submission(paths.get("onnx", paths["bundle"]), submission_cfg,
                                               _with_suffix(out_stem, ".csv"))
    log.info("exported %s -> %s", checkpoint, ", ".join(str(p) for p in paths.values()))
    return paths


def write_submission(model_path: Path, submission_cfg: dict, out_path: Path) -> Path:
    """The Kaggle seed's CSV for ``export.submission: {images: DIR, max_depth: M}``, made by the exported
    model through the node's pipeline (training.submission, the same tool a user runs by hand)."""
    from training import submission

    if not isinstance(submission_cfg, dict) or not submission_cfg.get("images"):
        raise ValueError("export.submission needs {images: folder of test images} (optional max_depth)")
    args = ["--model", str(model_path), "--images", str(submission_cfg["images"]), "--out", str(out_path)]
    if submission_cfg.get("max_depth"):
        args += ["--max-depth", str(submission_cfg["max_depth"])]
    try:
        submission.main(args)
    except SystemExit as exc:  # argparse's error(): the message is already on stderr
        raise ValueError(f"export.submission failed (exit {exc.code}); see the message above") from exc
    return out_path


def _with_suffix(stem: Path, suffix: str) -> Path:
    """stem + suffix, keeping dots in the stem ("nyu.v2" -> "nyu.v2.onnx")."""
    return stem.parent / (stem.name + suffix)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.export_model", description="Export a training run for the mde_ros node.",
        epilog="example: python -m training.export_model runs/nyu34 --out models/nyu_resnet34 --evaluate-split test "
               "data.root=/datasets/nyu")
    parser.add_argument("checkpoint", type=Path, help="training output_dir (uses its best.pt) or a checkpoint file")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="override a value of the checkpoint's config (data.root=..., eval.crop=..., export.*)")
    parser.add_argument("--out", type=Path, required=True, help="output stem: writes STEM.pt, STEM.onnx, STEM.card.json")
    parser.add_argument("--train-focal-px", type=float, help="training camera fx at network resolution (px)")
    parser.add_argument("--no-onnx", action="store_true", help="write only the .pt bundle")
    parser.add_argument("--no-verify", action="store_true", help="skip the onnxruntime vs torch comparison")
    parser.add_argument("--evaluate-split", help="evaluate on this split and store its metrics in the card")
    parser.add_argument("--name", help="model name in the card (default: the output stem)")
    parser.add_argument("--notes", help="free text for the card's provenance (what the model is and is not for)")
    parser.add_argument("--fp16-weights", action="store_true", help="ONNX stores weights as fp16 (fp32 I/O)")
    parser.add_argument("--metrics-json", type=Path,
                        help="card metrics from this JSON file (e.g. training.heldout's) instead of val's")
    return parser


def main(argv: list[str] | None = None) -> int:
    from mde_ros.models.card import CardError
    from training.checkpoint import CheckpointError
    from training.config import ConfigError

    args = build_parser().parse_intermixed_args(argv)   # key=value may come before or after the options
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        paths = export(args.checkpoint, args.out, train_focal_px=args.train_focal_px, onnx=not args.no_onnx,
                       verify=not args.no_verify, evaluate_split=args.evaluate_split, name=args.name,
                       notes=args.notes, overrides=args.overrides, fp16_weights=args.fp16_weights,
                       metrics=json.loads(args.metrics_json.read_text()) if args.metrics_json else None)
    except (CardError, CheckpointError, ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"training.export_model: error: {exc}", file=sys.stderr)
        return 2
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
