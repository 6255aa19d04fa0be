"""Recipes: YAML + overrides + _base_ inheritance, validation, and every shipped recipe is usable."""
from pathlib import Path

import pytest
import yaml

from mde_ros.models.registry import available_models
from training.config import ConfigError, load_config, phases, save_config
from training.losses import build_loss
from training.transforms import build_transforms

CONFIGS = Path(__file__).resolve().parents[1] / "training" / "configs"
RECIPES = sorted(CONFIGS.glob("*.yaml"))


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


MINIMAL = {"model": {"name": "unet_resnet18"}, "data": {"name": "synthetic", "input_size": [64, 80]}}


def test_the_seed_recipes_are_all_shipped():
    assert {p.stem for p in RECIPES} >= {"nyu_resnet34", "nyu_resnet18", "cityscapes_dpt", "kaggle_resnet50",
                                         "synthetic_demo"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_loads_and_its_parts_build(path):
    cfg = load_config(path)
    assert cfg["model"]["name"] in available_models()
    loss = build_loss(cfg["loss"])
    assert callable(loss)
    for split in ("train", "val"):
        assert build_transforms(cfg["data"], split).transforms
    assert phases(cfg)[0]["lr"] > 0


def test_nyu_resnet34_has_the_two_phase_curriculum_recipe():
    cfg = load_config(CONFIGS / "nyu_resnet34.yaml")
    assert cfg["data"]["input_size"] == [320, 320] and cfg["data"]["max_depth"] == 10.0
    assert cfg["loss"] == {"name": "l1_grad", "grad_weight": 0.5}
    assert cfg["optim"]["name"] == "adam" and cfg["optim"]["weight_decay"] == 1e-4
    assert cfg["train"]["batch_size"] == 16 and cfg["train"]["curriculum"]["chunk_size"] == 5000
    assert phases(cfg) == [
        {"name": "phase1", "lr": 1e-4, "epochs": 50, "init_from": None},
        {"name": "phase2", "lr": 1e-5, "epochs": 30, "init_from": "phase1"},
    ]


def test_nyu_resnet18_inherits_from_resnet34_and_replaces_what_it_sets():
    child = load_config(CONFIGS / "nyu_resnet18.yaml")
    parent = load_config(CONFIGS / "nyu_resnet34.yaml")
    assert child["data"]["name"] == parent["data"]["name"] and child["data"]["root"] == parent["data"]["root"]
    assert child["optim"]["name"] == "adamw" and child["train"]["batch_size"] == 8
    assert child["train"]["phases"] is None and len(phases(child)) == 1
    assert child["eval"]["metrics"] == ["abs_rel", "delta1"]


def test_overrides_are_parsed_as_yaml(tmp_path):
    path = write(tmp_path / "a.yaml", MINIMAL)
    cfg = load_config(path, ["optim.lr=1e-5", "data.input_size=[160,128]", "train.amp=true",
                             "model.kwargs.encoder_depth=4", "output_dir=runs/x", "train.grad_clip=null"])
    assert cfg["optim"]["lr"] == pytest.approx(1e-5) and isinstance(cfg["optim"]["lr"], float)
    assert cfg["data"]["input_size"] == [160, 128]
    assert cfg["train"]["amp"] is True and cfg["train"]["grad_clip"] is None
    assert cfg["model"]["kwargs"] == {"encoder_depth": 4}
    assert cfg["output_dir"] == "runs/x"
    assert cfg["data"]["name"] == "synthetic"                      # untouched keys survive


def test_defaults_fill_what_a_recipe_leaves_out(tmp_path):
    cfg = load_config(write(tmp_path / "a.yaml", MINIMAL))
    assert cfg["schedule"] == {"name": "none", "warmup_epochs": 0, "warmup_fraction": None, "min_lr": 0.0,
                               "step_size": 10, "gamma": 0.1, "power": 0.9}
    assert cfg["train"]["curriculum"] == {"chunk_size": None}
    assert cfg["eval"]["crop"] == "none" and cfg["data"]["max_depth"] == 10.0


def test_base_chain_deep_merges_and_lists_replace(tmp_path):
    write(tmp_path / "grand.yaml", {**MINIMAL, "train": {"epochs": 3, "batch_size": 4},
                                    "data": {"name": "synthetic", "input_size": [64, 80], "max_depth": 5.0}})
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "parent.yaml", {"_base_": "../grand.yaml", "train": {"epochs": 7}})
    child = write(tmp_path / "sub" / "child.yaml", {"_base_": "parent.yaml", "data": {"input_size": [32, 32]}})
    cfg = load_config(child)
    assert cfg["train"]["epochs"] == 7 and cfg["train"]["batch_size"] == 4
    assert cfg["data"]["input_size"] == [32, 32] and cfg["data"]["max_depth"] == 5.0
    assert "_base_" not in cfg


def test_base_cycle_is_an_error(tmp_path):
    write(tmp_path / "a.yaml", {**MINIMAL, "_base_": "b.yaml"})
    write(tmp_path / "b.yaml", {"_base_": "a.yaml"})
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")


@pytest.mark.parametrize("content, overrides, message", [
    ({**MINIMAL, "trainer": {}}, [], "unknown top-level"),
    (MINIMAL, ["trian.epochs=3"], "unknown top-level"),
    (MINIMAL, ["optim.lrr=1e-5"], "unknown key.*optim"),
    (MINIMAL, ["optim.lr"], "section.key=value"),
    (MINIMAL, ["data.input_size=[64]"], "input_size"),
    (MINIMAL, ["optim.name=lion"], "optim.name"),
    (MINIMAL, ["schedule.name=exponential"], "schedule.name"),
    (MINIMAL, ["eval.crop=center"], "eval.crop"),
    (MINIMAL, ["train.batch_size=0"], "batch_size"),
    (MINIMAL, ["train.curriculum.chunk_size=-5"], "chunk_size"),
    ({"data": MINIMAL["data"]}, [], "model.name"),
    (MINIMAL, ["train.phases=[{name: a, lr: 1.0e-4, epochs: 2, init_from: b}]"], "init_from"),
    (MINIMAL, ["train.phases=[{name: a, epochs: 2}, {name: a, epochs: 1}]"], "duplicate"),
])
def test_bad_recipes_are_rejected_with_the_key_named(tmp_path, content, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path / "a.yaml", content), overrides)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")


def test_phases_inherit_lr_and_epochs_and_accept_checkpoint_paths(tmp_path):
    cfg = load_config(write(tmp_path / "a.yaml", MINIMAL),
                      ["optim.lr=3e-4", "train.epochs=4",
                       "train.phases=[{name: warm}, {name: fine, lr: 1.0e-5, init_from: warm}, "
                       "{epochs: 2, init_from: old/best.pt}]"])
    assert phases(cfg) == [
        {"name": "warm", "lr": 3e-4, "epochs": 4, "init_from": None},
        {"name": "fine", "lr": 1e-5, "epochs": 4, "init_from": "warm"},
        {"name": "phase3", "lr": 3e-4, "epochs": 2, "init_from": "old/best.pt"},
    ]


def test_save_config_round_trips(tmp_path):
    cfg = load_config(CONFIGS / "nyu_resnet34.yaml", ["optim.lr=2e-5"])
    out = tmp_path / "run" / "config.yaml"
    save_config(cfg, out)
    assert load_config(out) == cfg
    assert [p.name for p in out.parent.iterdir()] == ["config.yaml"]     # no temp file left behind
