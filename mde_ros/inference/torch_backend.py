"""torch backend: runs a .pt bundle directly (training checkpoints, debugging, CPU or CUDA).

On CUDA it runs through `torch_cuda.TorchRunner` (cudnn.benchmark, channels_last, fp16/bf16 weights
cast once, pinned staging, a CUDA graph per input shape) and offers the fused GPU pipeline to
`DepthEstimator` (`fused_pipeline`). On the CPU it runs exactly as before: eager fp32, no runner,
unless the `fast_path` option asks for the runner (tests, `mde-ros bench --device cpu`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mde_ros.inference.base import Backend, BackendUnavailable, as_network_batch, check_network_output, parse_device
from mde_ros.inference.spec import SWITCH_CHOICES, BackendOption, BackendSpec, check_run, package_missing
from mde_ros.models.card import ModelCard

NAME = "torch"
FAST_PATH = BackendOption(
    "fast_path", "torch.fast_path", "fast_path", "--fast-path", "switch", "auto",
    "torch: the runner with static buffers and a CUDA graph per input shape (torch_cuda.TorchRunner): "
    "always | never; auto: on cuda only", choices=SWITCH_CHOICES)
GRAPH_CACHE_SIZE = BackendOption(
    "graph_cache_size", "torch.graph_cache_size", "graph_cache_size", "--graph-cache-size", "int", 0,
    "torch fast path: input shapes whose CUDA graph is kept (least recently used dropped); 0: the default, 4",
    low=0, high=64)


def import_torch():
    try:
        import torch
    except ImportError as exc:
        raise BackendUnavailable("backend 'torch' needs PyTorch: pip install torch "
                                 f"(see pytorch.org for CUDA wheels) [{exc}]") from exc
    return torch


def torch_device(device: str):
    """The torch.device for 'cpu' / 'cuda[:i]', or BackendUnavailable when CUDA is missing."""
    torch = import_torch()
    kind, index = parse_device(device)
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise BackendUnavailable(
                f"device {device!r} needs a CUDA GPU, but torch {torch.__version__} sees none "
                "(CPU-only wheel, no NVIDIA driver, or CUDA_VISIBLE_DEVICES hides it): install a "
                "CUDA build of torch on a machine with an NVIDIA GPU, or use device 'cpu'")
        if index >= torch.cuda.device_count():
            raise BackendUnavailable(f"device {device!r}: only {torch.cuda.device_count()} CUDA "
                                     "GPU(s) visible")
    return torch.device(kind, index) if kind == "cuda" else torch.device("cpu")


class TorchBackend(Backend):
    name = NAME

    def __init__(self, model_path: str | Path, card: ModelCard, device: str = "cpu",
                 precision: str = "fp32", fast_path: bool | None = None,
                 graph_cache_size: int = 4, *, source: str | Path | None = None) -> None:
        model_path = Path(model_path)
        if model_path.suffix != ".pt":
            raise BackendUnavailable(f"backend 'torch' needs a .pt bundle (weights + card), got "
                                     f"{model_path.name}: run ONNX files with backend "
                                     "'onnxruntime' or 'tensorrt'")
        torch = import_torch()
        check_run(SPEC, device, precision)
        self._device = torch_device(device)
        from mde_ros.models.bundle import load_bundle

        model, _ = load_bundle(model_path, map_location=self._device)
        self._torch = torch
        self.device, self.precision, self.card, self.model_path = device, precision, card, model_path
        self._runner = None
        if fast_path is None:
            fast_path = self._device.type == "cuda"
        if fast_path:
            from mde_ros.inference.torch_cuda import TorchRunner

            self._runner = TorchRunner(model, self._device, precision, cache_size=graph_cache_size)
            return
        self._dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        self._model = model.to(self._device, self._dtype).eval()

    def fused_pipeline(self):
        """The runner that does pre -> network -> post on the device (DepthEstimator's fast path),
        or None when this backend runs the plain CPU path."""
        return self._runner

    def infer(self, batch: np.ndarray) -> np.ndarray:
        batch = as_network_batch(batch)
        if self._runner is not None:
            return check_network_output(self._runner.infer(batch), batch.shape, self.name)
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(batch)  # shares memory with the numpy batch
            if self._device.type != "cpu" or self._dtype != torch.float32:
                x = x.to(self._device, self._dtype, non_blocking=False)
            out = self._model(x)
            out = out.float().cpu().numpy() if self._device.type != "cpu" else out.numpy()
        return check_network_output(out, batch.shape, self.name)

    def describe(self) -> dict[str, Any]:
        info = {"backend": self.name, "device": str(self._device), "precision": self.precision,
                "model": str(self.model_path), "torch": self._torch.__version__}
        if self._runner is not None:
            info.update(self._runner.describe())
        return info


SPEC = BackendSpec(
    name=NAME, factory=TorchBackend, devices=("cpu", "cuda"),
    precisions={"cpu": ("fp32",), "cuda": ("fp32", "fp16", "bf16")},
    unavailable=lambda: package_missing("torch", "pip install torch"),
    options=(FAST_PATH, GRAPH_CACHE_SIZE), auto_rank=20, auto_files=(".pt",), loads="pt",
    precision_hint="half precision on the CPU is slower than fp32: fp16 / bf16 need device 'cuda'")
