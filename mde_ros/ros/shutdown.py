"""Ordered shutdown on SIGINT / SIGTERM: the node's own threads stop first, the ROS context after them.

rclpy's own signal handlers end the context from a separate thread the moment a signal arrives, while
the inference thread may be half-way through publishing a frame ("frame skipped: RCLError ... context
is invalid" in 8 of 12 runs, issue 22). The node starts rclpy without them
(`SignalHandlerOptions.NO`, the same on Humble and Jazzy) and installs `StopRequest` instead: during
start-up a signal stops at once (KeyboardInterrupt; nothing publishes yet), from the first spin on it
only sets a flag; `spin_until_stopped` sees it within one wait period and returns, main() destroys the node
(which joins its inference thread) and only then shuts the context down. A second SIGINT while
stopping interrupts at once, as a second Ctrl-C does elsewhere.
"""
from __future__ import annotations

import signal
from types import FrameType
from typing import Any, Callable

import rclpy
from rclpy.executors import SingleThreadedExecutor

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
WAIT_PERIOD_S = 0.1  # the longest a stop waits for the executor to look at the flag


class StopRequest:
    """A signal handler that asks for a stop: raises during start-up, only records one while spinning."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self.deferring = False  # set once the node spins: a signal is then a request, not an interruption

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def install(self, signals=STOP_SIGNALS) -> dict[int, Any]:
        """Install for `signals`; the handlers they replace (for `restore`)."""
        return {signum: signal.signal(signum, self) for signum in signals}

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        again = self.requested
        self.signal = signum
        if not self.deferring or (again and signum == signal.SIGINT):
            raise KeyboardInterrupt


def restore(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def init_without_signal_handlers(args: list[str] | None, init: Callable[..., None] = rclpy.init) -> None:
    """rclpy.init without rclpy's signal handlers (they would end the context under a publishing thread)."""
    from rclpy.signals import SignalHandlerOptions

    init(args=args, signal_handler_options=SignalHandlerOptions.NO)


def spin_until_stopped(node: Any, stop: StopRequest, period_s: float = WAIT_PERIOD_S) -> None:
    """Spin `node` until `stop` is requested or the context ends (someone else shut it down)."""
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    stop.deferring = True  # from here until the process ends: the node is destroyed in order
    try:
        while not stop.requested and node.context.ok():
            executor.spin_once(timeout_sec=period_s)
    finally:
        executor.remove_node(node)
        executor.shutdown(timeout_sec=0)
