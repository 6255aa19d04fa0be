"""Which rclpy executor spins the node (its `executor` parameter).

rclpy's SingleThreadedExecutor rebuilds its wait set in Python at every wake-up: every subscription,
publisher QoS event handler, parameter service and timer of the node, twice per camera frame (image and
CameraInfo). Measured on the node's main thread (README "Node CPU per frame"): 1.1-1.6 ms of CPU per
640x480 frame with it, 0.56 ms with rclpy's C++ EventsExecutor (`rclpy.experimental`, in Jazzy's rclpy
since 7.1.4, Kilted and Rolling). Humble's rclpy has no EventsExecutor: there `auto` is the
SingleThreadedExecutor, as before.
"""
from __future__ import annotations

from typing import Any, Callable

EXECUTORS = ("auto", "events", "single_threaded")


def events_executor_class() -> Callable[..., Any] | None:
    """rclpy's EventsExecutor, or None where this rclpy has none (Humble, Jazzy before 7.1.4)."""
    try:
        from rclpy.experimental import EventsExecutor
    except ImportError:
        return None
    return EventsExecutor


def choose_executor(choice: str, events_available: bool) -> str:
    """'events' or 'single_threaded' for the parameter's value; ValueError saying why when impossible."""
    if choice not in EXECUTORS:
        raise ValueError(f"executor: {choice!r} is not one of {', '.join(EXECUTORS)}")
    if choice == "auto":
        return "events" if events_available else "single_threaded"
    if choice == "events" and not events_available:
        raise ValueError("executor: events needs rclpy's EventsExecutor (rclpy.experimental: Jazzy's rclpy "
                         ">= 7.1.4, Kilted, Rolling); this rclpy has none: use auto or single_threaded")
    return choice


def make_executor(choice: str, context: Any) -> tuple[Any, str]:
    """(an executor of `context` for the parameter's value, its name for the log); ValueError as above."""
    events = events_executor_class()
    chosen = choose_executor(choice, events is not None)
    if chosen == "events":
        return events(context=context), "rclpy EventsExecutor"
    from rclpy.executors import SingleThreadedExecutor

    return SingleThreadedExecutor(context=context), "rclpy SingleThreadedExecutor"
