"""Writing a derived ONNX model (fp16, Q/DQ int8) with its card inside and beside it, like export_onnx."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mde_ros.atomic import write_bytes_atomically
from mde_ros.models.card import ONNX_METADATA_KEY, ModelCard, card_path_for


def set_card_metadata(proto: Any, card: ModelCard) -> None:
    """Replace the card embedded in the ONNX metadata_props."""
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key != ONNX_METADATA_KEY]
    del proto.metadata_props[:]
    for key, value in kept + [(ONNX_METADATA_KEY, json.dumps(card.to_dict()))]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def write_model(proto: Any, card: ModelCard, path: str | Path) -> Path:
    """Check, embed the card, write atomically, write the sidecar card."""
    import onnx

    path = Path(path)
    set_card_metadata(proto, card)
    onnx.checker.check_model(proto)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomically(path, proto.SerializeToString())
    card.save(card_path_for(path))
    return path


def derived_card(card: ModelCard, suffix: str, key: str, record: dict[str, Any]) -> ModelCard:
    """A copy of `card` named `<name>-<suffix>` whose provenance[key] says how the file was made."""
    data = card.to_dict()
    data["name"] = f"{card.name}-{suffix}"
    data["provenance"] = {**data.get("provenance", {}), key: record}
    return ModelCard.from_dict(data)
