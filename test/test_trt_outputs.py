"""inference.trt_outputs: the fused engine's outputs built by small TensorRT engines where its depth is.

Against the TensorRT API stand-in and the CUDA runtime stand-in (test/trt_standin.py: NOT TensorRT, NOT
CUDA, never verification; the stand-in's "engines" run the graphs with onnxruntime on host memory that
plays the device). What this holds: the graphs use only operators and types that onnx-tensorrt documents
for TensorRT 10 (the stand-in parser's table), the engines are built fp32 with static shapes and cached, the
depth input is the fused engine's own device buffer, each output comes down once straight into its message
buffer (the scan: only its rows), the bytes equal the numpy builders', a deferred build keeps its own copy
of the depth, and a failed start-up check leaves numpy building the outputs. What only a TensorRT machine
shows (tools/trt_check.py, tools/h200/bench.sh): that TensorRT builds these graphs, computes the same
values, and how long it takes.
"""
from __future__ import annotations

import logging

import numpy as np
import pytest

from mde_ros.pipeline.frame_step import StepConfig, run_frame
from mde_ros.pipeline.geometry import scan_rows
from mde_ros.pipeline.outputs import METRIC_KEYS, FrameData, OutputConfig, build_parts
from mde_ros.synthetic import render_frame
from trt_standin import CudaRuntimeStandIn, TensorRTStandIn, engine_files, install

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
import trt_standin  # noqa: E402

from mde_ros.inference import output_graphs  # noqa: E402
from mde_ros.inference.tensorrt_backend import TensorRTBackend  # noqa: E402

VERSIONS = ("10.3.0", "11.1.0")
CONFIGS = [OutputConfig(),
           OutputConfig(cloud_rgb=False, cloud_organized=False, cloud_decimation=2, cloud_max_range=3.0,
                        colormap="inferno", scan_height=3)]


def fast_estimator(card, plain, version="10.3.0", monkeypatch=None):
    from mde_ros.pipeline.estimator import DepthEstimator, EstimatorConfig

    trt, cudart = TensorRTStandIn(version), CudaRuntimeStandIn()
    install(monkeypatch, trt, cudart)
    backend = TensorRTBackend(plain, card, "cuda", "fp32")
    return DepthEstimator(backend, card, EstimatorConfig(device_pipeline=True, max_depth=4.0)), trt, cudart


def output_builds(trt, root):
    return [b for b in trt.built if b["onnx"].startswith(str(root / "cache"))]


def test_every_graph_uses_only_what_tensorrts_onnx_parser_documents():
    """The output graphs pass the stand-in parser's operator / type table (onnx-tensorrt docs/operators.md,
    10.x); the first colour graph's uint8 Gather (onnxruntime runs it, TensorRT's Gather has no uint8) does not."""
    import onnx
    from onnx import TensorProto, helper

    graphs = [output_graphs.depth_graph(48, 64), output_graphs.depth_graph(48, 64, (10, 13)),
              output_graphs.colorized_graph(48, 64, "turbo"), output_graphs.cloud_graph(48, 64, 1, 32),
              output_graphs.cloud_graph(48, 64, 3, 16)]
    for model in graphs:
        assert trt_standin._unsupported(onnx.load_from_string(model)) is None
    table = helper.make_tensor("table", TensorProto.UINT8, [2, 3], [0] * 6)
    uint8_gather = helper.make_model(helper.make_graph(
        [helper.make_node("Gather", ["table", "index"], ["rgb"], axis=0)], "g",
        [helper.make_tensor_value_info("index", TensorProto.INT32, [4])],
        [helper.make_tensor_value_info("rgb", TensorProto.UINT8, [4, 3])], [table]))
    assert "Gather" in trt_standin._unsupported(uint8_gather)


@pytest.mark.parametrize("version", VERSIONS)
def test_the_fused_engine_builds_its_outputs_with_output_engines(version, fused_onnx_model, tmp_path, monkeypatch):
    """DepthEstimator + TensorRT (stand-in) + device_pipeline: DepthResult.device is a TrtDeviceFrame on the
    fused engine's depth buffer; run_frame's outputs equal numpy's builders' bytes on the returned depth; every
    output comes down once, into its message buffer (pageable), the scan only its rows; the output engines are
    fp32 with static shapes, built once, and a new backend loads them from the cache."""
    from mde_ros.inference.trt_outputs import TrtDeviceFrame

    card, plain = fused_onnx_model
    estimator, trt, cudart = fast_estimator(card, plain, version, monkeypatch)
    estimator.estimate(render_frame(0, 160, 120).rgb)  # the start-up check's own engines and copies first
    for seed, config in zip((1, 2), CONFIGS):
        frame = render_frame(seed, 160, 120)
        copies = len(cudart.copies)
        step = run_frame(estimator, frame.rgb, frame.intrinsics, METRIC_KEYS,
                         StepConfig(config, estimator.min_depth, estimator.max_depth))
        assert isinstance(step.result.device, TrtDeviceFrame)
        fused = estimator.backend.fused_pipeline()
        assert step.result.device.depth_ptr == fused._bindings["depth"].buffer.device_ptr  # no copy on the device
        want = build_parts(FrameData(step.result, frame.rgb, config, estimator.min_depth, estimator.max_depth),
                           METRIC_KEYS)
        got = step.outputs
        assert np.isinf(np.frombuffer(want.depth.data, "<f4")).any()  # max_depth 4 m marks some pixels
        assert bytes(got.depth.data) == bytes(want.depth.data)
        assert bytes(got.colorized.data) == bytes(want.colorized.data)
        assert bytes(got.cloud.data) == bytes(want.cloud.data) and got.cloud.width == want.cloud.width
        assert got.scan.ranges.tobytes() == want.scan.ranges.tobytes()
        downloads = [n for kind, n, _ in cudart.copies[copies:] if kind == "pageable cudaMemcpyDeviceToHost"]
        rows = len(range(120)[scan_rows(frame.intrinsics, config.scan_height)])
        points = -(-160 // config.cloud_decimation) * -(-120 // config.cloud_decimation)  # all, before compression
        assert sorted(downloads) == sorted([160 * 120 * 4, 160 * 120 * 3, rows * 160 * 4,
                                            points * (32 if config.cloud_rgb else 16)])
    builds = output_builds(trt, tmp_path)
    assert all(b["strongly_typed"] and b["flags"] == [] for b in builds)
    camera = [b for b in builds if b["profiles"][0]["depth"][0] == (1, 120, 160)]
    assert len(camera) == 5  # marked, two colour maps, two cloud layouts: each built once
    assert all(len(set(shapes)) == 1 for b in camera for shapes in b["profiles"][0].values())  # static
    cached = len(engine_files(tmp_path / "cache"))
    again, trt_again, _ = fast_estimator(card, plain, version, monkeypatch)
    frame = render_frame(3, 160, 120)
    run_frame(again, frame.rgb, frame.intrinsics, METRIC_KEYS,
              StepConfig(CONFIGS[0], again.min_depth, again.max_depth))
    assert trt_again.built == [] and len(engine_files(tmp_path / "cache")) == cached
    estimator.backend.close()
    again.backend.close()


def test_a_deferred_build_uses_its_own_copy_of_the_depth(fused_onnx_model, monkeypatch):
    """Replay's deferred build (run_frame(defer_outputs=True)) gets a device copy of the depth (TrtDeviceFrame.kept):
    the next estimate overwrites the fused engine's buffer, and frame N's outputs are still frame N's. The copy's
    buffer returns to the pool when its frame is gone."""
    import gc

    card, plain = fused_onnx_model
    estimator, trt, cudart = fast_estimator(card, plain, monkeypatch=monkeypatch)
    config = StepConfig(OutputConfig(), estimator.min_depth, estimator.max_depth)
    first, second = render_frame(4, 160, 120), render_frame(5, 160, 120)
    step = run_frame(estimator, first.rgb, first.intrinsics, METRIC_KEYS, config, defer_outputs=True)
    assert step.outputs is None
    assert [kind for kind, _, _ in cudart.copies[-1:]] == ["cudaMemcpyDeviceToDevice"]
    estimator.estimate(second.rgb, second.intrinsics)
    got = step.build()
    want = build_parts(FrameData(step.result, first.rgb, OutputConfig(), estimator.min_depth, estimator.max_depth),
                       METRIC_KEYS)
    assert bytes(got.depth.data) == bytes(want.depth.data)
    assert bytes(got.cloud.data) == bytes(want.cloud.data)
    outputs = estimator.backend.fused_pipeline()._outputs.value
    del step, got
    gc.collect()
    assert len(outputs._copies[160 * 120 * 4]) == 1  # given back for the next deferred frame
    estimator.backend.close()


def test_output_engines_that_fail_the_start_up_check_leave_numpy_building(fused_onnx_model, monkeypatch, caplog):
    """A TensorRT whose parser refuses an operator of the graphs (here: the stand-in's table without ConstantOfShape)
    fails the start-up check: one warning, no DeviceFrame, numpy's builders, the depth unchanged."""
    card, plain = fused_onnx_model
    monkeypatch.setitem(trt_standin.OPERATOR_TYPES, "ConstantOfShape", (0, ()))  # only the cloud graph has it
    estimator, trt, cudart = fast_estimator(card, plain, monkeypatch=monkeypatch)
    frame = render_frame(1, 160, 120)
    with caplog.at_level(logging.WARNING, "mde_ros.inference.tensorrt_backend"):
        step = run_frame(estimator, frame.rgb, frame.intrinsics, METRIC_KEYS,
                         StepConfig(OutputConfig(), estimator.min_depth, estimator.max_depth))
        estimator.estimate(frame.rgb, frame.intrinsics)
    assert step.result.device is None
    warnings = [r.getMessage() for r in caplog.records if "output engines" in r.getMessage()]
    assert len(warnings) == 1 and "ConstantOfShape" in warnings[0] and "numpy" in warnings[0]
    want = build_parts(FrameData(step.result, frame.rgb, OutputConfig(), estimator.min_depth, estimator.max_depth),
                       METRIC_KEYS)
    assert bytes(step.outputs.cloud.data) == bytes(want.cloud.data)
    estimator.backend.close()
