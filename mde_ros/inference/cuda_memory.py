"""CUDA memory and streams through cuda-python (what NVIDIA's TensorRT samples use since 10.13),
so the TensorRT backend needs neither torch nor pycuda: on a Jetson, TensorRT + numpy + cuda-python.

Buffers are allocated once (the optimisation profile's largest shape) and reused every frame;
host buffers are pinned, so copies are true asynchronous DMA on the backend's own stream.
"""
from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

INSTALL_HINT = "pip install cuda-python (the CUDA runtime bindings NVIDIA's TensorRT samples use)"


class CudaError(RuntimeError):
    """A CUDA runtime call failed; the message names the call and CUDA's error name."""


def import_cudart() -> Any:
    """cuda-python's runtime module: `cuda.bindings.runtime` (cuda-python >= 12.6), else the older
    `cuda.cudart`. ImportError (with the install hint) if neither is there."""
    try:
        from cuda.bindings import runtime
        return runtime
    except ImportError:
        pass
    try:
        from cuda import cudart
        return cudart
    except ImportError as exc:
        raise ImportError(f"cuda-python is not installed: {INSTALL_HINT}") from exc


def check(cudart: Any, result: tuple, call: str) -> Any:
    """Unpack a cuda-python result tuple (error, *values); CudaError unless it is cudaSuccess."""
    error, values = result[0], result[1:]
    code = int(getattr(error, "value", error))
    if code != 0:
        try:
            name = cudart.cudaGetErrorName(error)[1]
            name = name.decode() if isinstance(name, bytes) else str(name)
        except Exception:  # the name is a nicety; the number is enough
            name = str(error)
        raise CudaError(f"{call} failed: {name} ({code})")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def device_info(cudart: Any, index: int):
    """GpuInfo of CUDA device `index` (name, compute capability, SM count, memory, runtime, driver)."""
    from mde_ros.inference.tensorrt_build import GpuInfo

    count = check(cudart, cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")
    if index >= count:
        raise CudaError(f"device cuda:{index} requested, but only {count} CUDA device(s) are visible")
    props = check(cudart, cudart.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
    name = props.name
    name = name.split(b"\0", 1)[0].decode(errors="replace") if isinstance(name, (bytes, bytearray)) else str(name)
    return GpuInfo(name=name.strip(), compute_capability=(int(props.major), int(props.minor)),
                   sm_count=int(props.multiProcessorCount), total_memory=int(props.totalGlobalMem),
                   cuda_runtime=int(check(cudart, cudart.cudaRuntimeGetVersion(), "cudaRuntimeGetVersion")),
                   driver=int(check(cudart, cudart.cudaDriverGetVersion(), "cudaDriverGetVersion")))


def _memcpy(cudart: Any, dst: int, src: int, nbytes: int, kind: str, stream: Any) -> None:
    """cudaMemcpyAsync of `kind` ("HostToDevice", "DeviceToHost", "DeviceToDevice") on `stream`."""
    check(cudart, cudart.cudaMemcpyAsync(dst, src, nbytes, getattr(cudart.cudaMemcpyKind, f"cudaMemcpy{kind}"),
                                         stream), f"cudaMemcpyAsync ({kind})")


class DeviceBuffer:
    """Device memory only (cudaMalloc), for data that never comes to the host as a whole."""

    def __init__(self, cudart: Any, nbytes: int) -> None:
        self._cudart = cudart
        self.nbytes = int(nbytes)
        self.ptr = None
        self.ptr = int(check(cudart, cudart.cudaMalloc(max(1, self.nbytes)), "cudaMalloc"))

    def free(self) -> None:
        if self.ptr is not None:
            self._cudart.cudaFree(self.ptr)
            self.ptr = None

    def __del__(self) -> None:
        try:
            self.free()
        except Exception:  # interpreter shutdown: the driver may already be gone
            pass


class PinnedBuffer:
    """A pinned host buffer viewed as a numpy array, with its device twin (a DeviceBuffer) of the same size."""

    def __init__(self, cudart: Any, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self._cudart = cudart
        self.dtype = np.dtype(dtype)
        self.capacity = int(np.prod(shape)) if shape else 1
        self.nbytes = self.capacity * self.dtype.itemsize
        self.host_ptr = self._device = None
        self.host_ptr = int(check(cudart, cudart.cudaMallocHost(self.nbytes), "cudaMallocHost"))
        self._device = DeviceBuffer(cudart, self.nbytes)
        raw = (ctypes.c_ubyte * self.nbytes).from_address(self.host_ptr)
        self._host = np.frombuffer(raw, dtype=self.dtype, count=self.capacity)

    @property
    def device_ptr(self) -> int | None:
        return None if self._device is None else self._device.ptr

    def host_view(self, shape: tuple[int, ...]) -> np.ndarray:
        """The first prod(shape) elements of the pinned buffer as an array of `shape` (no copy)."""
        size = int(np.prod(shape))
        if size > self.capacity:
            raise ValueError(f"shape {shape} needs {size} elements; the buffer holds {self.capacity}")
        return self._host[:size].reshape(shape)

    def to_device(self, nbytes: int, stream: Any) -> None:
        _memcpy(self._cudart, self.device_ptr, self.host_ptr, nbytes, "HostToDevice", stream)

    def to_host(self, nbytes: int, stream: Any) -> None:
        _memcpy(self._cudart, self.host_ptr, self.device_ptr, nbytes, "DeviceToHost", stream)

    def free(self) -> None:
        if self._device is not None:
            self._device.free()
        if self.host_ptr is not None:
            self._host = None
            self._cudart.cudaFreeHost(self.host_ptr)
            self.host_ptr = None

    def __del__(self) -> None:
        try:
            self.free()
        except Exception:  # interpreter shutdown: the driver may already be gone
            pass


def copy_to_host(cudart: Any, out: np.ndarray, device_ptr: int, stream: Any) -> None:
    """out.nbytes from `device_ptr` straight into `out` (C-contiguous; pageable, e.g. a message buffer):
    CUDA stages a copy to pageable memory itself and returns once it is done, after the stream's earlier
    work, so there is no second copy of ours."""
    if not out.flags.c_contiguous:
        raise ValueError("copy_to_host needs a C-contiguous host array")
    _memcpy(cudart, out.ctypes.data, device_ptr, out.nbytes, "DeviceToHost", stream)


def copy_on_device(cudart: Any, dst: int, src: int, nbytes: int, stream: Any) -> None:
    _memcpy(cudart, dst, src, nbytes, "DeviceToDevice", stream)


class Stream:
    """A non-blocking CUDA stream of the backend (enqueueV3 on the legacy default stream costs an
    extra synchronisation)."""

    def __init__(self, cudart: Any) -> None:
        self._cudart = cudart
        self.handle = None
        self.handle = check(cudart, cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking),
                            "cudaStreamCreateWithFlags")

    def __int__(self) -> int:
        return int(self.handle)

    def synchronize(self) -> None:
        check(self._cudart, self._cudart.cudaStreamSynchronize(self.handle), "cudaStreamSynchronize")

    def destroy(self) -> None:
        if self.handle is not None:
            self._cudart.cudaStreamDestroy(self.handle)
            self.handle = None

    def __del__(self) -> None:
        try:
            self.destroy()
        except Exception:
            pass
