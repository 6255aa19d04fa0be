"""Paired transforms keep image, depth, mask and intrinsics describing the same 3-D scene."""
import numpy as np
import pytest

from training.transforms import (
    ColorJitter, Frame, RandomResizedCrop, build_transforms, crop, hflip, resize,
)

FX, FY, CX, CY = 200.0, 190.0, 70.3, 41.7
HEIGHT, WIDTH = 96, 128
# A tilted plane n . P = d in the camera frame: depth varies strongly across the image, so any
# intrinsics error moves back-projected points visibly off the plane.
NORMAL = np.array([1.2, -0.8, 1.0])
OFFSET = 3.0


def plane_depth(intr, height, width):
    fx, fy, cx, cy = intr
    u, v = np.meshgrid(np.arange(width), np.arange(height))
    rays = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u, dtype=float)], axis=-1)
    return (OFFSET / (rays @ NORMAL)).astype(np.float32)


def nearest_tolerance(intr, size, sx, sy):
    """Per-pixel depth error allowed by nearest sampling and the image_proc ``cx * sx`` convention:
    the sampled source pixel is at most (0.5 / s + 0.5) source pixels from the pixel's ray."""
    z = plane_depth(intr, *size)
    per_source_x = np.abs(np.gradient(z, axis=1)) * sx
    per_source_y = np.abs(np.gradient(z, axis=0)) * sy
    return 1.5 * ((0.5 / sx + 0.5) * per_source_x + (0.5 / sy + 0.5) * per_source_y) + 1e-5


def backproject(frame):
    fx, fy, cx, cy = frame.intrinsics
    u, v = np.meshgrid(np.arange(frame.width), np.arange(frame.height))
    z = frame.depth.astype(np.float64)
    return np.stack([(u - cx) / fx * z, (v - cy) / fy * z, z], axis=-1)


def plane_frame(seed=0):
    rng = np.random.default_rng(seed)
    intr = np.array([FX, FY, CX, CY])
    depth = plane_depth(intr, HEIGHT, WIDTH)
    valid = rng.uniform(size=depth.shape) > 0.1          # some holes, as real ground truth has
    depth = np.where(valid, depth, 0).astype(np.float32)
    image = rng.uniform(size=(HEIGHT, WIDTH, 3)).astype(np.float32)
    return Frame(image, depth, valid, intr)


def test_crop_keeps_every_point_exactly():
    frame = plane_frame()
    out = crop(frame, top=11, left=23, height=50, width=70)
    before, after = backproject(frame), backproject(out)
    np.testing.assert_allclose(after, before[11:61, 23:93], rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(out.valid, frame.valid[11:61, 23:93])
    np.testing.assert_array_equal(out.image, frame.image[11:61, 23:93])


def test_hflip_mirrors_the_scene_and_is_an_involution():
    frame = plane_frame()
    out = hflip(frame)
    before, after = backproject(frame), backproject(out)
    mirrored = before[:, ::-1] * np.array([-1.0, 1.0, 1.0])      # X -> -X, same pixel column mirrored
    np.testing.assert_allclose(after, mirrored, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(out.intrinsics[2], WIDTH - 1 - CX)
    twice = hflip(out)
    np.testing.assert_array_equal(twice.depth, frame.depth)
    np.testing.assert_allclose(twice.intrinsics, frame.intrinsics)


@pytest.mark.parametrize("size", [(48, 64), (192, 256), (60, 100)])
def test_resize_keeps_points_on_the_plane(size):
    frame = plane_frame()
    out = resize(frame, *size)
    assert out.image.shape == (*size, 3) and out.depth.shape == size and out.valid.shape == size
    sx, sy = size[1] / WIDTH, size[0] / HEIGHT
    np.testing.assert_allclose(out.intrinsics, [FX * sx, FY * sy, CX * sx, CY * sy])
    # Every resized pixel's depth must be the plane's depth along that pixel's ray (new intrinsics),
    # up to the nearest-neighbour/half-pixel convention.
    error = np.abs(out.depth - plane_depth(out.intrinsics, *size))
    tolerance = nearest_tolerance(out.intrinsics, size, sx, sy)
    assert np.all(error[out.valid] <= tolerance[out.valid])
    # Not scaling the principal point would fail that check by far.
    wrong = np.abs(out.depth - plane_depth(np.array([FX * sx, FY * sy, CX, CY * sy]), *size))
    assert np.mean(wrong[out.valid] > tolerance[out.valid]) > 0.5


def test_nearest_resampling_never_blends_sparse_depth():
    rng = np.random.default_rng(3)
    depth = np.zeros((HEIGHT, WIDTH), np.float32)
    points = rng.uniform(size=depth.shape) < 0.05
    depth[points] = rng.uniform(1, 80, size=points.sum())
    frame = Frame(np.zeros((HEIGHT, WIDTH, 3), np.float32), depth, points, np.array([FX, FY, CX, CY]))
    for size in [(40, 50), (200, 300)]:
        out = resize(frame, *size)
        assert set(np.unique(out.depth[out.valid])) <= set(np.unique(depth[points]))
        np.testing.assert_array_equal(out.valid, out.depth > 0)


def test_random_resized_crop_keeps_geometry_consistent():
    frame = plane_frame()
    transform = RandomResizedCrop(64, 64, scale=(0.3, 0.9), ratio=(0.8, 1.25))
    for seed in range(5):
        out = transform(frame, np.random.default_rng(seed))
        assert out.depth.shape == (64, 64)
        # The crop is at most the full image and at least 30% of it, so each axis scales by >= 64/128.
        sx, sy = 64 / WIDTH * 0.99, 64 / HEIGHT * 0.99
        error = np.abs(out.depth - plane_depth(out.intrinsics, 64, 64))
        tolerance = nearest_tolerance(out.intrinsics, (64, 64), sx, sy)
        assert np.all(error[out.valid] <= tolerance[out.valid])


def test_color_jitter_changes_the_image_only():
    frame = plane_frame()
    out = ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)(frame, np.random.default_rng(1))
    assert out.depth is frame.depth and out.valid is frame.valid
    np.testing.assert_array_equal(out.intrinsics, frame.intrinsics)
    assert out.image.dtype == np.float32 and out.image.min() >= 0 and out.image.max() <= 1
    assert np.abs(out.image - frame.image).mean() > 1e-3


def test_brightness_only_scales_the_image():
    frame = plane_frame()
    frame.image *= 0.5
    out = ColorJitter(brightness=0.3)(frame, np.random.default_rng(0))
    ratio = out.image / frame.image
    np.testing.assert_allclose(ratio, ratio.flat[0], rtol=1e-5)
    assert 0.7 <= ratio.flat[0] <= 1.3


def test_build_transforms_train_and_eval():
    cfg = {"input_size": [48, 64], "augment": {"random_resized_crop": {"scale": [0.5, 1.0]}, "hflip": 0.5,
                                               "color_jitter": {"brightness": 0.2}}}
    frame = plane_frame()
    train = build_transforms(cfg, "train")
    first = train(frame, np.random.default_rng(7))
    again = train(frame, np.random.default_rng(7))
    assert first.image.shape == (48, 64, 3)
    np.testing.assert_array_equal(first.depth, again.depth)        # same generator state -> same sample
    evaluation = build_transforms(cfg, "val")(frame, np.random.default_rng(7))
    np.testing.assert_array_equal(evaluation.depth, resize(frame, 48, 64).depth)  # no augmentation
    crop_cfg = {"input_size": [48, 64], "augment": {"random_crop": {"resize": [72, 96]}}}
    assert build_transforms(crop_cfg, "train")(frame, np.random.default_rng(0)).depth.shape == (48, 64)


@pytest.mark.parametrize("augment, message", [
    ({"flip": 0.5}, "unknown data.augment"),
    ({"color_jitter": {"gamma": 0.1}}, "color_jitter"),
    ({"random_crop": True, "random_resized_crop": True}, "not both"),
    ({"random_resized_crop": {"area": [0.1, 1]}}, "random_resized_crop"),
])
def test_build_transforms_rejects_bad_augment(augment, message):
    with pytest.raises(ValueError, match=message):
        build_transforms({"input_size": [48, 64], "augment": augment}, "train")


def test_random_crop_larger_than_sample_is_a_clear_error():
    transform = build_transforms({"input_size": [200, 64], "augment": {"random_crop": True}}, "train")
    with pytest.raises(ValueError, match="larger than"):
        transform(plane_frame(), np.random.default_rng(0))
