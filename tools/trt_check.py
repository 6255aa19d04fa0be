#!/usr/bin/env python3
"""What only a machine with TensorRT and an NVIDIA GPU can show about the tensorrt backend.

    pip install tensorrt cuda-python onnxconverter-common   # or JetPack's TensorRT + pip install cuda-python
    PYTHONPATH=. python tools/trt_check.py [--model M.onnx] [--out trt_check.json] [--skip-bench]

Each check prints PASS / FAIL / SKIP with its figures; the exit code is the number of failures.
Checks (all with a private engine cache folder, so nothing of the user's is touched):
  environment   TensorRT / cuda-python versions, GPU identity (compute capability, SMs, memory, CUDA, driver)
  fp32 fp16 int8  strongly typed engine built from the model / its fp16 model / its Q/DQ model (S8S8,
                calibrated on synthetic scenes), output vs onnxruntime CPU fp32 (mean relative
                difference), median network ms, second start loads the cached engine (no rebuild)
  weak          10.x: weakly typed fp16 (BuilderFlag.FP16) builds; 11.x: refused as BackendUnavailable
  timing-cache  a damaged timing cache is replaced during a rebuild, never fatal; engine written
  two-outputs   a two-output ONNX: every output bound and copied back
  dla           only where TensorRT sees DLA cores: fp16 on DLA core 0, static profile, GPU fallback
  ort-trt-ep    onnxruntime's TensorRT provider (if installed): profile shapes, versioned cache folder,
                first frame not paying for the engine build
  fused         (needs torch for the export) a small network's model.fused.onnx for 640x480: the TensorRT
                fused engine (uint8 input, static shapes) and onnxruntime CUDA / TensorRT EP fused sessions
                with device_pipeline vs the numpy path on onnxruntime CPU (max |diff| m), median estimate ms;
                the outputs built on the device (inference.trt_outputs / ort_outputs) vs numpy's builders on
                the same depth (NaN/Inf pattern, max |diff| <= 1e-4 m, colour <= 1 level), frame step ms
  bench         `mde-ros bench --sections backends` rows for every backend on its own device
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS: list[dict] = []


def report(name: str, status: str, **figures) -> None:
    RESULTS.append({"check": name, "status": status, **figures})
    details = ", ".join(f"{k}={v}" for k, v in figures.items())
    print(f"[{status}] {name}: {details}", flush=True)


def check(name):
    def wrap(fn):
        def run(*args, **kwargs):
            try:
                fn(*args, **kwargs)
            except Exception as exc:  # a failing check must not hide the others
                report(name, "FAIL", error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc(limit=4))
        return run
    return wrap


def median_ms(fn, iters: int = 30, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return round(1000 * statistics.median(samples), 3)


def reference(model: Path, batch: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: batch})[0]


def rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a - b) / np.maximum(np.abs(b), 1e-3)))


def network_batch(card, n: int = 1) -> np.ndarray:
    from mde_ros.pipeline.preprocess import preprocess
    from mde_ros.synthetic import render_frame

    return np.concatenate([preprocess(render_frame(40 + i, 320, 240).rgb, card)[0] for i in range(n)])


@check("environment")
def environment() -> None:
    import tensorrt as trt

    from mde_ros.inference.cuda_memory import device_info, import_cudart
    from mde_ros.inference.tensorrt_backend import tensorrt_unavailable_reason
    from mde_ros.inference.tensorrt_build import TrtFeatures

    reason = tensorrt_unavailable_reason()
    cudart = import_cudart()
    gpu = device_info(cudart, 0)
    features = TrtFeatures.probe(trt)
    from importlib import metadata

    versions = {}
    for package in ("cuda-python", "cuda-bindings", "onnxruntime", "onnxruntime-gpu", "onnxconverter-common"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    report("environment", "FAIL" if reason else "PASS", tensorrt=trt.__version__, gpu=gpu.to_dict(),
           features=features.__dict__, packages=versions, unavailable=reason)


@check("precision")
def precision_check(model: Path, card, precision: str, options: dict) -> None:
    from mde_ros.modelfiles import open_backend

    batch = network_batch(card)
    started = time.perf_counter()
    backend = open_backend("tensorrt", model, card, device="cuda", precision=precision, **options)
    build_s = time.perf_counter() - started
    engine = backend.paths.engine
    mtime = engine.stat().st_mtime_ns
    out = backend.infer(batch)
    ref = reference(model, batch)
    ms = median_ms(lambda: backend.infer(batch))
    info = backend.describe()
    started = time.perf_counter()
    again = open_backend("tensorrt", model, card, device="cuda", precision=precision, **options)
    load_s = time.perf_counter() - started
    cached = engine.stat().st_mtime_ns == mtime and again.paths.engine == engine
    diff = rel_diff(out, ref)
    limits = {"fp32": 0.01, "fp16": 0.02, "int8": 0.10}
    ok = cached and np.isfinite(out).all() and diff <= limits[precision] and info["strongly_typed"]
    report(precision, "PASS" if ok else "FAIL", onnx=info["onnx"], strongly_typed=info["strongly_typed"],
           builder_flags=info["builder_flags"], first_start_s=round(build_s, 1), cached_start_s=round(load_s, 2),
           engine_reused=cached, network_ms=ms, mean_rel_diff_vs_ort_fp32=round(diff, 5), limit=limits[precision])


@check("weak")
def weak_typing(model: Path, card) -> None:
    import tensorrt as trt

    from mde_ros.inference import BackendUnavailable
    from mde_ros.modelfiles import open_backend

    major = int(trt.__version__.split(".")[0])
    try:
        backend = open_backend("tensorrt", model, card, device="cuda", precision="fp16", typing="weak")
    except BackendUnavailable as exc:
        report("weak", "PASS" if major >= 11 else "FAIL", tensorrt=trt.__version__, refused=str(exc)[:160])
        return
    batch = network_batch(card)
    diff = rel_diff(backend.infer(batch), reference(model, batch))
    ok = major < 11 and not backend.describe()["strongly_typed"] and diff < 0.02
    report("weak", "PASS" if ok else "FAIL", tensorrt=trt.__version__, flags=backend.describe()["builder_flags"],
           mean_rel_diff_vs_ort_fp32=round(diff, 5))


@check("timing-cache")
def timing_cache(model: Path, card) -> None:
    from mde_ros.inference.tensorrt_backend import TensorRTBackend

    backend = TensorRTBackend(model, card, "cuda", "fp32")
    cache = backend.paths.timing_cache
    before = cache.read_bytes() if cache.exists() else b""
    cache.write_bytes(b"\x00 a damaged timing cache")
    again = TensorRTBackend(model, card, "cuda", "fp32", rebuild=True)
    after = cache.read_bytes() if cache.exists() else b""
    ok = again.paths.engine.is_file() and after not in (b"", b"\x00 a damaged timing cache")
    report("timing-cache", "PASS" if ok else "FAIL", had_cache=bool(before), replaced=ok, engine=str(again.paths.engine))


@check("two-outputs")
def two_outputs(tmp: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from mde_ros.inference.tensorrt_backend import TensorRTBackend
    from mde_ros.models.card import ModelCard

    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((1, 3, 3, 3)).astype(np.float32), "w")
    two = numpy_helper.from_array(np.array(2.0, np.float32), "two")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w"], ["raw"], pads=[1, 1, 1, 1]),
         helper.make_node("Softplus", ["raw"], ["depth"]), helper.make_node("Mul", ["depth", "two"], ["confidence"])],
        "two_outputs", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("depth", TensorProto.FLOAT, ["n", 1, "h", "w"]),
         helper.make_tensor_value_info("confidence", TensorProto.FLOAT, ["n", 1, "h", "w"])], [weight, two])
    path = tmp / "two_outputs.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    card = ModelCard(name="two", architecture="external", input_height=64, input_width=96)
    card.save(path.with_name("two_outputs.card.json"))
    backend = TensorRTBackend(path, card, "cuda", "fp32")
    batch = np.random.default_rng(1).standard_normal((1, 3, 64, 96)).astype(np.float32)
    outputs = backend.infer_all(batch)
    ok = set(outputs) == {"depth", "confidence"} and np.allclose(outputs["confidence"], 2 * outputs["depth"], atol=1e-4)
    report("two-outputs", "PASS" if ok else "FAIL", outputs=sorted(outputs))


@check("dla")
def dla(model: Path, card) -> None:
    import tensorrt as trt

    from mde_ros.modelfiles import open_backend

    cores = trt.Builder(trt.Logger(trt.Logger.WARNING)).num_DLA_cores
    if not cores:
        report("dla", "SKIP", reason="TensorRT sees no DLA cores here (Jetson AGX Orin / Orin NX only)")
        return
    backend = open_backend("tensorrt", model, card, device="cuda", precision="fp16", dla_core=0)
    info = backend.describe()
    batch = network_batch(card)
    diff = rel_diff(backend.infer(batch), reference(model, batch))
    ok = backend._runtime.DLA_core == 0 and info["dla_gpu_fallback"] and diff < 0.03
    report("dla", "PASS" if ok else "FAIL", cores=cores, profile=info["profile"], flags=info["builder_flags"],
           network_ms=median_ms(lambda: backend.infer(batch), iters=10), mean_rel_diff_vs_ort_fp32=round(diff, 5))


@check("ort-trt-ep")
def ort_trt_ep(model: Path, card) -> None:
    import onnxruntime as ort

    from mde_ros.inference import create_backend

    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        report("ort-trt-ep", "SKIP", reason=f"onnxruntime {ort.__version__} has no TensorrtExecutionProvider")
        return
    started = time.perf_counter()
    backend = create_backend("onnxruntime", model, card, device="cuda", trt_provider=True)
    create_s = time.perf_counter() - started
    batch = network_batch(card)
    started = time.perf_counter()
    backend.infer(batch)
    first_ms = 1000 * (time.perf_counter() - started)
    ms = median_ms(lambda: backend.infer(batch))
    options = dict(backend._session.get_provider_options().get("TensorrtExecutionProvider", {}))
    ok = "ort" in options.get("trt_engine_cache_path", "") and options.get("trt_profile_opt_shapes")
    report("ort-trt-ep", "PASS" if ok else "FAIL", create_s=round(create_s, 1), first_frame_ms=round(first_ms, 1),
           network_ms=ms, cache=options.get("trt_engine_cache_path"), profile=options.get("trt_profile_opt_shapes"))


@check("fused")
def fused(tmp: Path) -> None:
    try:
        import torch
    except ImportError:
        report("fused", "SKIP", reason="the fused export needs torch")
        return
    import onnxruntime as ort

    from mde_ros.inference import create_backend
    from mde_ros.models import build_model, export_onnx
    from mde_ros.models.card import ModelCard
    from mde_ros.inference.fused import export_fused_onnx, fused_path_for
    from mde_ros.pipeline.estimator import DepthEstimator, EstimatorConfig
    from mde_ros.synthetic import render_frame

    torch.manual_seed(0)
    card = ModelCard(name="fused-check", architecture="unet_resnet18", input_height=240, input_width=320,
                     train_focal_px=250.0)
    network = build_model(card.architecture).eval()
    plain = export_onnx(network, card, tmp / "fused_check.onnx")
    export_fused_onnx(network, card, fused_path_for(plain), 480, 640)
    frame = render_frame(7, 640, 480)
    want = DepthEstimator(create_backend("onnxruntime", plain, card), card).estimate(frame.rgb, frame.intrinsics)
    figures = {}
    runs = [("tensorrt", {})]
    providers = ort.get_available_providers()
    if "CUDAExecutionProvider" in providers:
        runs.append(("onnxruntime", {}))
    if "TensorrtExecutionProvider" in providers:
        runs.append(("onnxruntime", {"trt_provider": True}))
    ok = True
    for name, options in runs:
        label = name + ("-trt-ep" if options else "")
        backend = create_backend(name, plain, card, device="cuda", **options)
        estimator = DepthEstimator(backend, card, EstimatorConfig(device_pipeline=True))
        got = estimator.estimate(frame.rgb, frame.intrinsics)
        used = backend.fused_pipeline() is not None
        diff = float(np.nanmax(np.abs(got.depth - want.depth)))
        same_nan = bool((np.isnan(got.depth) == np.isnan(want.depth)).all())
        outputs = device_outputs(estimator, frame)
        ok = ok and used and same_nan and diff < 1e-2 and outputs["ok"]
        figures[label] = {"fused_used": used, "max_abs_diff_m": round(diff, 6), "nan_agree": same_nan,
                          "estimate_ms": median_ms(lambda: estimator.estimate(frame.rgb, frame.intrinsics), iters=20),
                          "outputs": outputs}
    report("fused", "PASS" if ok else "FAIL", **figures)


def device_outputs(estimator, frame) -> dict:
    """Issue 20 item 1 on a GPU: the launch defaults' outputs built where the fused depth is (DepthResult.device)
    against numpy's builders on the same depth (same NaN / +-Inf pattern, within 1e-4 m; colour within 1
    level), and the median ms of the whole frame step with device outputs vs the numpy builders alone."""
    from mde_ros.pipeline.frame_step import StepConfig, run_frame
    from mde_ros.pipeline.geometry import unpack_cloud
    from mde_ros.pipeline.outputs import METRIC_KEYS, FrameData, OutputConfig, build_parts

    config = OutputConfig()
    step_config = StepConfig(config, estimator.min_depth, estimator.max_depth)
    step = run_frame(estimator, frame.rgb, frame.intrinsics, METRIC_KEYS, step_config)
    if step.result.device is None:
        return {"ok": False, "device_frame": None, "why": "no device frame (see the warnings above)"}
    want = build_parts(FrameData(step.result, frame.rgb, config, estimator.min_depth, estimator.max_depth),
                       METRIC_KEYS)
    got = step.outputs

    def compare(a, b) -> tuple[bool, float]:
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        pattern = a.shape == b.shape and all(np.array_equal(f(a), f(b)) for f in (np.isnan, np.isposinf, np.isneginf))
        finite = np.isfinite(b)
        return pattern, float(np.abs(a[finite] - b[finite]).max()) if pattern and finite.any() else 0.0

    results = {"depth": compare(np.frombuffer(got.depth.data, "<f4"), np.frombuffer(want.depth.data, "<f4")),
               "cloud_xyz": compare(unpack_cloud(got.cloud)[0], unpack_cloud(want.cloud)[0]),
               "scan": compare(got.scan.ranges, want.scan.ranges)}
    levels = int(np.abs(np.frombuffer(got.colorized.data, np.uint8).astype(int)
                        - np.frombuffer(want.colorized.data, np.uint8).astype(int)).max())
    ok = all(pattern and diff <= 1e-4 for pattern, diff in results.values()) and levels <= 1
    numpy_frame = FrameData(step.result, frame.rgb, config, estimator.min_depth, estimator.max_depth)
    return {"ok": ok, "device_frame": type(step.result.device).__name__,
            **{f"{name}_pattern_equal": pattern for name, (pattern, _) in results.items()},
            **{f"{name}_max_abs_diff_m": round(diff, 7) for name, (_, diff) in results.items()},
            "colorized_max_level_diff": levels,
            "frame_step_ms": median_ms(lambda: run_frame(estimator, frame.rgb, frame.intrinsics, METRIC_KEYS,
                                                         step_config), iters=20),
            "numpy_outputs_only_ms": median_ms(lambda: build_parts(numpy_frame, METRIC_KEYS), iters=20)}


@check("bench")
def bench() -> None:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    run = subprocess.run([sys.executable, "-m", "mde_ros.cli", "bench", "--sections", "backends", "--iters", "10"],
                         capture_output=True, text=True, env=env, timeout=900)
    rows = [line for line in run.stdout.splitlines() if line.startswith("tensorrt")]
    ok = run.returncode == 0 and rows and all("failed" not in r and "unavailable" not in r for r in rows)
    report("bench", "PASS" if ok else "FAIL", returncode=run.returncode, tensorrt_rows=rows,
           stderr=run.stderr[-500:] if run.returncode else "")


def int8_options(model: Path, tmp: Path) -> dict:
    from mde_ros.fileio import write_image
    from mde_ros.synthetic import render_frame

    folder = tmp / "calibration"
    folder.mkdir(exist_ok=True)
    for seed in range(1000, 1016):
        write_image(folder / f"{seed}.png", render_frame(seed, 320, 240).rgb)
    return {"calibration": str(folder)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="ONNX model with its card (default: the shipped model)")
    parser.add_argument("--out", type=Path, default=Path("trt_check.json"), help="JSON report")
    parser.add_argument("--skip-bench", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from mde_ros.models.card import load_card_for
    from mde_ros.resources import default_model_path

    model = args.model or default_model_path()
    card = load_card_for(model)
    with tempfile.TemporaryDirectory(prefix="trt_check_") as tmp_name:
        tmp = Path(tmp_name)
        os.environ["MDE_ROS_CACHE"] = str(tmp / "cache")  # private engine cache
        environment()
        if RESULTS[-1]["status"] == "PASS":
            for precision, options in (("fp32", {}), ("fp16", {}), ("int8", int8_options(model, tmp))):
                precision_check(model, card, precision, options)
                if RESULTS[-1]["status"] == "FAIL":
                    RESULTS[-1]["check"] = precision
            weak_typing(model, card)
            timing_cache(model, card)
            two_outputs(tmp)
            dla(model, card)
            ort_trt_ep(model, card)
            fused(tmp)
            if not args.skip_bench:
                bench()
    args.out.write_text(json.dumps(RESULTS, indent=2, default=str) + "\n")
    failures = sum(r["status"] == "FAIL" for r in RESULTS)
    print(f"\n{len(RESULTS)} checks, {failures} failed; report in {args.out}")
    return failures


if __name__ == "__main__":
    sys.exit(main())
