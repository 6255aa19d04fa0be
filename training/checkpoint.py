"""Training checkpoints: written atomically, loadable with ``torch.load(weights_only=True)``.

A checkpoint holds everything ``--resume`` needs to continue exactly where a run stopped:
network, optimizer, scheduler and grad-scaler state, epoch and step counters, the best
validation metric, and the random number generator states (python, numpy, torch, cuda).
Only plain types and tensors go in, so no pickled code is ever executed on load.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mde_ros.atomic import atomic_write

CHECKPOINT_FORMAT = "mde_ros.training.checkpoint/1"
LAST_NAME = "last.pt"
BEST_NAME = "best.pt"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or not one of ours."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` so that a crash never leaves a truncated file behind.

    The bytes go to a temporary file in the same directory, are flushed to disk, and then
    replace the target with ``os.replace`` (atomic on POSIX and Windows).
    """
    path = Path(path)
    with atomic_write(path) as handle:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, handle)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for a corrupt or foreign file
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an mde_ros training checkpoint "
                              "(for a model bundle use mde_ros.models.bundle.load_bundle)")
    return state


def find_checkpoint(path: str | Path, which: str = "best") -> Path:
    """A checkpoint file, or ``which`` (best|last) inside a training output directory.

    For a multi-phase run the directory holds one subfolder per phase; the last phase that
    has the checkpoint wins (phases run in name order of their config, recorded in
    ``phases.txt``).
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise CheckpointError(f"no checkpoint or training directory at {path}")
    name = BEST_NAME if which == "best" else LAST_NAME
    phase_list = path / "phases.txt"
    if phase_list.is_file():
        for phase in reversed(phase_list.read_text().split()):
            if (path / phase / name).is_file():
                return path / phase / name
    if (path / name).is_file():
        return path / name
    raise CheckpointError(f"no {name} in {path}: is it a training output_dir?")


def capture_rng_state() -> dict[str, Any]:
    """RNG states as tensors and plain tuples (weights_only-loadable)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state((np_state["kind"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
