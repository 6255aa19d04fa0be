"""Throughput of the training data path and of training itself, in images/s (figures, not tests).

    python -m training.benchmark data    [--config R.yaml] [--workers N] [--seconds S] [key=value ...]
    python -m training.benchmark readers [--workers N] [--seconds S] [--images K]
    python -m training.benchmark train   [--config R.yaml] [--workers N] [--seconds S] [--device D] [key=value ...]

``data``: the recipe's train dataset (default synthetic_world_resnet34.yaml) alone: one process with
one thread (images/s per worker), then a DataLoader with N workers in the dataset's own epoch order.
``readers``: the folder and NYU-CSV readers on files this command writes (640x480 JPEG + 16-bit PNG
depth), resized to the recipe's input size: per worker and with N workers (decode cost).
``train``: the recipe's network, optimizer, loss and camera effects on its data at its batch size
(bf16 autocast and channels_last on CUDA): first the network alone on one fixed batch (the device's
ceiling), then fed by N workers; prints images/s and the device's share of the step time (CUDA
events: time the GPU was busy / wall time; < 1 means the step waited for data or the host).
``--json FILE`` also writes the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

DEFAULT_RECIPE = Path(__file__).resolve().parent / "configs" / "synthetic_world_resnet34.yaml"


def _loader(dataset, batch: int, workers: int, pin: bool, epoch: int = 0, persistent: bool = False) -> DataLoader:
    from training.datasets import worker_init

    sampler = dataset.epoch_sampler(epoch, batch, workers, 0) if hasattr(dataset, "epoch_sampler") else None
    return DataLoader(dataset, batch_size=batch, sampler=sampler, shuffle=sampler is None, num_workers=workers,
                      pin_memory=pin, worker_init_fn=worker_init, drop_last=True,
                      prefetch_factor=4 if workers > 0 else None,
                      persistent_workers=persistent and workers > 0)


def per_worker_rate(dataset, seconds: float, max_items: int | None = None) -> dict[str, float]:
    """Samples/s of ``dataset[i]`` in one process, one thread, in the dataset's epoch order."""
    from training.datasets import worker_init

    threads = torch.get_num_threads()
    worker_init(0)
    try:
        order = (dataset.epoch_sampler(0, 1, 1, 0).order() if hasattr(dataset, "epoch_sampler")
                 else list(range(len(dataset))))
        start, n = time.perf_counter(), 0
        for index in order[: max_items or len(order)]:
            dataset[index]
            n += 1
            if time.perf_counter() - start >= seconds:
                break
        elapsed = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    return {"images": n, "seconds": elapsed, "images_per_s": n / elapsed}


def loader_rate(dataset, batch: int, workers: int, seconds: float, pin: bool = False) -> dict[str, float]:
    """Samples/s a DataLoader with ``workers`` delivers, after its first batch (start-up reported apart)."""
    batch = max(1, min(batch, len(dataset) // max(1, workers)))
    t0 = time.perf_counter()
    first, start, n = None, None, 0
    loader = _loader(dataset, batch, workers, pin, persistent=True)
    while start is None or time.perf_counter() - start < seconds:      # more epochs if the set is small
        for b in loader:
            if start is None:
                first, start = time.perf_counter() - t0, time.perf_counter()
                continue
            n += int(b["image"].shape[0])
            if time.perf_counter() - start >= seconds:
                break
    elapsed = time.perf_counter() - start
    del loader          # persistent workers stop here, not during the next measurement
    return {"workers": workers, "batch": batch, "first_batch_s": first, "images": n, "seconds": elapsed,
            "images_per_s": n / max(elapsed, 1e-9)}


def write_reader_files(root: Path, count: int, height: int = 480, width: int = 640) -> None:
    """``count`` synthetic 640x480 frames as a folder dataset (root/folder) and a NYU CSV layout (root/nyu)."""
    import cv2
    from mde_ros.synthetic import render_frame

    frames = [render_frame(seed, width=width // 2, height=height // 2) for seed in range(min(count, 8))]
    (root / "folder" / "train" / "images").mkdir(parents=True, exist_ok=True)
    (root / "folder" / "train" / "depths").mkdir(parents=True, exist_ok=True)
    (root / "nyu" / "data" / "nyu2_train" / "scene").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(count):
        frame = frames[i % len(frames)]
        rgb = cv2.resize(frame.rgb, (width, height), interpolation=cv2.INTER_LINEAR)
        rgb = np.clip(rgb.astype(np.int16) + (i % 7) - 3, 0, 255).astype(np.uint8)   # not byte-identical
        depth_mm = np.round(cv2.resize(frame.depth, (width, height), interpolation=cv2.INTER_NEAREST) * 1000)
        depth_mm = np.clip(depth_mm, 0, 65535).astype(np.uint16)
        bgr = rgb[..., ::-1]
        cv2.imwrite(str(root / "folder" / "train" / "images" / f"{i:05d}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(str(root / "folder" / "train" / "depths" / f"{i:05d}.png"), depth_mm)
        cv2.imwrite(str(root / "nyu" / "data" / "nyu2_train" / "scene" / f"{i}.jpg"), bgr)
        cv2.imwrite(str(root / "nyu" / "data" / "nyu2_train" / "scene" / f"{i}.png"), depth_mm)
        lines.append(f"data/nyu2_train/scene/{i}.jpg,data/nyu2_train/scene/{i}.png")
    (root / "nyu" / "data" / "nyu2_train.csv").write_text("\n".join(lines) + "\n")
    (root / "nyu" / "data" / "nyu2_test.csv").write_text("\n".join(lines[:4]) + "\n")


def bench_readers(workers: int, seconds: float, count: int, input_size: list[int]) -> dict[str, Any]:
    from training.datasets import build_dataset

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="mde_bench_readers_") as tmp:
        root = Path(tmp)
        write_reader_files(root, count)
        common = {"input_size": input_size, "max_depth": 10.0, "augment": {"hflip": 0.5}}
        for name, cfg in (("folder", {"name": "folder", "root": str(root / "folder"), "depth_units": "mm", **common}),
                          ("nyu_csv", {"name": "nyu_csv", "root": str(root / "nyu"), **common})):
            dataset = build_dataset(cfg, "train")
            results[name] = {"per_worker": per_worker_rate(dataset, seconds),
                             "loader": loader_rate(dataset, 32, workers, seconds)}
            _print(f"{name} reader ({count} files 640x480 JPEG + uint16 PNG -> {input_size[0]}x{input_size[1]})",
                   results[name])
    return results


def bench_data(cfg: dict, workers: int, seconds: float) -> dict[str, Any]:
    from training.datasets import build_dataset

    dataset = build_dataset(cfg["data"], "train")
    batch = int(cfg["train"]["batch_size"])
    result = {"dataset": cfg["data"]["name"], "input_size": cfg["data"]["input_size"],
              "per_worker": per_worker_rate(dataset, seconds),
              "loader": loader_rate(dataset, batch, workers, seconds)}
    _print(f"data path {cfg['data']['name']} {cfg['data']['input_size']}", result)
    return result


def bench_train(cfg: dict, workers: int, seconds: float, device_spec: str) -> dict[str, Any]:
    """Training steps: the network alone on a fixed batch, then fed by the DataLoader."""
    from training.camera_effects import build_camera_effects
    from training.datasets import build_dataset
    from training.losses import build_loss
    from training.model_wrapper import build_depth_model
    from training.train import _amp_dtype, build_optimizer

    device = torch.device("cuda" if device_spec == "auto" and torch.cuda.is_available() else
                          "cpu" if device_spec == "auto" else device_spec)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    model = build_depth_model(cfg["model"], load_pretrained=False).to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model.net, cfg["optim"])
    loss_fn = build_loss(cfg["loss"]).to(device)
    amp = _amp_dtype(cfg["train"].get("amp"), device)
    effects = build_camera_effects(cfg["train"].get("camera_effects"))
    batch = int(cfg["train"]["batch_size"])

    repeats = int(cfg["train"].get("batch_repeats") or 1)

    def step(b: dict, mirror: bool = False) -> None:
        image = b["image"].to(device, non_blocking=True)
        depth, valid = b["depth"].to(device, non_blocking=True), b["valid"].to(device, non_blocking=True)
        if mirror:
            image, depth, valid = image.flip(-1), depth.flip(-1), valid.flip(-1)
        if effects is not None:
            image = effects(image)
        if cuda:
            image = image.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            pred = model(image)
        loss, _ = loss_fn(pred.float(), depth, valid)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    dataset = build_dataset(cfg["data"], "train")
    fixed = next(iter(DataLoader(dataset, batch_size=batch, num_workers=0)))
    if cuda:
        fixed = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in fixed.items()}

    def run(batches, limit_s: float, warmup: int = 3, repeats: int = 1) -> dict[str, float]:
        n_img, n_steps, busy, waits = 0, 0, 0.0, 0.0
        events = []
        start = None
        source = iter(batches)
        while True:
            t = time.perf_counter()
            try:
                b = next(source)
            except StopIteration:
                break
            waited = time.perf_counter() - t
            if n_steps == warmup:
                if cuda:
                    torch.cuda.synchronize()
                start, n_img, busy, waits, events = time.perf_counter(), 0, 0.0, 0.0, []
            for repeat in range(repeats):
                if cuda:
                    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    e0.record()
                    step(b, repeat % 2 == 1)
                    e1.record()
                    events.append((e0, e1))
                else:
                    t1 = time.perf_counter()
                    step(b, repeat % 2 == 1)
                    busy += time.perf_counter() - t1
                n_img += int(b["image"].shape[0])
            n_steps += 1
            waits += waited
            if start is not None and time.perf_counter() - start >= limit_s:
                break
        if cuda:
            torch.cuda.synchronize()
            busy = sum(a.elapsed_time(b) for a, b in events) / 1000.0
        wall = time.perf_counter() - (start if start is not None else time.perf_counter())
        return {"images": n_img, "seconds": wall, "images_per_s": n_img / max(wall, 1e-9),
                "loaded_images_per_s": n_img / repeats / max(wall, 1e-9),
                "device_busy_share": busy / max(wall, 1e-9), "data_wait_share": waits / max(wall, 1e-9)}

    def repeat_fixed():
        while True:
            yield fixed

    result: dict[str, Any] = {"device": str(device), "amp": str(amp), "batch": batch,
                              "input_size": cfg["data"]["input_size"], "model": cfg["model"]["name"],
                              "channels_last": cuda, "camera_effects": effects is not None}
    result["network_only"] = run(repeat_fixed(), seconds / 3)
    loader = _loader(dataset, batch, workers, pin=cuda)
    result["with_data"] = run(loader, seconds, repeats=repeats)
    result["with_data"].update(workers=workers, batch_repeats=repeats)
    _print(f"training {cfg['model']['name']} {cfg['data']['input_size']} batch {batch} on {device} amp={amp}",
           result)
    return result


def _print(title: str, result: dict) -> None:
    print(f"== {title}")
    for key, value in result.items():
        if isinstance(value, dict):
            text = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items())
            print(f"   {key}: {text}")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    from training.config import ConfigError, load_config

    parser = argparse.ArgumentParser(prog="python -m training.benchmark", description=__doc__.split("\n")[0],
                                     epilog=__doc__[__doc__.index("``data``"):])
    parser.add_argument("what", choices=("data", "readers", "train"))
    parser.add_argument("--config", type=Path, default=DEFAULT_RECIPE)
    parser.add_argument("--workers", type=int, default=min(14, max(1, (os.cpu_count() or 2) - 1)))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--images", type=int, default=64, help="readers: files to write")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_intermixed_args(argv)   # key=value before or after options
    try:
        cfg = load_config(args.config, args.overrides)
        if args.what == "data":
            result = bench_data(cfg, args.workers, args.seconds)
        elif args.what == "readers":
            result = bench_readers(args.workers, args.seconds, args.images, list(cfg["data"]["input_size"]))
        else:
            result = bench_train(cfg, args.workers, args.seconds, args.device)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"training.benchmark: error: {exc}", file=sys.stderr)
        return 2
    result["cpu_count"] = os.cpu_count()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
