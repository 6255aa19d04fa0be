"""The one interface every inference backend implements, and the checks they share.

A backend only runs the network: (N,3,H,W) float32 in, (N,1,H,W) float32 raw output out (models
that output (N,H,W), like the Depth-Anything-V2 and MiDaS exports, get the channel axis added).
Normalisation, resizing and turning the raw output into metres belong to the pipeline.
"""
from __future__ import annotations

import abc
import logging
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mde_ros.inference.spec import DEVICES, PRECISIONS, parse_device  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)


class BackendUnavailable(RuntimeError):
    """A backend cannot run here; the message names what is missing and how to get it."""


class Backend(abc.ABC):
    """Runs a depth network on a batch of normalised images."""

    name: str

    @abc.abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(N,3,H,W) float32 C-contiguous -> (N,1,H,W) float32 raw network output."""

    def infer_outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """{"depth": (N,1,H,W)} plus the card's extra outputs by role ("sky": (N,1,h,w)).

        Backends that bind a model's other outputs override this; the default runs `infer`.
        """
        return {"depth": self.infer(batch)}

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """What runs where, for diagnostics and logs: backend, device, precision, and the
        backend's own details (providers, engine path)."""

    def __repr__(self) -> str:
        details = ", ".join(f"{k}={v!r}" for k, v in self.describe().items())
        return f"{type(self).__name__}({details})"


def as_network_batch(batch: np.ndarray) -> np.ndarray:
    """The batch as the (N,3,H,W) float32 C-contiguous array every backend takes.

    Already-conforming arrays are returned as they are (no copy).
    """
    if not isinstance(batch, np.ndarray) or batch.ndim != 4 or batch.shape[1] != 3:
        shape = getattr(batch, "shape", type(batch).__name__)
        raise ValueError(f"expected a (N,3,H,W) float32 batch, got {shape}")
    if batch.dtype != np.float32 or not batch.flags.c_contiguous:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
    return batch


def check_network_output(output: np.ndarray, batch_shape: tuple[int, ...], backend: str,
                         name: str = "depth") -> np.ndarray:
    """One depth channel per input image as (N,1,H,W): (N,H,W) outputs get the channel axis (a view).

    Anything else fails loudly, naming what the card can change.
    """
    if output.ndim == 3 and output.shape[0] == batch_shape[0]:
        return output[:, None]
    if output.ndim != 4 or output.shape[0] != batch_shape[0] or output.shape[1] != 1:
        raise RuntimeError(f"{backend}: the model's output {name!r} has shape {tuple(output.shape)} for "
                           f"input {tuple(batch_shape)}; expected (N,1,H,W) or (N,H,W) raw depth (if the "
                           "model has several outputs, name the depth one in the card's output_name)")
    return output


def output_rank_ok(shape: list | tuple) -> bool:
    """A declared depth/mask output shape (symbolic dims as str/None) is (N,H,W) or (N,1,H,W)."""
    return len(shape) == 3 or (len(shape) == 4 and (not isinstance(shape[1], int) or shape[1] == 1))


def resolve_io_name(wanted: str, offered: list[str], role: str, model: str | Path) -> str:
    """The card's tensor name if the model has it; else the model's only tensor, with a warning."""
    if wanted in offered:
        return wanted
    if len(offered) == 1:
        log.warning("%s: the card names %s %r but the model's only %s is %r; using %r",
                    model, role, wanted, role, offered[0], offered[0])
        return offered[0]
    raise ValueError(f"{model}: the card names {role} {wanted!r}, which is not among the model's "
                     f"{role}s {offered}; fix input_name/output_name in the model card")


def resolve_extra_output(card, offered: list[str], model: str | Path) -> str | None:
    """The card's sky/mask output name, which the model must have (no guessing for a second output)."""
    if card.sky_output is None:
        return None
    if card.sky_output not in offered:
        raise ValueError(f"{model}: the card names sky_output {card.sky_output!r}, which is not among the "
                         f"model's outputs {offered}; fix sky_output in the model card (or set it to null)")
    return card.sky_output


class FirstUse:
    """A value made by `make()` on first use, once, thread-safe (the inference thread and a describe()
    call may race). If `make` raises, that first call sees the error and every later one gets None."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._done = False
        self.value: Any = None

    def get(self) -> Any:
        if self._done:
            return self.value
        with self._lock:
            if not self._done:
                try:
                    self.value = self._make()
                finally:
                    self._done = True
        return self.value
