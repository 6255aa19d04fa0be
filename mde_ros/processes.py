"""Stopping a node process the way a user does (Ctrl-C), shared by benchmarks and tests."""
from __future__ import annotations

import signal
import subprocess


def interrupt(process: subprocess.Popen, timeout: float = 15.0) -> str | None:
    """SIGINT (the node's clean shutdown path), SIGKILL if it has not exited within `timeout`.
    Returns what the process still had on a piped stdout (None when it was not piped)."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return output
