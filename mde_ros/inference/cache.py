"""The user cache directory: ONNX exports of .pt bundles, fp16 / int8 models (mde_ros.modelfiles) and
TensorRT engines live here.

Everything is keyed by content hashes, so a changed model never meets a stale artefact,
and files are written to a temporary name first, then renamed, so a crash leaves no half file.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from mde_ros.models.card import ModelCard

CACHE_ENV = "MDE_ROS_CACHE"


def cache_dir() -> Path:
    """$MDE_ROS_CACHE, else $XDG_CACHE_HOME/mde_ros, else ~/.cache/mde_ros (not created here)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "mde_ros"


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def require_model_file(model_path: str | Path, card: ModelCard) -> Path:
    model_path = Path(model_path)
    if not model_path.is_file():
        raise FileNotFoundError(f"model file not found: {model_path} (model card {card.name!r})")
    if model_path.suffix not in (".onnx", ".pt"):
        raise ValueError(f"unsupported model file {model_path}: expected .onnx or a .pt bundle")
    return model_path
