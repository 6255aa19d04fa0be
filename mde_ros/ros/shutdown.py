"""Ordered shutdown on SIGINT / SIGTERM: the node's own threads stop first, the ROS context after them.

rclpy's own signal handlers end the context from a separate thread the moment a signal arrives, while
the inference thread may be half-way through publishing a frame ("frame skipped: RCLError ... context
is invalid" in 8 of 12 runs, issue 22). The node starts rclpy without them
(`SignalHandlerOptions.NO`, the same on Humble and Jazzy) and handles the signals itself with
`NodeStopRequest`, the command-line tools' `mde_ros.stopping.StopRequest` (a signal only asks for a
stop) with two differences: during start-up a signal stops at once (KeyboardInterrupt; nothing
publishes yet), and a second SIGINT while stopping interrupts at once, as a second Ctrl-C does
elsewhere. `spin_until_stopped` sees a request within one wait period and returns, main() destroys the
node (which joins its inference thread) and only then shuts the context down.

`BackgroundSpin` is the same order for an executor spun in a thread (the bench clients, the live tests):
rclpy's `Executor.shutdown()` destroys its guard condition without waiting for a `spin()` in another
thread, which then raises (InvalidHandle, or AttributeError on the guard) while building its next wait set.
"""
from __future__ import annotations

import signal
import threading
import time
from types import FrameType
from typing import Any, Callable

import rclpy
from rclpy.executors import SingleThreadedExecutor

from mde_ros.stopping import StopRequest

WAIT_PERIOD_S = 0.1  # the longest a stop waits for the executor to look at the flag


class NodeStopRequest(StopRequest):
    """StopRequest once the node spins (`deferring`); an interruption before that, and on a second SIGINT."""

    def __init__(self) -> None:
        super().__init__()
        self.deferring = False  # set once the node spins: a signal is then a request, not an interruption

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        again = self.requested
        super()._handle(signum, frame)
        if not self.deferring or (again and signum == signal.SIGINT):
            raise KeyboardInterrupt


def init_without_signal_handlers(args: list[str] | None, init: Callable[..., None] = rclpy.init) -> None:
    """rclpy.init without rclpy's signal handlers (they would end the context under a publishing thread)."""
    from rclpy.signals import SignalHandlerOptions

    init(args=args, signal_handler_options=SignalHandlerOptions.NO)


def spin_until_stopped(node: Any, stop: NodeStopRequest, executor: Any = None,
                       period_s: float = WAIT_PERIOD_S) -> None:
    """Spin `node` with `executor` (default: a SingleThreadedExecutor) until `stop` is requested or the
    context ends (someone else shut it down)."""
    if executor is None:
        executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    stop.deferring = True  # from here until the process ends: the node is destroyed in order
    try:
        while not stop.requested and node.context.ok():
            executor.spin_once(timeout_sec=period_s)
    finally:
        executor.remove_node(node)
        executor.shutdown(timeout_sec=0)


class BackgroundSpin:
    """`executor` spun in a daemon thread until `stop()`, which joins the thread before shutting the executor
    down, so nodes can then be destroyed under no spinning thread."""

    def __init__(self, executor: Any, period_s: float = WAIT_PERIOD_S, name: str = "spin") -> None:
        self.executor = executor
        self._period_s = period_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._spin, name=name, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stopping.is_set() and self.executor.context.ok():
            self.executor.spin_once(timeout_sec=self._period_s)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop spinning (within one wait period and the callback in progress), then shut the executor down."""
        self._stopping.set()
        self.executor.wake()  # an idle wait returns now, not after its period
        deadline = time.monotonic() + timeout_s
        self._thread.join(timeout_s)
        # A MultiThreadedExecutor runs callbacks in its pool: those in flight finish before nodes go (else
        # they take from destroyed handles). rclpy keeps them in the private `_futures`; none elsewhere.
        while any(not task.done() for task in list(getattr(self.executor, "_futures", ()))):
            if time.monotonic() > deadline:
                break
            time.sleep(0.001)
        self.executor.shutdown(timeout_sec=0)
