"""The one yardstick for choosing models: a fixed held-out synthetic benchmark, scored in metres
through the node's own pipeline.

Every comparison between models (which model ships, which input size or recipe change is kept, the
bag tests' accuracy floor) is made with this benchmark and nothing else, so no candidate is judged on
data it was trained on:

* kinds ``tabletop``, ``room`` and ``hall`` of the wider synthetic world (``mde_ros.synthetic.world``)
  and ``classic``, the old generator's furnished rooms (``mde_ros.synthetic.scenes``: the demo model's
  and the fixture bags' generator);
* real camera sizes: each world scene seen at 640x480 and at 1280x720 (square pixels, horizontal FOV
  45-90 degrees, principal point within 3 % of the centre); classic frames at 640x480 through the NYU
  camera;
* scene seeds from ranges of their own (:data:`WORLD_SEED0`, :data:`CLASSIC_SEED0`), apart from every
  training range (``training.datasets.world``: ``seed * 10_000_000 + split * 1_000_000 + i`` for seeds
  0-8; the ``synthetic`` reader's 32-bit hashed seeds) and from the fixture bags (seed 7);
* the model runs through :class:`~mde_ros.pipeline.estimator.DepthEstimator` exactly as the node runs
  it (resize to the network, camera-aware rescale on, depth at camera resolution) and is scored with
  the Eigen metrics per image (:func:`mde_ros.metrics.depth_metrics`: no median scaling, NaN predictions
  scored as min_depth), averaged per kind; the headline is the MEAN OVER KINDS (every kind weighs the
  same), reported with the worst kind.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from mde_ros.metrics import depth_metrics, mean_metrics
from mde_ros.pipeline.intrinsics import Intrinsics

WORLD_KINDS = ("tabletop", "room", "hall")
KINDS = (*WORLD_KINDS, "classic")
WORLD_SEED0 = 900_000_000       # world scene seeds: WORLD_SEED0 + kind * 10_000 + scene
CLASSIC_SEED0 = 950_000_000     # classic scene seeds: CLASSIC_SEED0 + scene
FRAME_SIZES = ((640, 480), (1280, 720))
HFOV_DEG = (45.0, 90.0)
EVAL_RANGE = (1e-3, 10.0)       # metres scored (the shipped models' range)
HEADLINE = ("abs_rel", "delta1", "rmse")


@dataclass(frozen=True)
class YardstickFrame:
    kind: str
    name: str                   # e.g. "room/900010003-v1-1280x720": stable across runs
    rgb: np.ndarray             # HxWx3 uint8
    depth: np.ndarray           # HxW float32 metres, exact
    intrinsics: Intrinsics


@dataclass(frozen=True)
class YardstickSpec:
    """How many frames: ``scenes`` per world kind, ``views`` per scene and frame size, ``classic`` frames."""
    scenes: int = 12
    views: int = 1
    classic: int = 24

    def __post_init__(self) -> None:
        if self.scenes < 1 or self.views < 1 or self.classic < 0:
            raise ValueError(f"need scenes >= 1, views >= 1, classic >= 0; got {self}")

    @property
    def n_frames(self) -> int:
        return len(WORLD_KINDS) * self.scenes * self.views * len(FRAME_SIZES) + self.classic


def square_camera(rng: np.random.Generator, width: int, height: int,
                  hfov_deg: tuple[float, float] = HFOV_DEG) -> Intrinsics:
    """A real camera at its native size: square pixels, random horizontal FOV, centre within 3 %."""
    hfov = math.radians(float(rng.uniform(*hfov_deg)))
    f = (width / 2) / math.tan(hfov / 2)
    cx = (width - 1) / 2 + float(rng.uniform(-0.03, 0.03)) * width
    cy = (height - 1) / 2 + float(rng.uniform(-0.03, 0.03)) * height
    return Intrinsics(fx=f, fy=f, cx=cx, cy=cy, width=width, height=height)


def yardstick_frames(spec: YardstickSpec = YardstickSpec()) -> Iterator[YardstickFrame]:
    """The benchmark's frames, in a fixed order (deterministic: the same pixels on every machine run)."""
    from mde_ros.synthetic.scenes import make_scene
    from mde_ros.synthetic.world import make_world_scene, world_pose

    for k, kind in enumerate(WORLD_KINDS):
        for scene_index in range(spec.scenes):
            seed = WORLD_SEED0 + k * 10_000 + scene_index
            scene = make_world_scene(seed, kind)
            for view in range(spec.views):
                for width, height in FRAME_SIZES:
                    rng = np.random.default_rng([seed, view, width])
                    intr = square_camera(rng, width, height)
                    frame = scene.render(world_pose(scene, kind, rng, intr), intr)
                    yield YardstickFrame(kind, f"{kind}/{seed}-v{view}-{width}x{height}", frame.rgb, frame.depth,
                                         frame.intrinsics)
    for index in range(spec.classic):
        seed = CLASSIC_SEED0 + index
        scene = make_scene(seed)
        intr = Intrinsics.nyu(640, 480)
        frame = scene.render(scene.random_pose(np.random.default_rng([seed, 1]), intr), intr)
        yield YardstickFrame("classic", f"classic/{seed}-640x480", frame.rgb, frame.depth, frame.intrinsics)


def score_frames(predict: Callable[[np.ndarray, Intrinsics], np.ndarray], frames: Iterator[YardstickFrame],
                 eval_range: tuple[float, float] = EVAL_RANGE) -> dict:
    """Metrics per kind and over kinds of ``predict(rgb, intrinsics) -> depth (metres, HxW)``."""
    per_kind: dict[str, list[dict]] = {}
    for frame in frames:
        pred = predict(frame.rgb, frame.intrinsics)
        metrics = depth_metrics(pred, frame.depth, np.isfinite(frame.depth), *eval_range)
        per_kind.setdefault(frame.kind, []).append(metrics)
    return summarise(per_kind, eval_range)


def summarise(per_kind: dict[str, list[dict]], eval_range: tuple[float, float] = EVAL_RANGE) -> dict:
    """Per-kind means, the mean over kinds (each kind weighs the same) and the worst kind."""
    by_kind = {kind: mean_metrics(per_kind[kind]) for kind in KINDS if kind in per_kind}
    over_kinds = {key: float(np.mean([m[key] for m in by_kind.values()])) for key in HEADLINE}
    worst = max(by_kind, key=lambda kind: by_kind[kind]["abs_rel"])
    return {"by_kind": by_kind, "mean_over_kinds": over_kinds,
            "worst_kind": {"kind": worst, "abs_rel": by_kind[worst]["abs_rel"]},
            "n_images": sum(len(v) for v in per_kind.values()),
            "protocol": {"kinds": list(by_kind), "frame_sizes": [f"{w}x{h}" for w, h in FRAME_SIZES],
                         "hfov_deg": list(HFOV_DEG), "world_seed0": WORLD_SEED0, "classic_seed0": CLASSIC_SEED0,
                         "eval_range_m": list(eval_range), "median_scaling": False, "averaging": "per image, "
                         "then per kind, then the mean over kinds"}}


def beats(candidate: dict, reference: dict) -> tuple[bool, list[str]]:
    """Whether ``candidate`` is better than ``reference`` on the mean over kinds AND on every kind
    (AbsRel), with the reasons it is not."""
    reasons = []
    if not candidate["mean_over_kinds"]["abs_rel"] < reference["mean_over_kinds"]["abs_rel"]:
        reasons.append(f"mean over kinds {candidate['mean_over_kinds']['abs_rel']:.3f} >= "
                       f"{reference['mean_over_kinds']['abs_rel']:.3f}")
    for kind, ref in reference["by_kind"].items():
        mine = candidate["by_kind"].get(kind)
        if mine is None or not mine["abs_rel"] < ref["abs_rel"]:
            reasons.append(f"{kind} {mine['abs_rel'] if mine else float('nan'):.3f} >= {ref['abs_rel']:.3f}")
    return not reasons, reasons


def format_table(results: dict[str, dict]) -> str:
    """One row per model: AbsRel / delta1 / RMSE per kind and over kinds."""
    header = f"{'model':<28}" + "".join(f"{k:>22}" for k in (*KINDS, "mean over kinds"))
    lines = [header, f"{'':<28}" + "".join(f"{'AbsRel  d1    RMSE':>22}" for _ in range(len(KINDS) + 1))]
    for name, result in results.items():
        cells = []
        for kind in KINDS:
            m = result["by_kind"].get(kind)
            cells.append(f"{m['abs_rel']:>8.3f}{m['delta1']:>6.3f}{m['rmse']:>8.3f}" if m else f"{'-':>22}")
        m = result["mean_over_kinds"]
        cells.append(f"{m['abs_rel']:>8.3f}{m['delta1']:>6.3f}{m['rmse']:>8.3f}")
        lines.append(f"{name[:28]:<28}" + "".join(cells))
    return "\n".join(lines)
