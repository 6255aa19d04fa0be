"""The backend registry: one spec per backend module, the precision rules in one place, the factory
and auto made from the specs, and model files made above inference (mde_ros.modelfiles)."""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mde_ros.bags import fixtures
from mde_ros.inference import AUTO, BACKEND_NAMES, SPECS, create_backend, spec_of
from mde_ros.inference import onnxruntime_backend, tensorrt_backend, torch_backend
from mde_ros.inference.registry import AUTO_ORDER, auto_description, given_file, takes_option
from mde_ros.inference.spec import PRECISIONS, ModelRequest, check_run
from mde_ros.modelfiles import model_file, open_backend
from mde_ros.models.card import load_card_for

ROOT = Path(__file__).resolve().parents[1]
ORT, TRT, TORCH = onnxruntime_backend.NAME, tensorrt_backend.NAME, torch_backend.NAME


def test_each_backend_module_declares_one_spec_and_the_registry_lists_them():
    modules = (onnxruntime_backend, tensorrt_backend, torch_backend)
    assert sorted(m.SPEC.name for m in modules) == sorted(s.name for s in SPECS)
    assert all(any(m.SPEC is s for s in SPECS) for m in modules)
    for module in modules:
        assert module.SPEC.factory.name == module.SPEC.name == module.NAME
    assert BACKEND_NAMES == (AUTO, *(s.name for s in SPECS))
    assert [s.name for s in AUTO_ORDER] == [TRT, ORT, TORCH]
    assert all(s.name in auto_description() for s in AUTO_ORDER)


# What each backend ran before the registry (inference/__init__._runs_precision), as a table.
RUNS = {
    (TORCH, "cpu"): {"fp32"}, (TORCH, "cuda"): {"fp32", "fp16", "bf16"},
    (ORT, "cpu"): {"fp32", "int8"}, (ORT, "cuda"): {"fp32", "fp16"},
    (TRT, "cuda"): {"fp32", "fp16", "int8"}, (TRT, "cpu"): set(),
}


@pytest.mark.parametrize("name,device", sorted(RUNS))
def test_precision_rules(name, device):
    spec = spec_of(name)
    runs = {p for p in PRECISIONS if p in spec.runs(device, p)}
    assert runs == RUNS[(name, device)]
    for precision in PRECISIONS:
        if precision in runs:
            check_run(spec, device, precision)
        else:
            with pytest.raises(ValueError, match=f"'{name}'"):
                check_run(spec, device, precision, specs=SPECS)


def test_the_tensorrt_provider_adds_int8_to_onnxruntime_on_cuda():
    assert "int8" in spec_of(ORT).runs("cuda", "int8", {"trt_provider": True})
    with pytest.raises(ValueError, match=r"with trt_provider also int8\); int8 runs on: ") as info:
        check_run(spec_of(ORT), "cuda", "int8", {}, SPECS)
    assert "onnxruntime (cpu/cuda)" in str(info.value) and "tensorrt (cuda)" in str(info.value)
    with pytest.raises(ValueError, match="runs on a CUDA GPU: use device 'cuda', not 'cpu'"):
        check_run(spec_of(TRT), "cpu", "fp32")


def test_which_backends_take_an_option():
    assert takes_option(AUTO, "graph_cache_size") and takes_option(TORCH, "fast_path")
    assert takes_option(ORT, "max_batch") and takes_option(TRT, "max_batch") and not takes_option(TORCH, "max_batch")
    with pytest.raises(ValueError, match="unknown backend 'openvino'"):
        takes_option("openvino", "x")


def test_the_factory_builds_no_model_files_the_loader_does(tmp_path, monkeypatch):
    """create_backend runs only the file as given; open_backend makes the fp16 model first (cached)."""
    monkeypatch.setenv("MDE_ROS_CACHE", str(tmp_path / "cache"))
    model = fixtures.export_test_model(tmp_path / "tiny.onnx")
    source = ModelRequest(model, "onnx", "fp32", ORT)
    assert given_file(source) == model
    with pytest.raises(ValueError, match="fp16 model .* made above inference"):
        given_file(ModelRequest(model, "onnx", "fp16", ORT))
    fp16 = model_file(ModelRequest(model, "onnx", "fp16", ORT))
    assert fp16.parent == tmp_path / "cache" / "onnx" and fp16.name.endswith(".fp16.onnx")
    assert model_file(ModelRequest(model, "onnx", "fp16", ORT)) == fp16  # cached
    card = load_card_for(model)
    backend = create_backend(ORT, model, card)
    assert backend.model_path == model and backend.describe()["precision"] == "fp32"
    with pytest.raises(ValueError, match="only used with precision 'int8'"):
        open_backend(ORT, model, card, int8_model=str(model))


def test_inference_imports_neither_quantization_nor_bags():
    """Backends only load what they are given: nothing under inference/ reaches the code that makes
    model files (quantization) or reads bags, at top level or inside a function."""
    for path in sorted((ROOT / "mde_ros" / "inference").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert not name.startswith(("mde_ros.quantization", "mde_ros.bags", "mde_ros.modelfiles")), \
                    f"{path.name} imports {name}"


ECHO_BACKEND = '''
"""A stand-in backend (NOT a real runtime): the network's output is the batch's first channel x scale."""
from __future__ import annotations

import numpy as np

from mde_ros.inference.base import Backend, as_network_batch
from mde_ros.inference.spec import BackendOption, BackendSpec, check_run

NAME = "echo"


class EchoBackend(Backend):
    name = NAME

    def __init__(self, model_path, card, device="cpu", precision="fp32", scale=1, *, source=None):
        check_run(SPEC, device, precision)
        self.model_path, self.scale = model_path, scale

    def infer(self, batch):
        return as_network_batch(batch)[:, :1] * np.float32(self.scale)

    def describe(self):
        return {"backend": NAME, "device": "cpu", "precision": "fp32", "scale": self.scale}


SPEC = BackendSpec(name=NAME, factory=EchoBackend, devices=("cpu",), precisions={"cpu": ("fp32",)},
                   unavailable=lambda: None, auto_rank=None,
                   options=(BackendOption("scale", "echo.scale", "echo_scale", "--echo-scale", "int", 0,
                                          "stand-in: output = input x scale; 0: 1", low=0, high=10),))
'''


def test_a_new_backend_is_one_module_and_one_line(tmp_path):
    """Add a stand-in backend to a copy of the package the documented way (its module + one line in
    registry.SPECS) and find it everywhere: names, option table, ROS parameters, launch arguments, CLI
    flags, the factory and the loader."""
    copy = tmp_path / "src"
    shutil.copytree(ROOT / "mde_ros", copy / "mde_ros", ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "mde_ros" / "inference" / "echo_backend.py").write_text(ECHO_BACKEND)
    registry = copy / "mde_ros" / "inference" / "registry.py"
    text = registry.read_text()
    text = text.replace("from mde_ros.inference import onnxruntime_backend,",
                        "from mde_ros.inference import echo_backend, onnxruntime_backend,")
    text = text.replace("    torch_backend.SPEC,\n)", "    torch_backend.SPEC,\n    echo_backend.SPEC,\n)")
    registry.write_text(text)
    script = textwrap.dedent(f"""
        import argparse
        import numpy as np
        from mde_ros.inference import BACKEND_NAMES, available_backends, create_backend
        from mde_ros.inference.options import BY_PARAM, launch_arguments, options_from_params
        from mde_ros.modelargs import add_model_arguments, backend_options_of
        from mde_ros.modelfiles import load_estimator
        from mde_ros.ros.parameters import PARAMETERS

        assert BACKEND_NAMES[-1] == "echo" and available_backends()["echo"] is None
        assert BY_PARAM["echo.scale"].backends == ("echo",) and "echo.scale" in {{p.name for p in PARAMETERS}}
        assert ("echo_scale", "echo.scale", int) in [a[:3] for a in launch_arguments()]
        parser = argparse.ArgumentParser()
        add_model_arguments(parser)
        args = parser.parse_args(["--backend", "echo", "--echo-scale", "3"])
        assert backend_options_of(args) == {{"scale": 3}}
        assert options_from_params({{"echo.scale": 2}}, "echo") == {{"scale": 2}}
        estimator = load_estimator({str(fixtures.TEST_MODEL)!r}, "echo", scale=2)
        assert estimator.backend.describe()["scale"] == 2
        depth = estimator.estimate(np.full((48, 64, 3), 128, np.uint8)).depth
        assert depth.shape == (48, 64)
        print("echo backend: ok")
    """)
    env = dict(os.environ, PYTHONPATH=str(copy))
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "echo backend: ok" in result.stdout
