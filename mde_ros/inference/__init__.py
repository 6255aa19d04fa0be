"""Inference backends behind one interface: create_backend(name, model, card, device=..., ...).

Each backend module declares one spec (mde_ros.inference.spec.BackendSpec); the registry lists them
and makes the factory from them. Backend modules import their heavy dependency (torch, onnxruntime,
tensorrt) only when constructed, so an onnxruntime-only install never needs torch.
"""
from __future__ import annotations

from mde_ros.inference.base import Backend, BackendUnavailable
from mde_ros.inference.registry import BACKEND_NAMES, SPECS, available_backends, create_backend, spec_of
from mde_ros.inference.spec import AUTO

__all__ = ["AUTO", "Backend", "BackendUnavailable", "BACKEND_NAMES", "SPECS", "available_backends",
           "create_backend", "spec_of"]
