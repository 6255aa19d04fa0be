"""Evaluation: ``python -m training.evaluate MODEL [--config X.yaml] [--split test] [--out DIR] [key=value ...]``.

Protocol (Eigen et al., as BTS / AdaBins / Depth-Anything-V2 metric_depth report metric models):

* scored at the GROUND TRUTH's own resolution: the readers keep each val/test frame's depth as read
  (480x640 for NYU, the full or kb-cropped KITTI frame, ...), and the prediction, made at the network
  input size, is resized up to it bilinearly (the network-size GT is never what is scored);
* valid pixels: ``eval.min_depth < gt < eval.max_depth`` (both strict, as the references), inside the
  crop (``eval.crop``: eigen for NYU, garg for KITTI, none; laid on the FULL frame when the reader cut
  the sample out of it, KITTI's kb_crop, as BTS does) and the reader's own validity (0 = no GT);
* the prediction clipped to [min_depth, max_depth]; a non-finite prediction is scored, not dropped
  (NaN -> min_depth, +inf -> max_depth, -inf -> min_depth, as BTS's evaluation does);
* NO median scaling; metrics per image, then averaged over images.

Writes ``metrics.json`` (mean metrics, metrics by GT range <1, 1-3, 3-5, >5 m, the protocol), prints
the range table, and saves a few ``vis_NNN.png`` panels: image | GT | prediction | |error|.

MODEL is a training checkpoint (its config is used unless --config is given) or a model bundle
(.pt, needs --config for the dataset).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mde_ros.fileio import write_image
from mde_ros.metrics import (DEFAULT_RANGES, METRIC_KEYS, depth_metrics, eigen_crop_mask, format_metrics_table, garg_crop_mask,
                             mean_metrics, metrics_by_range)
from mde_ros.pipeline.colorize import colorize
from training.model_wrapper import DepthModel, depth_model_from_checkpoint

log = logging.getLogger("training.evaluate")

ERROR_MAP_MAX_M = 1.0  # |error| colour scale: saturates at this many metres

# What every metrics.json records about how it was scored (see the module docstring).
PROTOCOL: dict[str, Any] = {
    "resolution": "ground truth (prediction resized up, bilinear)",
    "valid": "min_depth < gt < max_depth",
    "non_finite_prediction": "NaN -> min_depth, +-inf clipped to the range",
    "pred_clipped_to_range": True, "median_scaling": False, "averaging": "per image",
}


def eval_range(cfg: dict) -> tuple[float, float]:
    eval_cfg = cfg.get("eval") or {}
    max_depth = eval_cfg.get("max_depth") or cfg["data"]["max_depth"]
    return float(eval_cfg.get("min_depth") or 1e-3), float(max_depth)


def crop_mask(crop: str, height: int, width: int,
              window: tuple[int, int, int, int] | None = None) -> np.ndarray | None:
    """The evaluation crop for a (height, width) ground truth; with ``window`` (top, left, full_h, full_w)
    the crop is laid on the full frame and the window cut out of it (KITTI kb_crop + garg, as BTS does)."""
    if crop in (None, "none"):
        return None
    top, left, full_h, full_w = window or (0, 0, height, width)
    if crop == "eigen":
        mask = eigen_crop_mask(full_h, full_w)
    elif crop == "garg":
        mask = garg_crop_mask(full_h, full_w)
    else:
        raise ValueError(f"eval.crop must be eigen, garg or none, got {crop!r}")
    return mask[top:top + height, left:left + width]


def load_for_eval(model_or_path: DepthModel | str | Path | tuple[nn.Module, Any],
                  map_location: str | torch.device = "cpu") -> tuple[DepthModel, dict | None]:
    """A DepthModel (RGB in [0, 1]) from a model, a (net, card) pair, a bundle or a checkpoint.

    Returns the model and, for a training checkpoint, its config.
    """
    if isinstance(model_or_path, DepthModel):
        return model_or_path, None
    if isinstance(model_or_path, tuple):
        net, card = model_or_path
        return DepthModel(net, card.mean, card.std), None
    if isinstance(model_or_path, nn.Module):
        raise TypeError("evaluate() needs to know the input normalisation: pass a DepthModel, a (net, card) "
                        "pair, a bundle path or a checkpoint path, not a bare network")
    from training.checkpoint import CheckpointError, load_checkpoint

    path = Path(model_or_path)
    try:
        state = load_checkpoint(path, map_location)
    except CheckpointError:
        from mde_ros.models.bundle import load_bundle

        net, card = load_bundle(path, map_location)
        return DepthModel(net, card.mean, card.std), None
    return depth_model_from_checkpoint(state), state["config"]


def eval_collate(samples: list[dict]) -> dict[str, Any]:
    """Batch the network inputs; keep the ground truth at native resolution as a list (sizes may differ)."""
    from torch.utils.data import default_collate

    native = ("gt_depth", "gt_valid")
    batch = default_collate([{k: v for k, v in s.items() if k not in native} for s in samples])
    for key in native:
        if all(key in s for s in samples):
            batch[key] = [s[key] for s in samples]
    return batch


def predictions(model: DepthModel, dataset: Dataset, *, device: str | torch.device = "cpu", batch_size: int = 4,
                num_workers: int = 0, amp_dtype: torch.dtype | None = None
                ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[int, ...] | None]]:
    """(image HxWx3 float [0,1], pred hxw, gt hxw, valid hxw, window) per sample at the GROUND TRUTH's own
    resolution; ``window`` is the sample's ``gt_window`` (see crop_mask) or None.

    The ground truth is the sample's ``gt_depth`` / ``gt_valid`` (native resolution, see DepthDataset)
    when it has them, else its network-size ``depth`` / ``valid``; the prediction is resized up to it
    bilinearly (align_corners=False), as BTS / AdaBins / Depth-Anything-V2 evaluate.
    """
    device = torch.device(device)
    was_training = model.training
    model.to(device).eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=eval_collate)
    try:
        with torch.no_grad():
            for batch in loader:
                image = batch["image"].to(device)
                with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                    pred = model(image)
                pred = pred.float()
                gts = batch.get("gt_depth") or list(batch["depth"])
                valids = batch.get("gt_valid") or list(batch["valid"])
                for i in range(pred.shape[0]):
                    gt = gts[i]
                    sample_pred = pred[i:i + 1]
                    if sample_pred.shape[-2:] != gt.shape[-2:]:
                        sample_pred = F.interpolate(sample_pred, size=gt.shape[-2:], mode="bilinear",
                                                    align_corners=False)
                    window = tuple(int(v) for v in batch["gt_window"][i]) if "gt_window" in batch else None
                    yield (batch["image"][i].permute(1, 2, 0).numpy(), sample_pred[0, 0].cpu().numpy(),
                           gt[0].numpy(), valids[i][0].numpy().astype(bool), window)
    finally:
        model.train(was_training)


KIND_MEAN = "_kind_mean"


def selection_metrics() -> tuple[str, ...]:
    """Names ``train.best_metric`` may take: every Eigen metric, and its mean over scene kinds
    (``abs_rel_kind_mean``: datasets whose samples have a kind, e.g. synthetic_world)."""
    return tuple(METRIC_KEYS) + tuple(f"{key}{KIND_MEAN}" for key in METRIC_KEYS)


def metrics_by_kind(dataset: Dataset, per_image: list[dict]) -> dict[str, dict]:
    """Mean metrics per scene kind, when the dataset knows its samples' kinds (else {})."""
    kind_of = getattr(dataset, "kind_of", None)
    if kind_of is None:
        return {}
    kinds = [kind_of(i) for i in range(len(per_image))]
    return {kind: mean_metrics(m for m, k in zip(per_image, kinds) if k == kind) for kind in sorted(set(kinds))}


def evaluate(model_or_bundle: DepthModel | str | Path | tuple[nn.Module, Any], dataset: Dataset, cfg: dict, *,
             out_dir: str | Path | None = None, device: str | torch.device = "cpu", batch_size: int = 4,
             num_workers: int = 0, amp_dtype: torch.dtype | None = None, num_vis: int = 4,
             verbose: bool = True) -> dict[str, Any]:
    """Score a model on ``dataset`` with ``cfg``'s eval protocol (see the module docstring).

    Returns {"metrics", "metrics_by_range", "protocol", "n_images", "visuals"}; with ``out_dir``
    also writes metrics.json and vis_NNN.png there.
    """
    model, _ = load_for_eval(model_or_bundle, device)
    if len(dataset) == 0:
        raise ValueError("evaluation dataset is empty: check data.root and the split name")
    min_depth, max_depth = eval_range(cfg)
    crop = (cfg.get("eval") or {}).get("crop", "none")
    per_image, per_range, visuals = [], [], []
    for image, pred, gt, valid, window in predictions(model, dataset, device=device, batch_size=batch_size,
                                                      num_workers=num_workers, amp_dtype=amp_dtype):
        mask = crop_mask(crop, *gt.shape, window=window)
        if mask is not None:
            valid = valid & mask
        per_image.append(depth_metrics(pred, gt, valid, min_depth, max_depth))
        per_range.append(metrics_by_range(pred, gt, DEFAULT_RANGES, valid, min_depth=min_depth, max_depth=max_depth))
        if len(visuals) < num_vis:
            visuals.append(visual_panel(image, pred, gt, valid, min_depth, max_depth))
    by_range = {label: mean_metrics(r[label] for r in per_range) for label in per_range[0]}
    metrics = mean_metrics(per_image)
    by_kind = metrics_by_kind(dataset, per_image)
    if by_kind:   # the yardstick's way: every kind weighs the same, whatever its share of the images
        for key in METRIC_KEYS:
            values = [m[key] for m in by_kind.values() if key in m]
            if values:
                metrics[f"{key}{KIND_MEAN}"] = float(np.mean(values))
    result = {
        "metrics": metrics,
        "metrics_by_kind": by_kind,
        "metrics_by_range": by_range,
        "protocol": PROTOCOL | {"crop": crop, "min_depth": min_depth, "max_depth": max_depth},
        "n_images": len(per_image),
    }
    if verbose:
        print(format_metrics_table({"all": result["metrics"], **by_range}))
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "metrics.json").write_text(json.dumps(json_safe(result), indent=2, allow_nan=False) + "\n")
        for index, panel in enumerate(visuals):
            write_image(out_dir / f"vis_{index:03d}.png", panel)
    result["visuals"] = visuals
    return result


def json_safe(value: Any) -> Any:
    """NaN (an empty depth bin) becomes null: strict JSON readers reject NaN."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def visual_panel(image: np.ndarray, pred: np.ndarray, gt: np.ndarray, valid: np.ndarray, min_depth: float,
                 max_depth: float) -> np.ndarray:
    """image | GT | prediction | |error| (inferno, 0..1 m dark to bright; invalid GT black), Hx4Wx3 uint8 RGB."""
    height, width = gt.shape
    rgb = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    if rgb.shape[:2] != (height, width):
        rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
    gt_shown = np.where(valid, gt, np.nan).astype(np.float32)
    error = np.where(valid, np.abs(np.clip(pred, min_depth, max_depth) - gt), np.nan).astype(np.float32)
    # colorize() maps small values to the top of the colour map: invert so a large error is bright.
    error_rgb = colorize(ERROR_MAP_MAX_M - error, 0.0, ERROR_MAP_MAX_M, "inferno")
    return np.concatenate([rgb, colorize(gt_shown, min_depth, max_depth),
                           colorize(pred.astype(np.float32), min_depth, max_depth), error_rgb], axis=1)


# ------------------------------------------------------------------------------------- CLI

def _resolve_config(config_path: Path | None, overrides: list[str], checkpoint_cfg: dict | None) -> dict:
    from training.config import apply_overrides, load_config

    if config_path is not None:
        return load_config(config_path, overrides)
    if checkpoint_cfg is None:
        raise ValueError("a model bundle carries no dataset config: pass --config training/configs/X.yaml")
    return apply_overrides(checkpoint_cfg, overrides)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="example: python -m training.evaluate runs/nyu34/finetune/best.pt "
                                            "--split test data.root=/datasets/nyu --out runs/nyu34/eval")
    parser.add_argument("model", type=Path, help="training checkpoint (best.pt), training output dir, or bundle .pt")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="override a config value")
    parser.add_argument("--config", type=Path, help="recipe (default: the checkpoint's own)")
    parser.add_argument("--split", default="test", help="dataset split (default: test)")
    parser.add_argument("--out", type=Path, help="folder for metrics.json and vis PNGs (default: beside the model)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--num-vis", type=int, default=4, help="visualisation PNGs to write")
    return parser


def main(argv: list[str] | None = None) -> int:
    from mde_ros.models.card import CardError
    from training.checkpoint import CheckpointError, find_checkpoint
    from training.config import ConfigError
    from training.datasets import build_dataset

    args = build_parser().parse_intermixed_args(argv)   # key=value may come before or after the options
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        model_path = find_checkpoint(args.model) if args.model.is_dir() else args.model
        model, checkpoint_cfg = load_for_eval(model_path, args.device)
        cfg = _resolve_config(args.config, args.overrides, checkpoint_cfg)
        dataset = build_dataset(cfg["data"], args.split)
        out_dir = args.out or model_path.parent / f"eval_{args.split}"
        result = evaluate(model, dataset, cfg, out_dir=out_dir, device=args.device, batch_size=args.batch_size,
                          num_workers=args.num_workers, num_vis=args.num_vis)
    except (CardError, CheckpointError, ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"training.evaluate: error: {exc}", file=sys.stderr)
        return 2
    print(f"{result['n_images']} images ({args.split}); wrote {out_dir / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
