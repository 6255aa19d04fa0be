"""Synthetic scenes: exact depth against closed-form geometry, determinism, sequences, textures."""
import math

import numpy as np
import pytest

from mde_ros.pipeline.intrinsics import Intrinsics
from mde_ros.synthetic import (Box, CameraPose, Cylinder, Item, Material, Scene, Sphere, TEXTURES, approach_sequence,
                               camera_path, make_scene, render_frame)
from mde_ros.synthetic.__main__ import main as synthetic_main
from mde_ros.synthetic.textures import TILE, texture_pyramid

INTR = Intrinsics.nyu(320, 240)
ROOM = (6.0, 4.0, 3.0)
CAMERA = CameraPose((1.0, 2.0, 1.5))          # 5 m from the x = 6 wall, looking along +x, 1.5 m high


def optical_rays(intr):
    """Optical-frame ray (x, y) at integer pixel coordinates, z = 1 (depth_image_proc's convention)."""
    x = (np.arange(intr.width) - intr.cx) / intr.fx
    y = (np.arange(intr.height) - intr.cy) / intr.fy
    return np.meshgrid(x, y)


def test_depth_is_exact_on_a_wall_facing_the_camera():
    depth = Scene(ROOM).depth(CAMERA, INTR)
    x, y = optical_rays(INTR)
    # The far wall spans world y in [0, 4] (lateral -2..2 m) and z in [0, 3] (1.5 m up and down).
    on_wall = (np.abs(x * 5.0) < 2.0 - 1e-3) & (np.abs(y * 5.0) < 1.5 - 1e-3)
    assert on_wall.sum() > 0.3 * on_wall.size
    np.testing.assert_allclose(depth[on_wall], 5.0, rtol=0, atol=1e-5)
    assert (depth[~on_wall] < 5.0 + 1e-5).all()          # floor, ceiling, side walls are nearer


def test_floor_depth_follows_pinhole_formula():
    depth = Scene((30.0, 30.0, 3.0)).depth(CameraPose((1.0, 15.0, 1.2)), INTR)
    rows = np.arange(INTR.height)
    floor_rows = rows[rows - INTR.cy > INTR.fy * 1.2 / 25.0]       # hits the floor before the far wall
    expected = 1.2 * INTR.fy / (floor_rows - INTR.cy)
    centre = int(round(INTR.cx))
    np.testing.assert_allclose(depth[floor_rows, centre], expected, rtol=1e-5)
    # depth is z, not range: constant along each floor row
    np.testing.assert_allclose(depth[floor_rows[-1], 40:280], expected[-1], rtol=1e-5)


def test_back_projected_depth_lies_on_the_room_for_any_intrinsics_and_pose():
    intr = Intrinsics(fx=210.0, fy=180.0, cx=70.0, cy=95.0, width=160, height=120)   # off-centre principal point
    pose = CameraPose((2.2, 1.3, 1.1), yaw=0.7, pitch=0.3, roll=-0.2)
    depth = Scene(ROOM).depth(pose, intr)
    x, y = optical_rays(intr)
    optical = np.stack([x * depth, y * depth, depth], axis=-1)
    world = optical @ pose.rotation().T + np.array(pose.position)
    distance_to_boundary = np.min(np.concatenate([np.abs(world), np.abs(world - np.array(ROOM))], axis=-1), axis=-1)
    assert distance_to_boundary.max() < 1e-4


def test_pose_angles_follow_rep103():
    scene = Scene(ROOM)
    centre = (int(round(INTR.cy)), int(round(INTR.cx)))
    left = scene.depth(CameraPose((1.0, 1.0, 1.5), yaw=math.pi / 2), INTR)     # looks along +y
    assert left[centre] == pytest.approx(3.0, abs=1e-3)
    down = scene.depth(CameraPose((3.0, 2.0, 1.5), pitch=math.pi / 4), INTR)     # pitch > 0 looks down
    assert down[centre] == pytest.approx(1.5 / math.sin(math.pi / 4), abs=1e-2)
    assert down[0, centre[1]] > down[-1, centre[1]]       # image top is farther than the bottom


def test_focal_length_scales_image_offsets():
    """Doubling fx at the same image size halves the field of view: the far-wall corner's offset from
    cx doubles (it sits 1 m to the side at 5 m depth: u - cx = fx / 5)."""
    scene = Scene((6.0, 2.0, 3.0))
    pose = CameraPose((1.0, 1.0, 1.5))
    offsets = []
    for fx in (200.0, 400.0):
        intr = Intrinsics(fx=fx, fy=200.0, cx=159.5, cy=119.5, width=320, height=240)
        row = scene.depth(pose, intr)[120]
        far_wall = np.flatnonzero(np.abs(row - 5.0) < 1e-4)
        offsets.append(far_wall.max() - intr.cx)
        assert offsets[-1] == pytest.approx(fx / 5.0, abs=1.0)
    assert offsets[1] / offsets[0] == pytest.approx(2.0, rel=0.02)


def test_furniture_primitives_have_exact_depth():
    material = Material("brick")
    items = (Item("crate", material, (Box((3.0, 1.5, 0.0), (3.5, 2.5, 2.5)),)),)
    depth = Scene(ROOM, items).depth(CAMERA, INTR)
    centre = (int(round(INTR.cy)), int(round(INTR.cx)))
    assert depth[centre] == pytest.approx(2.0, abs=1e-5)
    np.testing.assert_allclose(depth[100:140, 140:180], 2.0, atol=1e-5)

    for part, expected in ((Cylinder((4.0, 2.0), 0.5, 0.0, 3.0), 2.5), (Sphere((4.0, 2.0, 1.5), 0.7), 2.3)):
        depth = Scene(ROOM, (Item("thing", material, (part,)),)).depth(CAMERA, INTR)
        assert depth[centre] == pytest.approx(expected, abs=1e-3)
        assert depth.min() == pytest.approx(expected, abs=1e-3)     # the point nearest the camera is on the axis

    # cylinder top cap seen from above: depth is the height difference
    cap = Scene(ROOM, (Item("stool", material, (Cylinder((3.0, 2.0), 0.8, 0.0, 0.5),)),))
    looking_down = cap.depth(CameraPose((3.0, 2.0, 2.0), pitch=math.pi / 2), INTR)
    assert looking_down[centre] == pytest.approx(1.5, abs=1e-4)


def test_render_frame_is_deterministic_per_seed():
    first = render_frame(5, 160, 120)
    make_scene.cache_clear()
    second = render_frame(5, 160, 120)
    assert first.rgb.tobytes() == second.rgb.tobytes()
    assert first.depth.tobytes() == second.depth.tobytes()
    other = render_frame(6, 160, 120)
    assert other.rgb.tobytes() != first.rgb.tobytes() and other.depth.tobytes() != first.depth.tobytes()


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_random_frames_are_valid_images_with_finite_positive_depth(seed):
    frame = render_frame(seed)
    assert frame.rgb.shape == (240, 320, 3) and frame.rgb.dtype == np.uint8
    assert frame.depth.shape == (240, 320) and frame.depth.dtype == np.float32
    assert np.isfinite(frame.depth).all() and frame.depth.min() > 0.2
    assert frame.rgb.std() > 10 and len(np.unique(frame.rgb.reshape(-1, 3), axis=0)) > 500
    assert 20 < frame.rgb.mean() < 235
    assert frame.intrinsics == INTR and frame.pose is not None


def test_make_scene_builds_a_plausible_room():
    for seed in range(6):
        scene = make_scene(seed)
        sx, sy, sz = scene.size
        assert 3.0 <= sx <= 8.0 and 3.0 <= sy <= 8.0 and 2.4 <= sz <= 3.2
        furniture = [item for item in scene.items if item.kind not in ("poster", "clutter", "books")]
        assert len(furniture) >= 2
        for item in scene.items:
            lo, hi = item.bounds()
            assert (lo >= -1e-9).all() and (hi <= np.array(scene.size) + 1e-9).all(), item.kind
            assert item.material.texture in TEXTURES


def test_intrinsics_must_match_the_requested_size():
    with pytest.raises(ValueError, match="intrinsics are for 640x480"):
        render_frame(0, 320, 240, intrinsics=Intrinsics.nyu())
    frame = render_frame(0, 64, 48, intrinsics=Intrinsics.nyu(64, 48))
    assert frame.depth.shape == (48, 64)
    with pytest.raises(ValueError, match="invalid intrinsics"):
        Scene(ROOM).render(CAMERA, Intrinsics(0, 0, 0, 0, 320, 240))
    with pytest.raises(ValueError, match="outside the room"):
        Scene(ROOM).render(CameraPose((7.0, 1.0, 1.0)))
    with pytest.raises(ValueError, match="non-negative"):
        make_scene(-1)
    with pytest.raises(ValueError, match="unknown texture"):
        Material("eagle")


def test_approach_sequence_distance_shrinks_every_frame():
    for seed in (0, 3, 9):          # 3 and 9: no cabinet or crate has a free corridor, a crate is placed
        frames = approach_sequence(seed, n_frames=6, width=160, height=120)
        intr = frames[0].intrinsics
        centre = (int(round(intr.cy)), int(round(intr.cx)))
        ahead = np.array([f.depth[centre] for f in frames])
        assert (np.diff(ahead) < -0.05).all(), ahead
        assert ahead[-1] == pytest.approx(0.6, abs=1e-3)
        travelled = np.linalg.norm(np.diff([f.pose.position for f in frames], axis=0), axis=1)
        np.testing.assert_allclose(-np.diff(ahead), travelled, atol=1e-4)     # straight at a perpendicular face
        assert all(np.isfinite(f.depth).all() and f.depth.min() > 0 for f in frames)


def test_camera_path_walks_forward_through_free_space():
    scene = make_scene(4)
    poses = camera_path(scene, 20, step=0.05, seed=1)
    assert len(poses) == 20
    xy = np.array([p.position[:2] for p in poses])
    np.testing.assert_allclose(np.linalg.norm(np.diff(xy, axis=0), axis=1), 0.05, atol=1e-9)
    assert all(scene.is_free(tuple(p)) for p in xy)
    small = INTR.scaled(80, 60)
    assert min(scene.depth(p, small).min() for p in poses[::5]) > 0.2


def test_textures_are_real_photographs_loaded_offline_and_seamless():
    for name in TEXTURES:
        pyramid = texture_pyramid(name)
        tile = pyramid[:TILE * TILE].reshape(TILE, TILE, 3)
        assert pyramid.dtype == np.float32 and 0.0 <= pyramid.min() and pyramid.max() <= 1.0
        assert tile.std() > 0.02, name                                   # not a flat colour
        np.testing.assert_array_equal(tile[0], tile[-1])                 # mirrored: wraps without a seam
        np.testing.assert_array_equal(tile[:, 0], tile[:, -1])


def test_bench_and_sample_entry_point(tmp_path, capsys):
    assert synthetic_main(["--bench", "--frames", "3", "--width", "64", "--height", "48"]) == 0
    assert "frames/s at 64x48" in capsys.readouterr().out
    assert synthetic_main(["--save", str(tmp_path), "--count", "1", "--width", "64", "--height", "48"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene_0000_depth_mm.png", "scene_0000_rgb.png"]
    with pytest.raises(SystemExit):
        synthetic_main([])
