"""The torch backend's fast path: static buffers and CUDA graphs per input shape.

What the PyTorch performance guide asks for, in one place: cudnn.benchmark, channels_last, fp16/bf16
weights cast once, pinned host staging buffers with non-blocking copies, device buffers allocated
once per shape, and a CUDA graph captured per shape (a camera that changes resolution gets a new
graph; a small LRU keeps the last few). `infer` keeps the Backend contract (float32 numpy in and
out); `estimate` runs the fused pre -> network -> post pipeline (inference/fused.py) on the device, so
only the uint8 image goes up and only the depth at camera resolution comes back.

On the CPU the same runner works without graphs (eager calls into the same static buffers): that
is what the tests and `mde-ros bench --device cpu` exercise here. The torch backend uses it on CUDA
only, so its CPU results stay bit for bit what they were.
"""
from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable

import numpy as np
import torch

from mde_ros.models.card import ModelCard

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DEFAULT_CACHE_SIZE = 4
WARMUP_RUNS = 3  # before capture: cudnn.benchmark picks its algorithms, lazy inits happen


class ShapeCache:
    """A small LRU: key (a shape) -> entry, built by a factory on first use.

    Evicted entries are handed to ``on_evict`` (graphs and buffers are released by dropping them).
    Not thread-safe by itself: the runner holds its lock around every use.
    """

    def __init__(self, capacity: int = DEFAULT_CACHE_SIZE,
                 on_evict: Callable[[Hashable, Any], None] | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"cache capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._entries: collections.OrderedDict[Hashable, Any] = collections.OrderedDict()
        self._on_evict = on_evict
        self.builds = 0  # how many entries were ever built (captures)

    def get(self, key: Hashable, factory: Callable[[], Any]) -> Any:
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        entry = factory()
        self.builds += 1
        self._entries[key] = entry
        while len(self._entries) > self.capacity:
            old_key, old = self._entries.popitem(last=False)
            if self._on_evict is not None:
                self._on_evict(old_key, old)
        return entry

    def keys(self) -> list[Hashable]:
        return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


@dataclass
class _Step:
    """One captured (or, on the CPU, eagerly replayed) piece of work writing into static outputs."""

    run: Callable[[], None]
    graph: Any = None

    def replay(self) -> None:
        if self.graph is not None:
            self.graph.replay()
        else:
            with torch.inference_mode():
                self.run()


@dataclass
class _NetworkEntry:
    host_in: torch.Tensor    # pinned float32 (N,3,H,W)
    staging: torch.Tensor    # device float32 (N,3,H,W): the upload lands here, the graph casts
    device_in: torch.Tensor  # network dtype, channels_last
    device_out: torch.Tensor
    host_out: torch.Tensor   # pinned float32 (N,1,h,w)
    step: _Step


@dataclass
class _FusedEntry:
    host_image: torch.Tensor    # pinned uint8 (H,W,3)
    device_image: torch.Tensor  # uint8 (1,H,W,3)
    device_rescale: torch.Tensor
    device_depth: torch.Tensor  # float32 (1,H,W)
    host_depth: torch.Tensor    # pinned float32 (H,W)
    steps: tuple[_Step, _Step, _Step]  # pre, network, post
    events: list = field(default_factory=list)


class TorchRunner:
    """Runs one network with static per-shape buffers (and CUDA graphs on a GPU). Thread-safe."""

    def __init__(self, network: torch.nn.Module, device: torch.device, precision: str = "fp32", *,
                 use_graphs: bool | None = None, channels_last: bool = True,
                 cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        if precision not in DTYPES:
            raise ValueError(f"unknown precision {precision!r}: use one of {tuple(DTYPES)}")
        self.device = torch.device(device)
        self.on_cuda = self.device.type == "cuda"
        self.dtype = DTYPES[precision]
        self.precision = precision
        self.use_graphs = self.on_cuda if use_graphs is None else bool(use_graphs)
        if self.use_graphs and not self.on_cuda:
            raise ValueError("CUDA graphs need a CUDA device")
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if self.on_cuda:
            torch.backends.cudnn.benchmark = True
        # Weights are cast once; the network never sees float32 activations in fp16/bf16 mode.
        self.network = network.to(self.device, self.dtype, memory_format=self.memory_format).eval()
        for parameter in self.network.parameters():
            parameter.requires_grad_(False)
        self._lock = threading.Lock()
        self._stream = torch.cuda.Stream(self.device) if self.on_cuda else None
        self.cache = ShapeCache(cache_size)

    # ---- plumbing -------------------------------------------------------------------------------

    def _pinned(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        return torch.empty(shape, dtype=dtype, pin_memory=self.on_cuda)

    def _capture(self, work: Callable[[], None]) -> _Step:
        """Warm up ``work`` on a side stream, then capture it into a CUDA graph (GPU), or keep it
        as an eager call (CPU). ``work`` must write only into preallocated tensors."""
        if not self.use_graphs:
            with torch.inference_mode():
                work()
            return _Step(work)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.inference_mode(), torch.cuda.stream(side):
            for _ in range(WARMUP_RUNS):
                work()
        torch.cuda.current_stream(self.device).wait_stream(side)
        torch.cuda.synchronize(self.device)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph):
            work()
        torch.cuda.synchronize(self.device)
        return _Step(work, graph)

    def _stream_context(self):
        return torch.cuda.stream(self._stream) if self._stream is not None else _nullcontext()

    def _sync(self) -> None:
        if self._stream is not None:
            self._stream.synchronize()

    # ---- the plain Backend contract -------------------------------------------------------------

    def _network_entry(self, shape: tuple[int, ...]) -> _NetworkEntry:
        host_in = self._pinned(shape, torch.float32)
        staging = torch.zeros(shape, device=self.device, dtype=torch.float32)
        device_in = torch.zeros(shape, device=self.device, dtype=self.dtype).contiguous(
            memory_format=self.memory_format)
        with torch.inference_mode():
            probe = self.network(device_in)
        device_out = torch.empty(probe.shape, device=self.device, dtype=torch.float32)
        host_out = self._pinned(tuple(probe.shape), torch.float32)
        del probe

        def work() -> None:
            device_in.copy_(staging)  # cast to fp16/bf16 and channels_last inside the graph
            device_out.copy_(self.network(device_in))

        return _NetworkEntry(host_in, staging, device_in, device_out, host_out, self._capture(work))

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(N,3,H,W) float32 -> (N,1,h,w) float32 (a new array the caller owns)."""
        shape = tuple(batch.shape)
        with self._lock, self._stream_context():
            entry = self.cache.get(("network", shape), lambda: self._network_entry(shape))
            entry.host_in.numpy()[...] = batch
            entry.staging.copy_(entry.host_in, non_blocking=True)
            entry.step.replay()
            entry.host_out.copy_(entry.device_out, non_blocking=True)
            self._sync()
            return entry.host_out.numpy().copy()

    # ---- the fused pipeline -----------------------------------------------------------------------

    def _fused_entry(self, card: ModelCard, height: int, width: int, policy: str) -> _FusedEntry:
        from mde_ros.inference.fused import FusedPostprocess, FusedPreprocess

        pre = FusedPreprocess(card, height, width, policy).to(self.device)
        post = FusedPostprocess(card, pre.info).to(self.device)
        host_image = self._pinned((height, width, 3), torch.uint8)
        device_image = torch.zeros((1, height, width, 3), dtype=torch.uint8, device=self.device)
        device_rescale = torch.ones(1, dtype=torch.float32, device=self.device)
        net_in = torch.zeros((1, 3, pre.info.net_height, pre.info.net_width), device=self.device,
                             dtype=self.dtype).contiguous(memory_format=self.memory_format)
        with torch.inference_mode():
            raw = torch.zeros_like(self.network(net_in), dtype=self.dtype)
        device_depth = torch.empty((1, height, width), dtype=torch.float32, device=self.device)
        host_depth = self._pinned((height, width), torch.float32)

        def pre_work() -> None:
            net_in.copy_(pre(device_image))

        def network_work() -> None:
            raw.copy_(self.network(net_in))

        def post_work() -> None:
            device_depth.copy_(post(raw, device_rescale))

        steps = (self._capture(pre_work), self._capture(network_work), self._capture(post_work))
        events = [torch.cuda.Event(enable_timing=True) for _ in range(4)] if self.on_cuda else []
        return _FusedEntry(host_image, device_image, device_rescale, device_depth, host_depth, steps, events)

    def estimate(self, rgb: np.ndarray, card: ModelCard, policy: str | None,
                 rescale: float = 1.0) -> tuple[np.ndarray, dict[str, float]]:
        """HxWx3 uint8 RGB -> (HxW float32 metres, stage seconds: preprocess incl. upload, network,
        postprocess incl. download; GPU times from CUDA events)."""
        height, width = rgb.shape[:2]
        key = ("fused", height, width, policy, card.input_height, card.input_width)
        with self._lock, self._stream_context():
            entry = self.cache.get(key, lambda: self._fused_entry(card, height, width, policy))
            pre, network, post = entry.steps
            marks = []
            if entry.events:
                entry.events[0].record()
            else:
                marks.append(time.perf_counter())
            entry.host_image.numpy()[...] = rgb
            entry.device_image[0].copy_(entry.host_image, non_blocking=True)
            entry.device_rescale.fill_(float(np.float32(rescale)))
            pre.replay()
            self._mark(entry, 1, marks)
            network.replay()
            self._mark(entry, 2, marks)
            post.replay()
            entry.host_depth.copy_(entry.device_depth[0], non_blocking=True)
            self._mark(entry, 3, marks)
            if entry.events:
                entry.events[3].synchronize()
                seconds = [entry.events[i].elapsed_time(entry.events[i + 1]) / 1000.0 for i in range(3)]
            else:
                seconds = [marks[i + 1] - marks[i] for i in range(3)]
            depth = entry.host_depth.numpy().copy()
            # The same depth where it was made, for outputs built there (inference.device_outputs): a
            # static buffer, valid until the next estimate of this shape.
            self.last_device_depth = entry.device_depth[0]
        return depth, dict(zip(("preprocess", "network", "postprocess"), seconds))

    @staticmethod
    def _mark(entry: _FusedEntry, index: int, marks: list[float]) -> None:
        if entry.events:
            entry.events[index].record()
        else:
            marks.append(time.perf_counter())

    def describe(self) -> dict[str, Any]:
        return {"cuda_graphs": self.use_graphs, "channels_last": self.memory_format == torch.channels_last,
                "cached_shapes": [list(k[1:]) if k[0] == "fused" else list(k[1]) for k in self.cache.keys()]}


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
