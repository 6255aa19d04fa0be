"""What ``--resume`` may change: the recorded run config against the one given now.

A resumed run must never record one value and use another (an ``optim.lr=`` override written to
config.yaml while the optimizer state brought back the old lr). So the configs are compared key by
key before anything is written:

* keys that do not change what the run computes (:data:`FREE_KEYS`: where the data lives, loader
  workers, logging, the wall-clock budget) and the epoch counts (raising them extends the run, the documented use) may
  change freely;
* keys that cannot change mid-run (:data:`FIXED_PREFIXES`: the network, the optimizer type, the
  metric that picked the best checkpoint, the phase plan) are refused, always;
* every other change is refused with the keys named, unless the user asks for it explicitly
  (``--apply-changes``); then it is applied from the resumed epoch on (the training loop rebuilds the
  optimizer's hyper-parameters and the lr schedule from the new config) and recorded in the
  checkpoint's provenance.
"""
from __future__ import annotations

import re
from typing import Any

import yaml

FREE_KEYS = frozenset({
    "data.root", "train.num_workers", "train.log_every", "train.progress_every", "train.progress_seconds",
    "train.tensorboard", "train.vis_samples", "train.device", "train.epochs", "train.max_minutes",
})
_PHASE_EPOCHS = re.compile(r"^train\.phases\[\d+\]\.epochs$")
FIXED_PREFIXES = ("model.", "optim.name", "train.best_metric", "train.best_mode", "output_dir")
_PHASE_PLAN = re.compile(r"^train\.phases(\[\d+\]\.(name|init_from))?$")


class ResumeConfigError(ValueError):
    """The config given with --resume differs from the run's in a way that cannot pass silently."""


def plain(cfg: Any) -> Any:
    """The config as YAML would give it back (tuples -> lists, Paths -> str): what config.yaml holds."""
    from training.config import _plain

    return yaml.safe_load(yaml.safe_dump(_plain(cfg), sort_keys=False))


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 1}}`` -> ``{"optim.lr": 1}``; a list of mappings by index (``train.phases[0].lr``)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, child in value.items():
            out.update(flatten(child, f"{prefix}.{key}" if prefix else str(key)))
        return out if out or not prefix else {prefix: {}}
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        out = {f"{prefix}": f"<{len(value)} entries>"}
        for index, child in enumerate(value):
            out.update(flatten(child, f"{prefix}[{index}]"))
        return out
    return {prefix: value}


def config_changes(recorded: dict, given: dict) -> dict[str, tuple[Any, Any]]:
    """Every dotted key whose value differs: ``{key: (recorded, given)}`` (a missing key is None)."""
    old, new = flatten(plain(recorded)), flatten(plain(given))
    return {key: (old.get(key), new.get(key)) for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)}


def is_free(key: str) -> bool:
    return key in FREE_KEYS or bool(_PHASE_EPOCHS.match(key))


def is_fixed(key: str) -> bool:
    return key.startswith(FIXED_PREFIXES) or bool(_PHASE_PLAN.match(key))


def check_resume(changes: dict[str, tuple[Any, Any]], apply_changes: bool) -> dict[str, tuple[Any, Any]]:
    """The changes that need --apply-changes (empty: nothing to apply); raises ResumeConfigError when
    a change is refused. Free keys are never returned."""
    fixed = {k: v for k, v in changes.items() if is_fixed(k)}
    if fixed:
        raise ResumeConfigError(
            f"--resume: {_describe(fixed)} cannot change in a resumed run (the checkpoint's weights, optimizer "
            "state or best-checkpoint choice depend on it); start a new run with another output_dir=...")
    needs = {k: v for k, v in changes.items() if not is_free(k)}
    if needs and not apply_changes:
        raise ResumeConfigError(
            f"--resume: the config differs from the run's recorded config in {_describe(needs)}; drop those "
            "overrides to continue as recorded, or add --apply-changes to use the new values from the resumed "
            "epoch on (they are then recorded as changed at that epoch)")
    return needs


def _describe(changes: dict[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"{key} ({old!r} -> {new!r})" for key, (old, new) in changes.items())
