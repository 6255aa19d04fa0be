"""The one-shot GPU job behind tools/h200/train.sh (see tools/h200/README.md): benchmark, train the
seed's ResNet-34 U-Net on the wider synthetic world for a wall-clock budget, score it on held-out
scenes, and leave in $OUT only ``model.part0..N`` (fp16 state dict, <= 15 MiB each) and
``train_report.tgz``.

Every stage is guarded: a failing benchmark or evaluation is logged and the job goes on; training
falls back to smaller settings once if it fails before writing a checkpoint; a background thread packs
the best checkpoint into $OUT every ~30 s, so even a killed job leaves usable weights.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import shlex
import sys
import tarfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

log = logging.getLogger("h200.job")
JOB_START = time.monotonic()


def environment() -> dict[str, Any]:
    import numpy
    import torch

    env: dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform(),
                           "cpu_count": os.cpu_count(), "torch": torch.__version__, "numpy": numpy.__version__,
                           "cuda_available": torch.cuda.is_available(), "cuda": torch.version.cuda,
                           "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None}
    try:
        import cv2
        env["opencv"] = cv2.__version__
    except ImportError:
        env["opencv"] = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=torch.cuda.get_device_name(0), gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   gpu_count=torch.cuda.device_count(), bf16=torch.cuda.is_bf16_supported())
    return env


def shm_worker_cap(batch: int, height: int, width: int) -> int | None:
    """How many DataLoader workers /dev/shm can hold (2 batches in flight each, float32 image + depth +
    mask per sample, 1.5x slack), or None when there is no /dev/shm to check."""
    import shutil

    try:
        total = shutil.disk_usage("/dev/shm").total
    except OSError:
        return None
    per_batch = batch * height * width * (3 * 4 + 4 + 1)
    return int(total // (2 * per_batch * 1.5))


def stage(name: str, fn, *args, **kwargs):
    """Run one stage; on failure log the traceback and return None (the job goes on)."""
    start = time.monotonic()
    print(f"\n===== {name} (t={time.monotonic() - JOB_START:.0f}s)", flush=True)
    try:
        result = fn(*args, **kwargs)
        print(f"===== {name} done in {time.monotonic() - start:.1f}s", flush=True)
        return result
    except Exception:      # noqa: BLE001 - one shot on the GPU: report and carry on
        traceback.print_exc()
        print(f"===== {name} FAILED after {time.monotonic() - start:.1f}s (continuing)", flush=True)
        return None


class Packer(threading.Thread):
    """Packs the run's best (else last) checkpoint into $OUT whenever it changed, every ``every`` s."""

    def __init__(self, run_dir: Path, out: Path, report: Path, every: float = 30.0) -> None:
        super().__init__(daemon=True)
        self.run_dir, self.out, self.report, self.every = run_dir, out, report, every
        self.stop = threading.Event()
        self.packed: tuple[str, float] | None = None
        self.lock = threading.Lock()

    def source(self) -> Path | None:
        for name in ("best.pt", "last.pt"):
            path = self.run_dir / name
            if path.is_file():
                return path
        return None

    def pack_now(self) -> Path | None:
        from training.weights_io import pack

        with self.lock:
            source = self.source()
            if source is None:
                return None
            key = (str(source), source.stat().st_mtime)
            if key != self.packed:
                pack(source, self.out, 15.0, manifest_dir=self.report)
                self.packed = key
                print(f"[packer] {source.name} -> {self.out}/model.part*", flush=True)
            return source

    def run(self) -> None:
        while not self.stop.wait(self.every):
            try:
                self.pack_now()
                write_report(self.report, self.out)
            except Exception as exc:   # noqa: BLE001 - a racing write: try again next time
                print(f"[packer] skipped: {exc}", flush=True)


def write_report(report: Path, out: Path) -> Path:
    """``out/train_report.tgz`` from the report folder (written to a temp name, then renamed)."""
    tmp = out / ".train_report.tgz.tmp"
    with tarfile.open(tmp, "w:gz") as tar:
        for path in sorted(report.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=str(path.relative_to(report)))
    final = out / "train_report.tgz"
    os.replace(tmp, final)
    return final


def plan_run(cfg: dict, budget_s: float, trained_rate: float | None, loaded_rate: float | None,
             network_rate: float | None = None) -> dict:
    """Size the run from the measured speed: ~4 epochs (one checkpoint each) filling the budget, and
    ``batch_repeats`` (1-3) so the GPU is kept busy when rendering is slower than the network."""
    views = int(cfg["data"]["views_per_scene"])
    repeats = int(cfg["train"].get("batch_repeats") or 1)
    if network_rate and loaded_rate and math.isfinite(network_rate) and math.isfinite(loaded_rate):
        repeats = int(min(3, max(1, round(0.9 * network_rate / loaded_rate))))
    epoch_s = min(120.0, max(30.0, budget_s / 4))
    rate = loaded_rate if loaded_rate and math.isfinite(loaded_rate) else None
    if rate is None:
        rate = 400.0 if cfg["train"]["device"] != "cpu" else 4.0
    scenes = max(2, int(rate * epoch_s * 0.9 / views))
    epochs = max(1, int(round(budget_s / epoch_s)))
    return {"num_scenes_train": scenes, "epochs": epochs, "epoch_s_target": epoch_s, "loaded_rate_used": rate,
            "trained_rate_measured": trained_rate, "network_rate_measured": network_rate, "batch_repeats": repeats}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--recipe", type=Path, default=REPO / "training/configs/synthetic_world_resnet34.yaml")
    parser.add_argument("--train-seconds", type=float, default=300.0)
    parser.add_argument("--bench-seconds", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--readers", action=argparse.BooleanOptionalAction, default=True,
                        help="benchmark the folder/NYU readers too")
    parser.add_argument("--heldout-scenes", type=int, default=64)
    parser.add_argument("--heldout-views", type=int, default=8)
    parser.add_argument("overrides", nargs="*", help="recipe overrides key=value (tiny CPU tests)")
    args = parser.parse_intermixed_args(argv)   # key=value before or after options
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    import torch

    from training.config import load_config, save_config

    out, work = args.out, args.work
    report, run_dir = work / "report", work / "run"
    for d in (out, report, run_dir):
        d.mkdir(parents=True, exist_ok=True)
    card: dict[str, Any] = {"job_command": os.environ.get("MDE_JOB_COMMAND") or shlex.join(sys.argv),
                            "job_started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    env = environment()
    card["environment"] = env
    cuda = bool(env["cuda_available"])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
    workers = args.workers if args.workers is not None else max(1, min(14, cores - 2))
    probe = load_config(args.recipe, list(args.overrides))
    cap = shm_worker_cap(int(probe["train"]["batch_size"]), *(int(v) for v in probe["data"]["input_size"]))
    env["shm_worker_cap"] = cap
    if cap is not None and cap < workers:
        print(f"/dev/shm holds batches for only {cap} workers: using {cap} instead of {workers}", flush=True)
        workers = cap
    env["workers"] = workers
    print(json.dumps(env, indent=1), flush=True)
    overrides = list(args.overrides)
    if not cuda:
        overrides.append("train.device=cpu")
    overrides.append(f"train.num_workers={workers}")
    cfg = load_config(args.recipe, overrides)

    from training import benchmark

    figures: dict[str, Any] = {}
    figures["data"] = stage("benchmark: data path", benchmark.bench_data, cfg, workers, args.bench_seconds / 3)
    figures["train"] = stage("benchmark: training throughput", benchmark.bench_train, cfg, workers,
                             args.bench_seconds, "auto")
    if args.readers:
        figures["readers"] = stage("benchmark: folder/NYU readers", benchmark.bench_readers, workers,
                                   max(2.0, args.bench_seconds / 8), 256 if cuda else 16,
                                   list(cfg["data"]["input_size"]))
    (report / "benchmark.json").write_text(json.dumps(figures, indent=1, default=str) + "\n")
    if cuda:
        torch.cuda.empty_cache()

    with_data = (figures.get("train") or {}).get("with_data") or {}
    network_only = (figures.get("train") or {}).get("network_only") or {}
    plan = plan_run(cfg, args.train_seconds, with_data.get("images_per_s"), with_data.get("loaded_images_per_s"),
                    network_only.get("images_per_s") if cuda else None)
    print(f"run plan: {plan}", flush=True)
    card["plan"] = plan
    train_overrides = overrides + [f"data.num_scenes.train={plan['num_scenes_train']}",
                                   f"train.epochs={plan['epochs']}",
                                   f"train.batch_repeats={plan['batch_repeats']}",
                                   f"train.max_minutes={args.train_seconds / 60.0:.4f}",
                                   f"output_dir={run_dir}"]
    packer = Packer(run_dir, out, report)
    packer.start()

    from training.train import train

    def attempt(extra: list[str]) -> dict | None:
        run_cfg = load_config(args.recipe, train_overrides + extra)
        save_config(run_cfg, report / "config.yaml")
        card["train_overrides"] = train_overrides + extra
        return train(run_cfg)

    train_start = time.monotonic()
    summary = stage("train", attempt, [])
    if summary is None and packer.source() is None:
        left = args.train_seconds - (time.monotonic() - train_start)
        if left > 30:
            fallback = [f"train.batch_size={max(8, int(cfg['train']['batch_size']) // 2)}",
                        f"train.num_workers={min(4, workers)}",
                        f"train.max_minutes={left / 60.0:.4f}"]
            print(f"training failed before any checkpoint: one retry with {fallback}", flush=True)
            summary = stage("train (fallback)", attempt, fallback)
    train_s = time.monotonic() - train_start
    card["train_wall_s"] = round(train_s, 1)
    packer.stop.set()
    source = stage("pack weights", packer.pack_now)

    if summary is not None:
        history = summary["phases"][-1]["history"]
        (report / "history.json").write_text(json.dumps(history, indent=1, default=float) + "\n")
        card["epochs_run"] = len(history)
        card["global_step"] = history[-1]["global_step"] if history else 0
        card["out_of_time"] = summary["phases"][-1].get("out_of_time")
        card["best_val"] = {"metric": summary["best_metric_name"], "value": summary["best_metric"]}
        rates = [h.get("images_per_s") for h in history if h.get("images_per_s")]
        card["train_images_per_s_by_epoch"] = rates

    if source is not None:
        from training.checkpoint import load_checkpoint
        from training.heldout import heldout_metrics

        def score():
            state = load_checkpoint(source)
            return heldout_metrics(state, scenes=args.heldout_scenes, views=args.heldout_views,
                                   device="cuda" if cuda else "cpu", num_workers=workers,
                                   amp_dtype=torch.bfloat16 if cuda else None)

        held = stage("held-out synthetic scenes", score)
        if held is not None:
            (report / "heldout.json").write_text(json.dumps(held, indent=1, default=float) + "\n")
            print(json.dumps({k: held[k] for k in ("abs_rel", "rmse", "delta1", "n_images")}), flush=True)
            for kind, m in held["by_kind"].items():
                print(f"  {kind}: {json.dumps({k: m.get(k) for k in ('abs_rel', 'rmse', 'delta1', 'n_images')})}")
        card["shipped_checkpoint"] = source.name
    else:
        print("NO CHECKPOINT: training never finished an epoch or a budget stop; see the log", flush=True)

    card["job_wall_s"] = round(time.monotonic() - JOB_START, 1)
    card["gpu_time_s"] = card["job_wall_s"] if cuda else 0.0
    card["data"] = (f"synthetic_world (mde_ros.synthetic.world): {cfg['data']['kinds']} scenes, "
                    f"{cfg['data']['views_per_scene']} views per scene, a random camera per view "
                    f"(hfov {cfg['data']['hfov_deg']} deg, aspects 4:3/16:9/3:2/5:4/1:1) rendered at "
                    f"{cfg['data']['input_size']}, labels for a canonical fx of {cfg['data']['canonical_focal_px']} px, "
                    f"JPEG {cfg['data']['jpeg']}, hflip, camera effects {cfg['train']['camera_effects']} on the GPU, "
                    f"train scene seeds [0, {plan['num_scenes_train']}), held-out scene seeds from 2000000 "
                    "(test split); no real RGB-D frames")
    (report / "card_fields.json").write_text(json.dumps(card, indent=1, default=str) + "\n")
    stage("write train_report.tgz", write_report, report, out)
    print(f"\n$OUT holds: {sorted(p.name for p in out.iterdir())}", flush=True)
    return 0 if source is not None else 1


if __name__ == "__main__":
    sys.exit(main())
