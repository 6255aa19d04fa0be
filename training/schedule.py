"""Learning-rate schedules and the wall-clock budget they can run on.

A schedule is a multiplier of each parameter group's base lr as a function of *progress* in [0, 1]:
linear warm-up over the first ``warmup`` of it, then ``none`` (constant), ``cosine`` (down to
``min_lr``), ``poly`` ((1 - p)^``power`` down to ``min_lr``, BTS / AdaBins / DA-V2's metric_depth use
0.9) or ``step`` (x ``gamma`` every ``step_size`` epochs).

Progress is steps done / steps planned; with a wall-clock budget (``train.max_minutes``) it is the
larger of that and time spent / budget, so ANY budget anneals to the end: a run sized in epochs
that the clock stops early still finishes its decay, and the warm-up is a share of the budget. The
time spent is carried across ``--resume`` (the checkpoint records it), so an interrupted run
continues the same curve.
"""
from __future__ import annotations

import math
import time
from typing import Callable

SCHEDULES = ("none", "cosine", "poly", "step")


def progress_multiplier(schedule_cfg: dict, base_lr: float, warmup: float,
                        iters_per_epoch: int, total_iters: int) -> Callable[[float, int], float]:
    """``f(progress, step)``: the lr multiplier (warm-up share ``warmup`` of the progress)."""
    name = schedule_cfg["name"]
    if name not in SCHEDULES:
        raise ValueError(f"schedule.name must be one of {list(SCHEDULES)}, got {name!r}")
    floor = float(schedule_cfg.get("min_lr") or 0.0) / base_lr if base_lr > 0 else 0.0
    power = float(schedule_cfg.get("power", 0.9))
    step_iters = max(1, int(schedule_cfg.get("step_size", 10)) * iters_per_epoch)
    gamma = float(schedule_cfg.get("gamma", 0.1))

    def multiplier(progress: float, step: int) -> float:
        progress = min(1.0, max(0.0, progress))
        if warmup > 0 and progress < warmup:
            return max(progress / warmup, 1.0 / max(1, total_iters))
        rest = min(1.0, (progress - warmup) / max(1e-12, 1.0 - warmup))
        if name == "cosine":
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * rest))
        if name == "poly":
            return floor + (1.0 - floor) * (1.0 - rest) ** power
        if name == "step":
            return gamma ** (step // step_iters)
        return 1.0

    return multiplier


def lr_multiplier(schedule_cfg: dict, iters_per_epoch: int, epochs: int,
                  base_lr: float, budget: "WallClockBudget | None" = None) -> Callable[[int], float]:
    """Per-iteration multiplier of the base lr for ``LambdaLR`` (see the module docstring).

    Without a budget (or with an unlimited one) this is the classic iteration schedule: warm-up over
    ``warmup_epochs`` (linear, (step + 1) / warmup), then the named decay over ``epochs``. With a
    budget, progress also counts the budget's time (``schedule.warmup_fraction`` of it warms up).
    """
    total = max(1, iters_per_epoch * epochs)
    warmup_iters = int(round(float(schedule_cfg.get("warmup_epochs") or 0) * iters_per_epoch))
    fraction = schedule_cfg.get("warmup_fraction")
    warmup = float(fraction) if fraction is not None else warmup_iters / total
    if not 0.0 <= warmup < 1.0:
        raise ValueError(f"the warm-up must be a share in [0, 1) of the run, got {warmup}")
    curve = progress_multiplier(schedule_cfg, base_lr, warmup, iters_per_epoch, total)
    timed = budget is not None and budget.minutes is not None

    def multiplier(step: int) -> float:
        if not timed and fraction is None and step < warmup_iters:   # the iteration warm-up, exactly as before
            return (step + 1) / warmup_iters
        progress = step / total
        if timed:
            progress = max(progress, budget.fraction())
        return curve(progress, step)

    return multiplier


class WallClockBudget:
    """``train.max_minutes``: a phase stops training once this much training time has passed (checked
    after every step), then validates and writes its checkpoints as after an epoch. ``spent_before``
    is the time a resumed run had already used (from its checkpoint)."""

    def __init__(self, minutes: float | None, spent_before: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.minutes = None if minutes in (None, 0) else float(minutes)
        if self.minutes is not None and not self.minutes > 0:
            raise ValueError(f"train.max_minutes must be a positive number of minutes or null, got {minutes!r}")
        self.clock = clock
        self.start = clock() - float(spent_before or 0.0)
        self.out = False

    def elapsed(self) -> float:
        return self.clock() - self.start

    def fraction(self) -> float:
        """Share of the budget spent (0 without a budget)."""
        if self.minutes is None:
            return 0.0
        return min(1.0, self.elapsed() / (60.0 * self.minutes))

    def over(self) -> bool:
        return self.minutes is not None and self.elapsed() >= 60.0 * self.minutes
