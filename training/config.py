"""Training recipes: YAML files plus ``section.key=value`` command-line overrides.

Schema (every recipe in ``training/configs/`` follows it; :data:`DEFAULTS` fills what a recipe
leaves out, so code may index any key listed here)::

    _base_: other.yaml          # optional; path relative to this file (or a list of them). The base
                                # is loaded first and this file is deep-merged over it (dicts merge,
                                # lists and scalars replace).
    model:
      name: unet_resnet34       # mde_ros.models.registry name (required)
      kwargs: {}                # passed to build_model(name, **kwargs)
    data:                       # passed to training.datasets.build_dataset(cfg["data"], split)
      name: nyu_mat             # nyu_mat | nyu_csv | kitti | cityscapes | folder | synthetic (required)
      root: /datasets/nyu       # dataset folder
      input_size: [240, 320]    # [height, width] of every sample (network input)
      min_depth: 0.001          # training targets: GT in (min_depth, max_depth]; evaluation: strictly inside
      max_depth: 10.0           # metres; also the model's output range
      augment: {}               # training.transforms.build_transforms; train split only
      ...                       # per-dataset keys (see each reader's docstring)
    loss:                       # training.losses.build_loss
      name: l1_grad             # l1 | l1_grad | silog | silog_grad | mse, plus that loss's options
    optim:
      name: adamw               # adam | adamw | sgd
      lr: 1.0e-4                # decoder / whole-model learning rate
      weight_decay: 1.0e-4
      encoder_lr: null          # separate encoder learning rate (null: same as lr)
      betas: [0.9, 0.999]
      momentum: 0.9             # sgd only
    schedule:
      name: none                # none | cosine | poly | step (training.schedule)
      warmup_epochs: 0          # linear warm-up from 0 to lr
      warmup_fraction: null     # or: warm up over this share of the run (of train.max_minutes when set)
      power: 0.9                # poly: (1 - progress) ** power
      min_lr: 0.0               # cosine floor
      step_size: 10             # step: epochs between decays
      gamma: 0.1                # step: decay factor
    train:
      epochs: 10
      batch_size: 8
      num_workers: 2
      amp: false                # mixed precision (CUDA only)
      grad_clip: null           # max gradient norm, null = off
      early_stopping_patience: null   # epochs without a better best_metric, null = off
      best_metric: rmse         # validation metric that picks the best checkpoint
      best_mode: min            # min | max
      seed: 0
      device: auto              # auto | cpu | cuda | cuda:N
      curriculum:
        chunk_size: null        # train the epoch in chunks of this many images (null: one chunk)
      phases: null              # [{name, lr, epochs, init_from}] run in order; init_from is null,
                                # a previous phase's name (its best checkpoint) or a checkpoint path.
                                # null: one phase from optim.lr and train.epochs (see phases()).
      # optional, read by training/train.py with its own defaults: log_every, vis_samples,
      # tensorboard, deterministic, progress_every (steps) / progress_seconds (30): log lines
      # instead of a progress bar when stderr is not a terminal (training/progress.py),
      # max_minutes (wall-clock budget), camera_effects, batch_repeats
    eval:
      crop: none                # eigen | garg | none
      min_depth: 0.001
      max_depth: null           # null: data.max_depth
      metrics: [abs_rel, rmse, delta1]   # shown in logs; all Eigen metrics are computed
    export: {}                  # read by training/export_model.py
    output_dir: runs/default    # checkpoints, logs and the resolved config go here

Only the top level and the ``optim`` / ``schedule`` sections are closed (a typo there is an error);
``model.kwargs``, ``data``, ``loss``, ``train``, ``eval`` and ``export`` are checked by the code that
reads them, so per-dataset and per-loss options need no change here.
"""
from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any, Iterable

import yaml
from mde_ros.atomic import atomic_write
from training.schedule import SCHEDULES

DEFAULTS: dict[str, Any] = {
    "model": {"name": None, "kwargs": {}},
    "data": {
        "name": None,
        "root": None,
        "input_size": [240, 320],
        "min_depth": 1e-3,
        "max_depth": 10.0,
        "augment": {},
    },
    "loss": {"name": "l1_grad"},
    "optim": {
        "name": "adamw",
        "lr": 1e-4,
        "weight_decay": 1e-4,
        "encoder_lr": None,
        "betas": [0.9, 0.999],
        "momentum": 0.9,
    },
    "schedule": {"name": "none", "warmup_epochs": 0, "warmup_fraction": None, "min_lr": 0.0, "step_size": 10,
                 "gamma": 0.1, "power": 0.9},
    "train": {
        "epochs": 10,
        "batch_size": 8,
        "num_workers": 2,
        "amp": False,
        "grad_clip": None,
        "early_stopping_patience": None,
        "best_metric": "rmse",
        "best_mode": "min",
        "seed": 0,
        "device": "auto",
        "curriculum": {"chunk_size": None},
        "phases": None,
    },
    "eval": {"crop": "none", "min_depth": 1e-3, "max_depth": None, "metrics": ["abs_rel", "rmse", "delta1"]},
    "export": {},
    "output_dir": "runs/default",
}

BASE_KEY = "_base_"
CLOSED_SECTIONS = ("optim", "schedule")
OPTIMIZERS = ("adam", "adamw", "sgd")
EVAL_CROPS = ("eigen", "garg", "none")
PHASE_KEYS = ("name", "lr", "epochs", "init_from")
_EXPONENT_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


class ConfigError(ValueError):
    """A recipe or override is wrong; the message names the key and what is allowed."""


def load_config(path: str | os.PathLike, overrides: Iterable[str] = ()) -> dict:
    """Load a recipe (following ``_base_``), apply ``a.b.c=value`` overrides, fill defaults, validate."""
    cfg = _load_with_bases(Path(path), seen=())
    for override in overrides:
        _apply_override(cfg, override)
    merged = _deep_merge(copy.deepcopy(DEFAULTS), cfg)
    validate_config(merged)
    return merged


def apply_overrides(cfg: dict, overrides: Iterable[str] = ()) -> dict:
    """A resolved config (a checkpoint's, a saved config.yaml) with ``a.b.c=value`` overrides, validated."""
    cfg = copy.deepcopy(cfg)
    for override in overrides:
        _apply_override(cfg, override)
    merged = _deep_merge(copy.deepcopy(DEFAULTS), cfg)
    validate_config(merged)
    return merged


def save_config(cfg: dict, path: str | os.PathLike) -> None:
    """Write the resolved recipe atomically, so a crash never leaves half a config beside a checkpoint."""
    with atomic_write(path, "w") as stream:
        yaml.safe_dump(_plain(cfg), stream, sort_keys=False, default_flow_style=None)


def validate_config(cfg: dict) -> None:
    """Reject what would otherwise fail (or silently do the wrong thing) hours into a run."""
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown top-level key(s) {unknown}; allowed: {sorted(DEFAULTS)}")
    for section in ("model", "data", "loss", "optim", "schedule", "train", "eval", "export"):
        if not isinstance(cfg[section], dict):
            raise ConfigError(f"'{section}' must be a mapping, got {type(cfg[section]).__name__}")
    for section in CLOSED_SECTIONS:
        extra = sorted(set(cfg[section]) - set(DEFAULTS[section]))
        if extra:
            raise ConfigError(f"unknown key(s) {extra} in '{section}'; allowed: {sorted(DEFAULTS[section])}")
    if not cfg["model"]["name"]:
        raise ConfigError("model.name is required (a name from mde_ros.models.registry.available_models())")
    if not isinstance(cfg["model"]["kwargs"], dict):
        raise ConfigError("model.kwargs must be a mapping")
    if not cfg["data"]["name"]:
        raise ConfigError("data.name is required (nyu_mat, nyu_csv, kitti, cityscapes, folder or synthetic)")
    size = cfg["data"]["input_size"]
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        raise ConfigError(f"data.input_size must be [height, width] positive integers, got {size!r}")
    if not cfg["data"]["max_depth"] or float(cfg["data"]["max_depth"]) <= 0:
        raise ConfigError("data.max_depth must be a positive number of metres")
    _check_choice(cfg, "optim", "name", OPTIMIZERS)
    _check_choice(cfg, "schedule", "name", SCHEDULES)
    _check_choice(cfg, "eval", "crop", EVAL_CROPS)
    if "name" not in cfg["loss"]:
        raise ConfigError("loss.name is required (l1, l1_grad, silog, silog_grad or mse)")
    for key in ("epochs", "batch_size"):
        value = cfg["train"][key]
        if not isinstance(value, int) or value <= 0:
            raise ConfigError(f"train.{key} must be a positive integer, got {value!r}")
    if cfg["train"]["best_mode"] not in ("min", "max"):
        raise ConfigError(f"train.best_mode must be 'min' or 'max', got {cfg['train']['best_mode']!r}")
    chunk = (cfg["train"].get("curriculum") or {}).get("chunk_size")
    if chunk is not None and (not isinstance(chunk, int) or chunk <= 0):
        raise ConfigError(f"train.curriculum.chunk_size must be a positive integer or null, got {chunk!r}")
    phases(cfg)  # validates train.phases


def phases(cfg: dict) -> list[dict]:
    """The training phases to run in order; a recipe without ``train.phases`` is one phase."""
    listed = cfg["train"].get("phases")
    if not listed:
        return [{"name": "main", "lr": float(cfg["optim"]["lr"]), "epochs": int(cfg["train"]["epochs"]),
                 "init_from": None}]
    if not isinstance(listed, list):
        raise ConfigError("train.phases must be a list of {name, lr, epochs, init_from}")
    resolved, names = [], []
    for number, phase in enumerate(listed, start=1):
        if not isinstance(phase, dict):
            raise ConfigError(f"train.phases[{number - 1}] must be a mapping, got {phase!r}")
        extra = sorted(set(phase) - set(PHASE_KEYS))
        if extra:
            raise ConfigError(f"unknown key(s) {extra} in train.phases[{number - 1}]; allowed: {list(PHASE_KEYS)}")
        name = str(phase.get("name", f"phase{number}"))
        if name in names:
            raise ConfigError(f"train.phases: duplicate phase name {name!r}")
        epochs = phase.get("epochs", cfg["train"]["epochs"])
        if not isinstance(epochs, int) or epochs <= 0:
            raise ConfigError(f"train.phases[{number - 1}].epochs must be a positive integer, got {epochs!r}")
        init_from = phase.get("init_from")
        if init_from is not None and init_from not in names and not str(init_from).endswith((".pt", ".pth")):
            raise ConfigError(
                f"train.phases[{number - 1}].init_from={init_from!r} is neither an earlier phase "
                f"({names or 'none yet'}) nor a checkpoint path ending in .pt/.pth")
        resolved.append({"name": name, "lr": float(phase.get("lr", cfg["optim"]["lr"])), "epochs": epochs,
                         "init_from": init_from})
        names.append(name)
    return resolved


def _check_choice(cfg: dict, section: str, key: str, choices: tuple[str, ...]) -> None:
    if cfg[section][key] not in choices:
        raise ConfigError(f"{section}.{key} must be one of {list(choices)}, got {cfg[section][key]!r}")


def _load_with_bases(path: Path, seen: tuple[Path, ...]) -> dict:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"_base_ cycle: {' -> '.join(str(p) for p in (*seen, path))}")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    with open(path) as stream:
        try:
            cfg = yaml.safe_load(stream) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level, got {type(cfg).__name__}")
    bases = cfg.pop(BASE_KEY, None) or []
    if isinstance(bases, str):
        bases = [bases]
    merged: dict = {}
    for base in bases:
        merged = _deep_merge(merged, _load_with_bases(path.parent / base, (*seen, path)))
    return _deep_merge(merged, _yaml_number(cfg))


def _apply_override(cfg: dict, override: str) -> None:
    key, sep, raw = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {override!r} must look like section.key=value, e.g. optim.lr=1e-5")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {override!r}: value is not valid YAML: {exc}") from exc
    parts = key.split(".")
    if parts[0] not in DEFAULTS:
        raise ConfigError(f"override {override!r}: unknown top-level key {parts[0]!r}; allowed: {sorted(DEFAULTS)}")
    node = cfg
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {part!r} is {child!r}, not a section")
        node = child
    node[parts[-1]] = _yaml_number(value)


def _yaml_number(value: Any) -> Any:
    """YAML 1.1 reads ``1e-5`` (no dot) as a string; a learning rate written that way means a float."""
    if isinstance(value, str) and _EXPONENT_NUMBER.match(value):
        return float(value)
    if isinstance(value, list):
        return [_yaml_number(v) for v in value]
    if isinstance(value, dict):
        return {k: _yaml_number(v) for k, v in value.items()}
    return value


def _deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
