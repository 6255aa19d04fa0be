"""The wider synthetic world (mde_ros.synthetic.world) as a dataset: many views per cached scene.

Sample ``i`` of a split is view ``i % views_per_scene`` of scene ``i // views_per_scene``. Scene seeds
are fixed, disjoint ranges per split: ``seed * 10_000_000 + split_index * 1_000_000 + scene`` (train
0, val 1, test 2), so held-out scenes are never trained on. Every view has its own random camera,
rendered directly at ``input_size``, so the sample's intrinsics are the focal length at network
resolution.

Keys: ``num_scenes`` (int or {train, val, test}), ``views_per_scene`` (32), ``seed`` (0),
``kinds`` ({tabletop, room, hall, classic} weights; classic: the old generator's rooms), ``hfov_deg`` ([45, 90]), ``canonical_focal_px``
(null: depth labels as is; a number f: labels are depth * f / fx, Metric3D's canonical camera, and
the model card's train_focal_px is f, so the node's rescale ``d * fx / f`` undoes it exactly),
``jpeg`` ({prob, quality: [lo, hi]}: JPEG round trip of the train images, on the CPU), ``scene_cache``
(compiled scenes kept per process, 16), ``cache_views`` (keep rendered val/test samples in memory; never train),
``stream`` (train only, default true: epoch ``e`` renders scenes ``e * num_scenes ...`` of the split's seed
range, so no view is ever trained on twice; an epoch is a slice of an endless stream, not a fixed set).

Speed: building a scene costs ~5-10 renders, so :meth:`SyntheticWorldDataset.epoch_sampler` orders an
epoch so that each DataLoader worker sees views of the same few scenes in a row (its LRU cache
hits), while every batch still mixes several scenes.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Iterator

import cv2
import numpy as np
from torch.utils.data import Sampler

from training.datasets.base import SPLITS, DatasetError, DepthDataset, RawSample

SCENES_PER_SPLIT = 1_000_000
# The world's kinds, and "classic": the old generator's furnished rooms (mde_ros.synthetic.scenes), seen
# through the same random cameras: a model that ships is judged on both (mde_ros.yardstick).
TRAIN_KINDS = ("tabletop", "room", "hall", "classic")
DEFAULT_NUM_SCENES = {"train": 1024, "val": 16, "test": 32}


def world_scene_seed(seed: int, split: str, scene: int) -> int:
    """The scene seed of scene ``scene`` of ``split``: disjoint ranges per split and base seed."""
    if not 0 <= scene < SCENES_PER_SPLIT:
        raise DatasetError(f"scene index must be in [0, {SCENES_PER_SPLIT}), got {scene}")
    return int(seed) * 10 * SCENES_PER_SPLIT + SPLITS.index(split) * SCENES_PER_SPLIT + int(scene)


class SyntheticWorldDataset(DepthDataset):
    KEYS = ("num_scenes", "views_per_scene", "seed", "kinds", "hfov_deg", "canonical_focal_px", "jpeg",
            "scene_cache", "cache_views", "stream", "balanced_kinds")

    def __init__(self, cfg: dict, split: str):
        super().__init__(cfg, split)
        from mde_ros.synthetic.world import DEFAULT_HFOV_DEG, DEFAULT_KIND_WEIGHTS

        counts = cfg.get("num_scenes", DEFAULT_NUM_SCENES)
        count = counts.get(split, DEFAULT_NUM_SCENES[split]) if isinstance(counts, dict) else counts
        if not isinstance(count, int) or not 0 <= count <= SCENES_PER_SPLIT:
            raise DatasetError(f"data.num_scenes for '{split}' must be an integer in [0, {SCENES_PER_SPLIT}], "
                               f"got {count!r}")
        self.num_scenes = count
        self.views = int(cfg.get("views_per_scene", 32))
        if self.views < 1:
            raise DatasetError(f"data.views_per_scene must be >= 1, got {self.views}")
        self.seed = int(cfg.get("seed", 0))
        self.kinds = dict(cfg.get("kinds") or DEFAULT_KIND_WEIGHTS)
        if set(self.kinds) - set(TRAIN_KINDS) or not any(w > 0 for w in self.kinds.values()):
            raise DatasetError(f"data.kinds: unknown kind(s) {sorted(set(self.kinds) - set(TRAIN_KINDS))} or no "
                               f"positive weight; use {list(TRAIN_KINDS)}")
        self.hfov = tuple(float(v) for v in cfg.get("hfov_deg", DEFAULT_HFOV_DEG))
        self.height, self.width = (int(v) for v in cfg["input_size"])
        canonical = cfg.get("canonical_focal_px")
        if canonical is not None and not float(canonical) > 0:
            raise DatasetError(f"data.canonical_focal_px must be a positive number or null, got {canonical!r}")
        #: fx (px, network resolution) the depth labels are expressed for; training records it for the card
        self.train_focal_px = float(canonical) if canonical is not None else None
        jpeg = cfg.get("jpeg") or {}
        self.jpeg_prob = float(jpeg.get("prob", 0.0)) if split == "train" else 0.0
        self.jpeg_quality = tuple(int(q) for q in jpeg.get("quality", (40, 95)))
        self._scenes: OrderedDict[int, object] = OrderedDict()
        self._scene_cache = max(1, int(cfg.get("scene_cache", 16)))
        self._views_cache: dict[int, RawSample] | None = (
            {} if cfg.get("cache_views", False) and split != "train" else None)
        self.stream = bool(cfg.get("stream", True)) and split == "train"
        # val/test: scene i is of kind i mod K (every kind scored, equally often); train draws by weight
        self.balanced = bool(cfg.get("balanced_kinds", split != "train"))
        self._first_scene = 0     # set_epoch moves it along the stream
        _preload_textures()   # once in the parent: DataLoader workers inherit the decoded photos

    def set_epoch(self, epoch: int) -> None:
        """Epoch ``epoch`` of a streaming train split sees its own scenes (called before its loader starts)."""
        if self.stream:
            first = int(epoch) * self.num_scenes
            if first + self.num_scenes > SCENES_PER_SPLIT:
                first %= max(1, SCENES_PER_SPLIT - self.num_scenes)
            self._first_scene = first

    def num_items(self) -> int:
        return self.num_scenes * self.views

    def scene_seed(self, index: int) -> int:
        return world_scene_seed(self.seed, self.split, self._first_scene + index // self.views)

    def kind_of(self, index: int) -> str:
        """The scene kind of sample ``index`` (validation reports metrics per kind)."""
        from mde_ros.synthetic.world import scene_kind

        names = [k for k in TRAIN_KINDS if self.kinds.get(k, 0) > 0]
        if self.balanced:
            return names[(self._first_scene + index // self.views) % len(names)]
        if "classic" not in names:
            return scene_kind(self.scene_seed(index), self.kinds)
        p = np.array([self.kinds[k] for k in names], float)
        return names[int(np.random.default_rng([self.scene_seed(index), 100, 1]).choice(len(names), p=p / p.sum()))]

    def name(self, index: int) -> str:
        return f"{self.split}_scene{self.scene_seed(index)}_view{index % self.views:03d}"

    def _scene(self, seed: int, kind: str):
        from mde_ros.synthetic.scenes import make_scene
        from mde_ros.synthetic.world import make_world_scene

        if seed in self._scenes:
            self._scenes.move_to_end(seed)
            return self._scenes[seed]
        entry = (make_scene(seed) if kind == "classic" else make_world_scene(seed, kind), kind)
        self._scenes[seed] = entry
        while len(self._scenes) > self._scene_cache:
            self._scenes.popitem(last=False)
        return entry

    def load(self, index: int) -> RawSample:
        if self._views_cache is not None and index in self._views_cache:
            return self._views_cache[index]
        raw = self._render(index)
        if self._views_cache is not None:
            self._views_cache[index] = raw
        return raw

    def _render(self, index: int) -> RawSample:
        from mde_ros.synthetic.world import render_world_view

        seed = self.scene_seed(index)
        scene, kind = self._scene(seed, self.kind_of(index))
        view = render_world_view(seed, index % self.views, self.width, self.height, scene=scene, kind=kind,
                                 hfov_deg=self.hfov)
        intr = view.frame.intrinsics
        depth = view.frame.depth
        if self.train_focal_px is not None:
            depth = depth * np.float32(self.train_focal_px / intr.fx)
        rgb = view.frame.rgb
        if self.jpeg_prob > 0:
            rgb = jpeg_round_trip(rgb, self._rng(), self.jpeg_prob, self.jpeg_quality)
        return RawSample(rgb, depth.astype(np.float32, copy=False), (intr.fx, intr.fy, intr.cx, intr.cy))

    def epoch_sampler(self, epoch: int, batch_size: int, num_workers: int, seed: int) -> "SceneGroupedSampler":
        return SceneGroupedSampler(self.num_scenes, self.views, batch_size, num_workers,
                                   seed=seed, epoch=epoch, group=max(1, self._scene_cache // 2))


def jpeg_round_trip(rgb: np.ndarray, rng: np.random.Generator, prob: float,
                    quality: tuple[int, int] = (40, 95)) -> np.ndarray:
    """With probability ``prob``, the image after JPEG compression at a random quality (a camera's codec)."""
    if rng.random() >= prob:
        return rgb
    q = int(rng.integers(quality[0], quality[1] + 1))
    ok, data = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
    if not ok:
        return rgb
    return np.ascontiguousarray(cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1])


def _preload_textures() -> None:
    from mde_ros.synthetic.textures import TEXTURES, texture_mean, texture_pyramid

    for name in TEXTURES:
        texture_pyramid(name)
        texture_mean(name)


class SceneGroupedSampler(Sampler[int]):
    """An epoch's order in which DataLoader worker ``w`` (batch ``k`` goes to worker ``k % W``) gets views
    of its own ``group`` scenes at a time, shuffled across those scenes, so each worker builds every scene
    once per epoch. Deterministic in (seed, epoch, batch_size, num_workers); every index once per epoch."""

    def __init__(self, num_scenes: int, views: int, batch_size: int, num_workers: int, *, seed: int, epoch: int,
                 group: int = 8) -> None:
        self.num_scenes, self.views, self.batch = num_scenes, views, max(1, int(batch_size))
        self.streams, self.group = max(1, int(num_workers)), max(1, int(group))
        self.seed, self.epoch = int(seed), int(epoch)

    def __len__(self) -> int:
        return self.num_scenes * self.views

    def order(self) -> list[int]:
        rng = np.random.default_rng([self.seed, self.epoch, 7])
        scenes = rng.permutation(self.num_scenes)
        full: list[list[list[int]]] = []
        tails: list[int] = []
        for stream in range(self.streams):
            mine = scenes[stream::self.streams]
            indices: list[int] = []
            for start in range(0, len(mine), self.group):
                window = np.concatenate([np.arange(s * self.views, (s + 1) * self.views) for s in mine[start:start + self.group]]) \
                    if len(mine[start:start + self.group]) else np.zeros(0, int)
                indices.extend(rng.permutation(window).tolist())
            cut = len(indices) - len(indices) % self.batch
            full.append([indices[i:i + self.batch] for i in range(0, cut, self.batch)])
            tails.extend(indices[cut:])
        order: list[int] = []
        for k in range(max((len(b) for b in full), default=0)):
            for batches in full:
                if k < len(batches):
                    order.extend(batches[k])
        return order + tails

    def __iter__(self) -> Iterator[int]:
        return iter(self.order())

