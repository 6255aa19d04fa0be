"""The model card's notes from a GPU job's report folder: exact commands, GPU time, data, benchmark figures.

    python tools/h200/card_notes.py REPORT_DIR   (prints one paragraph; used by tools/h200/export.sh)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def notes(report: Path) -> str:
    card = json.loads((report / "card_fields.json").read_text())
    bench = json.loads((report / "benchmark.json").read_text()) if (report / "benchmark.json").is_file() else {}
    env = card.get("environment", {})
    train = (bench.get("train") or {}).get("with_data") or {}
    net = (bench.get("train") or {}).get("network_only") or {}
    parts = [
        f"GPU job: {card.get('job_command')} (started {card.get('job_started_utc')}) on {env.get('gpu', 'no GPU')}, "
        f"torch {env.get('torch')}, CUDA {env.get('cuda')}",
        f"GPU time {card.get('gpu_time_s')} s in all (job wall clock), of which training {card.get('train_wall_s')} s "
        f"({card.get('epochs_run')} epochs, {card.get('global_step')} steps, out_of_time={card.get('out_of_time')})",
        f"training overrides: {' '.join(card.get('train_overrides', []))}",
        f"throughput at the start: {train.get('images_per_s', float('nan')):.0f} trained images/s "
        f"({train.get('loaded_images_per_s', float('nan')):.0f} rendered/s, device busy "
        f"{100 * train.get('device_busy_share', float('nan')):.0f}% of step time), network alone "
        f"{net.get('images_per_s', float('nan')):.0f} images/s",
        f"data: {card.get('data')}",
        "metrics: held-out synthetic scenes in metres after the node's focal rescale (training.heldout)",
    ]
    return "; ".join(parts)


if __name__ == "__main__":
    print(notes(Path(sys.argv[1])))
