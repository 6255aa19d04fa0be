"""The GPU fast path's CPU-side pieces (issue 11), with real parts.

No GPU here: the runner's CUDA graphs are replaced by eager calls into the same static buffers
(TorchRunner(..., use_graphs=False) on the CPU). That CPU stand-in checks the per-shape cache,
buffer reuse and recapture logic, and the fused pre/post modules against the numpy pipeline; it does
NOT verify CUDA graph capture, pinned-memory copies or fp16/bf16 numerics, which only
tools/h200/bench.sh on a GPU machine measures.
"""
import json
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mde_ros.inference import create_backend
from mde_ros.modelfiles import open_backend
from mde_ros.inference.torch_cuda import ShapeCache, TorchRunner
from mde_ros.models.card import ModelCard
from mde_ros.pipeline.estimator import DepthEstimator, EstimatorConfig
from mde_ros.pipeline.preprocess import resize_image, resize_info
from mde_ros.pipeline.resample import area_matrix, linear_matrix, resize_matrices, resize_with_matrices
from mde_ros.synthetic import render_frame

ROOT = Path(__file__).resolve().parents[1]
HAS_TORCH_CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module")
def small(tmp_path_factory, one_thread):
    """A small registry network as a .pt bundle and as plain ONNX, with a camera-aware card."""
    from mde_ros.models import build_model, export_onnx, save_bundle

    torch.manual_seed(0)
    card = ModelCard(name="plain-small", architecture="unet_plain", arch_kwargs={"base_channels": 4, "depth": 2},
                     input_height=32, input_width=48, train_focal_px=40.0, max_depth=10.0)
    model = build_model(card.architecture, **card.arch_kwargs).eval()
    folder = tmp_path_factory.mktemp("fast")
    return model, card, save_bundle(folder / "m.pt", model, card), export_onnx(model, card, folder / "m.onnx")


def blurred_image(height, width, seed=0):
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (5, 5), 1.5)


# ---------------------------------------------------------------- resize as matrices

@pytest.mark.parametrize("src,net,policy", [((480, 640), (320, 320), "stretch"), ((480, 640), (320, 320), "letterbox"),
                                            ((120, 160), (320, 320), "stretch"), ((121, 163), (96, 128), "stretch"),
                                            ((100, 500), (128, 160), "letterbox"), ((96, 128), (96, 128), "stretch")])
def test_resize_matrices_reproduce_opencv_within_one_level(src, net, policy):
    image = blurred_image(*src)
    info = resize_info(*src, *net, policy)
    rows, cols = resize_matrices(info)
    ours = resize_with_matrices(image, rows, cols).astype(int)
    theirs = resize_image(image, info.content_width, info.content_height).astype(int)
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() <= 1  # OpenCV rounds its fixed-point / integer paths its own way
    assert np.mean(ours != theirs) < 0.2


def test_resize_matrix_rows_are_weights():
    for matrix in (area_matrix(480, 320), area_matrix(7, 3), linear_matrix(120, 320), linear_matrix(5, 2)):
        np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-12)
        assert matrix.min() >= 0
    with pytest.raises(ValueError, match="shrinks"):
        area_matrix(3, 7)


# ---------------------------------------------------------------- the per-shape cache

def test_shape_cache_is_an_lru_that_rebuilds_evicted_shapes():
    evicted = []
    cache = ShapeCache(2, on_evict=lambda key, entry: evicted.append(key))
    built = []

    def factory(key):
        return lambda: built.append(key) or f"entry{key}"

    assert cache.get((1,), factory((1,))) == "entry(1,)"
    assert cache.get((2,), factory((2,))) == "entry(2,)"
    assert cache.get((1,), factory((1,))) == "entry(1,)"  # hit: no build, (1,) becomes newest
    cache.get((3,), factory((3,)))                         # evicts the least recently used: (2,)
    assert evicted == [(2,)] and cache.keys() == [(1,), (3,)]
    cache.get((2,), factory((2,)))                         # back again: rebuilt (a recapture on a GPU)
    assert built == [(1,), (2,), (3,), (2,)] and cache.builds == 4 and len(cache) == 2
    with pytest.raises(ValueError, match="capacity"):
        ShapeCache(0)


def test_runner_reuses_static_buffers_per_shape_and_recaptures_after_eviction(small):
    """CPU stand-in for the CUDA-graph runner: eager replay into the same buffers."""
    model, card, _, _ = small
    runner = TorchRunner(model, torch.device("cpu"), "fp32", cache_size=2)
    assert runner.use_graphs is False and runner.describe()["cuda_graphs"] is False
    rng = np.random.default_rng(0)
    a = rng.standard_normal((1, 3, 32, 48)).astype(np.float32)
    out_a = runner.infer(a)
    entry = runner.cache.get(("network", a.shape), lambda: pytest.fail("the shape should be cached"))
    pointers = (entry.host_in.data_ptr(), entry.device_in.data_ptr(), entry.device_out.data_ptr())
    out_a2 = runner.infer(a + 1)
    assert (entry.host_in.data_ptr(), entry.device_in.data_ptr(), entry.device_out.data_ptr()) == pointers
    assert runner.cache.builds == 1
    assert not np.shares_memory(out_a, out_a2) and not np.array_equal(out_a, out_a2)  # caller owns the result
    with torch.no_grad():
        np.testing.assert_allclose(out_a, model(torch.from_numpy(a)).numpy(), atol=1e-5, rtol=0)
    runner.infer(rng.standard_normal((2, 3, 32, 48)).astype(np.float32))   # new batch: new buffers
    runner.infer(rng.standard_normal((1, 3, 64, 64)).astype(np.float32))   # evicts (1,3,32,48)
    assert runner.cache.builds == 3 and ("network", a.shape) not in runner.cache.keys()
    np.testing.assert_allclose(runner.infer(a), out_a, atol=1e-6, rtol=0)   # recaptured, same answer
    assert runner.cache.builds == 4


def test_runner_is_safe_from_several_threads(small):
    model, _, _, _ = small
    runner = TorchRunner(model, torch.device("cpu"), "fp32", cache_size=4)
    inputs = [np.random.default_rng(i).standard_normal((1, 3, 32 + 16 * (i % 2), 48)).astype(np.float32)
              for i in range(4)]
    expected = [runner.infer(x) for x in inputs]
    results, errors = {}, []

    def work(index):
        try:
            for _ in range(3):
                results[index] = runner.infer(inputs[index])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for index, want in enumerate(expected):
        np.testing.assert_array_equal(results[index], want)


def test_runner_refuses_graphs_without_cuda_and_unknown_precision(small):
    model = small[0]
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
        TorchRunner(model, torch.device("cpu"), use_graphs=True)
    with pytest.raises(ValueError, match="precision"):
        TorchRunner(model, torch.device("cpu"), "int8")


# ---------------------------------------------------------------- estimator: device pipeline

@pytest.mark.parametrize("policy,size", [("stretch", (120, 160)), ("letterbox", (90, 200)), ("stretch", (24, 40))])
def test_device_pipeline_matches_the_numpy_path(small, policy, size):
    _, card, bundle, _ = small
    frame = render_frame(5, size[1], size[0])
    plain = DepthEstimator(create_backend("torch", bundle, card), card, EstimatorConfig(resize_policy=policy))
    fast = DepthEstimator(create_backend("torch", bundle, card, fast_path=True), card,
                          EstimatorConfig(resize_policy=policy, device_pipeline=True))
    want, got = plain.estimate(frame.rgb, frame.intrinsics), fast.estimate(frame.rgb, frame.intrinsics)
    assert got.depth.shape == size and got.depth.dtype == np.float32
    assert got.rescale == pytest.approx(want.rescale) and got.rescale != 1.0
    assert set(got.timings) == {"preprocess", "network", "postprocess"}
    np.testing.assert_array_equal(np.isnan(got.depth), np.isnan(want.depth))
    np.testing.assert_allclose(got.depth, want.depth, atol=1e-3, rtol=0)
    # A camera that changes resolution gets its own entry; the first one stays cached.
    runner = fast.backend.fused_pipeline()
    fast.estimate(frame.rgb[: size[0] // 2 + 1], None)
    assert len([k for k in runner.cache.keys() if k[0] == "fused"]) == 2


@pytest.mark.parametrize("changes,size", [
    ({"channel_order": "BGR", "pad_value": [255, 0, 0], "resize_policy": "letterbox"}, (90, 200)),
    ({"resize_policy": "keep_aspect", "resize_side": "longer", "size_multiple": 8}, (100, 130)),
    ({"normalization": "inside", "value_range": 255.0, "resize_policy": "letterbox"}, (60, 120))])
def test_device_pipeline_follows_the_cards_preprocessing(small, tmp_path, changes, size):
    from mde_ros.models import save_bundle

    model, base, _, _ = small
    card = ModelCard.from_dict({**base.to_dict(), **changes})
    bundle = save_bundle(tmp_path / "variant.pt", model, card)
    frame = render_frame(4, size[1], size[0])
    plain = DepthEstimator(create_backend("torch", bundle, card), card)
    fast = DepthEstimator(create_backend("torch", bundle, card, fast_path=True), card,
                          EstimatorConfig(device_pipeline=True))
    want, got = plain.estimate(frame.rgb, frame.intrinsics), fast.estimate(frame.rgb, frame.intrinsics)
    assert any(k[0] == "fused" for k in fast.backend.fused_pipeline().cache.keys())
    assert got.rescale == pytest.approx(want.rescale)
    np.testing.assert_allclose(got.depth, want.depth, atol=1e-3, rtol=0)


def test_device_pipeline_falls_back_to_numpy_for_cards_it_cannot_fuse(small, tmp_path):
    from mde_ros.models import save_bundle
    from mde_ros.inference.fused import fused_supports

    model, base, _, _ = small
    card = ModelCard.from_dict({**base.to_dict(), "interpolation": "cubic"})
    assert not fused_supports(card, None) and fused_supports(base, None)
    bundle = save_bundle(tmp_path / "cubic.pt", model, card)
    fast = DepthEstimator(create_backend("torch", bundle, card, fast_path=True), card,
                          EstimatorConfig(device_pipeline=True))
    plain = DepthEstimator(create_backend("torch", bundle, card), card)
    frame = render_frame(4, 80, 60)
    np.testing.assert_allclose(fast.estimate(frame.rgb).depth, plain.estimate(frame.rgb).depth, atol=1e-5)
    assert not any(k[0] == "fused" for k in fast.backend.fused_pipeline().cache.keys())


def test_device_pipeline_is_off_by_default_and_cpu_torch_stays_plain(small):
    _, card, bundle, _ = small
    backend = create_backend("torch", bundle, card)
    assert backend.fused_pipeline() is None and "cuda_graphs" not in backend.describe()
    frame = render_frame(2, 64, 48)
    fast_backend = create_backend("torch", bundle, card, fast_path=True)
    default = DepthEstimator(fast_backend, card)  # device_pipeline False: numpy pre/post around infer
    assert default.estimate(frame.rgb).timings["network"] > 0
    assert not any(key[0] == "fused" for key in fast_backend.fused_pipeline().cache.keys())
    for precision in ("fp16", "bf16"):
        with pytest.raises(ValueError, match=f"{precision}.*cuda"):
            create_backend("torch", bundle, card, precision=precision)


# ---------------------------------------------------------------- fused ONNX on onnxruntime (CPU)

@pytest.mark.parametrize("output,policy,size", [("metric_depth", "stretch", (120, 160)),
                                                ("inverse_depth", "letterbox", (90, 200)),
                                                ("disparity", "stretch", (40, 60))])
def test_fused_onnx_matches_the_plain_model_and_numpy_pipeline(small, tmp_path, output, policy, size):
    import onnxruntime as ort

    from mde_ros.models import export_onnx
    from mde_ros.inference.fused import export_fused_onnx, fused_path_for, read_fused_metadata

    model, base, _, _ = small
    card = ModelCard.from_dict({**base.to_dict(), "output": output, "output_scale": 0.5, "output_shift": 0.1})
    plain_path = export_onnx(model, card, tmp_path / "m.onnx")
    fused_path = export_fused_onnx(model, card, fused_path_for(plain_path), *size, policy=policy)
    assert fused_path.name == "m.fused.onnx"
    assert read_fused_metadata(fused_path)["policy"] == policy
    with pytest.raises(ValueError, match="not a fused"):
        read_fused_metadata(plain_path)
    frames = [render_frame(seed, size[1], size[0]) for seed in (1, 2)]
    plain = DepthEstimator(create_backend("onnxruntime", plain_path, card), card,
                           EstimatorConfig(resize_policy=policy))
    wants = [plain.estimate(f.rgb, f.intrinsics) for f in frames]
    session = ort.InferenceSession(str(fused_path), providers=["CPUExecutionProvider"])
    assert [i.type for i in session.get_inputs()] == ["tensor(uint8)", "tensor(float)"]
    (got,) = session.run(None, {"image": np.stack([f.rgb for f in frames]),  # dynamic batch of 2
                                "rescale": np.array([w.rescale for w in wants], np.float32)})
    assert got.shape == (2, *size) and got.dtype == np.float32
    for depth, want in zip(got, wants):
        np.testing.assert_array_equal(np.isnan(depth), np.isnan(want.depth))
        np.testing.assert_allclose(depth, want.depth, atol=1e-3, rtol=1e-4)


# Measured (20 synthetic frames, 160x120, onnxruntime 1.23 CPU, fp32): the fused graph's depth differs
# from the numpy pipeline's by at most 1.8e-4 m, 3.4e-5 relative (a resized pixel that rounds to the other
# uint8 level where OpenCV's fixed-point weights and the float matrices straddle .5); NaN pixels agree
# exactly. The bounds leave about 6x room.
FUSED_ORT_RTOL, FUSED_ORT_ATOL_M = 2e-4, 1e-4


@pytest.fixture()
def fused_ort(small, tmp_path):
    """The small network's plain ONNX with its fused model (160x120, stretch) beside it."""
    model, card, _, _ = small
    from mde_ros.models import export_onnx
    from mde_ros.inference.fused import export_fused_onnx, fused_path_for

    plain_path = export_onnx(model, card, tmp_path / "m.onnx")
    export_fused_onnx(model, card, fused_path_for(plain_path), 120, 160, policy="stretch")
    return card, plain_path


def test_onnxruntime_device_pipeline_runs_the_fused_model_beside_it(fused_ort):
    """DepthEstimator + onnxruntime (CPU provider) + device_pipeline: frames of the fused model's camera
    size run the fused graph (one session.run), others the numpy path; device_pipeline off is the numpy
    path, to the bit."""
    card, plain_path = fused_ort
    backend = create_backend("onnxruntime", plain_path, card, intra_op_threads=1)
    fast = DepthEstimator(backend, card, EstimatorConfig(device_pipeline=True))
    plain = DepthEstimator(create_backend("onnxruntime", plain_path, card, intra_op_threads=1), card)
    pipeline = backend.fused_pipeline()
    assert pipeline is not None and pipeline.accepts(120, 160, "stretch")
    assert not pipeline.accepts(120, 160, "letterbox") and not pipeline.accepts(240, 320, "stretch")
    assert backend.describe()["fused"]["width"] == 160

    calls = []
    run = pipeline.estimate
    pipeline.estimate = lambda *a, **k: calls.append(1) or run(*a, **k)  # counts, runs the real thing
    for seed in (1, 2):
        frame = render_frame(seed, 160, 120)
        got, want = fast.estimate(frame.rgb, frame.intrinsics), plain.estimate(frame.rgb, frame.intrinsics)
        assert got.rescale == want.rescale != 1.0 and got.depth.shape == (120, 160)
        assert got.depth.dtype == np.float32 and set(got.timings) == {"preprocess", "network", "postprocess"}
        assert all(v >= 0 for v in got.timings.values()) and got.is_metric and got.relative is None
        np.testing.assert_array_equal(np.isnan(got.depth), np.isnan(want.depth))
        np.testing.assert_allclose(got.depth, want.depth, rtol=FUSED_ORT_RTOL, atol=FUSED_ORT_ATOL_M)
    assert len(calls) == 2

    other = render_frame(3, 200, 150)  # another camera size: the numpy path, the same bits as without
    np.testing.assert_array_equal(fast.estimate(other.rgb, other.intrinsics).depth,
                                  plain.estimate(other.rgb, other.intrinsics).depth)
    letterbox = DepthEstimator(backend, card, EstimatorConfig(device_pipeline=True, resize_policy="letterbox"))
    frame = render_frame(4, 160, 120)  # the fused model's size but another policy: numpy as well
    np.testing.assert_array_equal(
        letterbox.estimate(frame.rgb).depth,
        DepthEstimator(plain.backend, card, EstimatorConfig(resize_policy="letterbox")).estimate(frame.rgb).depth)
    assert len(calls) == 2


def test_onnxruntime_without_device_pipeline_or_fused_model_stays_the_numpy_path(fused_ort, tmp_path):
    """device_pipeline False never starts the fused session and is bit-identical to a backend with no
    fused model at all; device_pipeline True without one (or with one for another card, or at another
    precision) falls back to numpy."""
    import shutil

    card, plain_path = fused_ort
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copyfile(plain_path, bare / "m.onnx")
    frame = render_frame(5, 160, 120)
    with_fused = create_backend("onnxruntime", plain_path, card, intra_op_threads=1)
    off = DepthEstimator(with_fused, card).estimate(frame.rgb, frame.intrinsics)
    assert with_fused._fused.value is None and "fused" not in with_fused.describe()
    bare_backend = create_backend("onnxruntime", bare / "m.onnx", card, intra_op_threads=1)
    assert bare_backend.fused_pipeline() is None
    on_bare = DepthEstimator(bare_backend, card, EstimatorConfig(device_pipeline=True)).estimate(frame.rgb,
                                                                                                 frame.intrinsics)
    np.testing.assert_array_equal(off.depth, on_bare.depth)
    other_card = ModelCard.from_dict({**card.to_dict(), "output_scale": 2.0})
    assert create_backend("onnxruntime", plain_path, other_card).fused_pipeline() is None
    # A Q/DQ model's card (the plain graph stands in for its weights): int8 runs keep the numpy path.
    qdq = tmp_path / "m.int8.onnx"
    shutil.copyfile(plain_path, qdq)
    ModelCard.from_dict({**card.to_dict(), "provenance": {"quantization": {"format": "QDQ", "scheme": "U8S8"}}}
                        ).save(tmp_path / "m.int8.card.json")
    int8 = open_backend("onnxruntime", plain_path, card, precision="int8", int8_model=qdq)
    assert int8.fused_pipeline() is None


@pytest.mark.parametrize("changes", [{}, {"channel_order": "BGR", "resize_policy": "letterbox"}])
def test_fused_onnx_casts_the_uint8_image_before_anything_else(small, tmp_path, changes):
    """TensorRT takes a uint8 network input only into a Cast (its Cast / Identity layer docs): the fused
    graph's `image` feeds nothing but one Cast, BGR flip and letterbox included."""
    import onnx

    from mde_ros.inference.fused import export_fused_onnx

    model, base, _, _ = small
    card = ModelCard.from_dict({**base.to_dict(), **changes})
    proto = onnx.load(str(export_fused_onnx(model, card, tmp_path / "m.fused.onnx", 60, 80)))
    assert [n.op_type for n in proto.graph.node if "image" in n.input] == ["Cast"]


def test_export_cli_writes_the_fused_model_beside_the_plain_one(small, tmp_path, capsys):
    from mde_ros.cli import main
    from mde_ros.inference.fused import read_fused_metadata

    _, _, bundle, _ = small
    out = tmp_path / "model.onnx"
    assert main(["export", str(bundle), "--out", str(out), "--no-verify", "--fused", "64x40",
                 "--fused-policy", "letterbox"]) == 0
    meta = read_fused_metadata(tmp_path / "model.fused.onnx")
    assert (meta["width"], meta["height"], meta["policy"]) == (64, 40, "letterbox")
    assert main(["export", str(bundle), "--out", str(out), "--fused", "wide"]) == 1
    assert "--fused wants WIDTHxHEIGHT" in capsys.readouterr().err


def test_predict_and_replay_take_device_pipeline_from_the_command_line(fused_ort, tmp_path):
    """`predict --device-pipeline` runs the fused model beside the ONNX for images of its size."""
    import cv2

    from mde_ros.cli import main

    _, plain_path = fused_ort
    frame = render_frame(5, 160, 120)
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR))
    common = [str(image), "--model", str(plain_path), "--backend", "onnxruntime", "--fx", "140"]
    assert main(["predict", *common, "--out", str(tmp_path / "plain")]) == 0
    assert main(["predict", *common, "--out", str(tmp_path / "fused"), "--device-pipeline"]) == 0
    plain = np.load(tmp_path / "plain" / "frame_depth.npy")
    fused = np.load(tmp_path / "fused" / "frame_depth.npy")
    assert not np.array_equal(plain, fused)  # another graph ran (float matrices vs OpenCV's fixed point)
    np.testing.assert_allclose(fused, plain, rtol=FUSED_ORT_RTOL, atol=FUSED_ORT_ATOL_M)

    import argparse

    from mde_ros.bags.replay import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args(["bag", "--device-pipeline"]).device_pipeline


def test_export_fuses_an_existing_onnx_model_the_shipped_one_included(tmp_path, capsys):
    """`mde-ros export MODEL.onnx --fused WxH` (no torch network: the pre/post graphs are joined around
    the ONNX network) writes MODEL.fused.onnx beside it, and device_pipeline runs it."""
    import shutil

    from mde_ros.cli import main
    from mde_ros.models.card import card_path_for, load_card_for
    from mde_ros.inference.fused import read_fused_metadata
    from mde_ros.resources import default_model_path

    shipped = default_model_path()
    model = tmp_path / "shipped.onnx"
    shutil.copy(shipped, model)
    shutil.copy(card_path_for(shipped), card_path_for(model))
    card = load_card_for(model)
    assert main(["export", str(model)]) == 1 and "give --fused WxH" in capsys.readouterr().err
    for policy, size in (("letterbox", (120, 160)), ("stretch", (240, 320))):
        assert main(["export", str(model), "--fused", f"{size[1]}x{size[0]}", "--fused-policy", policy]) == 0
        assert "max |diff|" in capsys.readouterr().out
        meta = read_fused_metadata(tmp_path / "shipped.fused.onnx")
        assert (meta["height"], meta["width"], meta["policy"]) == (*size, policy)
        backend = create_backend("onnxruntime", model, card, intra_op_threads=1)
        fast = DepthEstimator(backend, card, EstimatorConfig(device_pipeline=True, resize_policy=policy))
        plain = DepthEstimator(backend, card, EstimatorConfig(resize_policy=policy))
        assert backend.fused_pipeline() is not None
        frame = render_frame(7, size[1], size[0])
        got, want = fast.estimate(frame.rgb, frame.intrinsics), plain.estimate(frame.rgb, frame.intrinsics)
        np.testing.assert_array_equal(np.isnan(got.depth), np.isnan(want.depth))
        # 160x120 into the 160x128 letterbox: no resize, the same numbers. 320x240 stretched to 160x128:
        # OpenCV's fixed-point INTER_AREA and the float matrices differ by one level in a few pixels, which
        # the network turns into millimetres (measured 1.5e-3 to 7.9e-3 m max on synthetic frames).
        atol = 1e-5 if policy == "letterbox" else 1e-2
        np.testing.assert_allclose(got.depth, want.depth, rtol=0, atol=atol)


def test_fusing_an_onnx_model_with_a_rank3_depth_output(tmp_path):
    """A Depth-Anything-V2-layout export ((N,H,W) depth, keep-aspect to a multiple of 14) fuses as well
    (its preset's bicubic input resize and align-corners output resize are not ones the fused graph
    reproduces: the card asks for 'auto' and 'linear' here)."""
    import dataclasses

    import byo_exports as bx

    from mde_ros.cli import main
    from mde_ros.models.card import card_path_for, load_card_for

    path = bx.export_da2(tmp_path / "depth_anything_v2_vits_indoor.onnx", "metric", max_depth=20.0)
    assert main(["card", "--preset", "depth-anything-v2-metric-indoor", str(path), "--force"]) == 0
    assert main(["export", str(path), "--fused", "150x100", "--no-verify"]) == 1  # bicubic: refused, said why
    card = dataclasses.replace(load_card_for(path), interpolation="auto", output_interpolation="linear")
    card.save(card_path_for(path))
    assert main(["export", str(path), "--fused", "150x100", "--no-verify"]) == 0
    backend = create_backend("onnxruntime", path, card, intra_op_threads=1)
    fast = DepthEstimator(backend, card, EstimatorConfig(device_pipeline=True))
    assert backend.fused_pipeline() is not None
    frame = render_frame(8, 150, 100)
    got, want = fast.estimate(frame.rgb).depth, DepthEstimator(backend, card).estimate(frame.rgb).depth
    assert got.shape == (100, 150)
    np.testing.assert_allclose(got, want, rtol=1e-2, atol=1e-2)


# ---------------------------------------------------------------- bench CLI and the H200 script on CPU

def test_bench_gpu_section_runs_on_cpu_and_says_cuda_is_skipped(capsys, one_thread):
    from mde_ros.cli import main

    assert main(["bench", "--device", "cuda", "--iters", "1", "--warmup", "0", "--gpu-arch", "unet_resnet18",
                 "--gpu-size", "32"]) == 0
    out = capsys.readouterr().out
    assert "## gpu" in out and "CUDA skipped" in out and "fp32" in out and "failed" not in out
    assert main(["bench", "--sections", "gpu", "--backend", "onnxruntime"]) == 0
    assert "no device pipeline" in capsys.readouterr().out


def test_h200_script_dry_run_writes_its_json(tmp_path):
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, str(ROOT / "tools/h200/bench_h200.py"), "--device", "cpu", "--out",
                          str(tmp_path), "--size", "32", "--iters", "1", "--warmup", "0", "--frames", "1",
                          "--parts", "env,gpu,accuracy,node"],
                         capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    results = json.loads((tmp_path / "bench_h200.json").read_text())
    assert results["errors"] == {}, results["errors"]
    assert results["gpu"]["precisions"]["fp32"]["network_vs_bare"] > 0
    assert results["accuracy"]["fp32"]["max_abs_diff_m"] < 1e-3
    assert results["node"]["end_to_end_ms"] > 0 and "packing" in results["node"]["median_ms"]
    assert "figures (issue 11 goals)" in run.stdout
