#!/usr/bin/env python3
"""Where the INT8 model's time goes on onnxruntime's CPU, against the float model in the same run.

    PYTHONPATH=. python tools/int8_profile.py [--model M.onnx] [--threads 1] [--rounds 16]

Without --model: the default network (ResNet-34 U-Net, random weights, 320x320), as `mde-ros bench
--sections int8` uses. Quantises with the shipped onnxruntime recipe (calibrated on the bench's synthetic
scenes), then runs fp32 and int8 round-robin with onnxruntime's profiler (SessionOptions.enable_profiling)
and prints, per model, kernel time per op type and convolution time per network block with its ratio to
fp32. This is the evidence behind the README's INT8 figures: how much of the int8 run is convolution
kernels, and how fast those kernels are against fp32's on this CPU. The profiler adds per-node overhead,
so its ratios read a little higher than `mde-ros bench`'s; use it for shares, not for the headline ratio.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def block_of(node_name: str) -> str:
    """Network block of a profiled node (ResNet U-Net names; anything else is 'other')."""
    match = re.match(r"/(encoder/layer\d|decoder\.\d|head)", node_name)
    if match:
        return match.group(1)
    return "encoder stem" if node_name.startswith("/encoder/") else "other"


def profile(models: dict[str, Path], threads: int, rounds: int, input_shape: tuple[int, ...]) -> dict:
    import onnxruntime as ort

    sessions, prefix = {}, tempfile.mkdtemp(prefix="mde_int8_profile_")
    for key, path in models.items():
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(prefix, key)
        sessions[key] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    batch = np.random.default_rng(0).standard_normal(input_shape).astype(np.float32)
    warmup = 3
    for _ in range(warmup):
        for key, session in sessions.items():
            session.run(None, {session.get_inputs()[0].name: batch})
    for _ in range(rounds):  # round-robin: machine load hits both alike
        for key, session in sessions.items():
            session.run(None, {session.get_inputs()[0].name: batch})
    results = {}
    for key, session in sessions.items():
        events = json.loads(Path(session.end_profiling()).read_text())
        runs = sorted(e["dur"] for e in events if e.get("name") == "model_run")[warmup:]
        kernels = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
        kernels = kernels[len(kernels) // (rounds + warmup) * warmup:]
        by_type, by_block = collections.Counter(), collections.Counter()
        for event in kernels:
            op = event["args"]["op_name"]
            by_type[op] += event["dur"] / rounds / 1000
            if "Conv" in op:
                by_block[block_of(event["name"])] += event["dur"] / rounds / 1000
        results[key] = {"run_ms": float(np.median(runs)) / 1000, "types": by_type, "conv_blocks": by_block}
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="float ONNX with its card (default: default network)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=16)
    args = parser.parse_args()

    from mde_ros.commands.bench import CALIBRATION_SEEDS, default_network
    from mde_ros.fileio import write_image
    from mde_ros.models.card import load_card_for
    from mde_ros.quantization.calibration import load_calibration_images
    from mde_ros.quantization.qdq import quantize_model
    from mde_ros.synthetic import render_frame

    fp32 = args.model or default_network(argparse.Namespace())[0]
    card = load_card_for(fp32)
    with tempfile.TemporaryDirectory(prefix="mde_int8_profile_") as tmp:
        folder = Path(tmp) / "calibration"
        folder.mkdir()
        for seed in CALIBRATION_SEEDS:
            write_image(folder / f"scene_{seed}.png", render_frame(seed, 320, 240).rgb)
        int8 = Path(tmp) / "model.int8.onnx"
        quantize_model(fp32, int8, load_calibration_images(folder), target="onnxruntime")
        results = profile({"fp32": Path(fp32), "int8": int8}, args.threads, args.rounds,
                          (1, 3, card.input_height, card.input_width))
    base = results["fp32"]
    base_conv = sum(v for k, v in base["types"].items() if "Conv" in k)
    print(f"{Path(fp32).name} {card.input_height}x{card.input_width}, onnxruntime CPU, {args.threads} thread(s), "
          f"{args.rounds} profiled runs each, round-robin")
    for key, result in results.items():
        conv = sum(v for k, v in result["types"].items() if "Conv" in k)
        rest = sum(result["types"].values()) - conv
        print(f"\n{key}: run median {result['run_ms']:.1f} ms (ratio {result['run_ms'] / base['run_ms']:.3f}); "
              f"convolution kernels {conv:.1f} ms ({100 * conv / (conv + rest):.0f} % of kernel time, ratio "
              f"{conv / base_conv:.3f}), everything else {rest:.1f} ms")
        print("  per op type (ms/run): " + ", ".join(f"{k} {v:.1f}" for k, v in result["types"].most_common() if v >= 0.1))
        print("  convolutions per block (ms/run, x fp32): " + ", ".join(
            f"{k} {v:.1f} ({v / base['conv_blocks'][k]:.2f}x)" if base["conv_blocks"].get(k) else f"{k} {v:.1f}"
            for k, v in sorted(result["conv_blocks"].items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
