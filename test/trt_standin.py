"""TensorRT API stand-in and CUDA runtime stand-in: NOT TensorRT, NOT CUDA, never verification.

Small imitations of the Python API surface of TensorRT 10.3 (JetPack 6.1/6.2), 10.16 (the last
10.x) and 11.1, written from NVIDIA's bindings (python/src/infer/pyCore.cpp at those tags): which
attributes exist (BuilderFlag.FP16/INT8 and EXPLICIT_BATCH are gone in 11.x; STRONGLY_TYPED is
accepted and ignored there), and the behaviours the backend relies on (a strongly typed network
rejects precision flags, timing caches from another device are refused, DLA cores exist only on
a Jetson stand-in). "Device memory" is host memory and the "engine" runs the ONNX with
onnxruntime, so data paths can be followed end to end. Only tools/trt_check.py on a machine with
TensorRT and a GPU shows the real thing.
"""
from __future__ import annotations

import ctypes
import enum
import json
import types
from pathlib import Path

import numpy as np


# --------------------------------------------------------------------------- CUDA runtime stand-in

class cudaError_t(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorInsufficientDriver = 35
    cudaErrorNoDevice = 100


class cudaMemcpyKind(enum.IntEnum):
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3


class _Stream:
    _next = 0x1000

    def __init__(self) -> None:
        _Stream._next += 16
        self.value = _Stream._next

    def __int__(self) -> int:
        return self.value


class CudaRuntimeStandIn:
    """cuda.bindings.runtime stand-in: every call returns (cudaError_t, *values) like cuda-python."""

    cudaError_t = cudaError_t
    cudaMemcpyKind = cudaMemcpyKind
    cudaStreamNonBlocking = 1

    def __init__(self, name: str = "Orin", cc: tuple[int, int] = (8, 7), sms: int = 16,
                 memory: int = 16 << 30, devices: int = 1, driver_ok: bool = True) -> None:
        self.props = types.SimpleNamespace(name=name.encode() + b"\0" * 8, major=cc[0], minor=cc[1],
                                           multiProcessorCount=sms, totalGlobalMem=memory)
        self.devices, self.driver_ok = devices, driver_ok
        self.allocations: dict[int, ctypes.Array] = {}
        self.pinned: set[int] = set()
        self.copies: list[tuple[str, int, object]] = []   # (kind, nbytes, stream)

    def _ok(self, *values):
        return (cudaError_t.cudaSuccess, *values)

    def cudaGetErrorName(self, error):
        return self._ok(cudaError_t(int(error)).name.encode())

    def cudaGetDeviceCount(self):
        if not self.driver_ok:
            return cudaError_t.cudaErrorInsufficientDriver, None
        return self._ok(self.devices)

    def cudaGetDeviceProperties(self, index):
        return self._ok(self.props) if index < self.devices else (cudaError_t.cudaErrorInvalidValue, None)

    def cudaRuntimeGetVersion(self):
        return self._ok(12060)

    def cudaDriverGetVersion(self):
        return self._ok(12080)

    def cudaSetDevice(self, index):
        return self._ok()

    def _alloc(self, nbytes):
        buffer = (ctypes.c_ubyte * max(1, nbytes))()
        address = ctypes.addressof(buffer)
        self.allocations[address] = buffer
        return address

    def cudaMallocHost(self, nbytes):
        address = self._alloc(nbytes)
        self.pinned.add(address)
        return self._ok(address)

    def cudaMalloc(self, nbytes):
        return self._ok(self._alloc(nbytes))

    def cudaFree(self, address):
        self.allocations.pop(int(address), None)
        return self._ok()

    def cudaFreeHost(self, address):
        self.pinned.discard(int(address))
        return self.cudaFree(address)

    def _is_device(self, address: int, nbytes: int) -> bool:
        """Whether address .. address + nbytes lies inside one device (not pinned host) allocation."""
        return any(start <= address and address + nbytes <= start + len(buffer)
                   for start, buffer in self.allocations.items() if start not in self.pinned)

    def cudaMemcpyAsync(self, dst, src, nbytes, kind, stream):
        # CUDA: host -> device from pinned memory (the backend's staging buffers); device -> host into
        # pinned or pageable memory (a message buffer: CUDA stages it and returns when done); device ->
        # device between allocations. Each side is checked to be what the kind says.
        dst, src, nbytes = int(dst), int(src), int(nbytes)
        if kind == cudaMemcpyKind.cudaMemcpyHostToDevice:
            assert src in self.pinned, "stand-in: the host side of an upload must be pinned memory"
            assert self._is_device(dst, nbytes), "stand-in: upload outside a device allocation"
        elif kind == cudaMemcpyKind.cudaMemcpyDeviceToHost:
            assert self._is_device(src, nbytes), "stand-in: download from outside a device allocation"
        else:
            assert self._is_device(src, nbytes) and self._is_device(dst, nbytes), \
                "stand-in: device copy outside device allocations"
        pageable = kind == cudaMemcpyKind.cudaMemcpyDeviceToHost and dst not in self.pinned
        ctypes.memmove(dst, src, nbytes)
        self.copies.append((("pageable " if pageable else "") + kind.name, nbytes, stream))
        return self._ok()

    def cudaStreamCreateWithFlags(self, flags):
        return self._ok(_Stream())

    def cudaStreamSynchronize(self, stream):
        return self._ok()

    def cudaStreamDestroy(self, stream):
        return self._ok()


# --------------------------------------------------------------------------- TensorRT stand-in

API = {
    # version: (creation flags, builder flags) as exposed by python/src/infer/pyCore.cpp at that tag
    "10.3.0": (("EXPLICIT_BATCH", "STRONGLY_TYPED"),
               ("FP16", "BF16", "INT8", "FP8", "DEBUG", "GPU_FALLBACK", "REFIT", "DISABLE_TIMING_CACHE", "TF32",
                "SPARSE_WEIGHTS", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS", "DIRECT_IO",
                "ERROR_ON_TIMING_CACHE_MISS")),
    "10.16.0": (("EXPLICIT_BATCH", "STRONGLY_TYPED", "PREFER_AOT_PYTHON_PLUGINS", "PREFER_JIT_PYTHON_PLUGINS"),
                ("FP16", "BF16", "INT8", "FP8", "INT4", "FP4", "DEBUG", "GPU_FALLBACK", "REFIT",
                 "DISABLE_TIMING_CACHE", "EDITABLE_TIMING_CACHE", "TF32", "SPARSE_WEIGHTS",
                 "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS", "DIRECT_IO",
                 "ERROR_ON_TIMING_CACHE_MISS")),
    "11.1.0": (("STRONGLY_TYPED", "PREFER_AOT_PYTHON_PLUGINS", "PREFER_JIT_PYTHON_PLUGINS"),
               ("DEBUG", "GPU_FALLBACK", "REFIT", "DISABLE_TIMING_CACHE", "EDITABLE_TIMING_CACHE", "TF32",
                "SPARSE_WEIGHTS", "DIRECT_IO", "ERROR_ON_TIMING_CACHE_MISS", "STRIP_PLAN")),
    "8.6.1": (("EXPLICIT_BATCH", "EXPLICIT_PRECISION"), ("FP16", "INT8", "GPU_FALLBACK", "TF32")),
}
_ONNX_DTYPES = {1: "float32", 2: "uint8", 6: "int32", 7: "int64", 9: "bool", 10: "float16"}  # TensorProto
# The types onnx-tensorrt's docs/operators.md (10.x) lists per operator, for the operators of
# inference.output_graphs (input 0's type; Where: its value inputs). Other operators are not judged here.
_F = ("float32", "float16")
_FI = _F + ("int32", "int64")
_ALL = _FI + ("bool",)
OPERATOR_TYPES = {
    "Cast": (0, _ALL + ("uint8",)), "Gather": (0, _ALL), "IsInf": (0, _F), "IsNaN": (0, _FI), "Round": (0, _F),
    "Where": (1, _ALL), "Less": (0, _FI), "Greater": (0, _FI), "LessOrEqual": (0, _FI),
    "GreaterOrEqual": (0, _FI), "And": (0, ("bool",)), "Or": (0, ("bool",)), "Min": (0, _FI), "Max": (0, _FI),
    "Mul": (0, _FI), "Sub": (0, _FI), "Concat": (0, _ALL), "ConstantOfShape": (0, ("int64",)),
    "Reshape": (0, _ALL), "Slice": (0, _ALL), "Unsqueeze": (0, _ALL), "Identity": (0, _ALL),
}
_CONSTANT_INPUTS = {"Slice": (3,), "Unsqueeze": (1,)}  # "`axes` must be an initializer / a constant tensor"
PRECISION_FLAGS = {"FP16", "BF16", "INT8", "FP8", "INT4", "FP4"}


def _enum(name: str, members) -> type:
    return enum.IntEnum(name, {m: i for i, m in enumerate(members)})


class TensorRTStandIn(types.ModuleType):
    """`import tensorrt` stand-in for one version (see API); `dla_cores` > 0 makes it a Jetson."""

    def __init__(self, version: str = "10.3.0", dla_cores: int = 0, timing_device: str = "orin-sm87") -> None:
        super().__init__("tensorrt")
        creation, flags = API[version]
        self.__version__ = version
        self.NetworkDefinitionCreationFlag = _enum("NetworkDefinitionCreationFlag", creation)
        self.BuilderFlag = _enum("BuilderFlag", flags)
        self.MemoryPoolType = _enum("MemoryPoolType", ["WORKSPACE", "DLA_MANAGED_SRAM"])
        self.DeviceType = _enum("DeviceType", ["GPU", "DLA"])
        self.TensorIOMode = _enum("TensorIOMode", ["NONE", "INPUT", "OUTPUT"])
        # The order of nvinfer1::DataType (kFLOAT, kHALF, kINT8, kINT32, kBOOL, kUINT8, ...).
        self.DataType = _enum("DataType", ["FLOAT", "HALF", "INT8", "INT32", "BOOL", "UINT8"])
        self.float32, self.float16, self.uint8 = self.DataType.FLOAT, self.DataType.HALF, self.DataType.UINT8
        self.dla_cores, self.timing_device = dla_cores, timing_device
        self.built: list[dict] = []          # what each build_serialized_network call was asked for
        self.runtimes: list["_Runtime"] = []
        module = self

        class Logger:
            WARNING, INFO, ERROR = 2, 3, 1

            def __init__(self, severity=2):
                self.severity = severity

        self.Logger = Logger
        self.Builder = lambda logger: _Builder(module)
        self.OnnxParser = lambda network, logger: _Parser(network)
        self.Runtime = lambda logger: module._runtime()

    def _runtime(self):
        runtime = _Runtime(self)
        self.runtimes.append(runtime)
        return runtime

    def nptype(self, dtype):
        return {self.DataType.FLOAT: np.float32, self.DataType.HALF: np.float16, self.DataType.INT8: np.int8,
                self.DataType.INT32: np.int32, self.DataType.BOOL: np.bool_, self.DataType.UINT8: np.uint8}[dtype]


class _Network:
    def __init__(self, flags: int) -> None:
        self.flags = flags
        self.inputs: list[types.SimpleNamespace] = []
        self.outputs: list[str] = []
        self.output_dtypes: dict[str, str] = {}
        self.onnx: str | None = None

    @property
    def num_inputs(self):
        return len(self.inputs)

    def get_input(self, index):
        return self.inputs[index]


class _Parser:
    def __init__(self, network: _Network) -> None:
        self.network, self.errors = network, []

    def parse_from_file(self, path):
        import onnx

        try:
            model = onnx.load(path)
        except Exception as exc:
            self.errors.append(f"stand-in parser: {exc}")
            return False
        self.network.onnx = path
        self.network.inputs = [types.SimpleNamespace(name=i.name, dtype=_ONNX_DTYPES.get(
            i.type.tensor_type.elem_type, "?")) for i in model.graph.input]
        self.network.outputs = [o.name for o in model.graph.output]
        self.network.output_dtypes = {o.name: _ONNX_DTYPES.get(o.type.tensor_type.elem_type, "?")
                                      for o in model.graph.output}
        problem = _unsupported(model)
        if problem:
            self.errors.append(f"stand-in parser: {problem}")
            return False
        # TensorRT 10 takes a uint8 network input only into a Cast (IIdentity / ICast layer docs).
        for tensor in self.network.inputs:
            users = [n.op_type for n in model.graph.node if tensor.name in n.input]
            if tensor.dtype == "uint8" and any(op != "Cast" for op in users):
                self.errors.append(f"stand-in parser: uint8 input {tensor.name!r} feeds {users}, not only Cast")
                return False
        return True

    @property
    def num_errors(self):
        return len(self.errors)

    def get_error(self, index):
        return self.errors[index]


def _unsupported(model) -> str | None:
    """The first node whose operator and input type OPERATOR_TYPES does not allow (types from ONNX's shape
    inference), or whose `axes` is not a constant; None when every judged node is allowed."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model).graph
    types_of = {v.name: _ONNX_DTYPES.get(v.type.tensor_type.elem_type, "?")
                for v in [*inferred.input, *inferred.value_info, *inferred.output]}
    constants = {t.name for t in inferred.initializer}
    types_of.update({t.name: _ONNX_DTYPES.get(t.data_type, "?") for t in inferred.initializer})
    for node in inferred.node:
        if node.op_type == "Constant":
            constants.update(node.output)
        if node.op_type in OPERATOR_TYPES:
            index, allowed = OPERATOR_TYPES[node.op_type]
            dtype = types_of.get(node.input[index], "?") if len(node.input) > index else "?"
            if dtype != "?" and dtype not in allowed:  # "?": shape inference did not type it (not judged)
                return f"{node.op_type} ({node.name or node.output[0]}) on {dtype}: TensorRT takes {allowed}"
        for index in _CONSTANT_INPUTS.get(node.op_type, ()):
            if len(node.input) > index and node.input[index] and node.input[index] not in constants:
                return f"{node.op_type} ({node.name or node.output[0]}): its axes must be a constant"
    return None


class _Profile:
    def __init__(self) -> None:
        self.shapes = {}

    def set_shape(self, name, min, opt, max):  # noqa: A002 - TensorRT's keyword names
        self.shapes[name] = (tuple(min), tuple(opt), tuple(max))


class _TimingCache:
    def __init__(self, device: str, entries: int = 0) -> None:
        self.device, self.entries = device, entries

    def serialize(self):
        return json.dumps({"device": self.device, "entries": self.entries}).encode()


class _Config:
    def __init__(self, trt: TensorRTStandIn) -> None:
        self._trt = trt
        self.flags: set[str] = set()
        self.pools: dict = {}
        self.profiles: list[_Profile] = []
        self.default_device_type = trt.DeviceType.GPU
        self.DLA_core = -1
        self._timing: _TimingCache | None = None

    def set_memory_pool_limit(self, pool, size):
        self.pools[pool.name] = size

    def set_flag(self, flag):
        self.flags.add(flag.name)

    def add_optimization_profile(self, profile):
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, blob):
        data = bytes(blob)
        if not data:
            return _TimingCache(self._trt.timing_device)
        try:
            stored = json.loads(data)
            return _TimingCache(stored["device"], stored["entries"])
        except (ValueError, KeyError) as exc:  # real TensorRT raises for a damaged blob too
            raise RuntimeError(f"stand-in: cannot deserialize the timing cache: {exc}") from None

    def set_timing_cache(self, cache, ignore_mismatch):
        if cache.device != self._trt.timing_device and not ignore_mismatch:
            return False
        self._timing = cache
        return True

    def get_timing_cache(self):
        return self._timing


class _Builder:
    def __init__(self, trt: TensorRTStandIn) -> None:
        self._trt = trt

    @property
    def num_DLA_cores(self):
        return self._trt.dla_cores

    def create_network(self, flags=0):
        return _Network(flags)

    def create_builder_config(self):
        return _Config(self._trt)

    def create_optimization_profile(self):
        return _Profile()

    def build_serialized_network(self, network, config):
        trt = self._trt
        strongly_typed = bool(network.flags & (1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)))
        if trt.__version__.startswith("11."):
            strongly_typed = True  # 11.x: always
        record = {"strongly_typed": strongly_typed, "flags": sorted(config.flags), "pools": config.pools,
                  "dla_core": config.DLA_core if config.default_device_type == trt.DeviceType.DLA else None,
                  "profiles": [p.shapes for p in config.profiles], "onnx": network.onnx}
        trt.built.append(record)
        if strongly_typed and config.flags & PRECISION_FLAGS:
            return None  # "BuilderFlag::kFP16 is not compatible with a strongly typed network"
        if config._timing is not None:
            config._timing.entries += 1
        return b"engine:" + json.dumps({"onnx": network.onnx, "inputs": [i.name for i in network.inputs],
                                        "dtypes": {**{i.name: i.dtype for i in network.inputs},
                                                   **network.output_dtypes},
                                        "outputs": network.outputs, "version": trt.__version__}).encode()


class _Runtime:
    def __init__(self, trt: TensorRTStandIn) -> None:
        self._trt = trt
        self.DLA_core = -1
        self.dla_core_at_deserialize = None

    def deserialize_cuda_engine(self, blob):
        data = bytes(blob)
        if not data.startswith(b"engine:"):
            return None
        self.dla_core_at_deserialize = self.DLA_core
        return _Engine(self._trt, json.loads(data[len(b"engine:"):]))


class _Engine:
    def __init__(self, trt: TensorRTStandIn, info: dict) -> None:
        self._trt, self.info = trt, info
        self.names = info["inputs"] + info["outputs"]

    @property
    def num_io_tensors(self):
        return len(self.names)

    def get_tensor_name(self, index):
        return self.names[index]

    def get_tensor_mode(self, name):
        modes = self._trt.TensorIOMode
        return modes.INPUT if name in self.info["inputs"] else modes.OUTPUT

    def get_tensor_dtype(self, name):
        kind = self.info.get("dtypes", {}).get(name, "float32")
        types = self._trt.DataType
        return {"uint8": types.UINT8, "int32": types.INT32, "bool": types.BOOL}.get(kind, types.FLOAT)

    def create_execution_context(self):
        return _Context(self)


class _Context:
    """Runs the engine's ONNX with onnxruntime on the stand-in 'device' addresses."""

    def __init__(self, engine: _Engine) -> None:
        import onnxruntime as ort

        self.engine = engine
        self.session = ort.InferenceSession(engine.info["onnx"], providers=["CPUExecutionProvider"])
        self.shapes: dict[str, tuple] = {}
        self.addresses: dict[str, int] = {}
        self.executions: list[int] = []

    def set_input_shape(self, name, shape):
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        if name in self.engine.info["inputs"]:
            return self.shapes[name]
        if len(self.engine.info["inputs"]) > 1:  # e.g. the fused model: ask onnxruntime for the shape
            return self._run(self._zeros())[self.engine.info["outputs"].index(name)].shape
        n, _, h, w = self.shapes[self.engine.info["inputs"][0]]
        return (n, 1, h, w)

    def _dtype(self, name):
        return np.dtype(self.engine._trt.nptype(self.engine.get_tensor_dtype(name)))

    def _zeros(self):
        return {name: np.zeros(self.shapes[name], self._dtype(name)) for name in self.engine.info["inputs"]}

    def _run(self, feeds):
        return self.session.run(None, feeds)

    def set_tensor_address(self, name, address):
        self.addresses[name] = int(address)
        return True

    def execute_async_v3(self, stream_handle):
        assert isinstance(stream_handle, int), "TensorRT's binding takes the stream as an int (size_t)"
        feeds = {}
        for name in self.engine.info["inputs"]:
            shape, dtype = self.shapes[name], self._dtype(name)
            raw = (ctypes.c_ubyte * (int(np.prod(shape)) * dtype.itemsize)).from_address(self.addresses[name])
            feeds[name] = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
        outputs = self._run(feeds)
        for out_name, value in zip(self.engine.info["outputs"], outputs):
            value = np.ascontiguousarray(value, dtype=self._dtype(out_name))
            ctypes.memmove(self.addresses[out_name], value.ctypes.data, value.nbytes)
        self.executions.append(stream_handle)
        return True


def install(monkeypatch, trt: TensorRTStandIn, cudart: CudaRuntimeStandIn) -> None:
    """Make `import tensorrt` and mde_ros's cuda-python import return the stand-ins (test-local)."""
    import sys

    from mde_ros.inference import cuda_memory

    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(cuda_memory, "import_cudart", lambda: cudart)


def engine_files(cache: Path) -> list[Path]:
    return sorted((cache / "tensorrt").glob("*.engine"))
