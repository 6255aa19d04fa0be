"""The runtime (node, predict, replay on onnxruntime) needs neither torch nor the `onnx` package:
requirements.txt can leave them out, and a Jetson keeps JetPack's own torch. Checked in a fresh
interpreter where importing either fails, as on a machine without them."""
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

BLOCK = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "torchvision", "onnx", "h5py", "tensorboard"}:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by test_runtime_deps)", name=name)
        return None
sys.meta_path.insert(0, Block())
for blocked in ("torch", "onnx"):
    try:
        __import__(blocked)
    except ModuleNotFoundError:
        pass
    else:
        raise SystemExit(f"{blocked} could still be imported")
"""


def run_without_torch_and_onnx(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    script = tmp_path / "check.py"
    script.write_text(BLOCK + textwrap.dedent(code))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)


def test_node_predict_and_replay_run_without_torch_or_onnx(tmp_path):
    from mde_ros.bags import fixtures
    from mde_ros.models.card import card_path_for

    # An ONNX whose card lives only in its metadata: read through onnxruntime.
    model = tmp_path / "embedded.onnx"
    shutil.copyfile(fixtures.TEST_MODEL, model)
    assert not card_path_for(model).exists()
    bag = fixtures.FIXTURE_DIR / fixtures.fixture_name("mcap")
    result = run_without_torch_and_onnx(f"""
        import numpy as np, rclpy
        from rclpy.parameter import Parameter
        from mde_ros.models.card import load_card_for
        from mde_ros.modelfiles import load_estimator
        from mde_ros.ros.depth_node import DepthNode
        from mde_ros.bags.replay import run_replay

        card = load_card_for({str(model)!r})
        assert card.name == "tiny_test_depth", card.name
        estimator = load_estimator({str(model)!r}, backend="auto")
        depth = estimator.estimate(np.zeros((48, 64, 3), np.uint8), None).depth
        assert depth.shape == (48, 64) and np.isfinite(depth).all()
        summary = run_replay({str(bag)!r}, "out", model={str(model)!r}, backend="onnxruntime", progress=False)
        assert summary["processed"] == summary["frames"] > 0
        rclpy.init()
        node = DepthNode(parameter_overrides=[Parameter("model", value={str(model)!r}),
                                              Parameter("backend", value="onnxruntime")])
        node.destroy_node()
        rclpy.shutdown()
        print("modules:", sorted(m for m in ("torch", "onnx") if m in sys.modules))
    """, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "modules: []" in result.stdout


def test_onnxruntime_fused_pipeline_runs_without_torch_or_onnx(tmp_path):
    """device_pipeline on onnxruntime with a fused model beside the model: the fused metadata and card
    come from onnxruntime, so neither torch nor onnx is imported (the export itself needs torch, here)."""
    torch = pytest.importorskip("torch")
    from mde_ros.models import build_model, export_onnx
    from mde_ros.models.card import ModelCard
    from mde_ros.inference.fused import export_fused_onnx, fused_path_for

    torch.manual_seed(0)
    card = ModelCard(name="fused-small", architecture="unet_plain", arch_kwargs={"base_channels": 4, "depth": 2},
                     input_height=32, input_width=48, train_focal_px=40.0)
    network = build_model(card.architecture, **card.arch_kwargs).eval()
    plain = export_onnx(network, card, tmp_path / "m.onnx")
    export_fused_onnx(network, card, fused_path_for(plain), 48, 64)
    result = run_without_torch_and_onnx(f"""
        import numpy as np
        from mde_ros.modelfiles import load_estimator
        from mde_ros.pipeline.estimator import EstimatorConfig
        from mde_ros.models.fused_meta import read_fused_metadata

        assert read_fused_metadata({str(tmp_path / "m.fused.onnx")!r})["width"] == 64
        estimator = load_estimator({str(plain)!r}, backend="onnxruntime",
                                   config=EstimatorConfig(device_pipeline=True))
        assert estimator.backend.fused_pipeline().accepts(48, 64, "stretch")
        result = estimator.estimate(np.full((48, 64, 3), 90, np.uint8), None)
        depth = result.depth
        assert depth.shape == (48, 64) and np.isfinite(depth).all()
        assert result.device is None  # no onnx to write inference.ort_outputs' graphs: numpy builds the outputs
        print("modules:", sorted(m for m in ("torch", "onnx") if m in sys.modules))
    """, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "modules: []" in result.stdout
