"""Model bundle (.pt): the card and the weights in one file, loadable with ``weights_only=True``.

The file holds only plain types and tensors ({"format", "card", "state_dict"}), never pickled
classes, so loading it runs no code and survives refactors of this package.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mde_ros.models.card import CardError, ModelCard
from mde_ros.models.registry import build_model, without_build_only
from mde_ros.atomic import atomic_write

BUNDLE_FORMAT = "mde_ros.bundle/1"


def save_bundle(path: str | Path, model: nn.Module, card: ModelCard) -> Path:
    """Write atomically (temp file in the same folder, then ``os.replace``): a crash never leaves half a file."""
    path = Path(path)
    payload = {
        "format": BUNDLE_FORMAT,
        "card": card.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    with atomic_write(path) as handle:
        torch.save(payload, handle)
    return path


def _read(path: Path, **load_kwargs) -> dict:
    if not path.is_file():
        raise CardError(f"model bundle not found: {path}")
    try:
        payload = torch.load(path, weights_only=True, **load_kwargs)
    except Exception as exc:  # torch raises several types for a corrupt or foreign file
        raise CardError(f"cannot read model bundle {path}: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != BUNDLE_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CardError(f"{path} is not an mde_ros model bundle (format {found!r}, expected {BUNDLE_FORMAT!r}); "
                        "write one with mde_ros.models.save_bundle")
    if not isinstance(payload.get("card"), dict) or not isinstance(payload.get("state_dict"), dict):
        raise CardError(f"model bundle {path} lacks its card or state_dict")
    return payload


def load_bundle_card(path: str | Path) -> ModelCard:
    """Only the card (memory-mapped read: the weights are not loaded into RAM)."""
    path = Path(path)
    return ModelCard.from_dict(_read(path, map_location="cpu", mmap=True)["card"])


def load_bundle(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, ModelCard]:
    """Rebuild the network from the card's architecture, load its weights, and return it in eval mode."""
    path = Path(path)
    payload = _read(path, map_location=map_location)
    card = ModelCard.from_dict(payload["card"])
    kwargs = without_build_only(card.arch_kwargs)
    try:
        model = build_model(card.architecture, **kwargs)
    except ValueError as exc:
        raise CardError(f"model bundle {path}: cannot build {card.architecture!r}: {exc}") from exc
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise CardError(f"model bundle {path}: weights do not fit {card.architecture!r} "
                        f"with {kwargs}: {exc}") from exc
    return model.to(map_location).eval(), card
