"""The layer order of mde_ros, checked by a static scan of every module's imports (top level, inside
functions and under TYPE_CHECKING alike): a module imports only its own layer or the layers below, and
no two modules import each other, directly or round a longer loop. docs/ARCHITECTURE.md ("Layers")
describes the same order and the figures this scan prints (`python test/test_layers.py`)."""
from __future__ import annotations

import ast
import fnmatch
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Bottom to top; a module belongs to the first layer with a matching pattern.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", ("mde_ros", "mde_ros.atomic", "mde_ros.memory", "mde_ros.processes", "mde_ros.resources",
                    "mde_ros.metrics", "mde_ros.stopping", "mde_ros.argtypes", "mde_ros.threads")),
    # the model contract: what a model file promises, readable without torch
    ("contract", ("mde_ros.models.card", "mde_ros.models.fused_meta", "mde_ros.models.onnx_io",
                  "mde_ros.models.presets")),
    # pure numpy / pure Python data: the pipeline's stages, files, names, synthetic scenes, bag reading
    ("pipeline", ("mde_ros.pipeline", "mde_ros.pipeline.anchor_inputs", "mde_ros.pipeline.anchoring",
                  "mde_ros.pipeline.bands", "mde_ros.pipeline.budget", "mde_ros.pipeline.buffers", "mde_ros.pipeline.colorize",
                  "mde_ros.pipeline.geometry",
                  "mde_ros.pipeline.health", "mde_ros.pipeline.imagecodec", "mde_ros.pipeline.intrinsics",
                  "mde_ros.pipeline.outputs", "mde_ros.pipeline.pairing", "mde_ros.pipeline.postprocess",
                  "mde_ros.pipeline.preprocess", "mde_ros.pipeline.resample", "mde_ros.pipeline.scale_filter",
                  "mde_ros.pipeline.temporal", "mde_ros.pipeline.text", "mde_ros.fileio", "mde_ros.synthetic*",
                  "mde_ros.ros.naming", "mde_ros.ros.adapters", "mde_ros.yardstick")),
    ("bag io", ("mde_ros.bags", "mde_ros.bags.io", "mde_ros.bags.messages")),
    # torch networks, their bundle and export (the .pt card reader is registered here)
    ("networks", ("mde_ros.models", "mde_ros.models.*")),
    ("inference", ("mde_ros.inference", "mde_ros.inference.*")),
    # a backend + the pipeline: estimate, and the stages after it
    ("estimator", ("mde_ros.pipeline.estimator", "mde_ros.pipeline.confidence", "mde_ros.pipeline.refine",
                   "mde_ros.pipeline.frame_step")),
    # model files made above inference (fp16, int8, exports) and the one loader
    ("model files", ("mde_ros.quantization", "mde_ros.quantization.calibration", "mde_ros.quantization.fp16",
                     "mde_ros.quantization.onnx_file", "mde_ros.quantization.qdq", "mde_ros.quantization.variants",
                     "mde_ros.modelfiles", "mde_ros.modelargs")),
    ("bags", ("mde_ros.bags.*",)),
    ("ros", ("mde_ros.ros", "mde_ros.ros.*")),
    ("commands", ("mde_ros.commands", "mde_ros.commands.*", "mde_ros.quantization.check", "mde_ros.cli")),
)


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted((ROOT / "mde_ros").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(known: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the mde_ros modules it imports anywhere in its file."""

    def resolve(name: str) -> str:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {}
    for module, path in known.items():
        targets = set()
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {resolve(a.name) for a in node.names if a.name.split(".")[0] == "mde_ros"}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's package
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                if base.split(".")[0] != "mde_ros":
                    continue
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    targets.add(full if full in known else resolve(base))
        graph[module] = targets - {module, ""}
    return graph


def layer_of(module: str) -> int:
    for index, (_, patterns) in enumerate(LAYERS):
        if any(fnmatch.fnmatchcase(module, p) for p in patterns):
            return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS (and to docs/ARCHITECTURE.md)")


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one node (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    sys.setrecursionlimit(10000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def upward(graph: dict[str, set[str]]) -> list[str]:
    return [f"{m} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})"
            for m in sorted(graph) for t in sorted(graph[m]) if layer_of(t) > layer_of(m)]


def packages(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The same graph between top-level parts (mde_ros.models, mde_ros.fileio, ...)."""
    top = defaultdict(set)
    for module, targets in graph.items():
        part = ".".join(module.split(".")[:2])
        top[part] |= {".".join(t.split(".")[:2]) for t in targets} - {part, "mde_ros"}
    return dict(top)


def test_every_module_has_a_layer_and_imports_only_downward():
    graph = imports(modules())
    assert len(graph) > 90
    assert upward(graph) == []


def test_no_import_cycles():
    assert cycles(imports(modules())) == []


def test_the_scan_sees_function_local_and_relative_imports(tmp_path):
    """The scanner itself: an import inside a function counts, as does one under TYPE_CHECKING."""
    known = modules()
    graph = imports(known)
    assert "mde_ros.models.bundle" in graph["mde_ros.models"]           # inside _bundle_card
    assert "mde_ros.inference" in graph["mde_ros.pipeline.estimator"]   # TYPE_CHECKING and from_model
    assert layer_of("mde_ros.models.card") < layer_of("mde_ros.models.bundle") < layer_of("mde_ros.modelfiles")


if __name__ == "__main__":  # the figures of docs/ARCHITECTURE.md
    graph = imports(modules())
    edges = sum(len(t) for t in graph.values())
    print(f"{len(graph)} modules, {edges} import edges; upward: {len(upward(graph))}; "
          f"module cycles: {len(cycles(graph))}")
    for line in upward(graph):
        print("  upward:", line)
    top = packages(graph)
    print("top-level cycles:", cycles(top))
