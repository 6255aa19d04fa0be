"""Bring-your-own ONNX depth networks in the real layouts of the popular exports, run as-is.

Each preset's card (`mde-ros card --preset`) on an ONNX file with that export's I/O layout (built here
from a small torch module: test/byo_exports.py) goes through onnxruntime and the pipeline, and is
compared with that family's own pre/post-processing written out in byo_exports (keep-aspect to a
multiple of 14 for Depth-Anything-V2, canonical focal for Metric3D, mean focal / 300 and sky for
Depth-Anything-3 in the ika layout, stretch for MiDaS).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import byo_exports as bx
from mde_ros.modelfiles import load_estimator
from mde_ros.cli import main as cli_main
from mde_ros.inference import create_backend
from mde_ros.inference.base import check_network_output
from mde_ros.models.card import CardError, ModelCard, card_path_for, load_card_for
from mde_ros.models.onnx_io import check_model_io
from mde_ros.models.presets import PRESETS, card_for_preset
from mde_ros.pipeline.estimator import DepthEstimator, EstimatorConfig
from mde_ros.pipeline.intrinsics import Intrinsics
from mde_ros.synthetic import render_frame

H, W = 240, 360  # a 3:2 camera, as in the issue (not the networks' aspect ratios)


@pytest.fixture(scope="module")
def frame():
    return render_frame(seed=3, width=W, height=H)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("byo")
    return {
        "da2-dynamic": bx.export_da2(root / "depth_anything_v2_vits.onnx", "relative", dynamic=True),
        "da2-static": bx.export_da2(root / "depth_anything_v2_vits_518.onnx", "relative", dynamic=False),
        "da2-indoor": bx.export_da2(root / "depth_anything_v2_vits_indoor.onnx", "metric", max_depth=20.0),
        "da2-outdoor": bx.export_da2(root / "depth_anything_v2_vits_outdoor.onnx", "metric", max_depth=80.0),
        "da3": bx.export_da3_ika(root / "DA3METRIC-LARGE.onnx"),
        "metric3d": bx.export_metric3d(root / "metric3d_vit_small.onnx"),
        "midas": bx.export_midas_small(root / "model-small.onnx"),
        "midas-dpt": bx.export_midas_dpt(root / "dpt_hybrid_384.onnx"),
        "midas-dpt-dynamic": bx.export_midas_dpt(root / "dpt_hybrid_dynamic.onnx", dynamic=True),
    }


def estimator_for(path, preset, **config):
    assert cli_main(["card", "--preset", preset, str(path), "--force"]) == 0
    return load_estimator(path, backend="onnxruntime", config=EstimatorConfig(**config),
                                     intra_op_threads=1)


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def agreement(ours, reference, mask=None):
    """(correlation, median relative difference) over pixels both call finite."""
    valid = np.isfinite(ours) & np.isfinite(reference) & (mask if mask is not None else True)
    a, b = ours[valid].astype(np.float64), reference[valid].astype(np.float64)
    return float(np.corrcoef(a, b)[0, 1]), float(np.median(np.abs(a - b) / np.abs(b)))


def test_every_preset_is_covered_here():
    assert set(PRESETS) == {"depth-anything-v2-relative", "depth-anything-v2-metric-indoor",
                            "depth-anything-v2-metric-outdoor", "depth-anything-3-metric-ika", "metric3d-v2",
                            "midas-v2.1-small", "midas-v3.1-dpt"}


def test_depth_anything_v2_dynamic_keeps_the_aspect_at_multiples_of_14(exports, frame):
    est = estimator_for(exports["da2-dynamic"], "depth-anything-v2-relative")
    card = est.card
    assert (card.resize_policy, card.size_multiple, card.interpolation) == ("keep_aspect", 14, "cubic")
    result = est.estimate(frame.rgb, frame.intrinsics)
    assert not result.is_metric and np.isnan(result.depth).all()  # relative: never metres unanchored
    reference = bx.da2_reference(session(exports["da2-dynamic"]), frame.rgb)
    corr, rel = agreement(result.relative, reference)
    assert corr > 0.9999 and rel < 1e-3, (corr, rel)
    # The override still works, and shows what the card's rule is worth: stretching to 518x518 is worse.
    stretched = DepthEstimator(est.backend, card, EstimatorConfig(resize_policy="stretch")).estimate(frame.rgb)
    corr_stretch, rel_stretch = agreement(stretched.relative, reference)
    assert corr_stretch < corr and rel_stretch > 3 * rel, (corr_stretch, rel_stretch, corr, rel)


def test_depth_anything_v2_static_export_is_stretched_like_its_onnx_demo(exports, frame):
    est = estimator_for(exports["da2-static"], "depth-anything-v2-relative")
    assert (est.card.resize_policy, est.card.input_height, est.card.input_width) == ("stretch", 518, 518)
    result = est.estimate(frame.rgb)
    reference = bx.da2_reference(session(exports["da2-static"]), frame.rgb, static_size=(518, 518))
    corr, rel = agreement(result.relative, reference)
    assert corr > 0.9999 and rel < 1e-3, (corr, rel)


@pytest.mark.parametrize("which, preset, max_depth", [("da2-indoor", "depth-anything-v2-metric-indoor", 20.0),
                                                      ("da2-outdoor", "depth-anything-v2-metric-outdoor", 80.0)])
def test_depth_anything_v2_metric_gives_its_own_metres(exports, frame, which, preset, max_depth):
    est = estimator_for(exports[which], preset)
    assert est.card.max_depth == max_depth and est.card.output == "metric_depth"
    result = est.estimate(frame.rgb, frame.intrinsics)
    assert result.is_metric and result.rescale == 1.0  # no focal rule in DA-V2 metric
    reference = bx.da2_reference(session(exports[which]), frame.rgb)
    corr, rel = agreement(result.depth, reference)
    assert corr > 0.9999 and rel < 1e-3, (corr, rel)


def test_depth_anything_3_ika_layout_mean_focal_over_300_and_sky(exports, frame):
    est = estimator_for(exports["da3"], "depth-anything-3-metric-ika")
    card = est.card
    assert (card.sky_output, card.canonical_focal_px, card.focal_rule) == ("sky", 300.0, "mean_fx_fy")
    rgb = frame.rgb.copy()
    rgb[:60] = (90, 160, 235)  # a band of sky
    fx, fy = 300.0, 300.0
    intr = Intrinsics(fx, fy, W / 2, H / 2, W, H)
    result = est.estimate(rgb, intr)
    reference, ref_sky = bx.da3_ika_reference(session(exports["da3"]), rgb, fx, fy)
    sky = result.sky
    assert sky[:50].mean() > 0.99 and sky[80:].mean() < 0.01
    assert (sky == ref_sky).mean() > 0.98
    assert np.isposinf(result.depth[sky]).all()  # REP 117: +Inf = beyond range
    corr, rel = agreement(result.depth, reference, ~sky & ~ref_sky)
    assert corr > 0.9999 and rel < 1e-3, (corr, rel)
    # The anisotropic resize (360x240 -> 504x280) makes fx alone 9 % off the ika rule.
    assert result.rescale == pytest.approx(0.5 * (fx * 504 / W + fy * 280 / H) / 300.0)
    assert abs(fx * 504 / W / 300.0 / result.rescale - 1) > 0.05
    as_nan = DepthEstimator(est.backend, card, EstimatorConfig(sky_depth="invalid")).estimate(rgb, intr)
    assert np.isnan(as_nan.depth[sky]).all()
    kept = DepthEstimator(est.backend, card, EstimatorConfig(sky_depth="keep")).estimate(rgb, intr)
    assert np.isfinite(kept.depth[sky]).all()


def test_metric3d_letterbox_with_mean_padding_and_canonical_focal(exports, frame):
    est = estimator_for(exports["metric3d"], "metric3d-v2")
    card = est.card
    assert (card.resize_policy, card.normalization, card.value_range) == ("letterbox", "inside", 255.0)
    fx = 280.0
    intr = Intrinsics(fx, 290.0, W / 2 - 3, H / 2 + 2, W, H)
    result = est.estimate(frame.rgb, intr)
    reference = bx.metric3d_reference(session(exports["metric3d"]), frame.rgb, fx)
    corr, rel = agreement(result.depth, reference)
    assert corr > 0.9999 and rel < 1e-3, (corr, rel)
    # Canonical models are rescaled even with camera_aware_rescale off: their output is for f = 1000 px.
    off = DepthEstimator(est.backend, card, EstimatorConfig(camera_aware_rescale=False)).estimate(frame.rgb, intr)
    assert np.allclose(off.depth, result.depth, equal_nan=True)
    # Without intrinsics the result is the canonical camera's, with a warning that says so.
    blind = est.estimate(frame.rgb)
    assert blind.rescale == 1.0 and any("canonical camera" in w for w in blind.warnings)
    # The old defaults (stretch, pad 0 after normalisation) are what the issue measured 15 % off.
    stretched = DepthEstimator(est.backend, card, EstimatorConfig(resize_policy="stretch")).estimate(frame.rgb, intr)
    assert agreement(stretched.depth, reference)[1] > 5 * rel


def test_midas_small_relative_output_with_torch_default_names(exports, frame):
    est = estimator_for(exports["midas"], "midas-v2.1-small")
    card = est.card
    assert card.input_name != "image" and card.input_name == session(exports["midas"]).get_inputs()[0].name
    assert (card.resize_policy, card.normalization, card.output) == ("stretch", "inside", "relative_inverse_depth")
    result = est.estimate(frame.rgb, frame.intrinsics)
    reference = bx.midas_reference(session(exports["midas"]), frame.rgb)
    corr, rel = agreement(result.relative, reference)
    assert corr > 0.9999 and rel < 1e-3, (corr, rel)


def test_card_command_writes_a_loadable_sidecar_and_refuses_a_mismatch(exports, tmp_path, capsys):
    path = exports["da3"]
    assert cli_main(["card", "--preset", "depth-anything-3-metric-ika", str(path), "--force"]) == 0
    load_card_for(path)  # the sidecar loads
    assert json.loads(card_path_for(path).read_text())["provenance"]["preset"] == "depth-anything-3-metric-ika"
    assert cli_main(["card", "--check", str(path)]) == 0
    # Without --force an existing card is kept.
    assert cli_main(["card", "--preset", "metric3d-v2", str(path)]) == 1
    assert "exists" in capsys.readouterr().err
    # A Metric3D card for a model with no 'pred_depth' output and two outputs: refused, one line.
    other = tmp_path / "da3.onnx"
    other.write_bytes(path.read_bytes())
    assert cli_main(["card", "--preset", "metric3d-v2", str(other)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pred_depth" in err and "Traceback" not in err
    assert cli_main(["card", "--list"]) == 0
    assert "metric3d_onnx_export.py" in capsys.readouterr().out


def test_old_cards_load_with_todays_behaviour():
    old = {"name": "my-net", "architecture": "external", "input_height": 384, "input_width": 512,
           "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "output": "inverse_depth", "output_scale": 1.0,
           "output_shift": 0.0, "min_depth": 0.2, "max_depth": 20.0, "train_focal_px": None}
    card = ModelCard.from_dict(old)
    assert (card.resize_policy, card.interpolation, card.value_range, card.channel_order, card.normalization,
            card.focal_rule, card.canonical_focal_px, card.sky_output, card.pad_value) == \
        ("stretch", "auto", 1.0, "RGB", "outside", "fx", None, None, None)


@pytest.mark.parametrize("change, message", [
    ({"output": "depth_in_feet"}, "output must be one of"),
    ({"input_height": 500, "size_multiple": 14}, "not a multiple of the model's patch size"),
    ({"input_height": "518"}, "'input_height' must be an integer"),
    ({"mean": "imagenet"}, "'mean' must be a list of 3 numbers"),
    ({"resize_policy": "crop"}, "resize_policy must be one of"),
    ({"pad_value": [0, 0, 300]}, "pad_value"),
    ({"canonical_focal_px": 1000.0, "train_focal_px": 500.0}, "not both"),
    ({"sky_threshold": None}, "'sky_threshold' must be a number"),
])
def test_bad_cards_get_one_clear_message(change, message):
    data = {"name": "bad", "architecture": "external", "input_height": 518, "input_width": 518, **change}
    with pytest.raises(CardError, match=message):
        ModelCard.from_dict(data)


def test_a_card_naming_an_output_the_model_lacks_stops_every_backend_path(exports, tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(exports["da3"].read_bytes())
    card = card_for_preset("depth-anything-3-metric-ika", path)
    card.sky_output = "sky_mask"
    with pytest.raises(CardError, match="sky_output 'sky_mask' is not among"):
        check_model_io(path, card)  # what the TensorRT backend runs before building an engine
    with pytest.raises(ValueError, match="sky_output 'sky_mask', which is not among"):
        create_backend("onnxruntime", path, card)
    card.sky_output, card.output_name = "sky", "disparity"
    with pytest.raises(ValueError, match="output 'disparity'"):
        create_backend("onnxruntime", path, card)


def test_keep_aspect_on_a_static_export_is_refused(exports):
    card = card_for_preset("depth-anything-v2-relative", exports["da2-static"])
    card.resize_policy = "keep_aspect"
    with pytest.raises(CardError, match="fixed at 518x518"):
        check_model_io(exports["da2-static"], card)


def test_relative_model_without_anchors_is_refused_where_metres_are_required(exports, tmp_path, capsys):
    path = exports["midas"]
    assert cli_main(["card", "--preset", "midas-v2.1-small", str(path), "--force"]) == 0
    image = tmp_path / "img.png"
    import cv2
    cv2.imwrite(str(image), np.full((48, 64, 3), 128, np.uint8))
    code = cli_main(["predict", str(image), "--model", str(path), "--backend", "onnxruntime",
                     "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "affine-invariant" in err and len(err.splitlines()) == 1


def test_replay_of_a_relative_model_writes_depth_relative_like_the_node(exports, tmp_path, capsys):
    """As the node: depth/relative for every frame, no metres unanchored; metres where anchors fit them."""
    from mde_ros.bags.fixtures import image_array, read_topic

    path = exports["midas"]
    assert cli_main(["card", "--preset", "midas-v2.1-small", str(path), "--force"]) == 0
    bag = Path(__file__).parent / "fixtures" / "bags" / "approach_mcap"
    out, summary = tmp_path / "out_bag", tmp_path / "summary.json"
    code = cli_main(["replay", str(bag), "--model", str(path), "--backend", "onnxruntime", "--out", str(out),
                     "--summary", str(summary), "--no-progress"])
    assert code == 0 and "affine-invariant" in capsys.readouterr().err
    summary = json.loads(summary.read_text())
    assert summary["output_topics"]["relative"] == "/camera/depth/relative"
    relative = read_topic(out, "/camera/depth/relative")
    assert len(relative) == summary["frames"] == summary["processed"] > 0
    for _, msg, _ in relative:
        assert msg.encoding == "32FC1" and np.isfinite(image_array(msg)).all()
    for topic in ("/camera/depth/image", "/camera/points", "/camera/scan", "/camera/depth/colorized"):
        assert read_topic(out, topic) == [], f"{topic} written from an unanchored relative model"
    assert summary["valid_fraction"]["min"] == 1.0  # of the relative image: all finite

    # With an anchor source, metres exactly for the frames it anchored (this stand-in network's output
    # has no floor, so none here: each frame's rejection is in the summary, as the node warns it).
    anchored, anchored_summary = tmp_path / "anchored", tmp_path / "anchored.json"
    code = cli_main(["replay", str(bag), "--model", str(path), "--backend", "onnxruntime", "--out", str(anchored),
                     "--no-progress", "--camera-height", "1.2", "--summary", str(anchored_summary)])
    assert code == 0
    scale = json.loads(anchored_summary.read_text())["scale"]
    assert scale["frames_anchored"] + sum(scale["rejected"].values()) >= summary["frames"]
    assert len(read_topic(anchored, "/camera/depth/image")) == scale["frames_anchored"]
    assert len(read_topic(anchored, "/camera/depth/relative")) == summary["frames"]


def test_rank3_and_rank4_outputs_are_one_depth_channel_for_every_backend():
    batch_shape = (2, 3, 28, 28)
    rank3 = np.zeros((2, 28, 28), np.float32)
    out = check_network_output(rank3, batch_shape, "torch")
    assert out.shape == (2, 1, 28, 28) and np.shares_memory(out, rank3)  # a view, no copy
    assert check_network_output(np.zeros((2, 1, 28, 28), np.float32), batch_shape, "tensorrt").shape == (2, 1, 28, 28)
    with pytest.raises(RuntimeError, match=r"\(N,1,H,W\) or \(N,H,W\).*output_name"):
        check_network_output(np.zeros((2, 2, 28, 28), np.float32), batch_shape, "tensorrt")


def test_tensorrt_profile_of_a_keep_aspect_card_spans_the_sizes_it_produces():
    """Pure part of the TensorRT backend (no GPU here): the engine profile must admit every input
    size keep_aspect gives a 4:3, 16:9 or 3:4 camera, not just the card's square."""
    from mde_ros.inference.tensorrt_build import TensorRTConfig, optimization_profile
    from mde_ros.pipeline.preprocess import keep_aspect_size

    card = ModelCard(name="da2", architecture="external", input_height=518, input_width=518, size_multiple=14,
                     resize_policy="keep_aspect")
    profile = optimization_profile(card, TensorRTConfig())
    for src in ((480, 640), (720, 1280), (640, 480), (518, 518)):
        h, w = keep_aspect_size(*src, 518, 518, "shorter", 14)
        assert profile.contains((1, 3, h, w)), (src, (h, w), profile)
    stretch = optimization_profile(ModelCard(name="s", architecture="external", input_height=280,
                                             input_width=504), TensorRTConfig())
    assert stretch.min == stretch.max[:1] + (3, 280, 504)


def test_card_command_and_presets_need_neither_torch_nor_onnx(exports, tmp_path):
    """The runtime install has neither (requirements.txt): the graph is read through onnxruntime."""
    from test_runtime_deps import run_without_torch_and_onnx

    path = tmp_path / "model.onnx"
    path.write_bytes(exports["da3"].read_bytes())
    result = run_without_torch_and_onnx(f"""
        from mde_ros.cli import main
        assert main(["card", "--preset", "depth-anything-3-metric-ika", {str(path)!r}]) == 0
        assert main(["card", "--check", {str(path)!r}]) == 0
        print("modules:", sorted(m for m in ("torch", "onnx") if m in sys.modules))
    """, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "modules: []" in result.stdout


def test_predict_refuses_a_canonical_camera_model_without_the_cameras_focal_length(exports, tmp_path, capsys):
    """Metric3D's (and DA3's) depth is for a canonical camera: without --fx/--camera-info its metres are
    wrong by f / canonical, so predict refuses with one line and exit 1; with --fx it writes depth."""
    import cv2

    path = exports["metric3d"]
    assert cli_main(["card", "--preset", "metric3d-v2", str(path), "--force"]) == 0
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), np.full((48, 64, 3), 128, np.uint8))
    capsys.readouterr()
    code = cli_main(["predict", str(image), "--model", str(path), "--backend", "onnxruntime",
                     "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "canonical camera" in err and "--fx" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()
    assert cli_main(["predict", str(image), "--model", str(path), "--backend", "onnxruntime", "--fx", "50",
                     "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "img_depth.npy").exists()


@pytest.mark.parametrize("which, static", [("midas-dpt", True), ("midas-dpt-dynamic", False)])
def test_midas_v31_dpt_minimal_resize_half_gray_and_bicubic_output(exports, frame, which, static):
    est = estimator_for(exports[which], "midas-v3.1-dpt")
    card = est.card
    assert (card.resize_side, card.size_multiple, card.output_interpolation, card.mean) == \
        ("minimal", 32, "cubic", (0.5, 0.5, 0.5))
    assert card.resize_policy == ("stretch" if static else "keep_aspect")
    result = est.estimate(frame.rgb, frame.intrinsics)
    reference = bx.midas_dpt_reference(session(exports[which]), frame.rgb, static=static)
    corr, rel = agreement(result.relative, reference)
    assert corr > 0.9999 and rel < 1e-3, (corr, rel)


@pytest.mark.parametrize("which, preset, expected", [
    ("midas-dpt", "midas-v2.1-small", "attention"),  # a DPT export is not MiDaS v2.1 small
    ("midas", "midas-v3.1-dpt", "attention"),
    ("da2-indoor", "depth-anything-v2-relative", "sigmoid"),  # a metric head given the relative preset
    ("da2-dynamic", "depth-anything-v2-metric-indoor", "sigmoid"),  # a relative head given a metric preset
    ("da2-outdoor", "depth-anything-v2-metric-indoor", "beyond the family's 20 m"),  # the probe: up to 80 m
])
def test_presets_refuse_another_familys_export_with_the_same_names_and_shapes(exports, capsys, which, preset,
                                                                             expected):
    assert cli_main(["card", "--preset", preset, str(exports[which]), "--force"]) == 1
    err = capsys.readouterr().err.strip()
    assert expected in err and "does not look like" in err and len(err.splitlines()) == 1, err


def test_a_preset_card_records_the_graphs_fingerprint_and_probe(exports):
    from mde_ros.models.preset_checks import checked_card_for_preset

    card = checked_card_for_preset("depth-anything-v2-metric-outdoor", exports["da2-outdoor"])
    graph, probe = card.provenance["graph"], card.provenance["probe"]
    assert graph["opset"] == 17 and graph["attention"] and graph["operators"] > 5
    assert 0 <= probe["min"] <= probe["max"] <= 80.0
