"""Outputs built with onnxruntime where the fused model's depth already is (no torch).

The fused session keeps its depth as an OrtValue on its execution provider's device
(OrtFusedPipeline.last_device_frame). inference.output_graphs' graphs run as sessions on the same provider
(cached per camera size and output kind), taking that OrtValue through IO binding, each output bound to a
numpy view of its message buffer (pipeline.buffers), so onnxruntime writes it there: in place on the CPU
provider, one device -> host copy on CUDA. The scan's graph marks only its rows.

On the CPU provider the bytes equal the numpy builders' (test_ort_outputs holds them to it). The pipeline
uses the graphs only where the depth is on a device: on the CPU provider numpy is faster (2.4 vs 5.7 ms per
640x480 frame) and OrtFusedPipeline.outputs_on_cpu (set by the tests) forces them. Verified on onnxruntime's
CPU provider only; CUDA is the same graph with the outputs bound to host memory, not run here (no GPU in this
project's sessions); the TensorRT provider is left out (its session list minus TensorRT runs these graphs).
"""
from __future__ import annotations

import threading
from typing import Any, Callable

import numpy as np

from mde_ros.inference.output_graphs import DEPTH, GraphDeviceFrame
from mde_ros.inference.output_graphs import self_check as check_graphs

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
TENSORRT_PROVIDER = "TensorrtExecutionProvider"


# ---------------------------------------------------------------- sessions on the fused session's provider

def output_providers(session) -> list:
    """The fused session's providers for the output graphs: CUDA (its device) and CPU; TensorRT left out
    (these graphs are elementwise; its engine build is not wired or verified here)."""
    options = session.get_provider_options()
    providers: list = []
    for provider in session.get_providers():
        if provider == CUDA_PROVIDER:
            providers.append((provider, {"device_id": options.get(provider, {}).get("device_id", "0")}))
        elif provider != TENSORRT_PROVIDER:
            providers.append(provider)
    return providers or [CPU_PROVIDER]


class OrtOutputs:
    """The output graphs' sessions (built on first use per key) on the given providers and options."""

    def __init__(self, ort, providers: list, options=None) -> None:
        self._ort, self.providers, self._options = ort, providers, options
        self._sessions: dict[tuple, Any] = {}
        self._lock = threading.Lock()

    def session(self, key: tuple, build: Callable[[], bytes]):
        with self._lock:
            if key not in self._sessions:
                self._sessions[key] = self._ort.InferenceSession(build(), sess_options=self._options,
                                                                 providers=self.providers)
            return self._sessions[key]

    def run(self, key: tuple, build: Callable[[], bytes], inputs: dict[str, Any], outputs: dict[str, np.ndarray]) -> None:
        """Run graph `key` with `inputs` (OrtValues as they are, numpy arrays from the host), writing each
        output into its C-contiguous host array (bound as it is: no copy of onnxruntime's own)."""
        session = self.session(key, build)
        binding = session.io_binding()
        for name, value in inputs.items():
            if isinstance(value, np.ndarray):
                binding.bind_cpu_input(name, value)
            else:
                binding.bind_ortvalue_input(name, value)
        for name, array in outputs.items():
            binding.bind_ortvalue_output(name, self._ort.OrtValue.ortvalue_from_numpy(array))
        session.run_with_iobinding(binding)
        binding.clear_binding_outputs()  # the message buffers are referenced by nothing of onnxruntime's
        binding.clear_binding_inputs()


class OrtDeviceFrame(GraphDeviceFrame):
    """One frame's fused depth (an OrtValue, (1, H, W)) and the outputs built from it with onnxruntime."""

    def __init__(self, depth, outputs: OrtOutputs) -> None:
        _, height, width = depth.shape()
        super().__init__(height, width)
        self.depth = depth
        self.outputs = outputs

    def _run(self, key: tuple, build: Callable[[], bytes], inputs: dict[str, np.ndarray],
             outputs: dict[str, np.ndarray]) -> None:
        self.outputs.run(key, build, {DEPTH: self.depth, **inputs}, outputs)

    def kept(self) -> "OrtDeviceFrame":
        """Itself: every fused run binds a new depth OrtValue, so this one outlives the next estimate."""
        return self


def self_check(outputs: OrtOutputs, device: tuple[str, int] = ("cpu", 0)) -> str | None:
    """output_graphs.self_check with the depth as an OrtValue on `device` and the graphs run on `outputs`'
    providers (a provider that binds or computes differently, e.g. CUDA, not run here, falls back to numpy)."""
    return check_graphs(lambda depth: OrtDeviceFrame(
        outputs._ort.OrtValue.ortvalue_from_numpy(depth[None].copy(), *device), outputs))
