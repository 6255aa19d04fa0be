"""Fixture bags with exact ground truth, and the goldens the regression tests compare against.

    python -m mde_ros.bags.fixtures              # (re)build test/fixtures/bags/approach_{mcap,sqlite3}
    python -m mde_ros.bags.fixtures --goldens    # replay them with the shipped model -> goldens.json
    python -m mde_ros.bags.fixtures --test-model # (re)build test/fixtures/models/tiny_test_depth.onnx (torch)

Each fixture is a rosbag2 folder (one per storage: mcap and sqlite3) holding a synthetic approach
sequence (camera moving, an obstacle coming closer, mde_ros.synthetic) as a RealSense would record
it: /camera/color/image_raw (rgb8) and /camera/color/camera_info in camera_color_optical_frame,
plus /ground_truth/depth (32FC1, exact, same header) for accuracy tests.

Tolerance policy of the goldens (compare_goldens):
- Same backend as the goldens (onnxruntime, one intra-op thread): every output message is expected
  byte-identical (sha256). Where the bytes differ (another onnxruntime build, another CPU's
  kernels), the message must still agree within the per-pixel depth tolerance: depth mean/min/max
  within 1e-4 m and non-finite pixel counts within 0.1 % of the pixels; cloud point count within
  0.1 % and bounds within 1e-3 m; scan ranges within 1e-3 m with the same finite/non-finite
  pattern; colourised mean colour within 0.5 levels. CameraInfo outputs do not depend on the
  model and must match exactly.
- Another backend (torch, TensorRT): metric level only: AbsRel against the ground truth within
  0.01 of the goldens' AbsRel, and the same frames (stamps) on every output topic.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from mde_ros.bags.io import STORAGES, OutputTopics, deserialize, open_reader, stamp_ns, write_bag
from mde_ros.bags.messages import camera_info_msg, image_msg, make_header
from mde_ros.inference.onnxruntime_backend import NAME as ONNXRUNTIME
from mde_ros.pipeline.outputs import pack_image

IMAGE_TOPIC = "/camera/color/image_raw"
CAMERA_INFO_TOPIC = "/camera/color/camera_info"
GROUND_TRUTH_TOPIC = "/ground_truth/depth"
FRAME_ID = "camera_color_optical_frame"
SEED = 7
N_FRAMES = 20
WIDTH, HEIGHT = 160, 120
START_NS = 1_700_000_000 * 1_000_000_000
PERIOD_NS = 100_000_000  # 10 Hz
# Receive time after the header stamp, as a driver + DDS would add; the CameraInfo arrives just
# before its image (a live node pairs an image only with CameraInfo it has already received).
LATENCY_NS = {CAMERA_INFO_TOPIC: 4_000_000, IMAGE_TOPIC: 5_000_000, GROUND_TRUTH_TOPIC: 6_000_000}
FIXTURE_DIR = Path(__file__).resolve().parents[2] / "test" / "fixtures" / "bags"
GOLDENS_FILE = "goldens.json"
# A tiny random-weight ONNX + card, committed so runtime-only test runs (no torch) have a fast model.
TEST_MODEL = FIXTURE_DIR.parent / "models" / "tiny_test_depth.onnx"
GOLDEN_BACKEND = ONNXRUNTIME

DEPTH_TOL_M = 1e-4
COUNT_TOL_FRACTION = 1e-3
CLOUD_BOUNDS_TOL_M = 1e-3
SCAN_TOL_M = 1e-3
COLOUR_TOL = 0.5
ABS_REL_TOL = 0.01
# What a model whose card has no yardstick record must reach on the fixtures (test_bags_regression).
ACCURACY_FLOOR = {"abs_rel_max": 0.25, "delta1_min": 0.6}
# The fixtures are frames of the old generator, the yardstick's "classic" kind: a model must score on
# them as the yardstick says it scores on that kind, within this slack (the approach sequence is one
# camera path at 160x120; the yardstick's classic frames are random poses at 640x480).
FLOOR_SLACK = {"abs_rel": 1.5, "delta1": 0.75}


def accuracy_floor(card: Any) -> dict[str, float]:
    """The fixtures' accuracy floor for ``card``'s model, derived from its yardstick record
    (``card.metrics["yardstick"]["by_kind"]["classic"]``, written by ``mde-ros yardstick``), not from one
    generator's numbers fixed by hand; ACCURACY_FLOOR when the card has none."""
    classic = (((getattr(card, "metrics", None) or {}).get("yardstick") or {}).get("by_kind") or {}).get("classic")
    if not classic:
        return dict(ACCURACY_FLOOR)
    return {"abs_rel_max": round(FLOOR_SLACK["abs_rel"] * float(classic["abs_rel"]), 3),
            "delta1_min": round(FLOOR_SLACK["delta1"] * float(classic["delta1"]), 3)}


def fixture_name(storage: str) -> str:
    return f"approach_{storage}"


def fixture_records(seed: int = SEED, n_frames: int = N_FRAMES, width: int = WIDTH,
                    height: int = HEIGHT) -> Iterator[tuple[str, int, Any]]:
    """(topic, receive time, message) of the approach sequence, in receive order."""
    from mde_ros.synthetic import approach_sequence

    for index, frame in enumerate(approach_sequence(seed, n_frames=n_frames, width=width, height=height)):
        stamp = START_NS + index * PERIOD_NS
        header = make_header(stamp // 1_000_000_000, stamp % 1_000_000_000, FRAME_ID)
        yield (CAMERA_INFO_TOPIC, stamp + LATENCY_NS[CAMERA_INFO_TOPIC],
               camera_info_msg(frame.intrinsics, header))
        yield IMAGE_TOPIC, stamp + LATENCY_NS[IMAGE_TOPIC], image_msg(pack_image(frame.rgb, "rgb8"), header)
        yield (GROUND_TRUTH_TOPIC, stamp + LATENCY_NS[GROUND_TRUTH_TOPIC],
               image_msg(pack_image(frame.depth.astype("<f4"), "32FC1"), header))


def write_fixture_bag(path: str | Path, storage: str, *, seed: int = SEED, n_frames: int = N_FRAMES,
                      width: int = WIDTH, height: int = HEIGHT) -> Path:
    return write_bag(path, storage, fixture_records(seed, n_frames, width, height))


def build_fixtures(out_dir: str | Path = FIXTURE_DIR) -> list[Path]:
    """Write approach_mcap and approach_sqlite3 into out_dir, replacing older ones."""
    import shutil

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for storage in STORAGES:
        path = out_dir / fixture_name(storage)
        shutil.rmtree(path, ignore_errors=True)
        paths.append(write_fixture_bag(path, storage))
    return paths


def read_topic(bag: str | Path, topic: str) -> list[tuple[int, Any, bytes]]:
    """(receive time, message, raw CDR) of every message on one topic."""
    with open_reader(bag) as reader:
        connections = [c for c in reader.connections if c.topic == topic]
        return [(t, deserialize(data, c.msgtype), bytes(data)) for c, t, data in reader.messages(connections)]


def image_array(msg: Any) -> np.ndarray:
    """A rosbags Image as numpy: HxW for 32FC1 (metres) / 16UC1, HxWxC for 8-bit colour."""
    dtypes = {"32FC1": ("<f4", 1), "16UC1": ("<u2", 1), "rgb8": ("u1", 3), "bgr8": ("u1", 3)}
    dtype, channels = dtypes[msg.encoding]
    rows = np.asarray(msg.data, np.uint8).reshape(msg.height, msg.step)
    pixels = rows[:, : msg.width * channels * np.dtype(dtype).itemsize].copy().view(dtype)
    return pixels.reshape(msg.height, msg.width, channels).squeeze(-1) if channels == 1 else \
        pixels.reshape(msg.height, msg.width, channels)


def ground_truth(bag: str | Path) -> dict[int, np.ndarray]:
    """Exact depth per header stamp."""
    return {stamp_ns(msg.header): image_array(msg) for _, msg, _ in read_topic(bag, GROUND_TRUTH_TOPIC)}


def depth_accuracy(replayed_bag: str | Path, depth_topic: str, truth: dict[int, np.ndarray],
                   min_depth: float, max_depth: float) -> dict[str, float]:
    """Mean Eigen metrics of a replayed depth topic against the fixture's ground truth.

    REP 117 markers count as what they claim: -Inf as min_depth, +Inf as max_depth.
    """
    from mde_ros.metrics import depth_metrics, mean_metrics

    per_frame = []
    for _, msg, _ in read_topic(replayed_bag, depth_topic):
        pred = image_array(msg).astype(np.float32)
        if msg.encoding == "16UC1":
            pred = np.where(pred > 0, pred / 1000.0, np.nan).astype(np.float32)
        pred = np.where(np.isneginf(pred), min_depth, np.where(np.isposinf(pred), max_depth, pred))
        per_frame.append(depth_metrics(pred, truth[stamp_ns(msg.header)], min_depth=min_depth,
                                       max_depth=max_depth))
    return mean_metrics(per_frame)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _round(value: float, digits: int = 6) -> float | str:
    """JSON-safe: non-finite values as 'nan' / 'inf' / '-inf'."""
    return round(float(value), digits) if math.isfinite(value) else str(float(value))


def _message_record(kind: str, msg: Any, data: bytes) -> dict[str, Any]:
    record: dict[str, Any] = {"stamp": stamp_ns(msg.header), "sha256": _sha256(data)}
    if kind == "depth":
        depth = image_array(msg).astype(np.float64)
        finite = depth[np.isfinite(depth)]
        record.update(pixels=int(depth.size), nan=int(np.isnan(depth).sum()),
                      neg_inf=int(np.isneginf(depth).sum()), pos_inf=int(np.isposinf(depth).sum()),
                      mean=_round(finite.mean() if finite.size else math.nan),
                      min=_round(finite.min() if finite.size else math.nan),
                      max=_round(finite.max() if finite.size else math.nan))
    elif kind == "points":
        offsets = {f.name: f.offset for f in msg.fields}
        raw = np.asarray(msg.data, np.uint8).reshape(-1, msg.point_step)
        xyz = np.stack([raw[:, offsets[a]: offsets[a] + 4].copy().view("<f4")[:, 0] for a in "xyz"], axis=1)
        xyz = xyz[np.isfinite(xyz).all(axis=1)].astype(np.float64)
        record.update(slots=int(raw.shape[0]), points=int(xyz.shape[0]),
                      min=[_round(v, 5) for v in (xyz.min(axis=0) if len(xyz) else [math.nan] * 3)],
                      max=[_round(v, 5) for v in (xyz.max(axis=0) if len(xyz) else [math.nan] * 3)])
    elif kind == "scan":
        record["ranges"] = [_round(v, 4) for v in np.asarray(msg.ranges, np.float64)]
    elif kind == "colorized":
        record["mean_rgb"] = [_round(v, 3) for v in image_array(msg).reshape(-1, 3).mean(axis=0)]
    return record


def bag_goldens(replayed_bag: str | Path, topics: OutputTopics) -> dict[str, dict[str, Any]]:
    """Per output (OutputTopics field): its topic and one record per message."""
    return {kind: {"topic": topic,
                   "messages": [_message_record(kind, msg, data) for _, msg, data in read_topic(replayed_bag, topic)]}
            for kind, topic in topics.as_dict().items()}


def input_digest(bag: str | Path) -> str:
    """sha256 over a bag's messages (topic, time, bytes): tells if a fixture changed since its goldens."""
    digest = hashlib.sha256()
    with open_reader(bag) as reader:
        for conn, timestamp, data in reader.messages():
            digest.update(f"{conn.topic}:{timestamp}:".encode())
            digest.update(bytes(data))
    return digest.hexdigest()


def replay_fixture(bag: Path, out_bag: Path, estimator: Any) -> dict[str, Any]:
    """Replay one fixture and describe the result as goldens.json does (topics + metrics)."""
    from mde_ros.bags.replay import run_replay

    summary = run_replay(bag, out_bag, estimator=estimator, progress=False)
    topics = OutputTopics(**summary["output_topics"])
    metrics = depth_accuracy(out_bag, topics.depth, ground_truth(bag), estimator.min_depth, estimator.max_depth)
    return {"input_sha256": input_digest(bag), "frames": summary["processed"],
            "metrics": {k: v if k in ("n_valid", "n_images", "n_skipped") else _round(v) for k, v in metrics.items()},
            "outputs": bag_goldens(out_bag, topics)}


def model_identity(model: str | Path) -> dict[str, str]:
    from mde_ros.inference.cache import file_sha256
    from mde_ros.models.card import load_card_for

    model = Path(model)
    return {"file": model.name, "sha256": file_sha256(model), "name": load_card_for(model).name}


def compute_goldens(fixture_dir: str | Path = FIXTURE_DIR, model: str | Path | None = None,
                    backend: str = GOLDEN_BACKEND) -> dict[str, Any]:
    from mde_ros.bags.replay import load_estimator
    from mde_ros.resources import default_model_path

    model = Path(model) if model is not None else default_model_path()
    estimator = load_estimator(model, backend)
    goldens: dict[str, Any] = {"model": model_identity(model), "backend": estimator.backend.name,
                               "intra_op_threads": 1, "environment": _environment(), "bags": {}}
    with tempfile.TemporaryDirectory(prefix="mde_goldens_") as tmp:
        for storage in STORAGES:
            name = fixture_name(storage)
            goldens["bags"][name] = replay_fixture(Path(fixture_dir) / name, Path(tmp) / name, estimator)
    return goldens


def _environment() -> dict[str, str]:
    import onnxruntime

    return {"onnxruntime": onnxruntime.__version__, "numpy": np.__version__}


def _close(a: Any, b: Any, tol: float) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return abs(a - b) <= tol


def _compare_message(kind: str, golden: dict, current: dict) -> str | None:
    """Why a message differs beyond the same-backend tolerance, or None."""
    if golden["sha256"] == current["sha256"]:
        return None
    if kind == "depth":
        allowed = COUNT_TOL_FRACTION * golden["pixels"]
        for key in ("nan", "neg_inf", "pos_inf"):
            if abs(golden[key] - current[key]) > allowed:
                return f"{key} pixels {current[key]} vs golden {golden[key]}"
        for key in ("mean", "min", "max"):
            if not _close(golden[key], current[key], DEPTH_TOL_M):
                return f"depth {key} {current[key]} vs golden {golden[key]} (tolerance {DEPTH_TOL_M} m)"
        return None
    if kind == "points":
        if abs(golden["points"] - current["points"]) > COUNT_TOL_FRACTION * golden["slots"]:
            return f"{current['points']} points vs golden {golden['points']}"
        for key in ("min", "max"):
            if not all(_close(g, c, CLOUD_BOUNDS_TOL_M) for g, c in zip(golden[key], current[key])):
                return f"cloud {key} {current[key]} vs golden {golden[key]}"
        return None
    if kind == "scan":
        if len(golden["ranges"]) != len(current["ranges"]):
            return f"{len(current['ranges'])} ranges vs golden {len(golden['ranges'])}"
        bad = [i for i, (g, c) in enumerate(zip(golden["ranges"], current["ranges"]))
               if not _close(g, c, SCAN_TOL_M)]
        return f"scan ranges differ at {len(bad)} angles (first: index {bad[0]})" if bad else None
    if kind == "colorized":
        ok = all(_close(g, c, COLOUR_TOL) for g, c in zip(golden["mean_rgb"], current["mean_rgb"]))
        return None if ok else f"colourised mean {current['mean_rgb']} vs golden {golden['mean_rgb']}"
    return "bytes differ (this output does not depend on the model and must match exactly)"


def compare_goldens(golden: dict[str, Any], current: dict[str, Any], same_backend: bool) -> list[str]:
    """Problems of one replayed fixture against its goldens (empty = pass); policy in the module doc."""
    problems = []
    if golden["input_sha256"] != current["input_sha256"]:
        return ["the fixture bag changed since the goldens were made: regenerate them "
                "(python -m mde_ros.bags.fixtures --goldens)"]
    g_rel, c_rel = golden["metrics"]["abs_rel"], current["metrics"]["abs_rel"]
    if not _close(g_rel, c_rel, ABS_REL_TOL):
        problems.append(f"AbsRel {c_rel} vs golden {g_rel} (tolerance {ABS_REL_TOL})")
    for kind, expected in golden["outputs"].items():
        got = current["outputs"].get(kind)
        if got is None or got["topic"] != expected["topic"]:
            problems.append(f"{kind}: topic {expected['topic']} missing")
            continue
        g_stamps = [m["stamp"] for m in expected["messages"]]
        c_stamps = [m["stamp"] for m in got["messages"]]
        if g_stamps != c_stamps:
            problems.append(f"{expected['topic']}: stamps {c_stamps} vs golden {g_stamps}")
            continue
        if not same_backend:
            continue
        for g_msg, c_msg in zip(expected["messages"], got["messages"]):
            why = _compare_message(kind, g_msg, c_msg)
            if why:
                problems.append(f"{expected['topic']} @ {g_msg['stamp']}: {why}")
    return problems


def export_test_model(path: str | Path) -> Path:
    """A copy of the committed tiny ONNX test model and its card at `path` (no torch needed)."""
    import shutil

    from mde_ros.models.card import card_path_for

    path = Path(path)
    shutil.copyfile(TEST_MODEL, path)
    shutil.copyfile(card_path_for(TEST_MODEL), card_path_for(path))
    return path


def build_test_model(path: str | Path, *, seed: int = 0) -> Path:
    """A tiny, fast, deterministic ONNX depth model with its card (for tests, not for depth)."""
    import torch
    from torch import nn

    from mde_ros.models.card import ModelCard
    from mde_ros.models.export import export_onnx

    class TinyDepth(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1))

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return 0.5 + 4.0 * torch.sigmoid(self.features(image))  # 0.5..4.5 m

    torch.manual_seed(seed)
    card = ModelCard(name="tiny_test_depth", architecture="external", input_height=48, input_width=64,
                     min_depth=0.3, max_depth=4.0, train_focal_px=50.0,
                     provenance={"notes": "random weights; exercises the pipeline, not accuracy"})
    return export_onnx(TinyDepth(), card, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mde_ros.bags.fixtures", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=FIXTURE_DIR, help=f"fixture folder (default {FIXTURE_DIR})")
    parser.add_argument("--goldens", action="store_true",
                        help=f"replay the fixtures with the shipped model on {GOLDEN_BACKEND} -> {GOLDENS_FILE}")
    parser.add_argument("--model", type=Path, help="model for --goldens (default: the shipped demo model)")
    parser.add_argument("--test-model", action="store_true", help=f"rebuild {TEST_MODEL} (needs torch)")
    args = parser.parse_args(argv)
    if args.test_model:
        TEST_MODEL.parent.mkdir(parents=True, exist_ok=True)
        print(f"wrote {build_test_model(TEST_MODEL)}")
        return 0
    if args.goldens:
        goldens = compute_goldens(args.out, args.model)
        path = args.out / GOLDENS_FILE
        path.write_text(json.dumps(goldens, indent=1) + "\n")
        for name, bag in goldens["bags"].items():
            print(f"{name}: {bag['frames']} frames, AbsRel {bag['metrics']['abs_rel']}, "
                  f"delta1 {bag['metrics']['delta1']}")
        print(f"wrote {path}")
        return 0
    for path in build_fixtures(args.out):
        size = sum(f.stat().st_size for f in path.iterdir())
        print(f"wrote {path} ({size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
