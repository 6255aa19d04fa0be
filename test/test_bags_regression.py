"""Committed fixture bags: replay with the shipped model vs. goldens.json, and accuracy vs. exact ground truth.

Tolerance policy: see mde_ros.bags.fixtures. Goldens are made by
`python -m mde_ros.bags.fixtures --goldens` once the shipped demo model exists.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from mde_ros.bags import fixtures
from mde_ros.bags.io import STORAGES, bag_storage, topic_counts
from mde_ros.bags.replay import load_estimator

FIXTURES = fixtures.FIXTURE_DIR
GOLDENS = FIXTURES / fixtures.GOLDENS_FILE
MAX_FIXTURE_BYTES = 5_000_000


def _demo_model() -> Path:
    from mde_ros.resources import default_model_path

    try:
        return default_model_path()
    except FileNotFoundError as exc:
        pytest.skip(f"shipped demo model not present yet ({exc})")


@pytest.fixture(scope="module")
def demo_replays(tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    """Each committed fixture replayed with the shipped model on the goldens' backend."""
    model = _demo_model()
    estimator = load_estimator(model, fixtures.GOLDEN_BACKEND)
    out = tmp_path_factory.mktemp("replayed")
    return model, {fixtures.fixture_name(s): fixtures.replay_fixture(FIXTURES / fixtures.fixture_name(s),
                                                                     out / fixtures.fixture_name(s), estimator)
                   for s in STORAGES}


@pytest.mark.parametrize("storage", STORAGES)
def test_committed_fixtures_are_small_complete_bags(storage):
    bag = FIXTURES / fixtures.fixture_name(storage)
    assert bag_storage(bag) == storage
    assert sum(f.stat().st_size for f in bag.iterdir()) <= MAX_FIXTURE_BYTES
    counts = topic_counts(bag)
    assert counts == {fixtures.IMAGE_TOPIC: fixtures.N_FRAMES, fixtures.CAMERA_INFO_TOPIC: fixtures.N_FRAMES,
                      fixtures.GROUND_TRUTH_TOPIC: fixtures.N_FRAMES}
    truth = fixtures.ground_truth(bag)
    assert len(truth) == fixtures.N_FRAMES
    # The obstacle approaches: the ground-truth depth at the image centre shrinks every frame.
    centre = [depth[fixtures.HEIGHT // 2, fixtures.WIDTH // 2] for _, depth in sorted(truth.items())]
    assert all(later < earlier for earlier, later in zip(centre, centre[1:]))


def test_replay_matches_the_goldens(demo_replays):
    if not GOLDENS.exists():
        pytest.skip(f"{GOLDENS} not generated yet: run `python -m mde_ros.bags.fixtures --goldens` "
                    "once the shipped demo model exists")
    model, replays = demo_replays
    goldens = json.loads(GOLDENS.read_text())
    assert goldens["model"] == fixtures.model_identity(model), (
        "goldens.json was made with another model: regenerate it (python -m mde_ros.bags.fixtures --goldens)")
    same_backend = goldens["backend"] == fixtures.GOLDEN_BACKEND
    problems = {name: fixtures.compare_goldens(goldens["bags"][name], current, same_backend)
                for name, current in replays.items()}
    assert problems == {name: [] for name in replays}


def test_shipped_model_is_accurate_on_the_fixtures(demo_replays):
    from mde_ros.models.card import load_card_for

    model, replays = demo_replays
    floor = fixtures.accuracy_floor(load_card_for(model))
    assert "yardstick" in load_card_for(model).metrics, "the shipped card records its yardstick figures"
    for name, replay in replays.items():
        metrics = replay["metrics"]
        assert metrics["n_images"] == fixtures.N_FRAMES, name
        assert metrics["abs_rel"] <= floor["abs_rel_max"], (name, metrics, floor)
        assert metrics["delta1"] >= floor["delta1_min"], (name, metrics, floor)


def test_the_accuracy_floor_follows_the_yardstick_record():
    from types import SimpleNamespace

    card = SimpleNamespace(metrics={"yardstick": {"by_kind": {"classic": {"abs_rel": 0.2, "delta1": 0.8}}}})
    assert fixtures.accuracy_floor(card) == {"abs_rel_max": 0.3, "delta1_min": 0.6}
    assert fixtures.accuracy_floor(SimpleNamespace(metrics={})) == fixtures.ACCURACY_FLOOR


@pytest.fixture(scope="module")
def tiny_records(tmp_path_factory) -> dict[str, dict]:
    """Golden-style records of fresh small fixtures replayed with a tiny test model."""
    tmp = tmp_path_factory.mktemp("tiny")
    estimator = load_estimator(fixtures.export_test_model(tmp / "tiny.onnx"), "onnxruntime")
    records = {}
    for storage in STORAGES:
        bag = fixtures.write_fixture_bag(tmp / f"in_{storage}", storage, n_frames=4)
        records[storage] = fixtures.replay_fixture(bag, tmp / f"out_{storage}", estimator)
    return records


def test_both_storages_replay_to_the_same_messages(tiny_records):
    mcap, sqlite = tiny_records["mcap"], tiny_records["sqlite3"]
    assert mcap["input_sha256"] == sqlite["input_sha256"]
    assert mcap["outputs"] == sqlite["outputs"] and mcap["metrics"] == sqlite["metrics"]
    assert json.loads(json.dumps(mcap)) == mcap  # goldens.json can hold it as is


def test_golden_comparison_enforces_the_tolerance_policy(tiny_records):
    golden = tiny_records["mcap"]
    assert fixtures.compare_goldens(golden, copy.deepcopy(golden), same_backend=True) == []

    def perturbed(edit) -> list[str]:
        current = copy.deepcopy(golden)
        edit(current)
        return fixtures.compare_goldens(golden, current, same_backend=True)

    def depth(current, key, delta):
        message = current["outputs"]["depth"]["messages"][1]
        message["sha256"], message[key] = "changed", message[key] + delta

    assert perturbed(lambda c: depth(c, "mean", 0.5 * fixtures.DEPTH_TOL_M)) == []  # within tolerance
    assert "depth mean" in perturbed(lambda c: depth(c, "mean", 10 * fixtures.DEPTH_TOL_M))[0]
    assert "nan pixels" in perturbed(lambda c: depth(c, "nan", 100))[0]

    def scan(current):
        message = current["outputs"]["scan"]["messages"][0]
        message["sha256"], message["ranges"][5] = "changed", "nan"
    assert "scan ranges differ" in perturbed(scan)[0]

    def info(current):
        current["outputs"]["depth_camera_info"]["messages"][0]["sha256"] = "changed"
    assert "must match exactly" in perturbed(info)[0]

    def dropped(current):
        del current["outputs"]["points"]["messages"][2]
    assert "stamps" in perturbed(dropped)[0]

    def worse(current):
        current["metrics"]["abs_rel"] += 2 * fixtures.ABS_REL_TOL
    assert "AbsRel" in perturbed(worse)[0]
    # Across backends only the metrics and the frames count, not the bytes.
    assert fixtures.compare_goldens(golden, _with_changed_depth(golden), same_backend=False) == []
    assert fixtures.compare_goldens(golden, _with_changed_depth(golden), same_backend=True) != []

    changed_input = copy.deepcopy(golden)
    changed_input["input_sha256"] = "other"
    assert "regenerate" in fixtures.compare_goldens(golden, changed_input, same_backend=True)[0]


def _with_changed_depth(golden: dict) -> dict:
    current = copy.deepcopy(golden)
    for message in current["outputs"]["depth"]["messages"]:
        message["sha256"], message["mean"] = "changed", message["mean"] + 0.01
    return current
