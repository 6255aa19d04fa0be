"""Message buffers: each output is built once, in place, into the buffer its message takes as it is.

rclpy's generated setter of a uint8[] field (sensor_msgs Image.data, PointCloud2.data) stores an
array.array('B') as it is, on Humble and Jazzy alike (rosidl_python's _msg.py.em, both branches); any
other value is first copied into a new array.array, and on Humble (asserts on) also checked element by
element (seconds for a cloud). So outputs are written through a numpy view straight into an
array.array('B'): no `tobytes()`, no conversion in the message glue; rclpy's own copy into C is the first.

A buffer is reused for the next frame of the same output and size once nothing else holds it (its
message was published and dropped, as the node does). While something still does (a caller that keeps a
frame's outputs, replay's writer queue) the next frame gets a new one, so a kept output is never
overwritten. Pools are per thread (the node's inference thread, replay's loop).
"""
from __future__ import annotations

import array
import sys
import threading

import numpy as np

_local = threading.local()
_ZERO = array.array("B", [0])
# References to a pooled buffer nobody else holds, as sys.getrefcount sees it inside message_buffer:
# the pool's, the local name's and getrefcount's own argument.
_UNSHARED = 3


def message_buffer(name: str, nbytes: int) -> array.array:
    """An array.array('B') of `nbytes` for output `name`: last frame's when nothing holds it any more
    (contents stale: the caller overwrites every byte it publishes), else a new zero-filled one."""
    pool = _local.__dict__.setdefault("pool", {})
    buffer = pool.get(name)
    if buffer is not None and len(buffer) == nbytes and sys.getrefcount(buffer) <= _UNSHARED:
        return buffer
    buffer = _ZERO * nbytes
    pool[name] = buffer
    return buffer


def view(buffer: array.array, dtype, shape: tuple[int, ...]) -> np.ndarray:
    """A writable numpy view of `buffer` (no copy); while it lives the buffer is not reused."""
    return np.frombuffer(buffer, dtype).reshape(shape)


def packed_copy(name: str, values: np.ndarray) -> array.array:
    """`values` (any layout) copied once into output `name`'s buffer, C order, its dtype's byte order."""
    buffer = message_buffer(name, values.nbytes)
    np.copyto(view(buffer, values.dtype, values.shape), values)
    return buffer
