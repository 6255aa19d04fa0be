"""Held-out synthetic scenes, scored in METRES the way the node uses the model.

``python -m training.heldout CHECKPOINT [--scenes N] [--views V] [--out metrics.json] [--device cuda]``

The scenes are the ``test`` split of the checkpoint's ``synthetic_world`` data (a scene-seed range
never used for training, see ``training.datasets.world``), each view with its own random camera.
The ground truth is the rendered depth in metres (not the canonical training label); the prediction
is rescaled as the node does (``mde_ros.pipeline.postprocess``: ``d * fx / train_focal_px`` with fx at
network resolution) and clipped to the evaluation range. Eigen metrics per image, averaged over
images, no median scaling: overall, by ground-truth range, and per scene kind (tabletop, room, hall).
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from mde_ros.metrics import DEFAULT_RANGES, depth_metrics, mean_metrics, metrics_by_range

log = logging.getLogger("training.heldout")


def heldout_metrics(state: dict, *, scenes: int | None = None, views: int | None = None,
                    device: str | torch.device = "cpu", num_workers: int = 0,
                    amp_dtype: torch.dtype | None = None) -> dict[str, Any]:
    """Metrics of a training checkpoint's network on held-out synthetic_world scenes (see module doc).

    One batch per scene (its views), so each DataLoader worker renders whole scenes."""
    from training.datasets import build_dataset, worker_init
    from training.evaluate import eval_range
    from training.model_wrapper import depth_model_from_checkpoint

    cfg = state["config"]
    data_cfg = copy.deepcopy(cfg["data"])
    if data_cfg.get("name") != "synthetic_world":
        raise ValueError(f"held-out synthetic scenes need data.name=synthetic_world, got {data_cfg.get('name')!r}")
    train_focal = state.get("train_focal_px") or data_cfg.get("canonical_focal_px")
    data_cfg["canonical_focal_px"] = None        # ground truth in metres
    data_cfg["augment"] = {}
    data_cfg["cache_views"] = False
    if scenes is not None:
        data_cfg["num_scenes"] = {"test": int(scenes)}
    if views is not None:
        data_cfg["views_per_scene"] = int(views)
    dataset = build_dataset(data_cfg, "test")
    if len(dataset) == 0:
        raise ValueError("no held-out scenes: data.num_scenes.test is 0")
    min_depth, max_depth = eval_range(cfg)
    device = torch.device(device)
    model = depth_model_from_checkpoint(state).to(device).eval()
    per_image, per_range, kinds = [], [], []
    loader = DataLoader(dataset, batch_size=dataset.views, shuffle=False, num_workers=num_workers,
                        worker_init_fn=worker_init)
    with torch.no_grad():
        for batch in loader:
            image = batch["image"].to(device)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                pred = model(image)
            pred = pred.float().cpu().numpy()[:, 0]
            for i, p in enumerate(pred):
                fx = float(batch["intrinsics"][i, 0])
                scale = fx / float(train_focal) if train_focal else 1.0
                gt, valid = batch["depth"][i, 0].numpy(), batch["valid"][i, 0].numpy()
                p = p * scale
                per_image.append(depth_metrics(p, gt, valid, min_depth, max_depth))
                per_range.append(metrics_by_range(p, gt, DEFAULT_RANGES, valid, min_depth=min_depth,
                                                  max_depth=max_depth))
                kinds.append(dataset.kind_of(int(batch["index"][i])))
    by_kind = {kind: mean_metrics(m for m, k in zip(per_image, kinds) if k == kind) for kind in sorted(set(kinds))}
    return {
        "split": "heldout_synthetic",
        **mean_metrics(per_image),
        "by_range": {label: mean_metrics(r[label] for r in per_range) for label in per_range[0]},
        "by_kind": by_kind,
        "protocol": {"scenes": dataset.num_scenes, "views_per_scene": dataset.views,
                     "scene_seeds": [dataset.scene_seed(0), dataset.scene_seed(len(dataset) - 1)],
                     "rescale": f"d * fx / {train_focal}" if train_focal else "none", "min_depth": min_depth,
                     "max_depth": max_depth, "median_scaling": False, "averaging": "per image",
                     "camera": f"random per view, hfov {list(dataset.hfov)} deg"},
    }


def main(argv: list[str] | None = None) -> int:
    from training.checkpoint import CheckpointError, find_checkpoint, load_checkpoint

    parser = argparse.ArgumentParser(prog="python -m training.heldout", description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", type=Path, help="training output_dir (its best.pt) or a checkpoint file")
    parser.add_argument("--scenes", type=int, help="held-out scenes (default: the config's num_scenes.test)")
    parser.add_argument("--views", type=int, help="views per scene (default: the config's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers rendering the scenes")
    parser.add_argument("--out", type=Path, help="write the metrics JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        state = load_checkpoint(find_checkpoint(args.checkpoint, "best"))
        amp = torch.bfloat16 if str(args.device).startswith("cuda") else None
        result = heldout_metrics(state, scenes=args.scenes, views=args.views, device=args.device,
                                 num_workers=args.workers, amp_dtype=amp)
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        print(f"training.heldout: error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(result, indent=1, default=float)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(json.dumps({k: result[k] for k in ("abs_rel", "rmse", "delta1", "n_images") if k in result}))
    for kind, m in result["by_kind"].items():
        print(f"  {kind}: abs_rel {m.get('abs_rel', float('nan')):.4f} rmse {m.get('rmse', float('nan')):.4f} "
              f"delta1 {m.get('delta1', float('nan')):.4f} ({m.get('n_images', 0)} images)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
