"""`mde-ros bench`: figures for the README, measured in one run (ratios, not absolute promises).

Sections:
  backends  per-stage times (pre, network, post) of each usable backend on the default network
            (ResNet-34 U-Net, 320x320, random weights) for a 640x480 frame, and the project's
            onnxruntime backend against a bare onnxruntime session on the same ONNX file
            (goal: ratio <= 1.05).
  node      the node process's CPU time per frame at 640x480 and 1280x720, every output subscribed
            from this process (transport counted), per output and in total, beside the network alone
            (goal: <= 5 ms outside the network at 640x480; commands/bench_node.py).
  cloud     the cloud builder against Open3D's create_from_depth_image on the same depth and K
            (goal: >= 3x faster; needs the optional open3d package).
  replay    offline bag replay throughput relative to the network-only rate on the same frames
            (goal: >= 0.9), on a generated 320x240 bag, for the shipped model and the default network.
  gpu       the torch fast path (device pipeline, CUDA graphs) vs bare torch, fp32/fp16/bf16
            (commands/bench_gpu.py); the default section with `--device cuda`.
  int8      the Q/DQ int8 model (mde-ros quantize's onnxruntime recipe, calibrated on synthetic scenes
            that are not the fixtures') against the float model on onnxruntime's CPU: network time
            ratio (goal <= 0.50) for the shipped model and the default network, and AbsRel on the
            fixture bags (goal: within 0.01 of fp32).
  overload  (only when asked: --sections overload) the node process at 2x its sustainable rate, both
            subscription QoS: end-to-end latency percentiles (commands/overload.py).
  delivery  (only when asked: --sections delivery) % of frames that reach reliable and sensor-data
            subscribers in other processes over real DDS, with and without the shipped Fast DDS
            profile, at 640x480 and 1280x720 (commands/delivery.py).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from mde_ros.commands.bench_gpu import default_network

SECTIONS = ("backends", "node", "cloud", "replay", "int8", "gpu", "overload", "delivery")
CPU_SECTIONS = ("backends", "node", "cloud", "replay", "int8")
CALIBRATION_SEEDS = range(1000, 1016)  # synthetic scenes; the fixture bags use others
FRAME_W, FRAME_H = 640, 480
NODE_FRAME_TIMEOUT_S = 30.0  # node section: a frame whose outputs take longer is reported as missing


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sections", default=None,
                        help=f"comma-separated subset of {','.join(SECTIONS)} (default: {','.join(CPU_SECTIONS)}; "
                             "gpu with --device cuda; overload and delivery only when named)")
    from mde_ros.argtypes import float_range, int_range

    parser.add_argument("--iters", type=int_range(1), default=20, help="timed iterations per measurement")
    parser.add_argument("--warmup", type=int_range(0), default=3)
    parser.add_argument("--model", type=Path, default=None,
                        help="model for node/replay sections (default: the shipped demo model)")
    parser.add_argument("--threads", type=int_range(0, 1024), default=0,
                        help="onnxruntime intra-op threads (0 = default)")
    parser.add_argument("--node-timeout", type=float_range(0, low_open=True), default=NODE_FRAME_TIMEOUT_S,
                        help="node section: seconds a frame's outputs may take; later ones are reported missing")
    parser.add_argument("--device", default="cpu", help="gpu section: cpu, cuda or cuda:N")
    from mde_ros.inference.torch_backend import NAME as TORCH

    parser.add_argument("--backend", default=TORCH, help=f"gpu section: the backend with a device pipeline ({TORCH})")
    parser.add_argument("--precision", default=None,
                        help="gpu section: comma-separated fp32,fp16,bf16 (default: all three on CUDA, fp32 on CPU)")
    parser.add_argument("--gpu-arch", default="unet_resnet34", help="gpu section: network (random weights)")
    parser.add_argument("--gpu-size", type=int_range(32, 8192), default=320, help="gpu section: network input side")
    from mde_ros.commands.bench_node import add_arguments as add_node_arguments
    from mde_ros.commands.delivery import add_arguments as add_delivery_arguments
    from mde_ros.commands.overload import add_arguments as add_overload_arguments

    add_node_arguments(parser)
    add_overload_arguments(parser)
    add_delivery_arguments(parser)


def median_ms(samples: list[float]) -> float:
    return 1000.0 * statistics.median(samples)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def models_to_run(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(label, model path) pairs: the shipped (or --model) model and the default network."""
    from mde_ros.resources import default_model_path

    shipped = str(args.model or default_model_path())
    return [(Path(shipped).stem, shipped), ("default network (ResNet-34 U-Net 320x320)",
                                            str(default_network(args)[0]))]


def demo_frame():
    from mde_ros.synthetic import render_frame

    return render_frame(3, FRAME_W, FRAME_H)


def backend_runs() -> list[tuple[str, str, str]]:
    """(backend, device, precision) to time, each backend on its own device: tensorrt on cuda (fp32
    and fp16); torch on cuda when torch sees a GPU, else cpu; onnxruntime on cpu, and on cuda too
    when its CUDA provider is installed."""
    import onnxruntime as ort

    from mde_ros.inference.onnxruntime_backend import NAME as ONNXRUNTIME
    from mde_ros.inference.tensorrt_backend import NAME as TENSORRT
    from mde_ros.inference.torch_backend import NAME as TORCH

    runs = []
    try:
        import torch

        runs.append((TORCH, "cuda" if torch.cuda.is_available() else "cpu", "fp32"))
    except ImportError:
        runs.append((TORCH, "cpu", "fp32"))
    runs.append((ONNXRUNTIME, "cpu", "fp32"))
    if "CUDAExecutionProvider" in ort.get_available_providers():
        runs.append((ONNXRUNTIME, "cuda", "fp32"))
    runs += [(TENSORRT, "cuda", "fp32"), (TENSORRT, "cuda", "fp16")]
    return runs


def bench_backends(args: argparse.Namespace) -> None:
    import onnxruntime as ort

    from mde_ros.inference import BackendUnavailable, available_backends, spec_of
    from mde_ros.inference.onnxruntime_backend import NAME as ONNXRUNTIME
    from mde_ros.inference.registry import takes_option
    from mde_ros.modelfiles import open_backend
    from mde_ros.models.card import load_card_for
    from mde_ros.pipeline.estimator import DepthEstimator

    onnx_path, bundle_path = default_network(args)
    card = load_card_for(onnx_path)
    print(f"\n## backends: {card.architecture} at 320x320 (random weights), one {FRAME_W}x{FRAME_H} frame")
    frame = demo_frame()
    options = {"intra_op_threads": args.threads} if args.threads else {}

    print(f"{'backend':<26}{'pre ms':>9}{'network ms':>12}{'post ms':>9}{'total ms':>10}")
    for name, device, precision in backend_runs():
        label = f"{name} {device} {precision}"
        path = bundle_path if spec_of(name).loads == "pt" else onnx_path
        reason = available_backends().get(name)
        if reason:
            print(f"{label:<26}unavailable: {reason}")
            continue
        try:
            backend = open_backend(name, path, card, device=device, precision=precision,
                                   **{k: v for k, v in options.items() if takes_option(name, k)})
        except BackendUnavailable as exc:
            print(f"{label:<26}unavailable: {exc}")
            continue
        except Exception as exc:  # a backend that fails here must not end the other figures
            print(f"{label:<26}failed: {type(exc).__name__}: {exc}")
            continue
        estimator = DepthEstimator(backend, card)
        for _ in range(args.warmup):
            estimator.estimate(frame.rgb, frame.intrinsics)
        stages = {"preprocess": [], "network": [], "postprocess": []}
        for _ in range(args.iters):
            result = estimator.estimate(frame.rgb, frame.intrinsics)
            for key in stages:
                stages[key].append(result.timings[key])
        pre, net, post = (median_ms(stages[k]) for k in ("preprocess", "network", "postprocess"))
        print(f"{label:<26}{pre:>9.2f}{net:>12.2f}{post:>9.2f}{pre + net + post:>10.2f}")
        del estimator, backend

    # The project's backend vs a bare session on the same file. Alternating blocks (not single calls):
    # an idle session's thread pool keeps spinning for a while after each run and would slow the other.
    backend = open_backend(ONNXRUNTIME, onnx_path, card, **options)
    session_options = ort.SessionOptions()
    if args.threads:
        session_options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(str(onnx_path), session_options, providers=["CPUExecutionProvider"])
    batch = np.random.default_rng(0).standard_normal((1, 3, 320, 320)).astype(np.float32)
    feed = {session.get_inputs()[0].name: batch}
    ours, bare = [], []
    block = max(1, args.iters // 4)
    for _ in range(4):
        for samples, call in ((ours, lambda: backend.infer(batch)), (bare, lambda: session.run(None, feed))):
            for _ in range(args.warmup):
                call()
            samples.extend(timed(call) for _ in range(block))
    ratio = statistics.median(ours) / statistics.median(bare)
    print(f"onnxruntime backend {median_ms(ours):.2f} ms vs bare session {median_ms(bare):.2f} ms: "
          f"ratio {ratio:.3f} (goal <= 1.05)")


def bench_cloud(args: argparse.Namespace) -> None:
    from mde_ros.pipeline.geometry import pack_cloud

    print(f"\n## cloud: organised xyz cloud from {FRAME_W}x{FRAME_H} depth")
    frame = demo_frame()
    depth, intr = frame.depth, frame.intrinsics
    for _ in range(args.warmup):
        pack_cloud(depth, intr)
    ours = [timed(lambda: pack_cloud(depth, intr)) for _ in range(args.iters)]
    print(f"mde_ros pack_cloud (PointCloud2 bytes): {median_ms(ours):.2f} ms")
    try:
        import open3d as o3d
    except ImportError:
        print("open3d: not installed (optional: pip install open3d-cpu) - comparison skipped")
        return
    o3d_depth = o3d.geometry.Image(np.ascontiguousarray(depth, dtype=np.float32))
    o3d_intr = o3d.camera.PinholeCameraIntrinsic(intr.width, intr.height, intr.fx, intr.fy, intr.cx, intr.cy)

    def open3d_cloud():
        cloud = o3d.geometry.PointCloud.create_from_depth_image(
            o3d_depth, o3d_intr, depth_scale=1.0, depth_trunc=1000.0, stride=1)
        return np.asarray(cloud.points)

    for _ in range(args.warmup):
        open3d_cloud()
    theirs = [timed(open3d_cloud) for _ in range(args.iters)]
    print(f"open3d create_from_depth_image (+ points to numpy): {median_ms(theirs):.2f} ms")
    print(f"speed-up: {statistics.median(theirs) / statistics.median(ours):.1f}x (goal >= 3x)")


def run(args: argparse.Namespace) -> int:
    if args.sections is None:
        args.sections = "gpu" if str(args.device).startswith("cuda") else ",".join(CPU_SECTIONS)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        print(f"mde-ros bench: unknown sections {unknown}; choose from {SECTIONS}", file=sys.stderr)
        return 2
    if args.model is not None and not args.model.is_file():  # before minutes of other sections
        print(f"mde-ros bench: --model {args.model}: no such file", file=sys.stderr)
        return 1
    import onnxruntime

    print(f"mde-ros bench: onnxruntime {onnxruntime.__version__}, {args.iters} iterations, medians")
    from mde_ros.commands.bench_gpu import bench_gpu
    from mde_ros.commands.delivery import bench_delivery
    from mde_ros.commands.overload import bench_overload

    runners = {"backends": bench_backends, "node": bench_node, "cloud": bench_cloud, "replay": bench_replay,
               "int8": bench_int8, "gpu": bench_gpu, "overload": bench_overload, "delivery": bench_delivery}
    for section in sections:
        runners[section](args)
    return 0


def bench_node(args: argparse.Namespace) -> None:
    from mde_ros.commands.bench_node import bench_node as run_node_section

    run_node_section(args)


def bench_replay(args: argparse.Namespace) -> None:
    from mde_ros.bags.fixtures import write_fixture_bag
    from mde_ros.bags.replay import load_estimator, run_replay
    from mde_ros.inference.onnxruntime_backend import NAME as ONNXRUNTIME

    frames, width, height = 60, 320, 240
    print(f"\n## replay: a {frames}-frame {width}x{height} mcap bag, every output, onnxruntime on 1 thread "
          "(replay's default)")
    with tempfile.TemporaryDirectory(prefix="mde_bench_") as tmp:
        bag = write_fixture_bag(Path(tmp) / "in", "mcap", n_frames=frames, width=width, height=height)
        for index, (label, model) in enumerate(models_to_run(args)):
            estimator = load_estimator(model, ONNXRUNTIME)
            run_replay(bag, Path(tmp) / f"warm{index}", estimator=estimator, progress=False)
            summary = run_replay(bag, Path(tmp) / f"out{index}", estimator=estimator, progress=False)
            network_fps = 1000.0 / summary["latency_ms"]["network"]["mean"]
            print(f"{label}: replay {summary['throughput_fps']:.1f} frames/s, network alone {network_fps:.1f} "
                  f"frames/s on the same frames: ratio {summary['throughput_fps'] / network_fps:.2f} (goal >= 0.9)")


def bench_int8(args: argparse.Namespace) -> None:
    from mde_ros.fileio import write_image
    from mde_ros.quantization.calibration import load_calibration_images
    from mde_ros.quantization.check import compare_speed, fixture_accuracy
    from mde_ros.quantization.qdq import quantize_model
    from mde_ros.synthetic import render_frame

    print(f"\n## int8: Q/DQ model (mde-ros quantize --target onnxruntime, U8S8) vs fp32, onnxruntime CPU, "
          f"{len(CALIBRATION_SEEDS)} synthetic calibration scenes")
    with tempfile.TemporaryDirectory(prefix="mde_bench_int8_") as tmp:
        folder = Path(tmp) / "calibration"
        folder.mkdir()
        for seed in CALIBRATION_SEEDS:
            write_image(folder / f"scene_{seed}.png", render_frame(seed, 320, 240).rgb)
        images = load_calibration_images(folder)
        quantized = []
        for index, (label, model) in enumerate(models_to_run(args)):
            int8 = Path(tmp) / f"model{index}.int8.onnx"
            quantize_model(model, int8, images, target="onnxruntime")
            quantized.append((label, model, int8))
            speed = compare_speed(model, int8, iters=args.iters, warmup=args.warmup, threads=args.threads)
            print(f"{label}: {speed.summary()}")
        label, model, int8 = quantized[0]
        for bag, result in fixture_accuracy(model, int8).items():
            fp32, q = result["fp32"]["abs_rel"], result["int8"]["abs_rel"]
            print(f"{label} on fixture {bag}: AbsRel fp32 {fp32:.4f}, int8 {q:.4f}: difference {q - fp32:+.4f} "
                  f"(goal within 0.01); delta1 {result['fp32']['delta1']:.4f} / {result['int8']['delta1']:.4f}")
