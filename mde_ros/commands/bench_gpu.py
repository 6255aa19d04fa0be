"""`mde-ros bench --device cuda`: the GPU fast path against the same network in bare torch.

For each precision (fp32, fp16, bf16) on the default network (ResNet-34 U-Net, 320x320, random
weights) and one 640x480 rgb8 frame, medians of:
  infer             the project's torch backend `infer` (float32 numpy in/out: the Backend contract)
  numpy path        `DepthEstimator.estimate` with CPU pre/post-processing (pre / network / post)
  device path       `DepthEstimator.estimate` with `device_pipeline` (image up, depth down, fused
                    pre -> network -> post as CUDA graphs): end to end wall time, and the stages by
                    CUDA events
  bare              the same weights in plain torch: channels_last + CUDA graph, timed by events
and the ratio of the device path's network stage to the bare run of the same precision (goal:
fp16 <= 1.25). Batch 32 throughput (bare and project `infer`) for reference.

Everything runs on the CPU too (`--device cpu`: fp32, eager instead of graphs, perf_counter instead
of events), so the code path is checked on machines without a GPU; CUDA-only figures are then
reported as skipped with the reason.
"""
from __future__ import annotations

import copy
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

FRAME_W, FRAME_H = 640, 480
NET_SIZE = 320
BATCH_THROUGHPUT = 32


def cuda_skip_reason(device: str) -> str | None:
    """None when `device` is a usable CUDA device, else why the CUDA figures are skipped."""
    if not str(device).startswith("cuda"):
        return f"device {device!r} is not CUDA: CUDA graphs, events, fp16/bf16 and the bare-graph ratio are skipped"
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA GPU: CUDA figures skipped"
    return None


def default_network(args) -> tuple[Path, Path]:
    """(ONNX, .pt bundle) of the default network with random weights, exported once per run (kept on
    `args`; the backends, node, replay, int8 and overload sections share it)."""
    if getattr(args, "_default_network", None) is None:
        import torch

        from mde_ros.models import DEFAULT_MODEL, build_model, export_onnx, save_bundle
        from mde_ros.models.card import ModelCard

        torch.manual_seed(0)
        model = build_model(DEFAULT_MODEL).eval()
        card = ModelCard(name=f"{DEFAULT_MODEL}_random", architecture=DEFAULT_MODEL, input_height=320,
                         input_width=320, max_depth=10.0, train_focal_px=518.8579 / 2)
        workdir = Path(tempfile.mkdtemp(prefix="mde_bench_"))
        args._default_network = (export_onnx(model, card, workdir / "default.onnx"),
                                 save_bundle(workdir / "default.pt", model, card))
    return args._default_network


def default_network_bundle(workdir: Path, arch: str = "unet_resnet34", size: int = NET_SIZE,
                           seed: int = 0):
    """(torch model fp32 on CPU, card, .pt bundle path): the default network with random weights."""
    import torch

    from mde_ros.models import build_model, save_bundle
    from mde_ros.models.card import ModelCard

    torch.manual_seed(seed)
    model = build_model(arch).eval()
    card = ModelCard(name=f"{arch}_random", architecture=arch, input_height=size, input_width=size,
                     max_depth=10.0, train_focal_px=518.8579 * size / 640)
    return model, card, save_bundle(Path(workdir) / f"{arch}.pt", model, card)


def _median_ms(samples: list[float]) -> float:
    return round(1000.0 * statistics.median(samples), 4)


def _timed_calls(call: Callable[[], Any], iters: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(iters):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def bare_run(model, device: str, precision: str, batch: int, size: int, iters: int, warmup: int) -> dict:
    """Plain torch, as the PyTorch performance guide writes it: weights in `precision`,
    channels_last, cudnn.benchmark, one CUDA graph; median per call by CUDA events (GPU) or wall
    time (CPU, eager)."""
    import torch

    from mde_ros.inference.torch_cuda import DTYPES

    dev = torch.device(device)
    dtype = DTYPES[precision]
    net = copy.deepcopy(model).to(dev, dtype, memory_format=torch.channels_last).eval()
    x = torch.randn(batch, 3, size, size, device=dev).to(dtype).contiguous(memory_format=torch.channels_last)
    if dev.type != "cuda":
        with torch.inference_mode():
            samples = _timed_calls(lambda: net(x), iters, warmup)
        return {"median_ms": _median_ms(samples), "timing": "wall, eager (no CUDA)",
                "frames_per_s": round(batch / statistics.median(samples), 1)}
    torch.backends.cudnn.benchmark = True
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.inference_mode(), torch.cuda.stream(side):
        for _ in range(max(3, warmup)):
            net(x)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.inference_mode(), torch.cuda.graph(graph):
        net(x)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(warmup):
        graph.replay()
    samples = []
    for _ in range(iters):
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / 1000.0)
    del graph
    return {"median_ms": _median_ms(samples), "timing": "CUDA events around graph replay",
            "frames_per_s": round(batch / statistics.median(samples), 1)}


def project_run(bundle: Path, card, device: str, precision: str, frame, iters: int, warmup: int) -> dict:
    """The project's torch backend and DepthEstimator (numpy path and device path) at `precision`."""
    from mde_ros.inference import create_backend
    from mde_ros.inference.torch_backend import NAME as TORCH
    from mde_ros.pipeline.estimator import DepthEstimator, EstimatorConfig

    backend = create_backend(TORCH, bundle, card, device=device, precision=precision, fast_path=True)
    result: dict[str, Any] = {"backend": backend.describe()}
    batch = np.random.default_rng(0).standard_normal((1, 3, card.input_height, card.input_width)).astype(np.float32)
    result["infer_ms"] = _median_ms(_timed_calls(lambda: backend.infer(batch), iters, warmup))

    for label, device_pipeline in (("numpy_path", False), ("device_path", True)):
        estimator = DepthEstimator(backend, card, EstimatorConfig(device_pipeline=device_pipeline))
        stages: dict[str, list[float]] = {"preprocess": [], "network": [], "postprocess": []}
        walls = []
        for index in range(warmup + iters):
            start = time.perf_counter()
            out = estimator.estimate(frame.rgb, frame.intrinsics)
            wall = time.perf_counter() - start
            if index >= warmup:
                walls.append(wall)
                for key in stages:
                    stages[key].append(out.timings[key])
        result[label] = {"estimate_ms": _median_ms(walls),
                         **{f"{k}_ms": _median_ms(v) for k, v in stages.items()}}
    if batch_ok(device):
        big = np.random.default_rng(1).standard_normal(
            (BATCH_THROUGHPUT, 3, card.input_height, card.input_width)).astype(np.float32)
        samples = _timed_calls(lambda: backend.infer(big), max(5, iters // 10), 2)
        result["batch32_infer_frames_per_s"] = round(BATCH_THROUGHPUT / statistics.median(samples), 1)
    return result


def batch_ok(device: str) -> bool:
    return str(device).startswith("cuda")


def run_gpu_bench(device: str = "cuda", precisions: tuple[str, ...] = ("fp32", "fp16", "bf16"),
                  iters: int = 100, warmup: int = 10, arch: str = "unet_resnet34", size: int = NET_SIZE,
                  frame=None, log: Callable[[str], None] = print) -> dict:
    """Every figure of the module docstring, as a dict (also what tools/h200 writes to JSON)."""
    import torch

    from mde_ros.synthetic import render_frame

    skip = cuda_skip_reason(device)
    if skip:
        log(f"CUDA: {skip}")
        if str(device).startswith("cuda"):
            device = "cpu"
        precisions = tuple(p for p in precisions if p == "fp32") or ("fp32",)
    frame = frame if frame is not None else render_frame(3, FRAME_W, FRAME_H)
    out: dict[str, Any] = {"device": device, "cuda_skipped": skip, "arch": arch, "net_size": size,
                           "frame": f"{frame.rgb.shape[1]}x{frame.rgb.shape[0]} rgb8",
                           "torch": torch.__version__, "precisions": {}}
    if not skip:
        out["gpu"] = torch.cuda.get_device_name(torch.device(device))
    with tempfile.TemporaryDirectory(prefix="mde_bench_gpu_") as tmp:
        model, card, bundle = default_network_bundle(Path(tmp), arch, size)
        for precision in precisions:
            entry: dict[str, Any] = {}
            try:
                entry["project"] = project_run(bundle, card, device, precision, frame, iters, warmup)
                entry["bare"] = bare_run(model, device, precision, 1, size, iters, warmup)
                net = entry["project"]["device_path"]["network_ms"]
                entry["network_vs_bare"] = round(net / entry["bare"]["median_ms"], 3)
                if not skip:
                    entry["bare_batch32"] = bare_run(model, device, precision, BATCH_THROUGHPUT, size,
                                                     max(5, iters // 10), 2)
            except Exception as exc:  # one precision failing must not hide the others
                entry["error"] = f"{type(exc).__name__}: {exc}"
            out["precisions"][precision] = entry
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
    return out


def format_gpu_table(results: dict) -> str:
    """The figures as a plain table (one row per precision)."""
    head = (f"default network {results['arch']} {results['net_size']}x{results['net_size']}, "
            f"{results['frame']} in, device {results['device']}" + (f" ({results['gpu']})" if results.get("gpu") else ""))
    columns = ("precision", "infer", "numpy pre/net/post", "device pre/net/post", "estimate", "bare", "ratio",
               "b32 bare f/s", "b32 infer f/s")
    rows = [columns]
    for precision, entry in results["precisions"].items():
        if "error" in entry:
            rows.append((precision, f"failed: {entry['error']}"))
            continue
        p = entry["project"]
        npth, dev = p["numpy_path"], p["device_path"]
        rows.append((precision, f"{p['infer_ms']:.3f}",
                     f"{npth['preprocess_ms']:.3f}/{npth['network_ms']:.3f}/{npth['postprocess_ms']:.3f}",
                     f"{dev['preprocess_ms']:.3f}/{dev['network_ms']:.3f}/{dev['postprocess_ms']:.3f}",
                     f"{dev['estimate_ms']:.3f}", f"{entry['bare']['median_ms']:.3f}", f"{entry['network_vs_bare']:.3f}",
                     str(entry.get("bare_batch32", {}).get("frames_per_s", "-")),
                     str(p.get("batch32_infer_frames_per_s", "-"))))
    lines = [head] + ["  ".join(str(cell).rjust(len(columns[i]) if i < len(columns) else 0)
                                for i, cell in enumerate(row)) for row in rows]
    lines.append("ms medians; ratio = device-path network stage / bare channels_last CUDA-graph run "
                 "(goal fp16 <= 1.25); estimate = image in -> depth at camera resolution out, wall "
                 "(goal <= 2.0 ms)")
    if results.get("cuda_skipped"):
        lines.append(f"CUDA skipped: {results['cuda_skipped']}")
    return "\n".join(lines)


def bench_gpu(args) -> None:
    """The `gpu` section of `mde-ros bench`."""
    precisions = tuple(p.strip() for p in (args.precision or "fp32,fp16,bf16").split(",") if p.strip())
    from mde_ros.inference import AUTO
    from mde_ros.inference.torch_backend import NAME as TORCH

    if args.backend not in (TORCH, AUTO):
        print(f"\n## gpu: backend {args.backend!r} has no device pipeline here (only torch does); "
              "use `--sections backends` for its per-stage times")
        return
    print(f"\n## gpu: the torch fast path on {args.device}")
    results = run_gpu_bench(args.device, precisions, args.iters, args.warmup, arch=args.gpu_arch,
                            size=args.gpu_size)
    print(format_gpu_table(results))
