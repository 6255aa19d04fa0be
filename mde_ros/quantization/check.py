"""What an INT8 model costs and gains on onnxruntime's CPU: network time against the float model in
one run (alternating blocks, so machine load hits both alike) and AbsRel on the fixture bags.

Figures for the README and `mde-ros bench --sections int8`; never asserted in tests (timings).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class SpeedComparison:
    fp32_ms: float
    int8_ms: float
    threads: int
    shape: tuple[int, ...]
    fp32_cpu_ms: float = 0.0   # process CPU time per run: on a shared machine less noisy than wall time
    int8_cpu_ms: float = 0.0

    @property
    def ratio(self) -> float:
        return self.int8_ms / self.fp32_ms

    @property
    def cpu_ratio(self) -> float:
        return self.int8_cpu_ms / self.fp32_cpu_ms if self.fp32_cpu_ms else float("nan")

    def summary(self) -> str:
        threads = self.threads or "default"
        return (f"onnxruntime CPU ({threads} threads), input {'x'.join(map(str, self.shape))}: fp32 {self.fp32_ms:.2f} ms, "
                f"int8 {self.int8_ms:.2f} ms: ratio {self.ratio:.3f} (goal <= 0.50); CPU time fp32 "
                f"{self.fp32_cpu_ms:.2f} ms, int8 {self.int8_cpu_ms:.2f} ms: ratio {self.cpu_ratio:.3f}")


def _session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def compare_speed(fp32: str | Path, int8: str | Path, *, iters: int = 20, warmup: int = 3, threads: int = 0,
                  blocks: int = 4) -> SpeedComparison:
    """Median network time of both models on the same input at the card's size."""
    from mde_ros.models.card import load_card_for

    card = load_card_for(fp32)
    batch = np.random.default_rng(0).standard_normal((1, 3, card.input_height, card.input_width)).astype(np.float32)
    sessions = {"fp32": _session(Path(fp32), threads), "int8": _session(Path(int8), threads)}
    feeds = {k: {s.get_inputs()[0].name: batch} for k, s in sessions.items()}
    samples: dict[str, list[float]] = {"fp32": [], "int8": []}
    cpu: dict[str, list[float]] = {"fp32": [], "int8": []}
    per_block = max(1, iters // blocks)
    for _ in range(blocks):
        for key, session in sessions.items():
            for _ in range(warmup):
                session.run(None, feeds[key])
            for _ in range(per_block):
                start, start_cpu = time.perf_counter(), time.process_time()
                session.run(None, feeds[key])
                samples[key].append(time.perf_counter() - start)
                cpu[key].append(time.process_time() - start_cpu)
    return SpeedComparison(*(1000 * statistics.median(samples[k]) for k in ("fp32", "int8")), threads, batch.shape,
                           *(1000 * statistics.median(cpu[k]) for k in ("fp32", "int8")))


def fixture_accuracy(fp32: str | Path, int8: str | Path, fixture_dir: str | Path | None = None) -> dict[str, dict]:
    """AbsRel / delta1 of the float and the int8 model on each fixture bag (replayed like the goldens,
    onnxruntime on one thread)."""
    import tempfile

    from mde_ros.bags import fixtures
    from mde_ros.bags.io import STORAGES
    from mde_ros.inference.onnxruntime_backend import NAME as ONNXRUNTIME
    from mde_ros.modelfiles import load_estimator

    fixture_dir = Path(fixture_dir or fixtures.FIXTURE_DIR)
    estimators = {
        "fp32": load_estimator(fp32, ONNXRUNTIME, intra_op_threads=1),
        "int8": load_estimator(fp32, ONNXRUNTIME, precision="int8", int8_model=int8, intra_op_threads=1),
    }
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="mde_int8_check_") as tmp:
        for storage in STORAGES:
            name = fixtures.fixture_name(storage)
            results[name] = {}
            for key, estimator in estimators.items():
                replay = fixtures.replay_fixture(fixture_dir / name, Path(tmp) / f"{name}-{key}", estimator)
                results[name][key] = {k: replay["metrics"][k] for k in ("abs_rel", "delta1")}
    return results
