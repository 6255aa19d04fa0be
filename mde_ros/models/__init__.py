"""Depth networks, model card, bundle and ONNX export.

Attributes load lazily so ``import mde_ros.models.card`` (the onnxruntime/TensorRT path) never
imports torch.
"""
from importlib import import_module
from pathlib import Path

from mde_ros.models.card import ModelCard, register_card_reader

_LAZY = {
    "build_model": "registry",
    "available_models": "registry",
    "DEFAULT_MODEL": "registry",
    "save_bundle": "bundle",
    "load_bundle": "bundle",
    "load_bundle_card": "bundle",
    "export_onnx": "export",
    "verify_onnx": "export",
}
__all__ = sorted(_LAZY)


def _bundle_card(path: Path) -> ModelCard:
    """The card inside a .pt bundle (imports torch only when a bundle is read)."""
    from mde_ros.models.bundle import load_bundle_card

    return load_bundle_card(path)


register_card_reader(".pt", _bundle_card)  # .pt support registered above the card contract


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
