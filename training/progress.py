"""Training progress that reaches the user wherever stderr goes.

On a terminal: a tqdm bar. Elsewhere (SLURM, nohup, CI, a pipe) tqdm draws nothing useful, so
periodic log lines take its place: one every ``every_steps`` steps (``train.progress_every``) or
every ``every_seconds`` seconds (``train.progress_seconds``, default 30), whichever comes first, and
one at the end of the epoch, each with step/total, loss, speed and the time left.
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Callable, TextIO

log = logging.getLogger("training.train")

DEFAULT_SECONDS = 30.0


def report_due(step: int, total: int, now: float, last_time: float, every_steps: int | None,
               every_seconds: float | None) -> bool:
    """Whether step ``step`` (1-based) gets a log line: every N steps, after T seconds, or the last step."""
    if step >= total:
        return True
    if every_steps and step % every_steps == 0:
        return True
    return bool(every_seconds) and now - last_time >= every_seconds


class Progress:
    """``update(loss)`` once per step, ``close()`` at the end of the epoch."""

    def __init__(self, total: int, desc: str, *, stream: TextIO | None = None, every_steps: int | None = None,
                 every_seconds: float | None = DEFAULT_SECONDS, clock: Callable[[], float] = time.monotonic):
        stream = sys.stderr if stream is None else stream
        self.total, self.desc, self.clock = int(total), desc, clock
        self.every_steps, self.every_seconds = every_steps, every_seconds
        self.step, self.loss = 0, float("nan")
        self.started = self.last_report = clock()
        self.bar = None
        if _is_terminal(stream):
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, file=stream)

    def update(self, loss: float) -> None:
        self.step += 1
        self.loss = loss
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}")
            return
        now = self.clock()
        if report_due(self.step, self.total, now, self.last_report, self.every_steps, self.every_seconds):
            self.last_report = now
            elapsed = max(now - self.started, 1e-9)
            rate = self.step / elapsed
            left = (self.total - self.step) / rate if rate > 0 else float("nan")
            log.info("%s: step %d/%d (%.0f%%) loss %.4f, %.2f steps/s, %s left", self.desc, self.step, self.total,
                     100.0 * self.step / max(1, self.total), loss, rate, _duration(left))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _duration(seconds: float) -> str:
    if seconds != seconds:   # NaN
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
