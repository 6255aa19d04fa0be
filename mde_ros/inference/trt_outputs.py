"""Outputs built with TensorRT where the fused engine's depth already is (no torch, no onnxruntime).

TensorRTFusedPipeline leaves its depth in a device buffer. inference.output_graphs' graphs become small
TensorRT engines (fp32: strongly typed where TensorRT has the flag, weak typing without precision flags
elsewhere; static shapes of the camera), built on first use and cached on disk like the model's engines
(tensorrt/<key>.engine, the graph beside it as <key>.onnx, the key naming the graph, TensorRT and GPU).
They run on the fused engine's runtime and stream: their depth input is the fused depth's own device address
(no copy), the scalars and rays go up from pinned buffers, and each output comes down in one copy straight
into its message buffer (pipeline.buffers). The scan runs the whole-frame marked depth graph and copies only
its rows down; the cloud's rgb column, an unorganised cloud's compression and the scan's reduction stay on
the host, as for onnxruntime (output_graphs).

A start-up check (output_graphs.self_check: a 12x10 depth with every kind of value, uploaded to the device)
holds the engines to the numpy builders before they are used; any difference or failure keeps numpy.

What only a TensorRT machine shows: that TensorRT parses and builds these graphs (ops and types chosen from
onnx-tensorrt's operator table), what they compute and how long they take. Here they ran only against
test/trt_standin.py (onnxruntime behind TensorRT's API), which is not verification.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import weakref
from typing import Any, Callable

import numpy as np

from mde_ros.atomic import write_bytes_atomically
from mde_ros.inference.cuda_memory import DeviceBuffer, PinnedBuffer, copy_on_device, copy_to_host
from mde_ros.inference.output_graphs import DEPTH, GraphDeviceFrame, depth_graph, scalar
from mde_ros.inference.output_graphs import self_check as check_graphs

log = logging.getLogger(__name__)


def graph_input_shapes(model: bytes) -> dict[str, tuple[int, ...]]:
    """{input name: static shape} of a serialised output graph (every dimension is fixed)."""
    import onnx

    graph = onnx.load_from_string(model).graph
    return {i.name: tuple(d.dim_value for d in i.type.tensor_type.shape.dim) for i in graph.input}


class _OutputEngine:
    """One graph's engine, its execution context and buffers: pinned host + device per input (the depth
    excepted: its address is the frame's), device per output."""

    def __init__(self, owner: "TrtOutputs", kind: str, model: bytes) -> None:
        from mde_ros.inference.tensorrt_build import ProfileShapes, engine_cache_key, engine_key_parts, engine_paths

        backend, trt = owner.backend, owner.backend._trt
        shapes = graph_input_shapes(model)
        static = {name: (shape, shape, shape) for name, shape in shapes.items()}
        profile = ProfileShapes(*static[DEPTH])
        parts = engine_key_parts(hashlib.sha256(model).hexdigest(), trt.__version__, backend.gpu, owner.config,
                                 owner.plan, profile)
        parts["output_graph"] = {"kind": kind, "inputs": {name: list(shape) for name, shape in shapes.items()}}
        paths = engine_paths(engine_cache_key(parts), trt.__version__, backend.gpu)
        onnx_path = paths.engine.with_suffix(".onnx")
        if not onnx_path.is_file():  # the graph the engine is (re)built from; its name is its key
            write_bytes_atomically(onnx_path, model)
        if not paths.engine.is_file():
            log.info("building a TensorRT output engine (%s, depth %s; cached as %s)", kind, shapes[DEPTH],
                     paths.engine)
        self.engine = backend.static_engine(onnx_path, paths, parts, static, owner.plan, owner.config,
                                            "output engine")
        self.context = context = self.engine.create_execution_context()
        engine = self.engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if sorted(inputs) != sorted(shapes):
            raise ValueError(f"the {kind} output engine's inputs are {inputs}; its graph has {sorted(shapes)}")
        for name, shape in shapes.items():
            if not context.set_input_shape(name, shape):
                raise RuntimeError(f"TensorRT rejected the {kind} output engine's input {name!r} shape {shape}")
        self.inputs: dict[str, PinnedBuffer] = {}
        self.outputs: dict[str, DeviceBuffer] = {}
        self.output_dtypes: dict[str, np.dtype] = {}
        for name in names:
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            if name == DEPTH:
                continue
            if name in shapes:
                buffer = PinnedBuffer(backend._cudart, shapes[name], dtype)
                self.inputs[name], address = buffer, buffer.device_ptr
            else:
                shape = tuple(context.get_tensor_shape(name))
                device = DeviceBuffer(backend._cudart, int(np.prod(shape)) * dtype.itemsize)
                self.outputs[name], address = device, device.ptr
                self.output_dtypes[name] = dtype
            if not context.set_tensor_address(name, address):
                raise RuntimeError(f"TensorRT rejected the address of the {kind} output engine's {name!r}")

    def close(self) -> None:
        for buffer in [*self.inputs.values(), *self.outputs.values()]:
            buffer.free()


class TrtOutputs:
    """The output engines of one fused pipeline (built on first use per graph key) and its depth copies."""

    def __init__(self, backend: Any) -> None:
        """`backend`: the inference.tensorrt_backend.TensorRTBackend whose fused engine made the depth (its
        runtime, stream, GPU, build settings and static_engine)."""
        import dataclasses

        from mde_ros.inference.tensorrt_build import plan_build

        self.backend = backend
        self._cudart, self._stream = backend._cudart, backend._stream
        self.plan = plan_build(backend.features, "fp32")  # elementwise float32: no reduced precision
        self.config = dataclasses.replace(backend.config, precision="fp32", dla_core=None, typing="auto")
        self._engines: dict[tuple, _OutputEngine] = {}
        self._copies: dict[int, list[DeviceBuffer]] = {}
        self._lock = threading.Lock()

    def run(self, key: tuple, build: Callable[[], bytes], depth_ptr: int, inputs: dict[str, np.ndarray],
            outputs: dict[str, tuple[np.ndarray, int]]) -> None:
        """Run graph `key` on the depth at `depth_ptr`; each output's bytes from its byte offset down into
        its C-contiguous host array (as many bytes as the array holds)."""
        with self._lock:
            engine = self._engines.get(key)
            if engine is None:
                engine = self._engines[key] = _OutputEngine(self, key[0], build())
            stream = self._stream
            if not engine.context.set_tensor_address(DEPTH, depth_ptr):
                raise RuntimeError("TensorRT rejected the fused depth's address")
            for name, value in inputs.items():
                buffer = engine.inputs[name]
                np.copyto(buffer.host_view(value.shape), value, casting="no")
                buffer.to_device(value.nbytes, stream.handle)
            if not engine.context.execute_async_v3(int(stream)):
                raise RuntimeError(f"TensorRT execute_async_v3 ({key[0]} output engine) failed; see the TensorRT log")
            for name, (array, offset) in outputs.items():
                device = engine.outputs[name]
                if array.dtype.newbyteorder("=") != engine.output_dtypes[name]:
                    raise ValueError(f"{name}: the engine gives {engine.output_dtypes[name]}, not {array.dtype}")
                if offset + array.nbytes > device.nbytes:
                    raise ValueError(f"{name}: {array.nbytes} bytes from {offset} exceed the engine's {device.nbytes}")
                copy_to_host(self._cudart, array, device.ptr + offset, stream.handle)
            stream.synchronize()

    def depth_copy(self, depth_ptr: int, nbytes: int) -> DeviceBuffer:
        """A device copy of the depth (enqueued on the stream, so before the next fused run overwrites it),
        from a pool of buffers given back when their frame is gone (give_back)."""
        with self._lock:
            pool = self._copies.setdefault(nbytes, [])
            buffer = pool.pop() if pool else DeviceBuffer(self._cudart, nbytes)
        copy_on_device(self._cudart, buffer.ptr, depth_ptr, nbytes, self._stream.handle)
        return buffer

    def give_back(self, buffer: DeviceBuffer) -> None:
        with self._lock:
            if buffer.ptr is not None:
                self._copies.setdefault(buffer.nbytes, []).append(buffer)

    def close(self) -> None:
        with self._lock:
            for engine in self._engines.values():
                engine.close()
            for pool in self._copies.values():
                for buffer in pool:
                    buffer.free()
            self._engines, self._copies = {}, {}


class TrtDeviceFrame(GraphDeviceFrame):
    """One frame's fused depth (a device address, H x W float32) and the outputs built from it with the
    output engines; `owner` keeps the memory behind the address alive (a kept copy)."""

    def __init__(self, depth_ptr: int, height: int, width: int, outputs: TrtOutputs, owner: Any = None) -> None:
        super().__init__(height, width)
        self.depth_ptr, self.outputs, self._owner = depth_ptr, outputs, owner

    def _run(self, key: tuple, build: Callable[[], bytes], inputs: dict[str, np.ndarray],
             outputs: dict[str, np.ndarray]) -> None:
        self.outputs.run(key, build, self.depth_ptr, inputs, {name: (array, 0) for name, array in outputs.items()})

    def _marked_rows(self, min_depth: float, max_depth: float, rows: tuple[int, int], out: np.ndarray) -> np.ndarray:
        """The whole-frame marked depth engine (one per camera), with only rows first..last copied down."""
        height, width = self.height, self.width
        self.outputs.run(("marked", height, width), lambda: depth_graph(height, width), self.depth_ptr,
                         {"min_depth": scalar(min_depth), "max_depth": scalar(max_depth)},
                         {"marked": (out, rows[0] * width * 4)})
        return out

    def kept(self) -> "TrtDeviceFrame":
        """A frame on a device copy of the depth: the fused engine writes the next frame into the same buffer."""
        buffer = self.outputs.depth_copy(self.depth_ptr, self.height * self.width * 4)
        frame = TrtDeviceFrame(buffer.ptr, self.height, self.width, self.outputs, owner=buffer)
        weakref.finalize(frame, self.outputs.give_back, buffer)
        return frame


def self_check(outputs: TrtOutputs) -> str | None:
    """output_graphs.self_check with the depth uploaded to the device and the output engines run on it."""
    backend = outputs.backend

    def frame_of(depth: np.ndarray) -> TrtDeviceFrame:
        buffer = PinnedBuffer(backend._cudart, depth.shape, np.float32)
        np.copyto(buffer.host_view(depth.shape), depth)
        buffer.to_device(buffer.nbytes, backend._stream.handle)
        return TrtDeviceFrame(buffer.device_ptr, depth.shape[0], depth.shape[1], outputs, owner=buffer)

    return check_graphs(frame_of)
