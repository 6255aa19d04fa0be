"""Checks that an ONNX export is the preset's family beyond names and shapes (`mde-ros card --preset`).

DA-V2's relative and metric exports share tensor names and shapes, and a MiDaS DPT export has MiDaS
small's: `verify_graph` reads the graph where the `onnx` package is installed (attention or none; a depth
output ending in a sigmoid, the metric head, or not) and `probe_output` runs the export once through
onnxruntime on a synthetic image with the card's preprocessing (finite, >= 0, a sigmoid x max_depth
family within its max depth). Both refuse a mismatch with one CardError that says which preset fits.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mde_ros.models.card import CardError, ModelCard
from mde_ros.models.presets import PRESETS, Preset, card_for_preset


def checked_card_for_preset(name: str, model_path: str | Path, card_name: str | None = None) -> ModelCard:
    """card_for_preset, then verify_graph and probe_output; their findings go in the card's provenance."""
    card = card_for_preset(name, model_path, card_name)
    preset = PRESETS[name]
    graph = verify_graph(model_path, preset, name)
    if graph:
        card.provenance["graph"] = graph
    probe = probe_output(model_path, card, preset, name)
    if probe:
        card.provenance["probe"] = probe
    return card


def _graph_summary(model_path: str | Path) -> dict[str, Any] | None:
    """Opset, producer, operator counts and the operators just before each output, read with the `onnx`
    package (None where it is not installed: the runtime install reads only the graph's I/O)."""
    try:
        import onnx
    except ImportError:
        return None
    try:
        proto = onnx.load(str(model_path), load_external_data=False)
    except Exception:  # read_model_io already accepted the file through onnxruntime
        return None
    producers = {out: node for node in proto.graph.node for out in node.output}
    counts: dict[str, int] = {}
    for node in proto.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    tails: dict[str, list[str]] = {}
    for output in proto.graph.output:  # breadth-first, 8 operators back from the output
        seen, frontier, ops = set(), [output.name], []
        while frontier and len(ops) < 8:
            name = frontier.pop(0)
            node = producers.get(name)
            if node is None or id(node) in seen:
                continue
            seen.add(id(node))
            ops.append(node.op_type)
            frontier.extend(node.input)
        tails[output.name] = ops
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    return {"opset": opset, "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
            "operators": sum(counts.values()), "attention": counts.get("Softmax", 0) > 0, "tails": tails}


def verify_graph(model_path: str | Path, preset: Preset, name: str) -> dict[str, Any] | None:
    """CardError when the graph is not the preset's family's: attention where the family has none (a
    DPT export given the MiDaS v2.1 small preset) or none where it has it, a sigmoid-bounded output given a
    relative preset or the reverse (DA-V2 metric and relative exports share their names and shapes).
    Returns the graph's fingerprint for the card's provenance (None without the `onnx` package)."""
    summary = _graph_summary(model_path)
    if summary is None:
        return None
    where = f"{Path(model_path).name} does not look like a {name} export"
    if preset.transformer is not None and summary["attention"] != preset.transformer:
        family = [n for n, p in PRESETS.items() if p.transformer == summary["attention"]]
        raise CardError(f"{where}: its graph {'has' if summary['attention'] else 'has no'} attention (Softmax), "
                        f"the family's {'has none' if summary['attention'] else 'has'}; presets that fit: "
                        f"{', '.join(family)}")
    output = preset.fields.get("output_name")
    tail = summary["tails"].get(output) or (next(iter(summary["tails"].values())) if len(summary["tails"]) == 1
                                            else [])
    sigmoid = "Sigmoid" in tail
    if preset.output_tail == "sigmoid" and not sigmoid:
        raise CardError(f"{where}: its depth output does not end in a sigmoid (x max depth) as the family's metric "
                        f"head does (last operators {tail[:4]}); a relative export? try depth-anything-v2-relative")
    if preset.output_tail == "no_sigmoid" and sigmoid:
        raise CardError(f"{where}: its depth output ends in a sigmoid (a metric head, last operators {tail[:4]}); "
                        "try depth-anything-v2-metric-indoor or -outdoor")
    return {"opset": summary["opset"], "producer": summary["producer"], "operators": summary["operators"],
            "attention": summary["attention"]}


def probe_image(height: int = 240, width: int = 320) -> np.ndarray:
    """A deterministic synthetic RGB image (a lit floor-and-wall gradient with texture) for output probes."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = 60 + 150 * (y / height) + 20 * np.sin(x / 7.0) * np.cos(y / 11.0)
    rgb = np.stack([base, 0.9 * base + 10, 0.8 * base + 25], axis=-1)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def probe_output(model_path: str | Path, card: ModelCard, preset: Preset, name: str) -> dict[str, float] | None:
    """Run the export once on probe_image through the card's preprocessing (onnxruntime, CPU): CardError
    for non-finite output, a negative one from a positive family, or one above max_depth from a sigmoid x
    max_depth family (an outdoor 80 m export given the indoor 20 m preset). Returns the output's range;
    None where onnxruntime cannot run the model here (a TensorRT-only install, another provider's ops)."""
    try:
        import onnxruntime
    except ImportError:
        return None
    from mde_ros.pipeline.preprocess import preprocess

    try:
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        session = onnxruntime.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        batch, _ = preprocess(probe_image(), card)
        outputs = [o.name for o in session.get_outputs()]
        wanted = card.output_name if card.output_name in outputs else outputs[0]
        raw = np.asarray(session.run([wanted], {session.get_inputs()[0].name: batch})[0], np.float64)
    except Exception:  # the probe is an extra check: a model this host cannot run is checked elsewhere
        return None
    where = f"{Path(model_path).name} does not look like a {name} export"
    if not np.isfinite(raw).all():
        raise CardError(f"{where}: it gives non-finite output on a plain synthetic image")
    low, high = float(raw.min()), float(raw.max())
    if low < -1e-6:
        raise CardError(f"{where}: it gives negative output ({low:.3g}) where the family's is >= 0")
    if preset.bounded_output and high * card.output_scale > card.max_depth * (1 + 1e-3):
        others = [n for n, p in PRESETS.items() if p.bounded_output and p.fields["max_depth"] >= high]
        raise CardError(f"{where}: it outputs up to {high:.3g} m, beyond the family's {card.max_depth:g} m "
                        f"(sigmoid x max depth){'; try ' + ', '.join(others) if others else ''}")
    return {"min": round(low, 6), "max": round(high, 6)}
