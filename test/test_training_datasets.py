"""Every reader on small files written here in the dataset's real on-disk format; curriculum chunks;
the Kaggle submission CSV."""
import json
import math

import cv2
import h5py
import numpy as np
import pytest
import scipy.io
import torch
from torch.utils.data import DataLoader

from mde_ros.pipeline.intrinsics import Intrinsics
from training.datasets import DatasetError, build_dataset, chunk_indices
from training.submission import PIXELS, decode_depth, read_submission, write_submission

H, W = 6, 8


def rgb_pattern(seed, height=H, width=W):
    """An image whose every pixel is different, so a transposed or shifted read cannot match."""
    y, x = np.mgrid[:height, :width]
    return np.stack([(seed * 37 + y * 11 + x * 3 + c * 80) % 256 for c in range(3)], axis=-1).astype(np.uint8)


def write_png_rgb(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def write_png(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), data)


def as_hwc(tensor):
    return tensor.numpy().transpose(1, 2, 0)


# --------------------------------------------------------------------------- NYU labelled .mat

NYU_SCENES = ["kitchen_0001", "kitchen_0001", "office_0002", "bedroom_0003", "bedroom_0003"]


def write_nyu_mat(path, images, depths, raw_depths, scenes=None):
    """MATLAB v7.3 layout: HDF5 behind a 512-byte MATLAB header, arrays stored column-major,
    so (H,W,3,N) in MATLAB reads as (N,3,W,H) in h5py; the ``scenes`` cell array is a (1, N) array of
    object references to uint16 char arrays under ``#refs#``, as MATLAB writes a cellstr."""
    with h5py.File(path, "w", userblock_size=512) as h5:
        h5.create_dataset("images", data=np.stack([im.transpose(2, 1, 0) for im in images]))
        h5.create_dataset("depths", data=np.stack([d.T for d in depths]).astype(np.float32))
        h5.create_dataset("rawDepths", data=np.stack([d.T for d in raw_depths]).astype(np.float32))
        h5["images"].attrs["MATLAB_class"] = np.bytes_("uint8")
        h5["depths"].attrs["MATLAB_class"] = np.bytes_("single")
        if scenes is not None:
            refs = h5.create_group("#refs#")
            pointers = []
            for k, name in enumerate(scenes):
                chars = refs.create_dataset(f"s{k}", data=np.array([[ord(c)] for c in name], dtype=np.uint16))
                chars.attrs["MATLAB_class"] = np.bytes_("char")
                pointers.append(chars.ref)
            h5.create_dataset("scenes", data=np.array([pointers], dtype=h5py.ref_dtype))
            h5["scenes"].attrs["MATLAB_class"] = np.bytes_("cell")
    with open(path, "r+b") as stream:
        stream.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2012 HDF5 schema 1.00 .")


@pytest.fixture
def nyu_mat(tmp_path):
    images = [rgb_pattern(k) for k in range(5)]
    depths = [(0.5 + k + 0.1 * np.arange(H)[:, None] + 0.01 * np.arange(W)[None]).astype(np.float32) for k in range(5)]
    raw = [np.where((np.arange(H)[:, None] + np.arange(W)[None]) % 3 == 0, 0, d) for d in depths]
    write_nyu_mat(tmp_path / "nyu_depth_v2_labeled.mat", images, depths, raw, NYU_SCENES)
    scipy.io.savemat(tmp_path / "splits.mat", {"trainNdxs": np.array([[1.0], [3.0], [4.0]]),
                                               "testNdxs": np.array([[2.0], [5.0]])})
    return tmp_path, images, depths, raw


def nyu_cfg(root, **extra):
    return {"name": "nyu_mat", "root": str(root), "input_size": [H, W], "max_depth": 10.0, **extra}


def test_nyu_mat_reads_matlab_layout_with_the_official_split(nyu_mat):
    root, images, depths, _ = nyu_mat
    test = build_dataset(nyu_cfg(root, depth_key="depths"), "test")
    assert len(test) == 2 and len(build_dataset(nyu_cfg(root), "train")) == 3
    sample = test[1]                                          # testNdxs[1] = 5 -> 0-based row 4
    assert sample["image"].shape == (3, H, W) and sample["image"].dtype == torch.float32
    np.testing.assert_allclose(as_hwc(sample["image"]), images[4] / 255.0, atol=1e-6)
    np.testing.assert_allclose(sample["depth"][0].numpy(), depths[4], rtol=1e-6)
    assert sample["valid"].dtype == torch.bool and sample["valid"].all()
    nyu = Intrinsics.nyu(W, H)
    np.testing.assert_allclose(sample["intrinsics"].numpy(), [nyu.fx, nyu.fy, nyu.cx, nyu.cy], rtol=1e-6)
    assert sample["index"] == 1 and test.name(1) == "0005"


def test_nyu_mat_raw_depths_by_default_holes_are_invalid(nyu_mat):
    root, _, depths, raw = nyu_mat
    for cfg in (nyu_cfg(root), nyu_cfg(root, depth_key="rawDepths")):      # BTS/AdaBins: rawDepths by default
        sample = build_dataset(cfg, "train")[0]                             # trainNdxs[0] = 1 -> row 0
        np.testing.assert_array_equal(sample["valid"][0].numpy(), raw[0] > 0)
        assert (sample["depth"][0][~sample["valid"][0]] == 0).all()
    painted = build_dataset(nyu_cfg(root, depth_key="depths"), "train")[0]  # in-painted on request
    assert painted["valid"].all()
    np.testing.assert_allclose(painted["depth"][0].numpy(), depths[0], rtol=1e-6)
    with pytest.raises(DatasetError, match="depth_key"):
        build_dataset(nyu_cfg(root, depth_key="depth"), "train")


def test_nyu_mat_split_files_val_holdout_and_resize(nyu_mat):
    root, _, depths, _ = nyu_mat
    (root / "train.txt").write_text("1\n2\n3\n4\n")
    (root / "test.txt").write_text("5\n")
    cfg = nyu_cfg(root, split_files={"train": "train.txt", "test": "test.txt"}, val_fraction=0.34,
                  input_size=[3, 4])
    train, val, test = (build_dataset(cfg, s) for s in ("train", "val", "test"))
    assert len(test) == 1 and len(train) + len(val) == 4 and len(val) >= 1
    assert {train.name(i) for i in range(len(train))} | {val.name(i) for i in range(len(val))} == \
        {"0001", "0002", "0003", "0004"}
    # One of the three training scenes is held out whole: never a frame of one scene on each side.
    scene_of = {f"{i + 1:04d}": name for i, name in enumerate(NYU_SCENES)}
    val_scenes = {scene_of[val.name(i)] for i in range(len(val))}
    assert len(val_scenes) == 1 and not val_scenes & {scene_of[train.name(i)] for i in range(len(train))}
    sample = test[0]
    assert sample["depth"].shape == (1, 3, 4)
    nyu = Intrinsics.nyu(W, H).scaled(4, 3)
    np.testing.assert_allclose(sample["intrinsics"].numpy(), [nyu.fx, nyu.fy, nyu.cx, nyu.cy], rtol=1e-6)
    assert set(sample["depth"].numpy().ravel()) <= set(depths[4].ravel()) | {0.0}   # nearest: no blended depth


def test_nyu_mat_without_split_is_a_clear_error(nyu_mat):
    root, *_ = nyu_mat
    (root / "splits.mat").unlink()
    with pytest.raises(DatasetError, match="splits.mat"):
        build_dataset(nyu_cfg(root), "train")


def test_nyu_mat_in_a_worker_process(nyu_mat):
    root, _, depths, _ = nyu_mat
    loader = DataLoader(build_dataset(nyu_cfg(root, depth_key="depths"), "train"), batch_size=3, num_workers=1)
    batch = next(iter(loader))
    assert batch["depth"].shape == (3, 1, H, W)
    np.testing.assert_allclose(batch["depth"][2, 0].numpy(), depths[3], rtol=1e-6)   # trainNdxs[2] = 4


# --------------------------------------------------------------------------- NYU extracted CSV

@pytest.fixture
def nyu_csv(tmp_path):
    smooth = cv2.GaussianBlur(rgb_pattern(3, 48, 64), (9, 9), 3)
    train_depth = np.arange(48 * 64, dtype=np.int64).reshape(48, 64) % 256
    test_depth = (np.arange(48 * 64).reshape(48, 64) * 3 + 500).astype(np.uint16)
    lines = []
    for scene, frame in [("living_room_0038_out", 37), ("bedroom_0001_out", 1), ("office_0003_out", 5),
                         ("kitchen_0010_out", 2)]:
        base = tmp_path / "data" / "nyu2_train" / scene
        base.mkdir(parents=True)
        assert cv2.imwrite(str(base / f"{frame}.jpg"), cv2.cvtColor(smooth, cv2.COLOR_RGB2BGR))
        write_png(base / f"{frame}.png", train_depth.astype(np.uint8))
        lines.append(f"data/nyu2_train/{scene}/{frame}.jpg,data/nyu2_train/{scene}/{frame}.png")
    (tmp_path / "data" / "nyu2_train.csv").write_text("\n".join(lines) + "\n")
    write_png_rgb(tmp_path / "data" / "nyu2_test" / "00000_colors.png", smooth)
    write_png(tmp_path / "data" / "nyu2_test" / "00000_depth.png", test_depth)
    (tmp_path / "data" / "nyu2_test.csv").write_text(
        "data/nyu2_test/00000_colors.png,data/nyu2_test/00000_depth.png\n")
    return tmp_path, smooth, train_depth, test_depth


def test_nyu_csv_decodes_8bit_train_and_16bit_test_depth(nyu_csv):
    root, image, train_depth, test_depth = nyu_csv
    cfg = {"name": "nyu_csv", "root": str(root), "input_size": [48, 64], "max_depth": 10.0}
    train = build_dataset(cfg, "train")
    assert len(train) == 4 and train.name(0) == "living_room_0038_out/37"
    sample = train[0]
    expected = train_depth / 255.0 * 10.0
    np.testing.assert_allclose(sample["depth"][0].numpy(), expected, rtol=1e-6)
    np.testing.assert_array_equal(sample["valid"][0].numpy(), train_depth > 0)
    assert np.abs(as_hwc(sample["image"]) - image / 255.0).mean() < 3 / 255          # JPEG, nearly exact
    test = build_dataset(cfg, "test")
    np.testing.assert_allclose(test[0]["depth"][0].numpy(), test_depth / 1000.0, rtol=1e-6)
    np.testing.assert_allclose(as_hwc(test[0]["image"]), image / 255.0, atol=1e-6)
    assert len(build_dataset(cfg, "val")) == 1                                      # val = test by default


def test_nyu_csv_forced_encoding_and_holdout(nyu_csv):
    root, _, train_depth, _ = nyu_csv
    cfg = {"name": "nyu_csv", "root": str(root), "input_size": [48, 64], "max_depth": 10.0,
           "depth_encoding": "uint16_mm", "val_fraction": 0.25}
    train, val = build_dataset(cfg, "train"), build_dataset(cfg, "val")
    assert len(train) == 3 and len(val) == 1
    assert val.name(0) not in {train.name(i) for i in range(3)}
    in_range = train_depth / 1000.0 > 1e-3                                        # min_depth is exclusive
    np.testing.assert_allclose(train[0]["depth"][0].numpy(), np.where(in_range, train_depth / 1000.0, 0), rtol=1e-6)
    np.testing.assert_array_equal(train[0]["valid"][0].numpy(), in_range)


def test_nyu_csv_bad_line_is_reported_with_its_number(nyu_csv):
    root, *_ = nyu_csv
    (root / "data" / "nyu2_test.csv").write_text("a.png,b.png\nonly_one_column.png\n")
    with pytest.raises(DatasetError, match="nyu2_test.csv:2"):
        build_dataset({"name": "nyu_csv", "root": str(root), "input_size": [8, 8], "max_depth": 10.0}, "test")


# --------------------------------------------------------------------------- KITTI

P_RECT_02 = [721.5377, 0.0, 609.5593, 44.85728, 0.0, 721.5377, 172.854, 0.2163791, 0.0, 0.0, 1.0, 0.002745884]
P_RECT_03 = [721.5377, 0.0, 609.5593, -339.5242, 0.0, 721.5377, 172.854, 2.199936, 0.0, 0.0, 1.0, 0.002729905]


def kitti_calib_text():
    fmt = lambda values: " ".join(f"{v:e}" for v in values)  # noqa: E731
    return "\n".join([
        "calib_time: 09-Jan-2012 13:57:47",
        "corner_dist: 9.950000e-02",
        "S_02: 1.392000e+03 5.120000e+02",
        "K_02: 9.597910e+02 0.000000e+00 6.960217e+02 0.000000e+00 9.569251e+02 2.241806e+02 0 0 1",
        "S_rect_02: 1.242000e+03 3.750000e+02",
        f"P_rect_02: {fmt(P_RECT_02)}",
        "S_rect_03: 1.242000e+03 3.750000e+02",
        f"P_rect_03: {fmt(P_RECT_03)}",
    ]) + "\n"


def kitti_gt(height, width):
    gt = np.zeros((height, width), np.uint16)
    gt[2, 3] = int(5.5 * 256)          # 5.5 m
    gt[4, 7] = 300                     # 1.171875 m
    gt[5, 9] = 90 * 256                # 90 m: beyond the 80 m cap -> invalid
    gt[height - 1, width - 1] = 12 * 256
    return gt


@pytest.fixture
def kitti(tmp_path):
    drive = "2011_09_26_drive_0002_sync"
    raw = tmp_path / "raw" / "2011_09_26"
    raw.mkdir(parents=True)
    (raw / "calib_cam_to_cam.txt").write_text(kitti_calib_text())
    for camera, frame in [("image_02", 69), ("image_03", 70), ("image_02", 71)]:
        write_png_rgb(raw / drive / camera / "data" / f"{frame:010d}.png", rgb_pattern(frame, 20, 30))
    gt = kitti_gt(20, 30)
    write_png(tmp_path / "depth" / "val" / drive / "proj_depth" / "groundtruth" / "image_02" / "0000000069.png", gt)
    write_png(tmp_path / "depth" / "train" / drive / "proj_depth" / "groundtruth" / "image_03" / "0000000070.png", gt)
    (tmp_path / "eigen_test_files.txt").write_text(
        f"2011_09_26/{drive} 0000000069 l\n2011_09_26/{drive} 70 r\n2011_09_26/{drive} 0000000071 l\n")
    return tmp_path, gt


def kitti_cfg(root, **extra):
    return {"name": "kitti", "root": str(root), "input_size": [20, 30], "max_depth": 80.0,
            "split_files": {"test": "eigen_test_files.txt"}, **extra}


def test_kitti_sparse_ground_truth_and_calibration(kitti):
    root, gt = kitti
    test = build_dataset(kitti_cfg(root), "test")
    assert len(test) == 2                      # frame 71 has no ground truth PNG: dropped
    left, right = test[0], test[1]
    expected = np.where((gt > 0) & (gt / 256.0 <= 80), gt / 256.0, 0)
    np.testing.assert_allclose(left["depth"][0].numpy(), expected, rtol=1e-6)
    np.testing.assert_array_equal(left["valid"][0].numpy(), expected > 0)
    assert float(left["depth"][0, 2, 3]) == 5.5 and float(left["depth"][0, 4, 7]) == pytest.approx(300 / 256)
    np.testing.assert_allclose(as_hwc(left["image"]), rgb_pattern(69, 20, 30) / 255.0, atol=1e-6)
    np.testing.assert_allclose(left["intrinsics"].numpy(), [721.5377, 721.5377, 609.5593, 172.854], rtol=1e-6)
    np.testing.assert_allclose(as_hwc(right["image"]), rgb_pattern(70, 20, 30) / 255.0, atol=1e-6)
    assert test.name(1) == "2011_09_26_drive_0002_sync/image_03/0000000070"


def test_kitti_without_ground_truth_requirement_keeps_every_line(kitti):
    root, _ = kitti
    test = build_dataset(kitti_cfg(root, require_depth=False), "test")
    assert len(test) == 3 and not test[2]["valid"].any()


def test_kitti_benchmark_crop_moves_the_principal_point(tmp_path):
    drive = "2011_09_26_drive_0002_sync"
    raw = tmp_path / "raw" / "2011_09_26"
    raw.mkdir(parents=True)
    (raw / "calib_cam_to_cam.txt").write_text(kitti_calib_text())
    write_png_rgb(raw / drive / "image_02" / "data" / "0000000000.png", np.zeros((375, 1242, 3), np.uint8))
    gt = np.zeros((375, 1242), np.uint16)
    gt[200, 600] = 10 * 256
    write_png(tmp_path / "depth" / drive / "proj_depth" / "groundtruth" / "image_02" / "0000000000.png", gt)
    (tmp_path / "split.txt").write_text(f"2011_09_26/{drive} 0 l\n")
    cfg = {"name": "kitti", "root": str(tmp_path), "input_size": [352, 1216], "max_depth": 80.0, "kb_crop": True,
           "split_files": {"val": "split.txt"}}
    sample = build_dataset(cfg, "val")[0]
    top, left = 375 - 352, (1242 - 1216) // 2
    np.testing.assert_allclose(sample["intrinsics"].numpy(), [721.5377, 721.5377, 609.5593 - left, 172.854 - top],
                               rtol=1e-6)
    assert float(sample["depth"][0, 200 - top, 600 - left]) == 10.0 and int(sample["valid"].sum()) == 1


def test_kitti_errors_name_the_problem(kitti):
    root, _ = kitti
    with pytest.raises(DatasetError, match="split_files.train"):
        build_dataset(kitti_cfg(root), "train")
    (root / "bad.txt").write_text("2011_09_26/2011_09_26_drive_0002_sync 69 x\n")
    with pytest.raises(DatasetError, match="bad.txt:1"):
        build_dataset(kitti_cfg(root, split_files={"test": "bad.txt"}), "test")


# --------------------------------------------------------------------------- Cityscapes

CAMERA = {"extrinsic": {"baseline": 0.209313, "pitch": 0.038, "roll": 0.0, "x": 1.7, "y": 0.1, "yaw": -0.0195,
                        "z": 1.18},
          "intrinsic": {"fx": 2262.52, "fy": 2265.3017905988554, "u0": 1096.98, "v0": 513.137}}


def test_cityscapes_depth_from_disparity_and_camera_json(tmp_path):
    prefix = "frankfurt_000000_000294"
    write_png_rgb(tmp_path / "leftImg8bit" / "val" / "frankfurt" / f"{prefix}_leftImg8bit.png", rgb_pattern(1, 4, 6))
    disparity = np.array([[0, 1, 257, 5121, 2561, 25601]] * 4, np.uint16)
    write_png(tmp_path / "disparity" / "val" / "frankfurt" / f"{prefix}_disparity.png", disparity)
    camera_path = tmp_path / "camera" / "val" / "frankfurt" / f"{prefix}_camera.json"
    camera_path.parent.mkdir(parents=True)
    camera_path.write_text(json.dumps(CAMERA))
    cfg = {"name": "cityscapes", "root": str(tmp_path), "input_size": [4, 6], "max_depth": 80.0}
    dataset = build_dataset(cfg, "val")
    assert len(dataset) == 1 and dataset.name(0) == prefix
    sample = dataset[0]
    bf = 0.209313 * 2262.52
    # 0: no disparity; 1: disparity 0; 257: 1 px -> 473 m > 80 m; then 20, 10 and 100 px.
    expected_row = [0, 0, 0, bf / 20.0, bf / 10.0, bf / 100.0]
    np.testing.assert_allclose(sample["depth"][0, 0].numpy(), expected_row, rtol=1e-5)
    np.testing.assert_array_equal(sample["valid"][0, 0].numpy(), [False, False, False, True, True, True])
    np.testing.assert_allclose(sample["intrinsics"].numpy(), [2262.52, 2265.3017905988554, 1096.98, 513.137],
                               rtol=1e-6)
    np.testing.assert_allclose(as_hwc(sample["image"]), rgb_pattern(1, 4, 6) / 255.0, atol=1e-6)


def test_cityscapes_missing_camera_file_is_named(tmp_path):
    prefix = "lindau_000000_000019"
    write_png_rgb(tmp_path / "leftImg8bit" / "val" / "lindau" / f"{prefix}_leftImg8bit.png", rgb_pattern(1, 4, 6))
    write_png(tmp_path / "disparity" / "val" / "lindau" / f"{prefix}_disparity.png", np.ones((4, 6), np.uint16))
    dataset = build_dataset({"name": "cityscapes", "root": str(tmp_path), "input_size": [4, 6], "max_depth": 80.0},
                            "val")
    with pytest.raises(DatasetError, match=f"{prefix}_camera.json"):
        dataset[0]


# --------------------------------------------------------------------------- folder

DEPTH_M = (np.arange(H * W, dtype=np.float32).reshape(H, W) % 40) * 0.2 + 0.2    # 0.2 .. 8.0 m


@pytest.mark.parametrize("units, stored, filename", [
    ("mm", np.rint(DEPTH_M * 1000).astype(np.uint16), "a.png"),
    ("m", DEPTH_M, "a.npy"),
    ("normalized255", np.rint(DEPTH_M / 10.0 * 255).astype(np.uint8), "a.png"),
    ("auto", np.rint(DEPTH_M * 1000).astype(np.uint16), "a.png"),
    ("auto", np.rint(DEPTH_M / 10.0 * 255).astype(np.uint8), "a.png"),
])
def test_folder_depth_units(tmp_path, units, stored, filename):
    write_png_rgb(tmp_path / "train" / "images" / "a.png", rgb_pattern(0))
    path = tmp_path / "train" / "depths" / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, stored) if filename.endswith(".npy") else write_png(path, stored)
    cfg = {"name": "folder", "root": str(tmp_path), "input_size": [H, W], "max_depth": 10.0, "depth_units": units,
           "depth_max": 10.0}
    sample = build_dataset(cfg, "train")[0]
    tolerance = 10.0 / 255 / 2 + 1e-6 if stored.dtype == np.uint8 else 1e-6
    np.testing.assert_allclose(sample["depth"][0].numpy(), DEPTH_M, atol=tolerance)
    assert sample["valid"].all() and math.isnan(float(sample["intrinsics"][0]))


def test_folder_split_layout_with_a_test_set_without_depth(tmp_path):
    for stem in ("x1", "x2"):
        write_png_rgb(tmp_path / "train" / "images" / f"{stem}.jpg", rgb_pattern(1))
        write_png(tmp_path / "train" / "depths" / f"{stem}.png", np.full((H, W), 1500, np.uint16))
    write_png_rgb(tmp_path / "test" / "images" / "t1.png", rgb_pattern(2))
    cfg = {"name": "folder", "root": str(tmp_path), "input_size": [H, W], "max_depth": 10.0,
           "intrinsics": [500.0, 510.0, 3.5, 2.5]}
    train, val = build_dataset(cfg, "train"), build_dataset(cfg, "val")   # no val/: held out of train/
    assert len(train) == len(val) == 1 and {train.name(0), val.name(0)} == {"x1", "x2"}
    assert float(train[0]["depth"][0, 0, 0]) == 1.5
    np.testing.assert_allclose(train[0]["intrinsics"].numpy(), [500, 510, 3.5, 2.5])
    test = build_dataset(cfg, "test")
    assert test.name(0) == "t1" and not test[0]["valid"].any()


def test_folder_pool_layout_holds_out_val(tmp_path):
    for k in range(10):
        write_png_rgb(tmp_path / "images" / f"{k:03d}.png", rgb_pattern(k))
        write_png(tmp_path / "depths" / f"{k:03d}.png", np.full((H, W), 100 + k, np.uint8))
    cfg = {"name": "folder", "root": str(tmp_path), "input_size": [H, W], "max_depth": 10.0, "val_fraction": 0.2}
    train, val = build_dataset(cfg, "train"), build_dataset(cfg, "val")
    names = [train.name(i) for i in range(len(train))] + [val.name(i) for i in range(len(val))]
    assert len(val) == 2 and sorted(names) == [f"{k:03d}" for k in range(10)]
    with pytest.raises(DatasetError, match="no test split"):
        build_dataset(cfg, "test")
    (tmp_path / "test.txt").write_text("003\n007\n")
    test = build_dataset({**cfg, "split_files": {"test": "test.txt"}}, "test")
    assert [test.name(i) for i in range(len(test))] == ["003", "007"]


def test_folder_missing_depth_is_listed(tmp_path):
    write_png_rgb(tmp_path / "train" / "images" / "lonely.png", rgb_pattern(0))
    (tmp_path / "train" / "depths").mkdir()
    with pytest.raises(DatasetError, match="lonely.png"):
        build_dataset({"name": "folder", "root": str(tmp_path), "input_size": [H, W], "max_depth": 10.0}, "train")


# --------------------------------------------------------------------------- synthetic, build, chunks

SYNTHETIC = {"name": "synthetic", "input_size": [48, 64], "max_depth": 10.0,
             "num_samples": {"train": 6, "val": 3, "test": 2},
             "augment": {"hflip": 0.5, "color_jitter": {"brightness": 0.2}}}


def test_synthetic_is_deterministic_and_splits_differ():
    val = build_dataset(SYNTHETIC, "val")
    assert len(val) == 3 and len(build_dataset(SYNTHETIC, "test")) == 2
    first, again = val[1], build_dataset(SYNTHETIC, "val")[1]
    assert torch.equal(first["image"], again["image"]) and torch.equal(first["depth"], again["depth"])
    assert first["image"].shape == (3, 48, 64) and first["valid"].float().mean() > 0.9
    assert not torch.equal(first["image"], build_dataset(SYNTHETIC, "test")[1]["image"])
    assert torch.isfinite(first["intrinsics"]).all() and float(first["intrinsics"][0]) > 0
    cached = build_dataset({**SYNTHETIC, "cache": True}, "val")
    rendered, reused = cached[1], cached[1]
    assert torch.equal(rendered["depth"], first["depth"]) and torch.equal(reused["image"], first["image"])


def test_training_batches_are_reproducible_under_torch_seed():
    dataset = build_dataset(SYNTHETIC, "train")

    def batch():
        torch.manual_seed(123)
        return next(iter(DataLoader(dataset, batch_size=6, shuffle=True)))

    one, two = batch(), batch()
    assert one["image"].shape == (6, 3, 48, 64) and one["intrinsics"].shape == (6, 4)
    assert torch.equal(one["image"], two["image"]) and torch.equal(one["index"], two["index"])


@pytest.mark.parametrize("cfg, message", [
    ({"name": "imagenet"}, "unknown dataset"),
    ({**SYNTHETIC, "num_sample": 3}, "unknown data key"),
    ({**SYNTHETIC, "name": "folder", "root": "/nonexistent/folder", "num_samples": None}, "unknown data key"),
])
def test_build_dataset_rejects_bad_config(cfg, message):
    with pytest.raises(DatasetError, match=message):
        build_dataset(cfg, "train")


def test_bad_split_and_missing_root():
    with pytest.raises(DatasetError, match="split"):
        build_dataset(SYNTHETIC, "training")
    with pytest.raises(DatasetError, match="not found"):
        build_dataset({"name": "folder", "root": "/nonexistent/folder", "input_size": [8, 8], "max_depth": 1.0},
                      "train")


@pytest.mark.parametrize("n, chunk_size", [(0, 5), (1, 5), (12, 5), (15, 5), (7, None), (7, 100)])
def test_chunks_cover_every_index_exactly_once(n, chunk_size):
    chunks = chunk_indices(n, chunk_size, seed=3, epoch=2)
    flat = [i for chunk in chunks for i in chunk]
    assert sorted(flat) == list(range(n))
    size = chunk_size if chunk_size and chunk_size < n else max(n, 1)
    assert all(len(c) == size for c in chunks[:-1]) and all(0 < len(c) <= size for c in chunks)


def test_chunks_depend_only_on_seed_and_epoch():
    assert chunk_indices(50, 8, seed=1, epoch=4) == chunk_indices(50, 8, seed=1, epoch=4)
    assert chunk_indices(50, 8, seed=1, epoch=4) != chunk_indices(50, 8, seed=1, epoch=5)
    assert chunk_indices(50, 8, seed=1, epoch=4) != chunk_indices(50, 8, seed=2, epoch=4)


# --------------------------------------------------------------------------- Kaggle submission

def test_submission_csv_shape_and_values(tmp_path):
    ramp = np.tile(np.linspace(0, 12, 256, dtype=np.float32), (256, 1))    # beyond max_depth at the right
    small = np.full((64, 64), 5.0, np.float32)
    small[0, 0] = np.nan
    path = tmp_path / "submission.csv"
    write_submission(path, [0, 1], ["img_a", "img_b"], [ramp, small[None]], max_depth=10.0)
    header = path.read_text().splitlines()[0].split(",")
    assert header[:3] == ["id", "ImageID", "pixel_0"] and header[-1] == "pixel_16383" and len(header) == 2 + PIXELS
    ids, image_ids, pixels = read_submission(path)
    assert ids == ["0", "1"] and image_ids == ["img_a", "img_b"] and pixels.shape == (2, 128, 128)
    assert pixels.dtype == np.uint8
    expected = np.rint(np.clip(cv2.resize(ramp, (128, 128), interpolation=cv2.INTER_AREA), 0, 10) / 10 * 255)
    np.testing.assert_array_equal(pixels[0], expected.astype(np.uint8))
    assert pixels[0, :, -1].tolist() == [255] * 128                 # clipped at max_depth
    assert pixels[1, 64, 64] == 128                                   # 5 m of 10 m -> 127.5 -> 128
    np.testing.assert_allclose(decode_depth(pixels[1, 64:, 64:], 10.0), 5.0, atol=10 / 255)


def test_submission_length_mismatch_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="same length"):
        write_submission(tmp_path / "s.csv", [0], ["a", "b"], [np.zeros((4, 4))], max_depth=10.0)
    assert not (tmp_path / "s.csv").exists()


def test_submission_command_runs_a_model_over_a_folder(tmp_path):
    from mde_ros.models.bundle import save_bundle
    from mde_ros.models.card import ModelCard
    from mde_ros.models.registry import build_model
    from mde_ros.pipeline.estimator import DepthEstimator
    from training.submission import encode_depth, main

    torch.manual_seed(0)
    kwargs = {"base_channels": 4, "depth": 2, "max_depth": 10.0}
    card = ModelCard(name="tiny", architecture="unet_plain", arch_kwargs=kwargs, input_height=32, input_width=32,
                     mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), max_depth=10.0)
    model_path = save_bundle(tmp_path / "tiny.pt", build_model("unet_plain", **kwargs), card)
    images = {"b_0002": rgb_pattern(2, 60, 80), "a_0001": rgb_pattern(1, 60, 80)}
    for stem, rgb in images.items():
        write_png_rgb(tmp_path / "test" / "images" / f"{stem}.png", rgb)
    out = tmp_path / "submission.csv"
    assert main(["--model", str(model_path), "--images", str(tmp_path / "test" / "images"), "--out", str(out),
                 "--backend", "torch"]) == 0
    ids, image_ids, pixels = read_submission(out)
    assert ids == ["0", "1"] and image_ids == ["a_0001", "b_0002"]
    estimator = DepthEstimator.from_model(model_path, backend="torch")
    expected = encode_depth(estimator.estimate(images["a_0001"]).depth, max_depth=10.0)
    np.testing.assert_array_equal(pixels[0], expected)
