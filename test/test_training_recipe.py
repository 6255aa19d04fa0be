"""The CPU/GPU recipe's pieces, run for real: streamed scenes (no view trained twice), a schedule that
anneals to the end of any wall-clock budget and carries its time across --resume, weight EMA, the
roll and crop-curriculum augmentations (labels stay exact), balanced validation kinds and selection
by the mean AbsRel over kinds."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import yaml

from training.batch_augment import crop_for_curriculum, curriculum_scale, random_roll
from training.datasets import build_dataset
from training.ema import ModelEma
from training.schedule import WallClockBudget, lr_multiplier

from test_training_world import TINY_MODEL
from test_training_world import world_cfg as small_world

pytestmark = pytest.mark.usefixtures("one_thread")


def world_cfg(**extra) -> dict:
    """Two train scenes, one val scene per kind (tabletop, room, hall), two views each."""
    return small_world(**{"num_scenes": {"train": 2, "val": 3, "test": 0}, "views_per_scene": 2, **extra})


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_time_budget_anneals_to_its_end_whatever_the_epochs_say():
    clock = FakeClock()
    budget = WallClockBudget(10.0, clock=clock)           # 10 minutes
    cfg = {"name": "poly", "power": 0.9, "warmup_fraction": 0.05, "min_lr": 0.0}
    mult = lr_multiplier(cfg, iters_per_epoch=100, epochs=100_000, base_lr=1e-3, budget=budget)
    assert mult(0) < 0.01                                  # warming up
    clock.now += 0.05 * 600
    assert mult(1) == pytest.approx(1.0)                   # warm-up over: 5 % of the budget, not of 10M steps
    clock.now += 0.475 * 600                               # half of the decay left
    assert mult(2) == pytest.approx(0.5 ** 0.9, rel=1e-6)
    clock.now += 0.475 * 600
    assert mult(3) == pytest.approx(0.0, abs=1e-9)         # annealed at the budget's end
    assert budget.over()


def test_iteration_schedules_are_unchanged_without_a_budget():
    mult = lr_multiplier({"name": "cosine", "warmup_epochs": 1, "min_lr": 0.0}, 10, 3, 1e-3)
    assert mult(0) == pytest.approx(0.1) and mult(9) == pytest.approx(1.0)
    assert mult(10) == pytest.approx(1.0) and mult(30) == pytest.approx(0.0, abs=1e-12)
    poly = lr_multiplier({"name": "poly", "power": 0.9, "min_lr": 1e-4}, 10, 2, 1e-3)
    assert poly(10) == pytest.approx(0.1 + 0.9 * 0.5 ** 0.9)


def test_a_budget_resumed_from_its_checkpoint_time_continues_the_same_curve():
    clock = FakeClock()
    first = WallClockBudget(1.0, clock=clock)
    clock.now += 45.0
    resumed = WallClockBudget(1.0, spent_before=first.elapsed(), clock=clock)
    assert resumed.fraction() == pytest.approx(0.75) and not resumed.over()
    clock.now += 15.0
    assert resumed.over()


def test_streaming_epochs_render_new_scenes_and_val_covers_every_kind_equally():
    data = build_dataset(world_cfg(stream=True), "train")
    seeds0 = {data.scene_seed(i) for i in range(len(data))}
    data.set_epoch(1)
    seeds1 = {data.scene_seed(i) for i in range(len(data))}
    assert seeds0.isdisjoint(seeds1) and len(seeds1) == 2
    fixed = build_dataset(world_cfg(stream=False), "train")
    fixed.set_epoch(1)
    assert {fixed.scene_seed(i) for i in range(len(fixed))} == seeds0
    val = build_dataset(world_cfg(), "val")
    assert [val.kind_of(i) for i in range(0, len(val), 2)] == ["tabletop", "room", "hall"]
    # the kind a sample claims is the kind that was built: a table-top view is close range
    tabletop, hall = val[0], val[4]
    assert float(tabletop["depth"][tabletop["valid"]].median()) < float(hall["depth"][hall["valid"]].median())


def test_roll_keeps_depth_exact_and_marks_pixels_from_outside_invalid():
    gen = torch.Generator().manual_seed(0)
    depth = torch.rand(2, 1, 48, 64) * 5 + 1
    image = depth.repeat(1, 3, 1, 1) / 6
    valid = torch.ones_like(depth, dtype=torch.bool)
    r_image, r_depth, r_valid = random_roll(image, depth, valid, 2.5, gen)
    assert r_image.shape == image.shape and r_valid.dtype == torch.bool
    assert 0 < int((~r_valid).sum()) < 0.1 * valid.numel()          # corners rotated in from outside
    assert (r_depth[~r_valid] == 0).all()
    for n in range(2):   # every kept depth is one of the sample's own values (nearest, never blended)
        kept = r_depth[n][r_valid[n]]
        assert torch.isin(kept, depth[n]).all()
    same = random_roll(image, depth, valid, 0.0, gen)
    assert same[1] is depth


def test_the_crop_curriculum_cuts_one_window_then_full_frames():
    cfg = {"scale": 0.75, "until": 0.5}
    assert curriculum_scale(cfg, 0.2) == 0.75 and curriculum_scale(cfg, 0.6) == 1.0
    assert curriculum_scale(None, 0.0) == 1.0
    with pytest.raises(ValueError):
        curriculum_scale({"scale": 0, "until": 0.5}, 0.1)
    x = torch.arange(2 * 128 * 160, dtype=torch.float32).reshape(2, 1, 128, 160)
    a, b = crop_for_curriculum((x, x + 1), 0.75, generator=torch.Generator().manual_seed(1))
    assert a.shape[-2:] == (96, 96) and torch.equal(b, a + 1)     # multiples of 32, same window in both


def test_ema_averages_towards_the_weights_and_round_trips():
    net = torch.nn.Linear(3, 1)
    ema = ModelEma(net, decay=0.9)
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net)
    d = min(0.9, 2 / 11)
    assert torch.allclose(ema.net.weight, net.weight - 1.0 * d)
    other = ModelEma(net, decay=0.9)
    other.load_state_dict(ema.state_dict())
    assert torch.equal(other.net.weight, ema.net.weight) and other.updates == 1


def test_a_budgeted_run_selects_on_mean_abs_rel_over_kinds_and_resumes_its_clock(tmp_path):
    from training.checkpoint import load_checkpoint
    from training.config import load_config
    from training.train import train

    recipe = {"model": TINY_MODEL, "data": world_cfg(canonical_focal_px=30.0),
              "loss": {"name": "silog_grad"}, "optim": {"name": "adamw", "lr": 1e-3, "weight_decay": 1e-2},
              "schedule": {"name": "poly", "warmup_fraction": 0.1},
              "train": {"epochs": 2, "batch_size": 2, "num_workers": 0, "seed": 0, "device": "cpu",
                        "tensorboard": False, "ema_decay": 0.9, "roll_deg": 2.5, "grad_clip": 1.0,
                        "resolution_curriculum": {"scale": 0.75, "until": 0.5}, "max_minutes": 30,
                        "best_metric": "abs_rel_kind_mean", "best_mode": "min"},
              "output_dir": str(tmp_path / "run")}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    summary = train(load_config(path, []))
    state = load_checkpoint(summary["last_checkpoint"])
    assert summary["best_metric_name"] == "abs_rel_kind_mean"
    kinds = state["history"][-1]["val"]
    assert math.isfinite(kinds["abs_rel_kind_mean"])
    assert state["ema"] is not None and state["images_seen"] == 2 * 4
    assert 0 < state["train_seconds"] < 600
    # resumed with a budget it has already spent: nothing more to train
    recipe["train"]["epochs"] = 3
    recipe["train"]["max_minutes"] = state["train_seconds"] / 60.0 * 0.5
    path.write_text(yaml.safe_dump(recipe))
    from training.train import main
    assert main([str(path), "--resume", "--apply-changes"]) == 0
    assert load_checkpoint(summary["last_checkpoint"])["global_step"] == state["global_step"]


def test_the_exported_weights_are_the_ema_average(tmp_path):
    from training.model_wrapper import depth_model_from_checkpoint
    from mde_ros.models.registry import build_model

    net = build_model(TINY_MODEL["name"], **TINY_MODEL["kwargs"])
    avg = {k: v + 1 if v.dtype.is_floating_point else v for k, v in net.state_dict().items()}
    model = depth_model_from_checkpoint({"config": {"model": TINY_MODEL}, "model": net.state_dict(), "ema": avg})
    key = next(k for k, v in avg.items() if v.dtype.is_floating_point)
    assert torch.equal(model.net.state_dict()[key], avg[key])
    np.testing.assert_equal(len(avg), len(model.net.state_dict()))
