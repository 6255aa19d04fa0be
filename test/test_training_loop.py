"""Training loop: real CPU training steps on tiny synthetic scenes (learning, resume, checkpoints,
curriculum, phases, pretrained encoders, the DistributedDataParallel code path, CLI)."""
from __future__ import annotations

import logging
import math
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import yaml

from mde_ros.metrics import depth_metrics, mean_metrics
from mde_ros.models.resnet import ResNetEncoder
from mde_ros.pipeline.intrinsics import Intrinsics
from training.checkpoint import CheckpointError, find_checkpoint, load_checkpoint, save_checkpoint
from training.config import load_config
from training.datasets import build_dataset, chunk_indices
from training.model_wrapper import build_depth_model
from training.train import main as train_main
from training.train import train

N_TRAIN = 24          # samples per epoch in the quick runs (data.limit)
N_TRAIN_LEARN = 96    # the run that must learn something
N_VAL = 16
LEARN_EPOCHS = 12

pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py: one torch thread


@pytest.fixture(scope="module")
def scenes(tmp_path_factory, render_folder_dataset) -> Path:
    return render_folder_dataset(tmp_path_factory.mktemp("scenes"), {"train": N_TRAIN_LEARN, "val": N_VAL}, 64, 48)


def tiny_recipe(scenes: Path) -> dict:
    nyu = Intrinsics.nyu(64, 48)  # render_frame's default camera
    return {
        "model": {"name": "unet_resnet18",
                  "kwargs": {"encoder_depth": 3, "decoder_channels": [32, 16, 8], "max_depth": 10.0}},
        "data": {"name": "folder", "root": str(scenes), "input_size": [48, 64], "max_depth": 10.0,
                 "intrinsics": [nyu.fx, nyu.fy, nyu.cx, nyu.cy], "limit": N_TRAIN, "augment": {}},
        "loss": {"name": "l1"},
        "optim": {"name": "adamw", "lr": 3.0e-3, "weight_decay": 1.0e-4},
        "schedule": {"name": "none"},
        "train": {"epochs": 2, "batch_size": 8, "num_workers": 0, "seed": 0, "device": "cpu", "tensorboard": False},
    }


def write_recipe(directory: Path, scenes: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe(scenes)))
    return path


def tiny_config(directory: Path, scenes: Path, *overrides: str) -> dict:
    return load_config(write_recipe(directory, scenes), [f"output_dir={directory / 'run'}", *overrides])


class Interrupt(Exception):
    """Stands in for Ctrl-C / a killed job in the middle of an epoch."""


@pytest.fixture(scope="module")
def learning_run(tmp_path_factory, scenes):
    """One short run used by several tests: cosine schedule with warm-up, TensorBoard."""
    directory = tmp_path_factory.mktemp("learning")
    cfg = tiny_config(directory, scenes, f"data.limit={N_TRAIN_LEARN}", f"train.epochs={LEARN_EPOCHS}",
                      "optim.lr=1e-3", "schedule.name=cosine", "schedule.warmup_epochs=1", "train.tensorboard=true",
                      "train.log_every=1")
    return cfg, train(cfg)


def constant_baseline_rmse(cfg: dict) -> float:
    """Val RMSE of predicting the training set's mean depth everywhere."""
    train_set, val_set = build_dataset(cfg["data"], "train"), build_dataset(cfg["data"], "val")
    depths = [s["depth"][s["valid"]].numpy() for s in (train_set[i] for i in range(len(train_set)))]
    mean_depth = float(np.concatenate(depths).mean())
    per_image = []
    for i in range(len(val_set)):
        sample = val_set[i]
        gt, valid = sample["depth"][0].numpy(), sample["valid"][0].numpy()
        per_image.append(depth_metrics(np.full_like(gt, mean_depth), gt, valid, 1e-3, 10.0))
    return mean_metrics(per_image)["rmse"]


def test_short_cpu_run_beats_the_constant_depth_baseline(learning_run):
    cfg, summary = learning_run
    baseline = constant_baseline_rmse(cfg)
    history = summary["phases"][0]["history"]
    assert len(history) == LEARN_EPOCHS
    assert summary["best_metric_name"] == "rmse"
    # ~10 s of CPU training on 96 scenes reaches about 0.7x the baseline's RMSE on unseen scenes.
    assert summary["best_metric"] < 0.8 * baseline, (summary["best_metric"], baseline)
    assert history[-1]["train"]["loss"] < history[0]["train"]["loss"]


def test_run_leaves_resolved_config_tensorboard_and_schedule(learning_run):
    cfg, summary = learning_run
    out = Path(summary["output_dir"])
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["train"]["epochs"] == LEARN_EPOCHS and saved["schedule"]["name"] == "cosine"
    events = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert events and sum(e.stat().st_size for e in events) > 1000
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    accumulator.Reload()
    tags = accumulator.Tags()
    assert {"train/loss", "val/rmse", "val/abs_rel", "lr/decoder"} <= set(tags["scalars"])
    assert "val/sample_0" in tags["images"]
    # Cosine with one warm-up epoch (12 iterations of 8 images): lr rises linearly, peaks, then decays.
    lrs = [e.value for e in accumulator.Scalars("lr/decoder")]
    assert len(lrs) == LEARN_EPOCHS * N_TRAIN_LEARN // 8
    assert lrs[0] == pytest.approx(cfg["optim"]["lr"] / 12, rel=1e-5)
    assert max(lrs) == pytest.approx(cfg["optim"]["lr"], rel=1e-5)
    assert lrs[-1] < 0.1 * cfg["optim"]["lr"]


def test_best_checkpoint_tracks_validation_rmse(learning_run):
    _, summary = learning_run
    history = summary["phases"][0]["history"]
    rmses = [record["val"]["rmse"] for record in history]
    best, last = load_checkpoint(summary["best_checkpoint"]), load_checkpoint(summary["last_checkpoint"])
    assert best["best_metric"] == min(rmses) == summary["best_metric"]
    assert best["epoch"] == int(np.argmin(rmses)) and best["val_metrics"]["rmse"] == min(rmses)
    assert last["epoch"] == len(history) - 1 and last["finished"]
    assert find_checkpoint(summary["output_dir"]) == Path(summary["best_checkpoint"])
    # weights_only-loadable and the bare network's keys (no wrapper / DDP prefixes)
    assert all(not k.startswith(("net.", "module.")) for k in best["model"])


def test_checkpoint_write_is_atomic(tmp_path):
    path = save_checkpoint({"value": torch.ones(3)}, tmp_path / "last.pt")
    with pytest.raises(Exception):
        save_checkpoint({"value": torch.zeros(3), "unpicklable": lambda: None}, path)  # dies mid-write
    assert torch.equal(load_checkpoint(path)["value"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    (tmp_path / "foreign.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_resume_continues_exactly_where_it_stopped(tmp_path, scenes):
    recipe = ("train.epochs=4", "schedule.name=cosine", "schedule.warmup_epochs=1", "data.augment={hflip: 0.5}",
              "train.grad_clip=1.0")
    straight = train(tiny_config(tmp_path / "straight", scenes, *recipe))

    cfg = tiny_config(tmp_path / "interrupted", scenes, *recipe)

    def interrupt_in_epoch_3(epoch: int, batch: dict) -> None:
        if epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(cfg, on_batch=interrupt_in_epoch_3)
    assert load_checkpoint(Path(cfg["output_dir"]) / "last.pt")["epoch"] == 1
    with pytest.raises(FileExistsError, match="--resume"):
        train(cfg)
    resumed = train(cfg, resume=True)

    a, b = load_checkpoint(straight["last_checkpoint"]), load_checkpoint(resumed["last_checkpoint"])
    assert a["epoch"] == b["epoch"] == 3 and a["global_step"] == b["global_step"] == 12
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    for index, state in a["optimizer"]["state"].items():
        for key, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["optimizer"]["state"][index][key]))
    assert a["scheduler"] == b["scheduler"]
    assert [r["val"] for r in a["history"]] == [r["val"] for r in b["history"]]
    assert train(cfg, resume=True)["phases"][0]["epochs_run"] == 4  # finished: nothing left to do
    longer = {**cfg, "train": {**cfg["train"], "epochs": 5}}
    assert train(longer, resume=True)["phases"][0]["epochs_run"] == 5  # more epochs asked: one more


def test_early_stopping_after_patience_epochs_without_a_better_metric(tmp_path, scenes):
    # best_mode=max on RMSE: a model that learns keeps "failing" to beat its first epoch.
    cfg = tiny_config(tmp_path, scenes, "train.epochs=8", "train.early_stopping_patience=2", "train.best_mode=max")
    phase = train(cfg)["phases"][0]
    rmses = [record["val"]["rmse"] for record in phase["history"]]
    assert phase["stopped_early"] and len(rmses) == phase["best_epoch"] + 3 < 8
    assert max(rmses) == rmses[phase["best_epoch"]] == phase["best_metric"]
    last = load_checkpoint(phase["last_checkpoint"])
    assert last["finished"] and last["stopped_early"]
    assert train(cfg, resume=True)["phases"][0]["epochs_run"] == len(rmses)  # a finished run stays finished


def test_curriculum_visits_every_sample_once_per_epoch_one_chunk_at_a_time(tmp_path, scenes):
    cfg = tiny_config(tmp_path, scenes, "train.curriculum.chunk_size=10", "train.batch_size=4", "train.epochs=2")
    seen: dict[int, list[list[int]]] = {}
    train(cfg, on_batch=lambda epoch, batch: seen.setdefault(epoch, []).append(batch["index"].tolist()))
    assert sorted(seen) == [0, 1]
    for epoch, batches in seen.items():
        assert sorted(i for batch in batches for i in batch) == list(range(N_TRAIN))
        chunks = [set(chunk) for chunk in chunk_indices(N_TRAIN, 10, cfg["train"]["seed"], epoch)]
        # Batches never mix chunks, and the chunks come in order: one chunk in memory at a time.
        owners = [next(n for n, chunk in enumerate(chunks) if set(batch) <= chunk) for batch in batches]
        assert owners == sorted(owners) and len(set(owners)) == 3
    assert seen[0] != seen[1]  # reshuffled every epoch


def test_second_phase_starts_from_the_first_phases_best_checkpoint(tmp_path, scenes):
    # Phase 2 with lr 0 must keep phase 1's best parameters exactly (BatchNorm statistics still move).
    cfg = tiny_config(tmp_path, scenes, "optim.encoder_lr=1.0e-3",
                      "train.phases=[{name: coarse, lr: 3.0e-3, epochs: 2}, "
                      "{name: fine, lr: 0.0, epochs: 1, init_from: coarse}]")
    summary = train(cfg)
    out = Path(cfg["output_dir"])
    assert [p["name"] for p in summary["phases"]] == ["coarse", "fine"]
    assert (out / "coarse" / "best.pt").is_file() and (out / "fine" / "best.pt").is_file()
    assert find_checkpoint(out) == out / "fine" / "best.pt"
    coarse, fine = load_checkpoint(out / "coarse" / "best.pt"), load_checkpoint(out / "fine" / "last.pt")
    assert fine["provenance"]["init_from"] == str(out / "coarse" / "best.pt")
    assert fine["config"]["optim"]["lr"] == 0.0 and fine["config"]["train"]["epochs"] == 1
    # Differential lr: the encoder group keeps its ratio to the phase's lr (1e-3 : 3e-3).
    groups = {g["name"]: g["lr"] for g in load_checkpoint(out / "coarse" / "last.pt")["optimizer"]["param_groups"]}
    assert groups == {"encoder": pytest.approx(1e-3), "decoder": pytest.approx(3e-3)}
    assert {g["name"]: g["lr"] for g in fine["optimizer"]["param_groups"]} == {"encoder": 0.0, "decoder": 0.0}
    model = build_depth_model(cfg["model"], load_pretrained=False)
    parameters = {name for name, _ in model.net.named_parameters()}
    for name in parameters:
        assert torch.equal(coarse["model"][name], fine["model"][name]), name
    changed = [k for k in fine["model"] if k.endswith("running_mean")
               and not torch.equal(coarse["model"][k], fine["model"][k])]
    assert changed  # phase 2 really trained (forward passes in train mode) on top of phase 1


def test_pretrained_auto_without_cached_weights_warns_and_trains_from_scratch(tmp_path, scenes, monkeypatch, caplog):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    cfg = tiny_config(tmp_path, scenes, "model.pretrained=auto", "train.epochs=1")
    with caplog.at_level(logging.WARNING):
        summary = train(cfg)
    message = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "FROM SCRATCH" in message and "resnet18" in message and "empty_torch_home" in message
    assert math.isfinite(summary["best_metric"])


def torchvision_style_resnet18(path: Path) -> dict[str, torch.Tensor]:
    """A torchvision-keyed resnet18 state_dict (classifier included) with recognisable values."""
    generator = torch.Generator().manual_seed(7)
    state = {k: (torch.randn(v.shape, generator=generator) if v.is_floating_point() else v)
             for k, v in ResNetEncoder("resnet18", 5).state_dict().items()}
    state["fc.weight"], state["fc.bias"] = torch.randn(1000, 512), torch.randn(1000)
    torch.save(state, path)
    return state


def test_pretrained_path_initialises_the_encoder(tmp_path, scenes):
    state = torchvision_style_resnet18(tmp_path / "resnet18-f37072fd.pth")
    cfg = tiny_config(tmp_path, scenes, f"model.pretrained={tmp_path / 'resnet18-f37072fd.pth'}")
    model = build_depth_model(cfg["model"])
    encoder = model.net.encoder.state_dict()
    assert encoder.keys() <= state.keys()
    for key, value in encoder.items():
        assert torch.equal(value, state[key]), key

    missing = tiny_config(tmp_path, scenes, f"model.pretrained={tmp_path / 'nope.pth'}")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        build_depth_model(missing["model"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_torchrun_environment_selects_distributed_data_parallel(tmp_path, scenes, monkeypatch):
    """world_size=1 over gloo on CPU: the same code path torchrun uses with N GPUs."""
    for key, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(free_port())}.items():
        monkeypatch.setenv(key, value)
    cfg = tiny_config(tmp_path, scenes, "train.epochs=1")
    seen = []
    summary = train(cfg, on_batch=lambda epoch, batch: seen.extend(batch["index"].tolist()))
    assert summary["world_size"] == 1
    assert not dist.is_initialized()  # the run cleaned up the process group it created
    assert sorted(seen) == list(range(N_TRAIN))  # DistributedSampler with one rank covers the set
    model = build_depth_model(cfg["model"], load_pretrained=False)
    model.net.load_state_dict(load_checkpoint(summary["best_checkpoint"])["model"])  # no "module." prefix


def test_cli_trains_and_reports_bad_input_clearly(tmp_path, scenes, capsys):
    recipe = write_recipe(tmp_path, scenes)
    out = tmp_path / "cli_run"
    assert train_main([str(recipe), f"output_dir={out}", "train.epochs=1"]) == 0  # recipe as first argument
    assert (out / "best.pt").is_file() and (out / "config.yaml").is_file()
    assert "best rmse" in capsys.readouterr().out
    assert train_main(["--config", str(recipe), f"output_dir={out}", "train.epochs=1"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert train_main(["--config", str(recipe), f"output_dir={out}", "optim.name=rmsprop"]) == 2
    assert "optim.name must be one of" in capsys.readouterr().err
