"""Suite-wide set-up: a private ROS domain per run, discovery kept on this machine; fixtures shared
by several test modules. rclpy, torch and cv2 are imported inside the fixtures: rclpy must come after
the environment below, and modules that use none of them should not pay for their import."""
import os
import random
from pathlib import Path

import pytest

from mde_ros.ros.discovery import localhost_discovery_env

# Set before any test imports rclpy, so every node in this run (and its subprocesses) shares
# one domain that parallel runs on the same machine are unlikely to share.
os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 101)))
# Humble reads ROS_LOCALHOST_ONLY, Iron+ ROS_AUTOMATIC_DISCOVERY_RANGE (mde_ros.ros.discovery).
for _name, _value in localhost_discovery_env(os.environ).items():
    os.environ.setdefault(_name, _value)


# Training/export/torch-backend dependencies (requirements-torch.txt, requirements-dev.txt): a test module
# that imports one of them is skipped where it is not installed, e.g. the runtime-only run on Python 3.10
# (.ci/run). The runtime never needs them: test_runtime_deps.py checks that.
OPTIONAL_MODULES = {"torch", "torchvision", "onnx", "onnxconverter_common", "h5py", "tensorboard", "timm"}


class _OptionalDepsModule(pytest.Module):
    def _getobj(self):
        try:
            return super()._getobj()
        except self.CollectError as exc:
            missing = exc.__cause__
            if isinstance(missing, ModuleNotFoundError) and (missing.name or "").split(".")[0] in OPTIONAL_MODULES:
                pytest.skip(f"needs {missing.name} (not installed)", allow_module_level=True)
            raise


def pytest_pycollect_makemodule(module_path, parent):
    if module_path.name == "conftest.py":
        return None
    return _OptionalDepsModule.from_parent(parent, path=module_path)


def needs(*modules: str):
    """Skip (not fail) a test whose optional dependency is missing."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    return pytest.mark.skipif(bool(missing), reason=f"needs {', '.join(missing)} (not installed)")


@pytest.fixture(scope="module")
def one_thread():
    """The test machine's cores are shared; one intra-op torch thread is faster overall."""
    torch = pytest.importorskip("torch")

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def rclpy_context():
    """A private rclpy context for one test module, shut down after its last test.

    Live nodes and probes run in this process's threads, and a full collection of the suite's heap (~330k
    objects: torch, onnx, every module's imports) holds the GIL for 0.1-0.25 s on an idle machine (more on a
    busy one), long enough to make a CameraInfo "late". So the heap is collected once and frozen here, as the
    node process freezes its own after start-up (ros/depth_node): later collections scan only new objects."""
    import gc

    import rclpy
    from rclpy.context import Context

    gc.collect()
    gc.freeze()
    context = Context()
    rclpy.init(context=context)
    yield context
    rclpy.shutdown(context=context)


@pytest.fixture(scope="session")
def render_folder_dataset():
    """Writes synthetic scenes with exact depth as a folder dataset (PNG + uint16 mm PNG, ``sceneNNN``):
    rendering costs ~0.1 s a frame, reading it back costs nothing, so every epoch is cheap."""
    import cv2
    import numpy as np

    from mde_ros.synthetic import render_frame
    from training.datasets import SPLITS

    def render(root: Path, counts: dict[str, int], width: int, height: int) -> Path:
        for split, count in counts.items():
            (root / split / "images").mkdir(parents=True)
            (root / split / "depths").mkdir(parents=True)
            for i in range(count):
                frame = render_frame(10_000 * SPLITS.index(split) + i, width=width, height=height)
                cv2.imwrite(str(root / split / "images" / f"scene{i:03d}.png"),
                            cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR))
                cv2.imwrite(str(root / split / "depths" / f"scene{i:03d}.png"),
                            np.round(frame.depth * 1000).astype(np.uint16))
        return root

    return render


@pytest.fixture
def fused_onnx_model(tmp_path, monkeypatch):
    """(card, plain ONNX path) of a small network with its fused model (160x120, stretch) beside it, and a
    private model cache (TensorRT engines) under tmp_path/cache. Export needs torch (skipped without)."""
    torch = pytest.importorskip("torch")
    from mde_ros.inference.fused import export_fused_onnx, fused_path_for
    from mde_ros.models import build_model, export_onnx
    from mde_ros.models.card import ModelCard

    monkeypatch.setenv("MDE_ROS_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    card = ModelCard(name="fused-small", architecture="unet_plain", arch_kwargs={"base_channels": 4, "depth": 2},
                     input_height=32, input_width=48, train_focal_px=40.0)
    with torch.no_grad():
        network = build_model(card.architecture, **card.arch_kwargs).eval()
        plain = export_onnx(network, card, tmp_path / "m.onnx")
        export_fused_onnx(network, card, fused_path_for(plain), 120, 160, policy="stretch")
    return card, plain
