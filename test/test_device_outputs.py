"""inference.device_outputs (outputs built with torch where the depth is) held to the numpy pipeline.

Run on CPU torch here (no GPU in this project's sessions): the same NaN / +-Inf pattern and values
within 1e-4 m as pipeline.outputs / geometry / colorize on the same depth.
"""
import math

import numpy as np
import pytest

from mde_ros.pipeline.colorize import colorize
from mde_ros.pipeline.geometry import depth_to_scan, pack_cloud, unpack_cloud
from mde_ros.pipeline.outputs import mark_out_of_range
from mde_ros.synthetic import render_frame

torch = pytest.importorskip("torch")
from mde_ros.inference import device_outputs  # noqa: E402

MIN_DEPTH, MAX_DEPTH = 0.3, 6.0


@pytest.fixture(scope="module")
def scene():
    frame = render_frame(5, 96, 72)
    depth = frame.depth.copy()
    depth[5:9, 10:20] = np.nan
    depth[20:22, :] = 0.1  # too near
    depth[30:31, :] = 9.0  # too far
    depth[36, 40:50] = np.nan  # in the scan's row
    return frame, depth


def same_pattern_and_close(actual, expected):
    actual, expected = np.asarray(actual, np.float32), np.asarray(expected, np.float32)
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    for sign in (1, -1):
        np.testing.assert_array_equal(actual == sign * np.inf, expected == sign * np.inf)
    finite = np.isfinite(expected)
    np.testing.assert_allclose(actual[finite], expected[finite], atol=1e-4, rtol=0)


def test_depth_image_is_the_rep117_marked_depth(scene):
    _, depth = scene
    marked = device_outputs.marked_depth(torch.from_numpy(depth), MIN_DEPTH, MAX_DEPTH)
    packed = device_outputs.depth_image(marked)
    assert (packed.height, packed.width, packed.encoding, packed.step) == (72, 96, "32FC1", 96 * 4)
    same_pattern_and_close(np.frombuffer(packed.data, "<f4").reshape(72, 96),
                           mark_out_of_range(depth, MIN_DEPTH, MAX_DEPTH))


@pytest.mark.parametrize("rgb, decimation, organized, max_range", [
    (True, 1, True, math.inf), (False, 1, True, math.inf), (False, 4, False, 5.0), (True, 2, False, math.inf)])
def test_cloud_matches_pack_cloud(scene, rgb, decimation, organized, max_range):
    frame, depth = scene
    marked = mark_out_of_range(depth, MIN_DEPTH, MAX_DEPTH)
    colour = frame.rgb if rgb else None
    expected = pack_cloud(marked, frame.intrinsics, colour, decimation, 0.0, max_range, organized)
    actual = device_outputs.cloud(torch.from_numpy(marked), frame.intrinsics,
                                  None if colour is None else torch.from_numpy(colour), decimation, 0.0, max_range,
                                  organized)
    for name in ("height", "width", "fields", "point_step", "row_step", "is_dense"):
        assert getattr(actual, name) == getattr(expected, name), name
    (xyz, colours), (xyz_ref, colours_ref) = unpack_cloud(actual), unpack_cloud(expected)
    same_pattern_and_close(xyz, xyz_ref)
    if rgb:
        np.testing.assert_array_equal(colours, colours_ref)
    raw, raw_ref = (np.frombuffer(c.data, np.uint8).reshape(-1, c.point_step) for c in (actual, expected))
    padding = [i for i in range(actual.point_step) if not any(o <= i < o + 4 for _, o, _, _ in actual.fields)]
    assert not raw[:, padding].any() and not raw_ref[:, padding].any()


def test_colorized_matches_colorize(scene):
    _, depth = scene
    packed = device_outputs.colorized(torch.from_numpy(depth), MIN_DEPTH, MAX_DEPTH)
    assert (packed.encoding, packed.step) == ("rgb8", 96 * 3)
    expected = colorize(depth, MIN_DEPTH, MAX_DEPTH)
    actual = np.frombuffer(packed.data, np.uint8).reshape(expected.shape)
    np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize("scan_height", [1, 5])
def test_scan_matches_depth_to_scan(scene, scan_height):
    frame, depth = scene
    marked = mark_out_of_range(depth, MIN_DEPTH, MAX_DEPTH)
    expected = depth_to_scan(marked, frame.intrinsics, scan_height, 0.45, 5.0)
    actual = device_outputs.scan(torch.from_numpy(marked), frame.intrinsics, scan_height, 0.45, 5.0)
    assert (actual.angle_min, actual.angle_max, actual.angle_increment) == (
        expected.angle_min, expected.angle_max, expected.angle_increment)
    same_pattern_and_close(actual.ranges, expected.ranges)
    assert device_outputs.scan(torch.from_numpy(marked), frame.intrinsics, 1000) is None  # does not fit: no scan


# ---------------------------------------------------------------- wired: torch's device pipeline

@pytest.fixture(scope="module")
def fast_estimator(tmp_path_factory):
    """A small network on the torch fast path (CPU stand-in for CUDA) with device_pipeline on."""
    from mde_ros.inference import create_backend
    from mde_ros.models import build_model, save_bundle
    from mde_ros.models.card import ModelCard
    from mde_ros.pipeline.estimator import DepthEstimator, EstimatorConfig

    torch.manual_seed(0)
    card = ModelCard(name="plain-small", architecture="unet_plain", arch_kwargs={"base_channels": 4, "depth": 2},
                     input_height=32, input_width=48, train_focal_px=40.0, max_depth=10.0)
    model = build_model(card.architecture, **card.arch_kwargs).eval()
    bundle = save_bundle(tmp_path_factory.mktemp("device") / "m.pt", model, card)
    return DepthEstimator(create_backend("torch", bundle, card, fast_path=True), card,
                          EstimatorConfig(device_pipeline=True))


def test_the_device_pipeline_builds_its_outputs_where_the_depth_is(fast_estimator):
    """run_frame with torch's device pipeline: the outputs come from the DeviceFrame and match numpy's
    builders on the same depth; a refined depth (made on the CPU) is built by numpy."""
    from mde_ros.pipeline.frame_step import StepConfig, run_frame
    from mde_ros.pipeline.outputs import METRIC_KEYS, FrameData, OutputConfig, build_parts

    frame = render_frame(7, 64, 48)
    config = OutputConfig(cloud_rgb=True, cloud_organized=True, cloud_decimation=1, cloud_max_range=math.inf)
    step = run_frame(fast_estimator, frame.rgb, frame.intrinsics, METRIC_KEYS,
                     StepConfig(config, fast_estimator.min_depth, fast_estimator.max_depth))
    assert step.result.device is not None
    numpy_outputs = build_parts(FrameData(step.result, frame.rgb, config, fast_estimator.min_depth,
                                          fast_estimator.max_depth), METRIC_KEYS)
    got, want = step.outputs, numpy_outputs
    same_pattern_and_close(np.frombuffer(got.depth.data, "<f4"), np.frombuffer(want.depth.data, "<f4"))
    same_pattern_and_close(unpack_cloud(got.cloud)[0], unpack_cloud(want.cloud)[0])
    np.testing.assert_array_equal(unpack_cloud(got.cloud)[1], unpack_cloud(want.cloud)[1])
    np.testing.assert_array_equal(np.frombuffer(got.colorized.data, np.uint8), np.frombuffer(want.colorized.data, np.uint8))
    same_pattern_and_close(got.scan.ranges, want.scan.ranges)
    assert step.result.device._marked  # the device builders ran (they mark the depth once, there)


def test_a_refined_depth_is_not_built_from_the_stale_device_tensor(fast_estimator):
    """A refinement makes a new depth on the CPU (dataclasses.replace carries `device` along): its
    outputs are numpy's of that depth, not the device tensor's."""
    import dataclasses

    from mde_ros.pipeline.anchoring import AnchoringConfig
    from mde_ros.pipeline.frame_step import StepConfig, run_frame
    from mde_ros.pipeline.outputs import METRIC_KEYS, OutputConfig
    from mde_ros.pipeline.refine import RefineConfig, Refined, Refiner

    class ScalingRefiner(Refiner):  # stand-in for an anchor fit: the real refinement, then depth x 1.5
        def refine(self, *args, **kwargs):
            refined = super().refine(*args, **kwargs)
            changed = dataclasses.replace(refined.result, depth=refined.result.depth * np.float32(1.5))
            return Refined(changed, refined.scale, refined.confidence, refined.anchors)

    frame = render_frame(7, 64, 48)
    step = run_frame(fast_estimator, frame.rgb, frame.intrinsics, METRIC_KEYS,
                     StepConfig(OutputConfig(), fast_estimator.min_depth, fast_estimator.max_depth),
                     refiner=ScalingRefiner(RefineConfig(AnchoringConfig())))
    assert step.result.device is not None  # carried along by replace, and not used:
    depth = np.frombuffer(step.outputs.depth.data, "<f4").reshape(step.result.depth.shape)
    same_pattern_and_close(depth, mark_out_of_range(step.result.depth, fast_estimator.min_depth,
                                                    fast_estimator.max_depth))
    device_depth = step.result.device.depth.numpy()
    assert not np.allclose(depth[np.isfinite(depth)], device_depth[np.isfinite(depth)], atol=1e-3)


def test_a_deferred_build_keeps_its_own_depth_past_the_next_estimate(fast_estimator):
    """Replay builds frame N's outputs (run_frame(defer_outputs=True), FrameResult.build) while frame N+1 is
    estimated; the fast path's depth lives in a static per-shape buffer that the next estimate overwrites.
    The deferred frame builds from its own copy (DeviceFrame.kept): its outputs are frame N's."""
    from mde_ros.pipeline.frame_step import StepConfig, run_frame
    from mde_ros.pipeline.outputs import FrameData, OutputConfig, build_parts

    config = OutputConfig()
    step_config = StepConfig(config, fast_estimator.min_depth, fast_estimator.max_depth)
    first, second = render_frame(7, 64, 48), render_frame(8, 64, 48)
    wanted = ("depth", "colorized")
    step = run_frame(fast_estimator, first.rgb, first.intrinsics, wanted, step_config, defer_outputs=True)
    assert step.outputs is None and step.result.device is not None
    fast_estimator.estimate(second.rgb, second.intrinsics)  # the next frame, into the same static buffer
    assert not np.allclose(step.result.device.depth.numpy(), step.result.depth, equal_nan=True)  # overwritten
    got = step.build()
    want = build_parts(FrameData(step.result, first.rgb, config, fast_estimator.min_depth,
                                 fast_estimator.max_depth), wanted)
    same_pattern_and_close(np.frombuffer(got.depth.data, "<f4"), np.frombuffer(want.depth.data, "<f4"))
    np.testing.assert_array_equal(np.frombuffer(got.colorized.data, np.uint8),
                                  np.frombuffer(want.colorized.data, np.uint8))


def test_replay_with_the_device_pipeline_writes_each_frames_own_outputs(fast_estimator, tmp_path):
    """A real mcap bag replayed with the fast path's device pipeline (outputs built from DeviceFrame copies in
    the writer thread): every depth, cloud and colourised message in the output bag is that frame's, within the
    device-output tolerance of numpy's builders on the frame's own estimate. (Whether the writer overlaps the
    next estimate is timing; the overwrite itself is shown deterministically by the test above.)"""
    from mde_ros.bags import fixtures
    from mde_ros.bags.fixtures import CAMERA_INFO_TOPIC, IMAGE_TOPIC, image_array, read_topic
    from mde_ros.bags.io import stamp_ns
    from mde_ros.bags.messages import intrinsics_from_camera_info
    from mde_ros.bags.replay import run_replay
    from mde_ros.pipeline.outputs import METRIC_KEYS, FrameData, OutputConfig, build_parts

    bag = fixtures.write_fixture_bag(tmp_path / "in", "mcap", n_frames=6, width=64, height=48)
    out = tmp_path / "out"
    run_replay(bag, out, estimator=fast_estimator, progress=False)
    infos = {stamp_ns(m.header): m for _, m, _ in read_topic(bag, CAMERA_INFO_TOPIC)}
    written = {topic: {stamp_ns(m.header): m for _, m, _ in read_topic(out, f"/camera/{topic}")}
               for topic in ("depth/image", "points", "depth/colorized")}
    images = list(read_topic(bag, IMAGE_TOPIC))
    assert len(images) == 6 and all(len(messages) == 6 for messages in written.values())
    for _, image, _ in images:
        rgb = image_array(image)
        intr = intrinsics_from_camera_info(infos[stamp_ns(image.header)], rgb.shape[1], rgb.shape[0])
        want = build_parts(FrameData(fast_estimator.estimate(rgb, intr), rgb, OutputConfig(), fast_estimator.min_depth,
                                     fast_estimator.max_depth), METRIC_KEYS)
        stamp = stamp_ns(image.header)
        same_pattern_and_close(np.frombuffer(written["depth/image"][stamp].data, "<f4"),
                               np.frombuffer(want.depth.data, "<f4"))
        cloud = written["points"][stamp]
        got_xyz = np.frombuffer(cloud.data, "<f4").reshape(-1, cloud.point_step // 4)[:, :3]
        same_pattern_and_close(got_xyz, np.frombuffer(want.cloud.data, "<f4").reshape(-1, want.cloud.point_step // 4)[:, :3])
        np.testing.assert_array_equal(np.frombuffer(written["depth/colorized"][stamp].data, np.uint8),
                                      np.frombuffer(want.colorized.data, np.uint8))
