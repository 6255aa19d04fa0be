"""`mde-ros bench`: figures for the README, measured in one run (ratios, not absolute promises).

Sections:
  backends  per-stage times (pre, network, post) of each usable backend on the default network
            (ResNet-34 U-Net, 320x320) for a 640x480 frame, and the project's onnxruntime backend
            against a bare onnxruntime session on the same ONNX file (goal: ratio <= 1.05).
  node      time outside the network for 640x480 with depth + cloud + scan + colourised output,
            messages built and published through real rclpy, relative to the network time
            (goal: <= 10 % with the shipped model on onnxruntime).
  cloud     the cloud builder against Open3D's create_from_depth_image on the same depth and K
            (goal: >= 3x faster; needs the optional open3d package).
  replay    offline bag replay throughput relative to the network-only rate on the same frames
            (goal: >= 0.9).
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

SECTIONS = ("backends", "node", "cloud", "replay")
FRAME_W, FRAME_H = 640, 480


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--iters", type=int, default=20, help="timed iterations per measurement")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--model", type=Path, default=None,
                        help="model for node/replay sections (default: the shipped demo model)")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0 = default)")


def median_ms(samples: list[float]) -> float:
    return 1000.0 * statistics.median(samples)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def demo_frame():
    from mde_ros.synthetic import render_frame

    return render_frame(3, FRAME_W, FRAME_H)


def bench_backends(args: argparse.Namespace) -> None:
    import onnxruntime as ort
    import torch

    from mde_ros.inference import BackendUnavailable, available_backends, create_backend
    from mde_ros.models import DEFAULT_MODEL, build_model, export_onnx, save_bundle
    from mde_ros.models.card import ModelCard
    from mde_ros.pipeline.estimator import DepthEstimator

    print(f"\n## backends: {DEFAULT_MODEL} at 320x320 (random weights), one {FRAME_W}x{FRAME_H} frame")
    torch.manual_seed(0)
    model = build_model(DEFAULT_MODEL).eval()
    card = ModelCard(name="bench", architecture=DEFAULT_MODEL, input_height=320, input_width=320,
                     max_depth=10.0, train_focal_px=518.8579 / 2)
    workdir = Path(tempfile.mkdtemp(prefix="mde_bench_"))
    onnx_path = export_onnx(model, card, workdir / "bench.onnx")
    bundle_path = save_bundle(workdir / "bench.pt", model, card)
    frame = demo_frame()
    options = {"intra_op_threads": args.threads} if args.threads else {}

    print(f"{'backend':<14}{'pre ms':>9}{'network ms':>12}{'post ms':>9}{'total ms':>10}")
    for name, path in (("torch", bundle_path), ("onnxruntime", onnx_path), ("tensorrt", onnx_path)):
        reason = available_backends().get(name)
        if reason:
            print(f"{name:<14}unavailable: {reason}")
            continue
        try:
            backend = create_backend(name, path, card, **(options if name == "onnxruntime" else {}))
        except BackendUnavailable as exc:
            print(f"{name:<14}unavailable: {exc}")
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
        print(f"{name:<14}{pre:>9.2f}{net:>12.2f}{post:>9.2f}{pre + net + post:>10.2f}")

    # Project backend vs a bare session on the same file, interleaved so drift hits both equally.
    backend = create_backend("onnxruntime", onnx_path, card, **options)
    session_options = ort.SessionOptions()
    if args.threads:
        session_options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(str(onnx_path), session_options, providers=["CPUExecutionProvider"])
    batch = np.random.default_rng(0).standard_normal((1, 3, 320, 320)).astype(np.float32)
    feed = {session.get_inputs()[0].name: batch}
    for _ in range(args.warmup):
        backend.infer(batch)
        session.run(None, feed)
    ours, bare = [], []
    for _ in range(args.iters):
        ours.append(timed(lambda: backend.infer(batch)))
        bare.append(timed(lambda: session.run(None, feed)))
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
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        print(f"mde-ros bench: unknown sections {unknown}; choose from {SECTIONS}", file=sys.stderr)
        return 2
    import onnxruntime

    print(f"mde-ros bench: onnxruntime {onnxruntime.__version__}, {args.iters} iterations, medians")
    runners = {"backends": bench_backends, "node": bench_node, "cloud": bench_cloud, "replay": bench_replay}
    for section in sections:
        runners[section](args)
    return 0


def bench_node(args: argparse.Namespace) -> None:
    """The real DepthNode in-process, fed one frame at a time, every output subscribed."""
    import threading

    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node
    from sensor_msgs.msg import CameraInfo, Image, LaserScan, PointCloud2
    from std_msgs.msg import Header

    from mde_ros.pipeline.outputs import pack_image
    from mde_ros.ros import messages
    from mde_ros.ros.depth_node import DepthNode

    model = str(args.model) if args.model else ""
    print(f"\n## node: {FRAME_W}x{FRAME_H} rgb8 in; depth + camera_info + points + scan + colorized out; "
          f"model {model or 'shipped default'}, onnxruntime")
    frame = demo_frame()
    rclpy.init()
    overrides = [rclpy.parameter.Parameter("model", value=model),
                 rclpy.parameter.Parameter("backend", value="onnxruntime")]
    node = DepthNode(parameter_overrides=overrides)
    per_frame: list[dict[str, float]] = []
    record = node._stats.frame_published  # measurement hook: keep each frame's stage timings

    def recording(timings, *rest):
        per_frame.append(dict(timings))
        record(timings, *rest)

    node._stats.frame_published = recording
    client = Node("mde_bench_client")
    received = {"depth": threading.Event(), "points": threading.Event(), "scan": threading.Event(),
                "depth/colorized": threading.Event()}
    for topic, msg_type in (("depth", Image), ("points", PointCloud2), ("scan", LaserScan),
                            ("depth/colorized", Image)):
        client.create_subscription(msg_type, topic, lambda _m, t=topic: received[t].set(), 10)
    image_pub = client.create_publisher(Image, "image", 10)
    info_pub = client.create_publisher(CameraInfo, "camera_info", 10)
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    executor.add_node(client)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and (image_pub.get_subscription_count() == 0
                                               or node.count_publishers("image") == 0):
            time.sleep(0.05)
        time.sleep(0.5)  # let the node's publishers and the client's subscriptions discover each other
        for i in range(args.warmup + args.iters):
            header = Header(frame_id="camera_optical_frame")
            header.stamp.sec, header.stamp.nanosec = 1000 + i, 0
            for event in received.values():
                event.clear()
            info_pub.publish(messages.camera_info_msg(frame.intrinsics, header))
            image_pub.publish(messages.image_msg(pack_image(frame.rgb, "rgb8"), header))
            if not all(event.wait(30.0) for event in received.values()):
                raise RuntimeError("the node did not publish every output within 30 s")
    finally:
        executor.shutdown()
        node.destroy_node()
        client.destroy_node()
        rclpy.utilities.try_shutdown()
    timed_frames = per_frame[args.warmup:]
    stages = [k for k in timed_frames[0] if k != "queue"]
    medians = {k: median_ms([f[k] for f in timed_frames]) for k in stages}
    network = medians.pop("network")
    overhead = sum(medians.values())
    print("median ms per frame: network {:.2f}; outside the network {:.2f} ({})".format(
        network, overhead, ", ".join(f"{k} {v:.2f}" for k, v in medians.items())))
    print(f"overhead / network = {100 * overhead / network:.1f} % (goal <= 10 %)")


def bench_replay(args: argparse.Namespace) -> None:
    from mde_ros.bags.fixtures import FIXTURE_DIR, fixture_name
    from mde_ros.bags.replay import load_estimator, run_replay

    bag = Path(FIXTURE_DIR) / fixture_name("mcap")
    print(f"\n## replay: {bag.name} through the shipped model on onnxruntime (1 thread, as replay defaults)")
    estimator = load_estimator(args.model, "onnxruntime")
    with tempfile.TemporaryDirectory(prefix="mde_bench_") as tmp:
        run_replay(bag, Path(tmp) / "warm", estimator=estimator, progress=False)  # warm caches and the session
        summary = run_replay(bag, Path(tmp) / "out", estimator=estimator, progress=False)
    network_fps = 1000.0 / summary["latency_ms"]["network"]["mean"]
    print(f"{summary['processed']} frames: replay {summary['throughput_fps']:.1f} frames/s, network alone "
          f"{network_fps:.1f} frames/s on the same frames: ratio {summary['throughput_fps'] / network_fps:.2f} "
          "(goal >= 0.9)")
