"""inference.ort_outputs (outputs built by onnxruntime graphs where the fused depth is) held to numpy.

Real onnxruntime sessions on the CPU provider (no GPU in this project's sessions): the depth image, the
colourised image and the clouds are byte-identical to pipeline.outputs / colorize / geometry on the same
depth (NaN payloads and zero padding included); the scan's ranges equal depth_to_scan's.
"""
import math

import numpy as np
import pytest

from mde_ros.pipeline.colorize import colorize
from mde_ros.pipeline.geometry import depth_to_scan, pack_cloud
from mde_ros.pipeline.intrinsics import Intrinsics
from mde_ros.pipeline.outputs import mark_out_of_range
from mde_ros.synthetic import render_frame

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")  # the graphs are written with onnx.helper (not a runtime requirement)
from mde_ros.inference.ort_outputs import OrtDeviceFrame, OrtOutputs, self_check  # noqa: E402


def depth_maps():
    """Depth maps with NaN, +-Inf, zero, negative, out-of-range and valid values, and ties with the limits."""
    frame = render_frame(5, 96, 72)
    depth = frame.depth.copy()
    depth[5:9, 10:20] = np.nan
    depth[20:22, :] = 0.1  # too near
    depth[30:31, :] = 9.0  # too far
    depth[36, 40:50] = np.nan  # in the scan's rows
    depth[40, :5], depth[41, :5], depth[42, :3] = np.inf, -np.inf, 0.0
    depth[43, :4] = -1.0
    depth[44, :6] = [np.float32(0.3), np.float32(6.0), np.float32(0.5), np.float32(5.0), 1e30, -1e30]
    rng = np.random.default_rng(3)
    noisy = rng.uniform(-1.0, 12.0, (61, 83)).astype(np.float32)  # odd sizes: decimation's ceil
    noisy[rng.random(noisy.shape) < 0.05] = np.nan
    noisy[rng.random(noisy.shape) < 0.02] = np.inf
    noisy[rng.random(noisy.shape) < 0.02] = -np.inf
    # every level k + 0.5 exactly (round half to even): with 0..255/64 m the scale is 64, d = top - (k + .5) / 64
    top = np.float32(255 / 64)
    halves = top - (np.arange(255, dtype=np.float32) + np.float32(0.5)) / np.float32(64)
    ramp = np.tile(halves, (4, 1))
    return [("scene", depth, frame.intrinsics, frame.rgb),
            ("noisy", noisy, Intrinsics(70.0, 64.0, 40.3, 29.7, 83, 61),
             rng.integers(0, 256, (61, 83, 3), dtype=np.uint8)),
            ("ramp", ramp, Intrinsics(100.0, 100.0, 127.0, 1.5, 255, 4), None)]


MAPS = depth_maps()
IDS = [name for name, *_ in MAPS]
LIMITS = [(0.3, 6.0), (0.0, 10.0)]


@pytest.fixture(scope="module")
def outputs():
    return OrtOutputs(ort, ["CPUExecutionProvider"])


def frame_of(depth, outputs):
    return OrtDeviceFrame(ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(depth[None])), outputs)


@pytest.mark.parametrize("case", MAPS, ids=IDS)
@pytest.mark.parametrize("limits", LIMITS)
def test_depth_image_is_mark_out_of_range_to_the_byte(outputs, case, limits):
    _, depth, _, _ = case
    packed = frame_of(depth, outputs).depth_image(*limits)
    height, width = depth.shape
    assert (packed.height, packed.width, packed.encoding, packed.step) == (height, width, "32FC1", width * 4)
    assert bytes(packed.data) == mark_out_of_range(depth, *limits).tobytes()


@pytest.mark.parametrize("case", MAPS, ids=IDS)
@pytest.mark.parametrize("limits", LIMITS + [(0.0, 255 / 64)])
@pytest.mark.parametrize("colormap", ["turbo", "inferno", "jet"])
def test_colorized_is_colorize_to_the_byte(outputs, case, limits, colormap):
    _, depth, _, _ = case
    packed = frame_of(depth, outputs).colorized(*limits, colormap)
    assert (packed.encoding, packed.step) == ("rgb8", depth.shape[1] * 3)
    expected = colorize(depth, *limits, colormap)
    np.testing.assert_array_equal(np.frombuffer(packed.data, np.uint8).reshape(expected.shape), expected)


@pytest.mark.parametrize("case", MAPS[:2], ids=IDS[:2])
@pytest.mark.parametrize("rgb", [False, True])
@pytest.mark.parametrize("decimation, organized, ranges", [
    (1, True, (0.0, math.inf)), (1, False, (0.0, math.inf)), (2, True, (0.5, 5.0)), (3, False, (0.5, 5.0)),
    (4, True, (0.0, 4.0))])
def test_cloud_is_pack_cloud_to_the_byte(outputs, case, rgb, decimation, organized, ranges):
    _, depth, intr, colour = case
    colour = colour if rgb else None
    frame = frame_of(depth, outputs)
    for limits in LIMITS:
        expected = pack_cloud(mark_out_of_range(depth, *limits), intr, colour, decimation, *ranges, organized)
        actual = frame.cloud(*limits, intr, colour, decimation, *ranges, organized)
        for name in ("height", "width", "fields", "point_step", "row_step", "is_dense"):
            assert getattr(actual, name) == getattr(expected, name), name
        assert bytes(actual.data) == bytes(expected.data)  # NaN bits, padding and rgb included
        assert actual.width * actual.height > 0


@pytest.mark.parametrize("case", MAPS[:2], ids=IDS[:2])
@pytest.mark.parametrize("scan_height", [1, 5])
def test_scan_is_depth_to_scan(outputs, case, scan_height):
    _, depth, intr, _ = case
    expected = depth_to_scan(mark_out_of_range(depth, 0.3, 6.0), intr, scan_height, 0.45, 5.0)
    actual = frame_of(depth, outputs).scan(0.3, 6.0, intr, scan_height, 0.45, 5.0)
    assert (actual.angle_min, actual.angle_max, actual.angle_increment) == (
        expected.angle_min, expected.angle_max, expected.angle_increment)
    assert actual.ranges.tobytes() == expected.ranges.tobytes()
    assert frame_of(depth, outputs).scan(0.3, 6.0, intr, 1000, 0.45, 5.0) is None  # does not fit: no scan


def test_bad_arguments_are_refused_like_the_numpy_builders(outputs):
    _, depth, intr, colour = MAPS[0]
    frame = frame_of(depth, outputs)
    with pytest.raises(ValueError, match="but the intrinsics are for"):  # pack_cloud's own check
        frame.cloud(0.3, 6.0, Intrinsics(50.0, 50.0, 10.0, 10.0, 20, 20), None, 1, 0.0, math.inf, True)
    with pytest.raises(ValueError, match="decimation"):
        frame.cloud(0.3, 6.0, intr, None, 0, 0.0, math.inf, True)
    with pytest.raises(ValueError, match="rgb must be"):
        frame.cloud(0.3, 6.0, intr, colour[:10], 1, 0.0, math.inf, True)
    with pytest.raises(ValueError, match="min_depth < max_depth"):
        frame.colorized(6.0, 0.3, "turbo")


def test_self_check_passes_here_and_reports_a_provider_that_cannot_run_the_graphs(outputs):
    """The start-up check a fused pipeline runs before building outputs this way: None on the CPU provider;
    a depth on a device this onnxruntime cannot use (CUDA on the CPU-only package) is a reported problem,
    so the pipeline keeps numpy's builders."""
    assert self_check(outputs) is None
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: the failing case needs the CPU-only package")
    problem = self_check(outputs, ("cuda", 0))
    assert problem is not None and "Error" in problem


# ---------------------------------------------------------------- wired: the fused ONNX on onnxruntime

@pytest.mark.parametrize("forced", [True, False])
def test_the_fused_onnx_pipeline_builds_its_outputs_with_onnxruntime(tmp_path, monkeypatch, forced):
    """DepthEstimator + onnxruntime (CPU provider) + device_pipeline + a fused model beside the network:
    DepthResult.device is an OrtDeviceFrame of the fused depth, and build_parts through it gives the
    bytes numpy's builders give for the same (returned) depth. On the CPU provider the graphs run only
    when forced (OrtFusedPipeline.outputs_on_cpu: numpy is faster there); unforced, numpy builds them."""
    torch = pytest.importorskip("torch")  # to make the fused model (export), not to run it
    from mde_ros.inference import create_backend
    from mde_ros.inference.onnxruntime_backend import OrtFusedPipeline

    monkeypatch.setattr(OrtFusedPipeline, "outputs_on_cpu", forced)
    from mde_ros.inference.fused import export_fused_onnx, fused_path_for
    from mde_ros.models import build_model, export_onnx
    from mde_ros.models.card import ModelCard
    from mde_ros.pipeline.estimator import DepthEstimator, EstimatorConfig
    from mde_ros.pipeline.frame_step import StepConfig, run_frame
    from mde_ros.pipeline.outputs import METRIC_KEYS, FrameData, OutputConfig, build_parts

    torch.manual_seed(0)
    card = ModelCard(name="plain-small", architecture="unet_plain", arch_kwargs={"base_channels": 4, "depth": 2},
                     input_height=32, input_width=48, train_focal_px=40.0, max_depth=10.0)
    model = build_model(card.architecture, **card.arch_kwargs).eval()
    plain_path = export_onnx(model, card, tmp_path / "m.onnx")
    export_fused_onnx(model, card, fused_path_for(plain_path), 120, 160, policy="stretch")
    estimator = DepthEstimator(create_backend("onnxruntime", plain_path, card, intra_op_threads=1), card,
                               EstimatorConfig(device_pipeline=True, max_depth=4.0))
    configs = [OutputConfig(), OutputConfig(cloud_rgb=False, cloud_organized=False, cloud_decimation=2,
                                            cloud_max_range=3.0, colormap="inferno", scan_height=3)]
    for seed, config in zip((1, 2), configs):
        frame = render_frame(seed, 160, 120)
        result = estimator.estimate(frame.rgb, frame.intrinsics)
        if not forced:
            assert result.device is None
        else:
            assert type(result.device).__name__ == "OrtDeviceFrame"
            assert np.array_equal(result.device.depth.numpy()[0], result.depth, equal_nan=True)
        depth = result.depth.copy()
        got = run_frame(estimator, frame.rgb, frame.intrinsics, METRIC_KEYS,
                        StepConfig(config, estimator.min_depth, estimator.max_depth)).outputs
        want = build_parts(FrameData(estimator.estimate(frame.rgb, frame.intrinsics), frame.rgb, config,
                                     estimator.min_depth, estimator.max_depth), METRIC_KEYS)
        assert set(got.parts) == set(want.parts) == set(METRIC_KEYS)
        assert np.isinf(np.frombuffer(want.depth.data, "<f4")).any()  # max_depth 4 m marks some pixels
        assert bytes(got.depth.data) == bytes(want.depth.data)
        assert bytes(got.colorized.data) == bytes(want.colorized.data)
        assert bytes(got.cloud.data) == bytes(want.cloud.data) and got.cloud.width == want.cloud.width
        assert got.scan.ranges.tobytes() == want.scan.ranges.tobytes()
        np.testing.assert_array_equal(result.depth, depth)  # the returned depth is left as it was
    if not forced:
        assert estimator.backend.fused_pipeline()._outputs.value is None  # no graph was even built
        return
    sessions = estimator.backend.fused_pipeline()._outputs.value._sessions
    built = {key[0] for key in sessions if key[1:3] == (120, 160)}
    assert built == {"marked", "colorized", "cloud"}  # the outputs came from the graphs at the camera's size


@pytest.mark.parametrize("output,change,reported", [
    ("marked", 5e-5, False), ("marked", 3e-4, True), ("points", 3e-4, True), ("rgb", 1, False), ("rgb", 2, True)])
def test_the_start_up_check_holds_a_runtime_to_the_device_output_tolerance(outputs, output, change, reported):
    """output_graphs.self_check (the onnxruntime and TensorRT start-up check) accepts what the device-output
    contract allows (finite values within 1e-4 m, colour levels within 1) and reports more than that."""
    from mde_ros.inference.output_graphs import self_check as check_graphs

    class Shifted(OrtDeviceFrame):  # a runtime that computes `output` slightly differently
        def _run(self, key, build, inputs, outs):
            super()._run(key, build, inputs, outs)
            if output in outs:
                values = outs[output]
                if output == "points":
                    values = values[..., :3]  # x, y, z (NaN stays NaN)
                values += np.asarray(change, values.dtype) if output != "rgb" else \
                    np.where(values < 128, change, -change).astype(values.dtype)

    problem = check_graphs(lambda depth: Shifted(ort.OrtValue.ortvalue_from_numpy(depth[None].copy()), outputs))
    assert (problem is not None) == reported, problem
