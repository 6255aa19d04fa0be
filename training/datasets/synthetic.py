"""Procedural indoor scenes with exact depth (mde_ros.synthetic): the demo model's training data and a
dataset every test can build without downloads.

Sample ``i`` of a split is rendered from a seed derived from (``seed``, split, i), so it is the same in
every run and worker and the three splits never share a scene. Keys: ``num_samples`` (int for every
split, or ``{train: n, val: n, test: n}``), ``render_size`` ([h, w], default input_size), ``seed`` (0),
``cache`` (keep rendered frames in memory, per process: rendering is most of a CPU epoch; 1000 frames at
160x128 take about 150 MB).
"""
from __future__ import annotations

import numpy as np

from training.datasets.base import SPLITS, DatasetError, DepthDataset, RawSample

DEFAULT_NUM_SAMPLES = {"train": 2000, "val": 200, "test": 200}


def sample_seed(base_seed: int, split: str, index: int) -> int:
    """A 32-bit scene seed unique to (base_seed, split, index)."""
    return int(np.random.SeedSequence([int(base_seed), SPLITS.index(split), int(index)]).generate_state(1)[0])


class SyntheticDataset(DepthDataset):
    KEYS = ("num_samples", "render_size", "seed", "cache")

    def __init__(self, cfg: dict, split: str):
        super().__init__(cfg, split)
        counts = cfg.get("num_samples", DEFAULT_NUM_SAMPLES)
        count = counts.get(split, DEFAULT_NUM_SAMPLES[split]) if isinstance(counts, dict) else counts
        if not isinstance(count, int) or count < 0:
            raise DatasetError(f"data.num_samples for '{split}' must be a non-negative integer, got {count!r}")
        self.count = count
        self.render_height, self.render_width = (int(v) for v in cfg.get("render_size", cfg["input_size"]))
        self.seed = int(cfg.get("seed", 0))
        self._cache: dict[int, RawSample] | None = {} if cfg.get("cache", False) else None

    def num_items(self) -> int:
        return self.count

    def name(self, index: int) -> str:
        return f"{self.split}_{index:06d}_seed{sample_seed(self.seed, self.split, index)}"

    def load(self, index: int) -> RawSample:
        if self._cache is None:
            return self._render(index)
        if index not in self._cache:
            self._cache[index] = self._render(index)
        return self._cache[index]

    def _render(self, index: int) -> RawSample:
        from mde_ros.synthetic import render_frame

        frame = render_frame(sample_seed(self.seed, self.split, index), width=self.render_width,
                             height=self.render_height)
        intr = frame.intrinsics
        return RawSample(np.ascontiguousarray(frame.rgb, dtype=np.uint8), np.asarray(frame.depth, np.float32),
                         (intr.fx, intr.fy, intr.cx, intr.cy))
