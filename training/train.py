"""Training loop: ``python -m training.train --config training/configs/X.yaml [key=value ...] [--resume]``.

What a run does, in order:

* resolves the recipe (``training.config``) and, once the first phase has started (data, model and
  checkpoint loaded), saves it as ``output_dir/config.yaml``;
* runs each phase of ``train.phases`` in its own subfolder ``output_dir/<phase>/`` (a recipe without
  phases trains once, straight into ``output_dir``); a phase with ``init_from`` starts from that
  earlier phase's ``best.pt`` (or a checkpoint path) with a fresh optimizer, its own lr and epochs;
* per epoch: trains over the whole set, or chunk by chunk (``train.curriculum.chunk_size``: one
  Subset + DataLoader per chunk, so only one chunk is ever in flight), validates on the ``val``
  split with the evaluation protocol of ``training.evaluate``, writes ``last.pt`` and, when the
  validation metric (``train.best_metric``, RMSE by default) improves, ``best.pt`` (written first); stops early after
  ``train.early_stopping_patience`` epochs without improvement.

Learning-rate schedule: stepped every ITERATION (not every epoch) as a multiplier of each group's
base lr: linear warm-up from 0 over ``schedule.warmup_epochs``, then ``none`` (constant), ``cosine``
(down to ``schedule.min_lr`` at the last iteration) or ``step`` (x ``gamma`` every ``step_size``
epochs, counted in iterations). Parameter groups: parameters under ``encoder.`` use
``optim.encoder_lr`` (when set; in a phase it is scaled by phase lr / optim.lr); ``weight_decay``
applies to every parameter, as ``torch.optim`` does (decoupled for adamw, L2 for adam/sgd).

Resume (``--resume``) restores network, optimizer, scheduler, grad scaler, counters, best metric
and the RNG states from ``last.pt``; with a fixed seed on CPU the final weights equal those of an
uninterrupted run. A finished phase is skipped; raising ``train.epochs`` and resuming extends it.
Any other change to the config is refused with the differing keys named, or, with
``--apply-changes``, applied from the resumed epoch on and recorded (``training.resume``).
TensorBoard purges only what was logged after the checkpoint.
Every epoch's shuffling uses a generator seeded from (seed, epoch, chunk), so
the data order never depends on where a run was interrupted.

Multi-GPU: launch with ``torchrun --nproc_per_node=N -m training.train ...``; RANK/WORLD_SIZE/
LOCAL_RANK select DistributedDataParallel (NCCL when train.device is CUDA, gloo when it is the CPU,
whatever the machine has) with a DistributedSampler
(which pads the last batch of a chunk with repeats so ranks stay in step); rank 0 validates, logs
and saves. AMP (``train.amp``: true/fp16 or bf16) is used on CUDA only, with the network and its
input in channels_last memory format there.

Speed and budget: DataLoader workers run one thread each (``datasets.worker_init``); a dataset with an
``epoch_sampler`` (synthetic_world) orders its own epochs; ``train.camera_effects`` applies
``training.camera_effects`` to the images on the training device; ``train.batch_repeats`` (1) trains
each loaded batch that many times, every other repeat mirrored, each with fresh camera effects
(repeated augmentation: when rendering, not the GPU, limits the rate); ``train.max_minutes`` ends a phase
after that much wall-clock time, mid-epoch, validating and writing ``last.pt``/``best.pt`` as after an
epoch (``out_of_time`` in the checkpoint). Each epoch's record has its training ``images_per_s``.
"""
from __future__ import annotations

import argparse
import copy
import logging
import math
import os
import random
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torch.utils.data.distributed import DistributedSampler

from training.camera_effects import build_camera_effects
from training.checkpoint import (BEST_NAME, LAST_NAME, CheckpointError, capture_rng_state, load_checkpoint,
                                 restore_rng_state, save_checkpoint)
from training.batch_augment import crop_for_curriculum, curriculum_scale, random_roll
from training.ema import ModelEma
from training.evaluate import selection_metrics
from training.model_wrapper import build_depth_model
from training.schedule import WallClockBudget, lr_multiplier

log = logging.getLogger("training.train")

# Called with (epoch, batch) before every training step; lets callers watch the data stream.
BatchHook = Callable[[int, dict], None]


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    enabled: bool = False
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def ddp_backend(device_spec: str, cuda_available: bool) -> str:
    """NCCL when the ranks train on CUDA, gloo when they train on the CPU.

    Chosen from the TRAINING device, not from the machine: ``train.device=cpu`` on a CUDA machine
    must use gloo (NCCL has no CPU tensors: "No backend type associated with device type cpu").
    """
    spec = str(device_spec or "auto")
    if spec == "auto":
        return "nccl" if cuda_available else "gloo"
    return "nccl" if spec.startswith("cuda") else "gloo"


def init_distributed(device_spec: str = "auto") -> DistContext:
    """DDP when torchrun's RANK/WORLD_SIZE are set (even with one process), else a plain run."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistContext()
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    owns_group = not dist.is_initialized()
    if owns_group:
        backend = ddp_backend(device_spec, torch.cuda.is_available())
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return DistContext(rank, world_size, local_rank, enabled=True, owns_group=owns_group)


def resolve_device(spec: str, ctx: DistContext) -> torch.device:
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"train.device={spec} but CUDA is not available; use train.device=cpu")
        if ctx.enabled:
            return torch.device("cuda", ctx.local_rank)
    return torch.device(spec)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _mixed_seed(*parts: int) -> int:
    """A stable seed from several integers (python's hash of ints is not salted)."""
    return hash(tuple(int(p) for p in parts)) % 2**62


# ----------------------------------------------------------------------------------------- data

def epoch_loaders(dataset: Dataset, train_cfg: dict, epoch: int, ctx: DistContext = DistContext(),
                  pin_memory: bool = False) -> Iterator[DataLoader]:
    """The epoch's DataLoaders: one over the whole set, or one per curriculum chunk."""
    from training.datasets import chunk_indices, worker_init

    seed = int(train_cfg["seed"])
    chunk_size = (train_cfg.get("curriculum") or {}).get("chunk_size")
    chunks = chunk_indices(len(dataset), chunk_size, seed, epoch) if chunk_size else [None]
    if int(train_cfg["num_workers"]) > 0:
        # A child forked while OpenCV's thread pool is alive (the parent rendered validation views)
        # deadlocks in worker_init's cv2.setNumThreads: the parent keeps OpenCV single-threaded.
        import cv2

        cv2.setNumThreads(1)
    if hasattr(dataset, "set_epoch"):   # a streaming dataset: this epoch's own scenes
        dataset.set_epoch(epoch)
    for number, chunk in enumerate(chunks):
        subset = dataset if chunk is None else Subset(dataset, list(chunk))
        generator = torch.Generator().manual_seed(_mixed_seed(seed, epoch, number))
        sampler = None
        if chunk is None and not ctx.enabled and hasattr(dataset, "epoch_sampler"):
            # the dataset's own order (synthetic_world: views of a worker's cached scenes in a row)
            sampler = dataset.epoch_sampler(epoch, int(train_cfg["batch_size"]), int(train_cfg["num_workers"]), seed)
        elif ctx.enabled:
            sampler = DistributedSampler(subset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                         seed=_mixed_seed(seed, number))
            sampler.set_epoch(epoch)
        yield DataLoader(subset, batch_size=int(train_cfg["batch_size"]), shuffle=sampler is None,
                         sampler=sampler, generator=generator, num_workers=int(train_cfg["num_workers"]),
                         pin_memory=pin_memory, drop_last=False, worker_init_fn=worker_init)


def steps_per_epoch(n_samples: int, train_cfg: dict, world_size: int = 1) -> int:
    from training.datasets import chunk_indices

    chunk_size = (train_cfg.get("curriculum") or {}).get("chunk_size")
    sizes = ([len(c) for c in chunk_indices(n_samples, chunk_size, int(train_cfg["seed"]), 0)]
             if chunk_size else [n_samples])
    batch = int(train_cfg["batch_size"])
    return sum(math.ceil(math.ceil(size / world_size) / batch) for size in sizes)


def network_focal_px(dataset: Dataset, input_size: list[int]) -> float | None:
    """fx of the training camera at network resolution: the dataset's own ``train_focal_px`` (the canonical
    camera its depth labels are for, synthetic_world), else from a sample's intrinsics."""
    if getattr(dataset, "train_focal_px", None):
        return float(dataset.train_focal_px)
    if len(dataset) == 0:
        return None
    sample = dataset[0]
    if "intrinsics" not in sample:
        return None
    fx = float(np.asarray(sample["intrinsics"], dtype=np.float64).reshape(-1)[0])
    if not math.isfinite(fx) or fx <= 0:  # NaN: the dataset does not know its camera
        return None
    return fx * input_size[1] / int(sample["image"].shape[-1])


# ------------------------------------------------------------------------------ optimisation

def build_optimizer(net: nn.Module, optim_cfg: dict) -> torch.optim.Optimizer:
    """Two parameter groups, "encoder" (``encoder.*``) and "decoder" (the rest), for differential lr."""
    lr = float(optim_cfg["lr"])
    encoder_lr = None if optim_cfg.get("encoder_lr") is None else float(optim_cfg["encoder_lr"])
    weight_decay = float(optim_cfg.get("weight_decay") or 0.0)
    encoder = [p for n, p in net.named_parameters() if p.requires_grad and n.startswith("encoder.")]
    decoder = [p for n, p in net.named_parameters() if p.requires_grad and not n.startswith("encoder.")]
    groups = [{"params": params, "name": group_name, "lr": group_lr, "weight_decay": weight_decay}
              for group_name, params, group_lr in (("encoder", encoder, encoder_lr if encoder_lr is not None else lr),
                                                   ("decoder", decoder, lr)) if params]
    name = optim_cfg["name"]
    if name == "adam":
        return torch.optim.Adam(groups, betas=tuple(optim_cfg.get("betas", (0.9, 0.999))))
    if name == "adamw":
        return torch.optim.AdamW(groups, betas=tuple(optim_cfg.get("betas", (0.9, 0.999))))
    if name == "sgd":
        return torch.optim.SGD(groups, momentum=float(optim_cfg.get("momentum", 0.9)))
    raise ValueError(f"optim.name must be adam, adamw or sgd, got {name!r}")


def _amp_dtype(amp: Any, device: torch.device) -> torch.dtype | None:
    if not amp or amp == "none":
        return None
    if device.type != "cuda":
        log.info("train.amp=%s ignored: mixed precision is used on CUDA only", amp)
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp in (True, "fp16"):
        return torch.float16
    raise ValueError(f"train.amp must be false, true/fp16 or bf16, got {amp!r}")


# --------------------------------------------------------------------------------- the loop

def train(cfg: dict, *, resume: bool = False, apply_changes: bool = False,
          on_batch: BatchHook | None = None) -> dict[str, Any]:
    """Run every phase of ``cfg``; return a summary with checkpoints and best metrics per phase.

    With ``resume``, a config that differs from the run's recorded one is refused (training.resume)
    unless ``apply_changes``. ``output_dir/config.yaml`` is written only once a phase has started
    (data, model and checkpoint loaded), so a run that fails before it starts leaves it as it was.
    """
    from training.config import phases as config_phases
    from training.config import save_config

    cfg = copy.deepcopy(cfg)
    out_dir = Path(cfg["output_dir"])
    plan = config_phases(cfg)
    multi_phase = bool(cfg["train"].get("phases"))
    phase_dirs = {p["name"]: (out_dir / p["name"] if multi_phase else out_dir) for p in plan}
    existing = [d / LAST_NAME for d in phase_dirs.values() if (d / LAST_NAME).exists()]
    if existing and not resume:
        raise FileExistsError(f"{out_dir} already holds checkpoints ({existing[0]}); pass --resume to "
                              "continue that run, or choose another output_dir=...")
    changes = _resume_changes(cfg, plan, phase_dirs, multi_phase, apply_changes) if resume else {}
    ctx = init_distributed(str(cfg["train"].get("device", "auto")))
    written = []

    def on_start() -> None:   # the first phase that really trains records the run's config
        if ctx.is_main and not written:
            save_config(cfg, out_dir / "config.yaml")
            if multi_phase:
                (out_dir / "phases.txt").write_text("\n".join(p["name"] for p in plan) + "\n")
        written.append(True)

    try:
        results = []
        for phase in plan:
            phase_cfg = _phase_config(cfg, phase, multi_phase)
            init_from = phase["init_from"]
            init_path = (phase_dirs[init_from] / BEST_NAME if init_from in phase_dirs
                         else Path(init_from) if init_from else None)
            results.append(_run_phase(phase_cfg, phase["name"], phase_dirs[phase["name"]], init_path,
                                      resume=resume, ctx=ctx, on_batch=on_batch, on_start=on_start,
                                      changes=changes))
        final = results[-1]
        return {"output_dir": str(out_dir), "world_size": ctx.world_size, "phases": results,
                "best_checkpoint": final["best_checkpoint"], "last_checkpoint": final["last_checkpoint"],
                "best_metric": final["best_metric"], "best_metric_name": final["best_metric_name"]}
    finally:
        if ctx.owns_group:
            dist.destroy_process_group()


def _resume_changes(cfg: dict, plan: list[dict], phase_dirs: dict[str, Path], multi_phase: bool,
                    apply_changes: bool) -> dict[str, tuple[Any, Any]]:
    """Compare the given config with what each unfinished phase recorded; refuse or return the changes."""
    from training.resume import check_resume, config_changes

    changes: dict[str, tuple[Any, Any]] = {}
    for phase in plan:
        last_path = phase_dirs[phase["name"]] / LAST_NAME
        if not last_path.exists():
            continue
        state = load_checkpoint(last_path)
        phase_cfg = _phase_config(cfg, phase, multi_phase)
        if state["stopped_early"] or state["epoch"] + 1 >= int(phase_cfg["train"]["epochs"]):
            continue   # finished: nothing of this config will be used for it
        for key, pair in config_changes(state["config"], phase_cfg).items():
            changes.setdefault(key, pair)
    return check_resume(changes, apply_changes)


def _phase_config(cfg: dict, phase: dict, multi_phase: bool) -> dict:
    phase_cfg = copy.deepcopy(cfg)
    if multi_phase:
        base_lr = float(cfg["optim"]["lr"])
        phase_cfg["optim"]["lr"] = phase["lr"]
        if cfg["optim"].get("encoder_lr") is not None:
            phase_cfg["optim"]["encoder_lr"] = float(cfg["optim"]["encoder_lr"]) * phase["lr"] / base_lr
        phase_cfg["train"]["epochs"] = phase["epochs"]
    return phase_cfg


def _improved(value: float, best: float | None, mode: str) -> bool:
    if not math.isfinite(value):
        return False
    return best is None or (value < best if mode == "min" else value > best)


def _use_configured_hyperparameters(optimizer: torch.optim.Optimizer, scheduler: Any, configured: list[dict]) -> None:
    """After loading a checkpoint's optimizer/scheduler state, put back the hyper-parameters of the
    config this run was given (a no-op when it equals the recorded one; with --apply-changes, the
    new lr / weight decay / betas), re-deriving each group's current lr from the schedule."""
    if len(configured) != len(optimizer.param_groups):
        raise ValueError("the checkpoint's optimizer has other parameter groups than this config's; "
                         "start a new run with another output_dir=...")
    base_lrs = []
    for group, fresh in zip(optimizer.param_groups, configured):
        for key, value in fresh.items():
            if key not in ("lr", "initial_lr"):
                group[key] = value
        group["initial_lr"] = fresh.get("initial_lr", fresh["lr"])
        base_lrs.append(group["initial_lr"])
    scheduler.base_lrs = base_lrs
    lrs = [base * lmbda(scheduler.last_epoch) for base, lmbda in zip(base_lrs, scheduler.lr_lambdas)]
    for group, lr in zip(optimizer.param_groups, lrs):
        group["lr"] = lr
    scheduler._last_lr = lrs


@dataclass
class _Phase:
    """Everything one phase trains with, built once by :func:`_setup_phase`; the steps below read it."""
    cfg: dict
    name: str
    ctx: DistContext
    device: torch.device
    model: nn.Module
    train_model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    loss_fn: nn.Module
    train_set: Dataset
    val_set: Dataset
    amp_dtype: torch.dtype | None
    effects: Callable | None
    budget: "WallClockBudget"
    ema: ModelEma | None
    repeats: int
    iters: int
    epochs: int
    metric_name: str
    mode: str
    focal_px: float | None
    provenance: dict
    last_path: Path
    best_path: Path
    generator: torch.Generator
    start_epoch: int = 0
    global_step: int = 0
    images_seen: int = 0
    best: float | None = None
    best_epoch: int | None = None
    stale: int = 0
    history: list = field(default_factory=list)

    @property
    def train_cfg(self) -> dict:
        return self.cfg["train"]

    @property
    def eval_net(self) -> nn.Module:
        """What validation, ``best.pt`` and export use: the weight average when EMA is on."""
        return self.ema.net if self.ema is not None else self.model


def _run_phase(cfg: dict, name: str, phase_dir: Path, init_path: Path | None, *, resume: bool,
               ctx: DistContext, on_batch: BatchHook | None, on_start: Callable[[], None] = lambda: None,
               changes: dict[str, tuple[Any, Any]] | None = None) -> dict[str, Any]:
    """One phase: set up (or resume), then train / validate / checkpoint epoch by epoch."""
    from training.config import save_config

    last_path = phase_dir / LAST_NAME
    state = load_checkpoint(last_path) if resume and last_path.exists() else None
    if state is not None and _phase_finished(state, cfg, name, last_path):
        return _phase_summary(name, phase_dir, state)
    phase = _setup_phase(cfg, name, phase_dir, init_path, state, ctx, changes)
    if ctx.is_main:
        on_start()
        save_config(cfg, phase_dir / "config.yaml")
    # Purge only what was logged AFTER the checkpoint: its own epoch's scalars sit at exactly global_step.
    writer = _summary_writer(phase_dir, phase.train_cfg, ctx, purge_step=phase.global_step + 1 if state else None)
    patience = phase.train_cfg.get("early_stopping_patience")
    stopped_early = False
    try:
        for epoch in range(phase.start_epoch, phase.epochs):
            totals, n_steps, n_images, seconds = _train_epoch(phase, epoch, on_batch, writer)
            val = _validate(phase, writer) if ctx.is_main else None
            value = _broadcast(val["metrics"][phase.metric_name] if val else 0.0, ctx, phase.device)
            improved = _improved(value, phase.best, phase.mode)
            if improved:
                phase.best, phase.best_epoch, phase.stale = value, epoch, 0
            else:
                phase.stale += 1
            stopped_early = bool(patience) and phase.stale >= int(patience)
            finished = stopped_early or phase.budget.out or epoch + 1 == phase.epochs
            record = {"epoch": epoch, "global_step": phase.global_step, "images_seen": phase.images_seen,
                      "train_seconds": phase.budget.elapsed(),
                      "train": {k: v / max(1, n_steps) for k, v in totals.items()},
                      "images_per_s": n_images / max(1e-9, seconds),
                      "loaded_images_per_s": n_images / phase.repeats / max(1e-9, seconds),
                      "val": val["metrics"] if val else {}, "lr": [g["lr"] for g in phase.optimizer.param_groups]}
            phase.history.append(record)
            if ctx.is_main:
                _log_epoch(name, record, phase.metric_name, phase.best, phase.train_cfg, cfg["eval"])
                if writer is not None:
                    _write_epoch(writer, record, val, epoch)
                _save_epoch(phase, epoch, improved=improved, finished=finished, stopped_early=stopped_early,
                            val_metrics=record["val"])
            if ctx.enabled:
                dist.barrier()
            if stopped_early:
                log.info("phase %s: early stop after epoch %d (%d epochs without a better %s)",
                         name, epoch + 1, phase.stale, phase.metric_name)
                break
            if phase.budget.out:
                log.info("phase %s: wall-clock budget train.max_minutes=%s spent in epoch %d (step %d, %d images); "
                         "stopped with its checkpoints written", name, phase.budget.minutes, epoch + 1,
                         phase.global_step, phase.images_seen)
                break
    finally:
        if writer is not None:
            writer.close()
    return {"name": name, "dir": str(phase_dir), "best_checkpoint": str(phase.best_path),
            "last_checkpoint": str(phase.last_path), "best_metric": phase.best, "best_metric_name": phase.metric_name,
            "best_epoch": phase.best_epoch, "epochs_run": len(phase.history), "stopped_early": stopped_early,
            "out_of_time": phase.budget.out, "history": phase.history}


def _phase_finished(state: dict, cfg: dict, name: str, last_path: Path) -> bool:
    train_cfg = cfg["train"]
    minutes = train_cfg.get("max_minutes")
    if state["stopped_early"] or state["epoch"] + 1 >= int(train_cfg["epochs"]) or (
            minutes and float(state.get("train_seconds") or 0.0) >= 60.0 * float(minutes)):
        log.info("phase %s: already finished (%s), skipping", name, last_path)
        return True
    if state["config"]["train"]["epochs"] != train_cfg["epochs"]:
        log.warning("phase %s: extending the run from %d to %d epochs; the lr schedule is recomputed for "
                    "the new length", name, state["config"]["train"]["epochs"], train_cfg["epochs"])
    return False


def _setup_phase(cfg: dict, name: str, phase_dir: Path, init_path: Path | None, state: dict | None,
                 ctx: DistContext, changes: dict[str, tuple[Any, Any]] | None) -> _Phase:
    """Data, network, optimiser, schedule, budget and EMA; restored from ``state`` when resuming."""
    from training.datasets import build_dataset
    from training.losses import build_loss

    train_cfg = cfg["train"]
    device = resolve_device(str(train_cfg.get("device", "auto")), ctx)
    if train_cfg.get("deterministic"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = not train_cfg.get("deterministic", False)
    seed = int(train_cfg["seed"]) + ctx.rank
    seed_everything(seed)

    train_set = build_dataset(cfg["data"], "train")
    val_set = build_dataset(cfg["data"], "val")
    for split, dataset in (("train", train_set), ("val", val_set)):
        if len(dataset) == 0:
            raise ValueError(f"the {split} split of data.name={cfg['data']['name']} is empty "
                             f"(root={cfg['data'].get('root')}); training needs both train and val samples")
    repeats = int(train_cfg.get("batch_repeats") or 1)
    if repeats < 1:
        raise ValueError(f"train.batch_repeats must be >= 1, got {repeats}")
    iters = steps_per_epoch(len(train_set), train_cfg, ctx.world_size) * repeats
    epochs = int(train_cfg["epochs"])
    metric_name, mode = str(train_cfg.get("best_metric", "rmse")), str(train_cfg.get("best_mode", "min"))
    if metric_name not in selection_metrics():
        raise ValueError(f"train.best_metric must be one of {list(selection_metrics())}, got {metric_name!r}")
    curriculum_scale(train_cfg.get("resolution_curriculum"), 0.0)   # validates it before hours are spent

    # Pretrained encoder weights only matter for a fresh start; resume/init overwrite them.
    model = build_depth_model(cfg["model"], load_pretrained=state is None and init_path is None).to(device)
    if device.type == "cuda":   # cuDNN's fast NHWC convolution kernels (tensor cores with bf16/fp16)
        model = model.to(memory_format=torch.channels_last)
    if state is None and init_path is not None:
        init_state = load_checkpoint(init_path)
        model.net.load_state_dict(init_state.get("ema") or init_state["model"])
        log.info("phase %s: initialised from %s (epoch %d)", name, init_path, init_state["epoch"])
    optimizer = build_optimizer(model.net, cfg["optim"])
    budget = WallClockBudget(train_cfg.get("max_minutes"), spent_before=(state or {}).get("train_seconds", 0.0))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_multiplier(cfg["schedule"], iters, epochs, float(cfg["optim"]["lr"]), budget))
    amp_dtype = _amp_dtype(train_cfg.get("amp"), device)
    ema_decay = train_cfg.get("ema_decay")
    phase = _Phase(
        cfg=cfg, name=name, ctx=ctx, device=device, model=model, train_model=model, optimizer=optimizer,
        scheduler=scheduler, scaler=torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16),
        loss_fn=build_loss(cfg["loss"]).to(device), train_set=train_set, val_set=val_set, amp_dtype=amp_dtype,
        effects=build_camera_effects(train_cfg.get("camera_effects")), budget=budget,
        ema=ModelEma(model.net, float(ema_decay)) if ema_decay else None, repeats=repeats, iters=iters,
        epochs=epochs, metric_name=metric_name, mode=mode,
        focal_px=network_focal_px(val_set, cfg["data"]["input_size"]),
        provenance={"command": reproducible_command("training.train"),
                    "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "git_commit": git_commit(),
                    "dataset": cfg["data"]["name"], "phase": name, "init_from": str(init_path) if init_path else None},
        last_path=phase_dir / LAST_NAME, best_path=phase_dir / BEST_NAME,
        generator=torch.Generator().manual_seed(_mixed_seed(seed, 11)))
    if state is not None:
        _restore(phase, state, changes)
    if ctx.enabled:
        if ctx.world_size > 1 and device.type == "cuda":
            phase.model = nn.SyncBatchNorm.convert_sync_batchnorm(phase.model)
        phase.train_model = nn.parallel.DistributedDataParallel(
            phase.model, device_ids=[device.index] if device.type == "cuda" else None)
    return phase


def _restore(phase: _Phase, state: dict, changes: dict[str, tuple[Any, Any]] | None) -> None:
    """Continue exactly where ``state`` (a ``last.pt``) stopped: weights, optimiser, schedule, counters, RNG."""
    phase.model.net.load_state_dict(state["model"])
    optimizer, scheduler = phase.optimizer, phase.scheduler
    configured = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    _use_configured_hyperparameters(optimizer, scheduler, configured)
    phase.scaler.load_state_dict(state["scaler"])
    if phase.ema is not None:
        if state.get("ema_state"):
            phase.ema.load_state_dict(state["ema_state"])
        else:   # a run that had no EMA before: start the average from the resumed weights
            phase.ema.net.load_state_dict(state["model"])
    if state.get("generator") is not None:
        phase.generator.set_state(state["generator"])
    phase.start_epoch, phase.global_step = state["epoch"] + 1, state["global_step"]
    phase.images_seen = int(state.get("images_seen", 0))
    phase.best, phase.best_epoch = state["best_metric"], state["best_epoch"]
    phase.stale = state["epochs_without_improvement"]
    phase.history, phase.provenance = list(state["history"]), dict(state["provenance"])
    if changes:
        phase.provenance["resumed_with_changes"] = [*phase.provenance.get("resumed_with_changes", []), {
            "epoch": phase.start_epoch, "changes": {k: list(v) for k, v in changes.items()}}]
        log.warning("phase %s: applying changed config from epoch %d on: %s", phase.name, phase.start_epoch + 1,
                    ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changes.items()))
    restore_rng_state(state["rng"])
    log.info("phase %s: resuming from %s at epoch %d (step %d, %.0f s of training done)", phase.name,
             phase.last_path, phase.start_epoch, phase.global_step, phase.budget.elapsed())


def _train_epoch(phase: _Phase, epoch: int, on_batch: BatchHook | None, writer) -> tuple[dict, int, int, float]:
    """Train one epoch (or until the budget is spent); returns (loss totals, steps, images, seconds).

    Each loaded batch goes to the device once (``train.batch_repeats`` reuse that copy), and on a GPU the
    host waits for the device only where a number is printed or logged (every ``log_every`` steps, the
    progress report, the epoch's end): losses are summed as device tensors, the finite check batched there.
    """
    train_cfg = phase.train_cfg
    phase.train_model.train()
    totals: dict[str, Any] = {}
    n_steps, n_images, start = 0, 0, time.monotonic()
    log_every = int(train_cfg.get("log_every", 10))
    check_every = 1 if phase.device.type == "cpu" else log_every   # a CPU has no sync to save
    bar = _progress(phase.iters, f"phase {phase.name} epoch {epoch + 1}/{phase.epochs}", phase.ctx, train_cfg)
    for loader in epoch_loaders(phase.train_set, train_cfg, epoch, phase.ctx, pin_memory=phase.device.type == "cuda"):
        for batch in loader:
            if on_batch is not None:
                on_batch(epoch, batch)
            on_device = _to_device(batch, phase.device)
            for repeat in range(phase.repeats):   # train.batch_repeats: the batch again, mirrored, new effects
                progress = max(phase.global_step / max(1, phase.iters * phase.epochs), phase.budget.fraction())
                loss, parts = _train_step(phase.train_model, phase.loss_fn, phase.optimizer, phase.scaler, on_device,
                                          phase.device, phase.amp_dtype, train_cfg.get("grad_clip"), phase.effects,
                                          mirror=repeat % 2 == 1, roll_deg=float(train_cfg.get("roll_deg") or 0.0),
                                          crop_scale=curriculum_scale(train_cfg.get("resolution_curriculum"), progress),
                                          generator=phase.generator)
                if phase.ema is not None:
                    phase.ema.update(phase.model.net)
                phase.global_step += 1
                n_steps += 1
                n_images += int(on_device["image"].shape[0])
                phase.images_seen += int(on_device["image"].shape[0])
                for key, value in {"loss": loss, **parts}.items():
                    totals[key] = totals[key] + value if key in totals else value.clone()
                if phase.global_step % check_every == 0:
                    _check_finite(phase, totals["loss"], epoch)
                if bar is not None:
                    bar.update(loss)   # a 0-d tensor: read (synced) only when the bar prints it
                if writer is not None and phase.global_step % log_every == 0:
                    writer.add_scalar("train/loss", float(loss), phase.global_step)
                    for key, value in parts.items():
                        writer.add_scalar(f"train/{key}", float(value), phase.global_step)
                    for group in phase.optimizer.param_groups:   # the lr this step used: stepped below
                        writer.add_scalar(f"lr/{group['name']}", group["lr"], phase.global_step)
                phase.scheduler.step()
                if _budget_spent(phase):
                    break
            if phase.budget.out:
                break
        if phase.budget.out:
            break
    if bar is not None:
        bar.close()
    if totals:
        _check_finite(phase, totals["loss"], epoch)
    return {k: float(v) for k, v in totals.items()}, n_steps, n_images, time.monotonic() - start


def _to_device(batch: dict, device: torch.device) -> dict[str, torch.Tensor]:
    """The training tensors of a loaded batch on the device, once per batch (pinned memory: asynchronous)."""
    return {key: batch[key].to(device, non_blocking=True) for key in ("image", "depth", "valid")}


def _check_finite(phase: _Phase, loss_sum: torch.Tensor, epoch: int) -> None:
    """A NaN/inf anywhere in the summed losses since the epoch began stops the run with what to do."""
    if not bool(torch.isfinite(loss_sum)):
        raise FloatingPointError(
            f"phase {phase.name}: loss is {float(loss_sum)} at epoch {epoch}, by step {phase.global_step}; lower "
            "optim.lr, set train.grad_clip, or check the data for invalid depth")


def _validate(phase: _Phase, writer) -> dict:
    from training.evaluate import evaluate

    net = phase.eval_net
    eval_model = phase.model if phase.ema is None else _with_net(phase.model, net)
    return evaluate(eval_model, phase.val_set, phase.cfg, device=phase.device,
                    batch_size=int(phase.train_cfg["batch_size"]), amp_dtype=phase.amp_dtype,
                    num_vis=int(phase.train_cfg.get("vis_samples", 4)) if writer else 0, verbose=False)


def _with_net(model: nn.Module, net: nn.Module) -> nn.Module:
    """The training wrapper (normalisation) around another network: the EMA average."""
    from training.model_wrapper import DepthModel

    return DepthModel(net, model.mean.flatten().tolist(), model.std.flatten().tolist()).to(model.mean.device)


def _save_epoch(phase: _Phase, epoch: int, *, improved: bool, finished: bool, stopped_early: bool,
                val_metrics: dict) -> None:
    checkpoint = {
        "model": phase.model.net.state_dict(),
        "ema": phase.ema.net.state_dict() if phase.ema is not None else None,
        "ema_state": phase.ema.state_dict() if phase.ema is not None else None,
        "optimizer": phase.optimizer.state_dict(), "scheduler": phase.scheduler.state_dict(),
        "scaler": phase.scaler.state_dict(), "epoch": epoch, "global_step": phase.global_step,
        "images_seen": phase.images_seen, "train_seconds": phase.budget.elapsed(),
        "best_metric": phase.best, "best_metric_name": phase.metric_name, "best_mode": phase.mode,
        "best_epoch": phase.best_epoch, "epochs_without_improvement": phase.stale, "finished": finished,
        "stopped_early": stopped_early, "out_of_time": phase.budget.out,
        "val_metrics": val_metrics, "history": phase.history,
        "config": phase.cfg, "phase": phase.name, "train_focal_px": phase.focal_px, "provenance": phase.provenance,
        "rng": capture_rng_state(), "generator": phase.generator.get_state(),
    }
    # best.pt first: a crash between the two writes must never leave a last.pt whose
    # best_metric names an epoch that best.pt does not hold.
    if improved:
        save_checkpoint(checkpoint, phase.best_path)
    save_checkpoint(checkpoint, phase.last_path)


def _phase_summary(name: str, phase_dir: Path, state: dict) -> dict[str, Any]:
    return {"name": name, "dir": str(phase_dir), "best_checkpoint": str(phase_dir / BEST_NAME),
            "last_checkpoint": str(phase_dir / LAST_NAME), "best_metric": state["best_metric"],
            "best_metric_name": state["best_metric_name"], "best_epoch": state["best_epoch"],
            "epochs_run": len(state["history"]), "stopped_early": state["stopped_early"],
            "history": state["history"]}


def _train_step(model: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
                scaler: torch.amp.GradScaler, batch: dict, device: torch.device, amp_dtype: torch.dtype | None,
                grad_clip: float | None, effects: Callable | None = None, mirror: bool = False,
                roll_deg: float = 0.0, crop_scale: float = 1.0,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One optimiser step on ``batch`` (its image / depth / valid, already on ``device`` or moved there);
    returns the loss and its parts as detached 0-d tensors (reading them is the caller's sync)."""
    image, depth, valid = (batch[key].to(device, non_blocking=True) for key in ("image", "depth", "valid"))
    if crop_scale < 1.0:                # resolution curriculum: a window of the frame early in the run
        image, depth, valid = crop_for_curriculum((image, depth, valid), crop_scale, generator=generator)
    if mirror:                          # a repeated batch, mirrored left-right (depth stays exact)
        image, depth, valid = image.flip(-1), depth.flip(-1), valid.flip(-1)
    if roll_deg:                        # +-roll_deg about the optical axis (depth per pixel unchanged)
        image, depth, valid = random_roll(image, depth, valid, roll_deg, generator)
    if effects is not None:
        image = effects(image)          # camera effects on the image only, on the training device
    if device.type == "cuda":
        image = image.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        pred = model(image)
    loss, parts = loss_fn(pred.float(), depth, valid)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if grad_clip:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), float(grad_clip))
    scaler.step(optimizer)
    scaler.update()
    return loss.detach(), {k: v.detach() for k, v in parts.items()}


def _budget_spent(phase: "_Phase") -> bool:
    """Checked after every step; every rank stops at the same step (rank 0's clock decides)."""
    over = phase.budget.over()
    if phase.ctx.enabled:
        over = bool(_broadcast(float(over), phase.ctx, phase.device))
    phase.budget.out = over
    return over


def _broadcast(value: float, ctx: DistContext, device: torch.device) -> float:
    """Rank 0's validation metric on every rank, so all ranks agree on best/early stop."""
    if not ctx.enabled:
        return float(value)
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(tensor, src=0)
    return float(tensor.item())


def _progress(total: int, desc: str, ctx: DistContext, train_cfg: dict):
    """tqdm on a terminal, periodic log lines otherwise (training.progress); rank 0 only."""
    if not ctx.is_main:
        return None
    from training.progress import DEFAULT_SECONDS, Progress

    every_steps = train_cfg.get("progress_every")
    seconds = train_cfg.get("progress_seconds", DEFAULT_SECONDS)
    return Progress(total, desc, every_steps=int(every_steps) if every_steps else None,
                    every_seconds=float(seconds) if seconds else None)


def _summary_writer(phase_dir: Path, train_cfg: dict, ctx: DistContext, purge_step: int | None):
    if not ctx.is_main or not train_cfg.get("tensorboard", True):
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(phase_dir / "tensorboard"), purge_step=purge_step)


def _write_epoch(writer, record: dict, val: dict | None, epoch: int) -> None:
    step = record["global_step"]
    for key, value in record["train"].items():
        writer.add_scalar(f"epoch/train_{key}", value, step)
    for key, value in record["val"].items():
        writer.add_scalar(f"val/{key}", value, step)
    for index, panel in enumerate((val or {}).get("visuals", [])):
        writer.add_image(f"val/sample_{index}", panel, step, dataformats="HWC")


def _log_epoch(name: str, record: dict, metric_name: str, best: float | None, train_cfg: dict,
               eval_cfg: dict) -> None:
    shown = [k for k in eval_cfg.get("metrics") or ["abs_rel", "rmse", "delta1"] if k in record["val"]]
    val_text = " ".join(f"{k}={record['val'][k]:.4f}" for k in shown)
    log.info("phase %s epoch %d/%d: train loss %.4f | val %s | best %s %s", name, record["epoch"] + 1,
             train_cfg["epochs"], record["train"].get("loss", float("nan")), val_text, metric_name,
             "n/a" if best is None else f"{best:.4f}")


def git_commit() -> str | None:
    """The source tree's commit (with '-dirty' for local changes), or None outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


# ------------------------------------------------------------------------------------- CLI

def reproducible_command(module: str) -> str:
    """How this process was started, as a user would type it from the repository root."""
    if Path(sys.argv[0]).stem == module.rsplit(".", 1)[-1]:
        return shlex.join(["python", "-m", module, *sys.argv[1:]])
    return shlex.join(sys.argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.train", description="Train a depth network from a YAML recipe.",
        usage="%(prog)s [--config] RECIPE.yaml [key=value ...] [--resume [--apply-changes]]",
        epilog="example: python -m training.train --config training/configs/nyu_resnet34.yaml "
               "data.root=/datasets/nyu train.batch_size=16 output_dir=runs/nyu34")
    parser.add_argument("--config", type=Path, help="recipe in training/configs/ (or give it as the first argument)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="override a config value")
    parser.add_argument("--resume", action="store_true", help="continue the run in output_dir from its last.pt")
    parser.add_argument("--apply-changes", action="store_true",
                        help="with --resume: use config values that differ from the run's recorded config from the "
                             "resumed epoch on (without it such a resume is refused, naming the keys)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from training.config import ConfigError, load_config

    parser = build_parser()
    args = parser.parse_intermixed_args(argv)   # key=value may come before or after the options
    if args.config is None:
        if not args.overrides or "=" in args.overrides[0]:
            parser.error("give the recipe: --config training/configs/X.yaml (or as the first argument)")
        args.config = Path(args.overrides.pop(0))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.apply_changes and not args.resume:
            raise ConfigError("--apply-changes only makes sense with --resume")
        cfg = load_config(args.config, args.overrides)
        summary = train(cfg, resume=args.resume, apply_changes=args.apply_changes)
    except (ConfigError, CheckpointError, FileExistsError, FileNotFoundError, ValueError) as exc:
        print(f"training.train: error: {exc}", file=sys.stderr)
        return 2
    if summary["best_metric"] is not None and int(os.environ.get("RANK", "0")) == 0:
        print(f"best {summary['best_metric_name']} {summary['best_metric']:.4f}: {summary['best_checkpoint']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
