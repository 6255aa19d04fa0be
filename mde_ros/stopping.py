"""Ctrl-C and SIGTERM in the command-line tools: one clear line, the shell's exit code (128 + signal),
and long offline work (replay, predict) that stops at a frame boundary, so what is done stays readable.

ROS-free. rosbag2's recorder does the same: the first signal ends the recording cleanly (metadata written).
"""
from __future__ import annotations

import signal
import threading
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM delivered as an exception (as Python delivers SIGINT as KeyboardInterrupt)."""

    signum = signal.SIGTERM


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def raise_on_sigterm() -> bool:
    """From now on SIGTERM raises Terminated in the main thread instead of killing the process without
    a word (exit -15, files half written). False where signals cannot be handled (another thread)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    signal.signal(signal.SIGTERM, _raise_terminated)
    return True


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exit_code(signum: int) -> int:
    """The shell's convention for a process ended by a signal: 128 + its number (Ctrl-C: 130, SIGTERM: 143)."""
    return 128 + int(signum)


class StopRequest:
    """While active (a `with` block in the main thread), SIGINT and SIGTERM only ask the work to stop:
    the loop checks `requested` between frames, finishes its output and says what it kept. Outside the
    block the previous handlers are back."""

    def __init__(self, event: threading.Event | None = None) -> None:
        self.signum: int | None = None
        self.event = event  # also set on a signal, for work that waits on an Event (the bag player)
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        if self.event is not None:
            self.event.set()

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def describe(self) -> str:
        return signal_name(self.signum) if self.signum is not None else "nothing"
