"""GPU-speed training pieces, run for real on the CPU: the synthetic_world dataset (cached, re-posed
scenes, scene-grouped epoch order), camera effects that leave depth alone, the wall-clock budget,
fp16 weight parts, the fp16-weight ONNX export, and the H200 job script end to end at a tiny size."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from mde_ros.synthetic.world import render_world_view
from training.camera_effects import CameraEffects
from training.datasets import DatasetError, build_dataset
from training.datasets.world import SceneGroupedSampler, jpeg_round_trip, world_scene_seed

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")

TINY_MODEL = {"name": "unet_resnet18", "kwargs": {"encoder_depth": 3, "decoder_channels": [16, 8, 8],
                                                  "max_depth": 10.0}}


def world_cfg(**extra) -> dict:
    return {"name": "synthetic_world", "input_size": [32, 40], "max_depth": 10.0,
            "num_scenes": {"train": 3, "val": 1, "test": 2}, "views_per_scene": 4, **extra}


def test_world_dataset_is_deterministic_views_differ_and_depth_is_the_geometry():
    a, b = build_dataset(world_cfg(), "train"), build_dataset(world_cfg(), "train")
    assert len(a) == 12
    s0, s0b, s1 = a[5], b[5], a[6]
    torch.testing.assert_close(s0["depth"], s0b["depth"])
    torch.testing.assert_close(s0["intrinsics"], s0b["intrinsics"])
    assert not torch.equal(s0["depth"], s1["depth"]) and not torch.equal(s0["intrinsics"], s1["intrinsics"])
    # index 5 = scene 1, view 1; depth and camera equal a direct render at the network size
    view = render_world_view(world_scene_seed(0, "train", 1), 1, 40, 32)
    expected = np.where(view.frame.depth <= 10.0, view.frame.depth, 0)
    np.testing.assert_allclose(s0["depth"][0].numpy(), expected, rtol=0, atol=1e-6)
    intr = view.frame.intrinsics
    np.testing.assert_allclose(b[5]["intrinsics"].numpy(), [intr.fx, intr.fy, intr.cx, intr.cy], rtol=1e-6)


def test_canonical_camera_labels_undo_exactly_with_the_nodes_rescale():
    plain = build_dataset(world_cfg(), "val")[2]
    canonical = build_dataset(world_cfg(canonical_focal_px=100.0), "val")
    sample = canonical[2]
    fx = float(sample["intrinsics"][0])
    assert canonical.train_focal_px == 100.0
    both = plain["valid"] & sample["valid"]
    np.testing.assert_allclose((sample["depth"] * fx / 100.0)[both].numpy(), plain["depth"][both].numpy(), rtol=1e-5)


def test_splits_use_disjoint_scene_seed_ranges():
    assert world_scene_seed(0, "train", 999_999) < world_scene_seed(0, "val", 0) < world_scene_seed(0, "test", 0)
    assert world_scene_seed(1, "train", 0) > world_scene_seed(0, "test", 999_999)
    with pytest.raises(DatasetError):
        world_scene_seed(0, "train", 1_000_000)
    with pytest.raises(DatasetError, match="views_per_scene"):
        build_dataset(world_cfg(views_per_scene=0), "train")


def test_scene_grouped_order_keeps_each_workers_scenes_together():
    views, batch, workers = 8, 4, 3
    sampler = SceneGroupedSampler(12, views, batch, workers, seed=0, epoch=0, group=2)
    order = sampler.order()
    assert sorted(order) == list(range(12 * views))
    assert order == SceneGroupedSampler(12, views, batch, workers, seed=0, epoch=0, group=2).order()
    assert order != SceneGroupedSampler(12, views, batch, workers, seed=0, epoch=1, group=2).order()
    batches = [order[i:i + batch] for i in range(0, len(order), batch)]
    per_worker: dict[int, list[int]] = {}
    for k, b in enumerate(batches):
        per_worker.setdefault(k % workers, []).extend(i // views for i in b)
    for scenes in per_worker.values():           # a worker builds each of its scenes once
        assert len(set(scenes)) == 12 // workers
        changes = sum(1 for x, y in zip(scenes, scenes[1:]) if x != y)
        assert changes > len(set(scenes))          # ...while its batches mix its scenes


def test_jpeg_and_camera_effects_change_the_image_only():
    cfg = world_cfg(jpeg={"prob": 1.0, "quality": [30, 30]})
    clean, jpeg = build_dataset(world_cfg(), "train"), build_dataset(cfg, "train")
    torch.manual_seed(0)
    a = clean[0]
    torch.manual_seed(0)
    b = jpeg[0]
    torch.testing.assert_close(a["depth"], b["depth"])
    assert not torch.equal(a["image"], b["image"])
    rgb = np.zeros((8, 8, 3), np.uint8)
    assert jpeg_round_trip(rgb, np.random.default_rng(0), 0.0) is rgb

    from training.losses import build_loss
    from training.model_wrapper import build_depth_model
    from training.train import _train_step, build_optimizer

    batch = {k: torch.stack([clean[i][k] for i in range(4)]) for k in ("image", "depth", "valid")}
    effects = CameraEffects({"prob": 1.0, "blur_prob": 1.0, "noise_prob": 1.0})
    out = effects(batch["image"], torch.Generator().manual_seed(1))
    assert out.shape == batch["image"].shape and 0 <= float(out.min()) and float(out.max()) <= 1
    assert (out - batch["image"]).abs().mean() > 0.01
    seen = {}
    real_loss = build_loss({"name": "l1"})

    def recording_loss(pred, depth, valid):
        seen.update(depth=depth.clone(), valid=valid.clone())
        return real_loss(pred, depth, valid)

    model = build_depth_model(TINY_MODEL, load_pretrained=False)
    optimizer = build_optimizer(model.net, {"name": "adamw", "lr": 1e-3})
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    depth_before = batch["depth"].clone()
    _train_step(model, recording_loss, optimizer, scaler, batch, torch.device("cpu"), None, None, effects)
    torch.testing.assert_close(seen["depth"], depth_before)
    torch.testing.assert_close(seen["valid"], batch["valid"])
    _train_step(model, recording_loss, optimizer, scaler, batch, torch.device("cpu"), None, None, effects, mirror=True)
    torch.testing.assert_close(seen["depth"], depth_before.flip(-1))
    with pytest.raises(ValueError, match="unknown key"):
        CameraEffects({"fog": 1.0})


def tiny_run(tmp_path: Path, **train) -> dict:
    return {"model": TINY_MODEL, "data": world_cfg(canonical_focal_px=30.0),
            "loss": {"name": "l1"}, "optim": {"name": "adamw", "lr": 1e-3}, "schedule": {"name": "none"},
            "train": {"epochs": 40, "batch_size": 4, "num_workers": 0, "seed": 0, "device": "cpu",
                      "tensorboard": False, "camera_effects": {"prob": 0.5}, **train},
            "output_dir": str(tmp_path / "run")}


def test_wall_clock_budget_stops_mid_epoch_with_checkpoints(tmp_path):
    from training.checkpoint import load_checkpoint
    from training.config import load_config
    from training.train import train

    path = tmp_path / "r.yaml"
    import yaml
    path.write_text(yaml.safe_dump(tiny_run(tmp_path, max_minutes=0.0001, batch_repeats=2)))
    summary = train(load_config(path, []))
    phase = summary["phases"][0]
    assert phase["out_of_time"] is True and phase["epochs_run"] == 1
    state = load_checkpoint(summary["last_checkpoint"])
    assert state["out_of_time"] is True and state["finished"] is True
    assert 1 <= state["global_step"] < 3 * 2          # stopped after its first step, not the 3 batches x 2 repeats
    assert Path(summary["best_checkpoint"]).is_file()
    assert state["train_focal_px"] == 30.0             # the canonical camera, for the card
    assert phase["history"][0]["images_per_s"] > 0
    with pytest.raises(ValueError, match="max_minutes"):
        path.write_text(yaml.safe_dump(tiny_run(tmp_path / "b", max_minutes=-1)))
        train(load_config(path, []))


def test_fp16_parts_round_trip_and_fp16_weight_onnx_matches_torch(tmp_path):
    import onnx
    import onnxruntime as ort

    from mde_ros.models.card import ModelCard
    from mde_ros.models.export import export_onnx, verify_onnx
    from training.checkpoint import save_checkpoint
    from training.model_wrapper import build_depth_model
    from training.weights_io import pack, read_parts, unpack

    model = build_depth_model(TINY_MODEL, load_pretrained=False)
    cfg = tiny_run(tmp_path)
    state = {"model": model.net.state_dict(), "config": cfg, "epoch": 3, "global_step": 9,
             "val_metrics": {"rmse": 1.0}, "provenance": {"command": "x"}, "train_focal_px": 30.0, "phase": "main"}
    save_checkpoint(state, tmp_path / "best.pt")
    written = pack(tmp_path / "best.pt", tmp_path / "out", chunk_mib=0.1, manifest_dir=tmp_path / "report")
    parts = [p for p in written if p.name.startswith("model.part")]
    assert len(parts) >= 3 and all(p.stat().st_size <= 0.1 * 2**20 for p in parts)
    packed = read_parts(tmp_path / "out", tmp_path / "report" / "model.parts.json")
    assert all(v.dtype == torch.float16 for v in packed["model"].values() if v.is_floating_point())
    restored = unpack(tmp_path / "out", tmp_path / "restored.pt", tmp_path / "report" / "model.parts.json")
    from training.checkpoint import load_checkpoint
    back = load_checkpoint(restored)
    assert back["epoch"] == 3 and back["train_focal_px"] == 30.0 and back["config"] == cfg
    for key, value in model.net.state_dict().items():
        expected = value.half().float() if value.is_floating_point() else value
        torch.testing.assert_close(back["model"][key], expected, rtol=0, atol=0)
    # a damaged copy is refused
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for p in parts:
        (damaged / p.name).write_bytes(p.read_bytes())
    (damaged / parts[1].name).write_bytes(parts[1].read_bytes()[:-10])
    with pytest.raises(ValueError, match="SHA-256"):
        read_parts(damaged, tmp_path / "report" / "model.parts.json")
    (damaged / parts[1].name).unlink()
    with pytest.raises(ValueError, match="missing"):
        read_parts(damaged)

    # ONNX: fp16-stored weights, fp32 I/O, dynamic shape, close to torch
    net = model.net.eval()
    card = ModelCard(name="t", architecture="unet_resnet18", input_height=32, input_width=32)
    fp32_path = export_onnx(net, card, tmp_path / "fp32.onnx")
    fp16_path = export_onnx(net, card, tmp_path / "fp16.onnx", fp16_weights=True)
    proto = onnx.load(str(fp16_path))
    kinds = {init.data_type for init in proto.graph.initializer if len(init.dims) and np.prod(init.dims) >= 16}
    assert kinds == {onnx.TensorProto.FLOAT16}
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert fp16_path.stat().st_size < 0.6 * fp32_path.stat().st_size
    assert verify_onnx(fp16_path, net, batch=2, height=48, width=64) < 0.05        # fp16 rounding of weights
    net.load_state_dict({k: (v.half().float() if v.is_floating_point() else v) for k, v in net.state_dict().items()})
    assert verify_onnx(fp16_path, net, batch=1, height=32, width=48) < 1e-3         # the same weights: fp32 compute
    session = ort.InferenceSession(str(fp16_path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"image": np.zeros((3, 3, 64, 32), np.float32)})
    assert out.shape == (3, 1, 64, 32) and out.dtype == np.float32


@pytest.mark.skipif(sys.platform != "linux", reason="bash job script")
def test_h200_job_script_runs_end_to_end_and_exports(tmp_path):
    """tools/h200/train.sh at a tiny size on the CPU (what the GPU run will do, minus the GPU), then
    tools/h200/export.sh on what it left in $OUT."""
    out, models = tmp_path / "out", tmp_path / "models"
    env = {**os.environ, "OUT": str(out), "TRAIN_SECONDS": "3", "BENCH_SECONDS": "0.3", "WORK": str(tmp_path / "work"),
           "PYTHON": sys.executable, "PYTHONPATH": str(REPO)}
    tiny = ["--workers", "1", "--no-readers", "--heldout-scenes", "2", "--heldout-views", "2",
            "model.name=unet_resnet18", "model.kwargs.encoder_depth=3", "model.kwargs.decoder_channels=[16,8,8]",
            "data.input_size=[32,32]", "data.views_per_scene=2", "data.num_scenes.val=1", "train.batch_size=2"]
    job = subprocess.run(["bash", str(REPO / "tools/h200/train.sh"), *tiny], env=env, capture_output=True, text=True,
                         timeout=600)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    assert "images_per_s" in job.stdout and "device_busy_share" in job.stdout
    names = sorted(p.name for p in out.iterdir())
    assert names[-1] == "train_report.tgz" and names[:-1] == [f"model.part{i}" for i in range(len(names) - 1)]
    assert len(names) <= 6
    with tarfile.open(out / "train_report.tgz") as tar:
        members = set(tar.getnames())
    assert {"log.txt", "card_fields.json", "config.yaml", "heldout.json", "benchmark.json",
            "model.parts.json"} <= members
    export = subprocess.run(["bash", str(REPO / "tools/h200/export.sh"), str(out), str(models / "tiny")], env=env,
                            capture_output=True, text=True, timeout=300)
    assert export.returncode == 0, export.stdout[-3000:] + export.stderr[-3000:]
    card = json.loads((models / "tiny.card.json").read_text())
    assert card["train_focal_px"] == pytest.approx(259.43)
    assert card["metrics"]["split"] == "heldout_synthetic" and "by_kind" in card["metrics"]
    assert "bash tools/h200/train.sh" in card["provenance"]["notes"]
    assert "GPU time" in card["provenance"]["notes"]
