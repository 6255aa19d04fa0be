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
    """A private rclpy context for one test module, shut down after its last test."""
    import rclpy
    from rclpy.context import Context

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
