"""Issue 11's figures on a GPU machine, in one run: see tools/h200/README.md.

Parts (each one guarded: a failing part is reported and the others still run):
  env        GPU, driver, torch/CUDA/numpy versions, CPU cores
  gpu        `mde-ros bench --device cuda` figures (commands/bench_gpu.py): per precision the
             project's backend infer, numpy-path and device-path stage medians, `estimate` end to
             end, bare channels_last CUDA-graph run, the ratio, batch-32 throughput
  accuracy   the fixture bags' images (test/fixtures/bags, read with the project's bag reader on
             `rosbags`; if rosbags is missing, the same frames re-rendered from their seed): depth
             of the device path (fp16, bf16, fp32 on the GPU) vs the fp32 CPU numpy path, max |diff|
  node       the node's per-frame work: its frame step (pipeline.frame_step.run_frame: estimate on the
             device path + depth image + cloud + scan + colourised, built on the device where the depth
             is) + message packing, against `estimate` alone (issue 20: end to end <= 2x)
             (rclpy messages if rclpy is importable, else rosbags CDR serialisation, else none)
  fused_onnx the fused ONNX (uint8 image in, depth at camera resolution out) exported at 640x480 and
             run on onnxruntime's CPU provider vs the torch device path on the same frame
Writes OUT/bench_h200.json and prints a figures table. `--device cpu` is the dry run used to
check this script on machines without a GPU (tiny network, few iterations).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GOALS = {"network_vs_bare_fp16_max": 1.25, "estimate_fp16_ms_max": 2.0, "depth_diff_fp16_m_max": 1e-2}


class Budget:
    """Wall-clock guard: parts that would start too late are skipped, not half-run."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def part_env(args, results: dict) -> dict:
    import torch

    env = {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
           "torch_cuda": torch.version.cuda, "cpu_cores": os.cpu_count(),
           "cuda_available": torch.cuda.is_available(), "device_arg": args.device}
    try:
        import cv2

        env["opencv"] = cv2.__version__
    except ImportError:
        env["opencv"] = None
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
        env["gpu_capability"] = list(torch.cuda.get_device_capability(0))
        env["cudnn"] = torch.backends.cudnn.version()
    try:
        query = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        env["nvidia_smi"] = query.stdout.strip() or query.stderr.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        env["nvidia_smi"] = f"unavailable: {exc}"
    for module in ("onnxruntime", "onnx", "rosbags", "rclpy"):
        try:
            env[module] = getattr(__import__(module), "__version__", "present")
        except Exception as exc:  # noqa: BLE001 - report, do not fail
            env[module] = f"missing ({type(exc).__name__})"
    return env


def part_gpu(args, results: dict) -> dict:
    from mde_ros.commands.bench_gpu import format_gpu_table, run_gpu_bench

    precisions = ("fp32", "fp16", "bf16") if args.device.startswith("cuda") else ("fp32",)
    gpu = run_gpu_bench(args.device, precisions, args.iters, args.warmup, arch=args.arch, size=args.size,
                        log=lambda line: print(line, flush=True))
    print(format_gpu_table(gpu), flush=True)
    return gpu


def fixture_frames(limit: int) -> tuple[list, str]:
    """[(rgb, Intrinsics)] of the fixture bags' images, and where they came from."""
    from mde_ros.bags import fixtures

    try:
        from mde_ros.bags.messages import rgb_from_msg
        from mde_ros.pipeline.intrinsics import intrinsics_from_camera_info

        frames, sources = [], []
        for storage in ("mcap", "sqlite3"):
            bag = fixtures.FIXTURE_DIR / fixtures.fixture_name(storage)
            images = fixtures.read_topic(bag, fixtures.IMAGE_TOPIC)
            infos = {(m.header.stamp.sec, m.header.stamp.nanosec): m
                     for _, m, _ in fixtures.read_topic(bag, fixtures.CAMERA_INFO_TOPIC)}
            for _, msg, _ in images[:limit]:
                rgb = rgb_from_msg(msg, "sensor_msgs/msg/Image")
                info = infos[(msg.header.stamp.sec, msg.header.stamp.nanosec)]
                frames.append((rgb, intrinsics_from_camera_info(info, rgb.shape[1], rgb.shape[0])))
            sources.append(f"{bag.name} ({len(images[:limit])} images)")
        return frames, "fixture bags read with rosbags: " + ", ".join(sources)
    except ImportError as exc:
        from mde_ros.synthetic import approach_sequence

        seq = approach_sequence(fixtures.SEED, n_frames=fixtures.N_FRAMES, width=fixtures.WIDTH,
                                height=fixtures.HEIGHT)[:limit]
        return ([(f.rgb, f.intrinsics) for f in seq],
                f"rosbags not importable ({exc}); the fixture frames re-rendered from their seed")


def part_accuracy(args, results: dict) -> dict:
    import torch

    from mde_ros.commands.bench_gpu import default_network_bundle
    from mde_ros.inference import create_backend
    from mde_ros.pipeline.estimator import DepthEstimator, EstimatorConfig

    frames, source = fixture_frames(args.frames)
    out: dict = {"source": source, "frames": len(frames), "reference": "torch backend, CPU, fp32, numpy pre/post"}
    with tempfile.TemporaryDirectory(prefix="mde_h200_acc_") as tmp:
        _, card, bundle = default_network_bundle(Path(tmp), args.arch, args.size)
        cpu = DepthEstimator(create_backend("torch", bundle, card, device="cpu"), card)
        reference = [cpu.estimate(rgb, intr).depth for rgb, intr in frames]
        precisions = ("fp16", "bf16", "fp32") if args.device.startswith("cuda") else ("fp32",)
        for precision in precisions:
            try:
                backend = create_backend("torch", bundle, card, device=args.device, precision=precision,
                                         fast_path=True)
                estimator = DepthEstimator(backend, card, EstimatorConfig(device_pipeline=True))
                worst, nan_mismatch, means = 0.0, 0, []
                for (rgb, intr), ref in zip(frames, reference):
                    got = estimator.estimate(rgb, intr).depth
                    both = np.isfinite(got) & np.isfinite(ref)
                    nan_mismatch += int(np.count_nonzero(np.isfinite(got) != np.isfinite(ref)))
                    diff = np.abs(got[both] - ref[both])
                    worst = max(worst, float(diff.max()) if diff.size else 0.0)
                    means.append(float(diff.mean()) if diff.size else 0.0)
                out[precision] = {"max_abs_diff_m": worst, "mean_abs_diff_m": statistics.mean(means),
                                  "nan_mismatch_pixels": nan_mismatch,
                                  "depth_range_m": [float(np.nanmin(reference)), float(np.nanmax(reference))]}
                del estimator, backend
            except Exception as exc:  # noqa: BLE001
                out[precision] = {"error": f"{type(exc).__name__}: {exc}"}
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
    return out


def _packers():
    """(label, fn(outputs, header_stamp) -> packed messages) for this machine's message layer."""
    try:
        from std_msgs.msg import Header

        from mde_ros.ros import messages as ros_messages

        def pack_rclpy(outputs, index):
            header = Header(frame_id="camera_color_optical_frame")
            header.stamp.sec = index
            msgs = [ros_messages.image_msg(outputs.depth, header)]
            if outputs.depth_intrinsics is not None:
                msgs.append(ros_messages.camera_info_msg(outputs.depth_intrinsics, header))
            if outputs.cloud is not None:
                msgs.append(ros_messages.point_cloud_msg(outputs.cloud, header))
            if outputs.scan is not None:
                msgs.append(ros_messages.laser_scan_msg(outputs.scan, header))
            if outputs.colorized is not None:
                msgs.append(ros_messages.image_msg(outputs.colorized, header))
            return msgs

        return "rclpy message objects (mde_ros.ros.messages), not published", pack_rclpy
    except ImportError:
        pass
    try:
        from mde_ros.bags.io import serialize, typestore
        from mde_ros.bags.messages import make_header, output_messages

        typestore()  # imports rosbags: fails here, not inside the timed loop

        def pack_cdr(outputs, index):
            header = make_header(index, 0, "camera_color_optical_frame")
            return [serialize(m) for m in output_messages(outputs, header).values()]

        return "rclpy not available: CDR bytes via rosbags (mde_ros.bags.messages + io.serialize)", pack_cdr
    except ImportError as exc:
        return f"neither rclpy nor rosbags importable ({exc}): no message packing", lambda outputs, index: None


def part_node(args, results: dict) -> dict:
    from mde_ros.commands.bench_gpu import FRAME_H, FRAME_W, default_network_bundle
    from mde_ros.inference import create_backend
    from mde_ros.pipeline.estimator import DepthEstimator, EstimatorConfig
    from mde_ros.pipeline.frame_step import StepConfig, run_frame
    from mde_ros.pipeline.outputs import METRIC_KEYS, OutputConfig
    from mde_ros.synthetic import render_frame

    frame = render_frame(3, FRAME_W, FRAME_H)
    precision = "fp16" if args.device.startswith("cuda") else "fp32"
    label, pack = _packers()
    out: dict = {"frame": f"{FRAME_W}x{FRAME_H} rgb8", "precision": precision, "packing": label,
                 "outputs": "depth 32FC1 + depth camera_info + organised xyzrgb cloud + scan + colourised",
                 "cpu_cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="mde_h200_node_") as tmp:
        _, card, bundle = default_network_bundle(Path(tmp), args.arch, args.size)
        backend = create_backend("torch", bundle, card, device=args.device, precision=precision, fast_path=True)
        estimator = DepthEstimator(backend, card, EstimatorConfig(device_pipeline=True))
        step_config = StepConfig(OutputConfig(), estimator.min_depth, estimator.max_depth)
        stages: dict[str, list[float]] = {}
        totals, alone = [], []
        for index in range(args.warmup + args.iters):
            start = time.perf_counter()
            estimator.estimate(frame.rgb, frame.intrinsics)  # `estimate` alone: the goal's yardstick
            began = time.perf_counter()
            # the node's own frame step (run_frame): estimate + the outputs, built on the device when the
            # depth is there (DepthResult.device), then the messages
            step = run_frame(estimator, frame.rgb, frame.intrinsics, METRIC_KEYS, step_config)
            after_outputs = time.perf_counter()
            pack(step.outputs, index)
            done = time.perf_counter()
            if index < args.warmup:
                continue
            alone.append(began - start)
            totals.append(done - began)
            row = {"frame_step": after_outputs - began, "packing": done - after_outputs,
                   **{f"outputs.{k}": v for k, v in step.outputs.timings.items()}}
            for key, value in row.items():
                stages.setdefault(key, []).append(value)
        out["device_outputs"] = type(step.result.device).__name__ if step.result.device is not None else None
        out["median_ms"] = {k: round(1000 * statistics.median(v), 4) for k, v in stages.items()}
        out["estimate_alone_ms"] = round(1000 * statistics.median(alone), 4)
        out["end_to_end_ms"] = round(1000 * statistics.median(totals), 4)
        out["end_to_end_vs_estimate"] = round(statistics.median(totals) / statistics.median(alone), 3)
        out["frames_per_s"] = round(1.0 / statistics.median(totals), 1)
    return out


def part_fused_onnx(args, results: dict) -> dict:
    import onnxruntime as ort

    from mde_ros.commands.bench_gpu import FRAME_H, FRAME_W, default_network_bundle
    from mde_ros.inference import create_backend
    from mde_ros.inference.fused import export_fused_onnx
    from mde_ros.pipeline.estimator import DepthEstimator, EstimatorConfig
    from mde_ros.synthetic import render_frame

    frame = render_frame(3, FRAME_W, FRAME_H)
    with tempfile.TemporaryDirectory(prefix="mde_h200_onnx_") as tmp:
        model, card, bundle = default_network_bundle(Path(tmp), args.arch, args.size)
        start = time.perf_counter()
        path = export_fused_onnx(model, card, Path(tmp) / "model.fused.onnx", FRAME_H, FRAME_W)
        export_s = time.perf_counter() - start
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        estimator = DepthEstimator(create_backend("torch", bundle, card, device=args.device, fast_path=True),
                                   card, EstimatorConfig(device_pipeline=True))
        result = estimator.estimate(frame.rgb, frame.intrinsics)
        feed = {"image": frame.rgb[None], "rescale": np.array([result.rescale], np.float32)}
        start = time.perf_counter()
        (depth,) = session.run(None, feed)
        ort_ms = 1000 * (time.perf_counter() - start)
        diff = np.abs(depth[0] - result.depth)
        return {"export_s": round(export_s, 2), "size_mb": round(path.stat().st_size / 2**20, 1),
                "onnxruntime_cpu_ms_one_frame": round(ort_ms, 2), "providers": ort.get_available_providers(),
                "max_abs_diff_vs_torch_device_fp32_m": float(np.nanmax(diff))}


PARTS = (("env", part_env, 0), ("gpu", part_gpu, 20), ("accuracy", part_accuracy, 10),
         ("node", part_node, 8), ("fused_onnx", part_fused_onnx, 20))


def verdicts(results: dict) -> dict:
    """Each goal of issue 11 item 4 with its figure and whether it is met (None: not measured)."""
    gpu = results.get("gpu") or {}
    precisions = gpu.get("precisions", {}) if isinstance(gpu, dict) else {}
    fp16, fp32 = precisions.get("fp16", {}), precisions.get("fp32", {})

    def device(entry, key):
        return entry.get("project", {}).get("device_path", {}).get(key)

    out = {}
    ratio = fp16.get("network_vs_bare")
    out["network stage / bare CUDA graph, fp16 (<= 1.25)"] = (ratio, None if ratio is None else ratio <= 1.25)
    est = device(fp16, "estimate_ms")
    out["estimate end to end fp16, ms (<= 2.0)"] = (est, None if est is None else est <= 2.0)
    est32 = device(fp32, "estimate_ms")
    faster = None if est is None or est32 is None else est < est32
    out["fp16 faster than fp32 (estimate ms fp16 / fp32)"] = (f"{est} / {est32}", faster)
    net16, net32 = device(fp16, "network_ms"), device(fp32, "network_ms")
    out["network stage ms fp16 / fp32"] = (f"{net16} / {net32}",
                                           None if net16 is None or net32 is None else net16 < net32)
    acc = (results.get("accuracy") or {}).get("fp16", {})
    diff = acc.get("max_abs_diff_m") if isinstance(acc, dict) else None
    out["depth max |fp16 GPU - fp32 CPU|, m (<= 1e-2)"] = (diff, None if diff is None else diff <= 1e-2)
    node = results.get("node") or {}
    out["node per-frame work end to end, ms (CPU cores + GPU estimate)"] = (node.get("end_to_end_ms"), None)
    ratio = node.get("end_to_end_vs_estimate")
    out["node end to end / estimate alone (<= 2, issue 20)"] = (ratio, None if ratio is None else ratio <= 2.0)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "h200_out")))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--arch", default=None, help="default: unet_resnet34 (cuda), unet_resnet18 (cpu dry run)")
    parser.add_argument("--size", type=int, default=None, help="network input side (default 320; 64 on cpu)")
    parser.add_argument("--iters", type=int, default=None, help="default 200 on cuda, 2 on cpu")
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--frames", type=int, default=20, help="fixture images per bag for the accuracy part")
    parser.add_argument("--budget", type=float, default=140.0, help="seconds for the whole run")
    parser.add_argument("--parts", default=",".join(name for name, _, _ in PARTS))
    args = parser.parse_args(argv)
    on_cuda = args.device.startswith("cuda")
    args.arch = args.arch or ("unet_resnet34" if on_cuda else "unet_resnet18")
    args.size = args.size or (320 if on_cuda else 64)
    args.iters = args.iters or (200 if on_cuda else 2)
    args.warmup = args.warmup if args.warmup is not None else (20 if on_cuda else 1)
    if not on_cuda:
        args.frames = min(args.frames, 3)
    args.out.mkdir(parents=True, exist_ok=True)
    budget = Budget(args.budget)
    wanted = {p.strip() for p in args.parts.split(",")}
    results: dict = {"command": " ".join([sys.executable, *sys.argv]), "started_utc": time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "settings": {k: str(v) for k, v in vars(args).items()},
        "goals": GOALS, "errors": {}, "seconds": {}}
    for name, part, needs in PARTS:
        if name not in wanted:
            continue
        if budget.left() < needs:
            results["errors"][name] = f"skipped: {budget.left():.0f} s left, the part needs ~{needs} s"
            print(f"== {name}: skipped (time budget)", flush=True)
            continue
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        try:
            results[name] = part(args, results)
            if name != "gpu":
                print(json.dumps(results[name], indent=1, default=str), flush=True)
        except Exception as exc:  # noqa: BLE001 - one failing part must not end the run
            results["errors"][name] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
            print(f"== {name} FAILED: {type(exc).__name__}: {exc}", flush=True)
        results["seconds"][name] = round(time.perf_counter() - start, 1)
        # Write after every part: a run killed later still leaves what it measured.
        (args.out / "bench_h200.json").write_text(json.dumps(results, indent=1, default=str))
    results["verdicts"] = {k: {"figure": v[0], "met": v[1]} for k, v in verdicts(results).items()}
    (args.out / "bench_h200.json").write_text(json.dumps(results, indent=1, default=str))
    print("\n== figures (issue 11 goals)")
    env = results.get("env") or {}
    print(f"GPU: {env.get('nvidia_smi', '?')} | torch {env.get('torch', '?')} CUDA {env.get('torch_cuda', '?')} | "
          f"{env.get('cpu_cores', '?')} CPU cores")
    for goal, (figure, met) in verdicts(results).items():
        mark = {True: "met", False: "NOT met", None: "-"}[met]
        print(f"  {goal:<66} {figure!s:>22}  {mark}")
    for name, error in results["errors"].items():
        print(f"  part {name}: {error.splitlines()[0]}")
    print(f"wrote {args.out / 'bench_h200.json'} ({sum(results['seconds'].values()):.0f} s of parts)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
