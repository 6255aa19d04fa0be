"""The user cache directory: ONNX exports of .pt bundles and TensorRT engines live here.

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


def onnx_for_model(model_path: str | Path) -> Path:
    """The ONNX file to run for a model: the file itself, or a cached export of a .pt bundle.

    The export is keyed by the bundle's sha256, so retrained weights get a fresh export.
    Needs torch only when a bundle has not been exported before.
    """
    model_path = Path(model_path)
    if model_path.suffix != ".pt":
        return model_path
    target = cache_dir() / "onnx" / f"{file_sha256(model_path)[:16]}.onnx"
    if target.exists():
        return target
    from mde_ros.models.bundle import load_bundle
    from mde_ros.models.export import export_onnx

    model, card = load_bundle(model_path, map_location="cpu")
    export_onnx(model, card, target)  # atomic: a crash leaves no half-written export
    return target


def require_model_file(model_path: str | Path, card: ModelCard) -> Path:
    model_path = Path(model_path)
    if not model_path.is_file():
        raise FileNotFoundError(f"model file not found: {model_path} (model card {card.name!r})")
    if model_path.suffix not in (".onnx", ".pt"):
        raise ValueError(f"unsupported model file {model_path}: expected .onnx or a .pt bundle")
    return model_path
