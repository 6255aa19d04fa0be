"""Reading pretrained weight files (.pth): one place for the checks every loader needs."""
from __future__ import annotations

from pathlib import Path

import torch


def read_weights_file(path: str | Path, kind: str) -> object:
    """``torch.load(weights_only=True)`` of ``path`` on the CPU; errors name ``kind`` and the file.

    ``kind`` says what the file should hold ("encoder weights", "ViT weights"), so a user with several
    files at hand knows which one is missing or broken. The caller checks the structure it needs.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{kind} file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a corrupt or non-torch file
        raise ValueError(f"cannot read {kind} {path}: {exc}") from exc
