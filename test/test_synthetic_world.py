"""The wider synthetic world: exact depth through random cameras, intrinsics at network resolution,
table-top / room / hall depth ranges, determinism per seed, views that differ."""
import math

import numpy as np
import pytest

from mde_ros.pipeline.intrinsics import Intrinsics
from mde_ros.synthetic import CameraPose, Scene, render_frame
from mde_ros.synthetic.world import (ASPECTS, WORLD_KINDS, make_world_scene, random_camera, render_world_view,
                                     scene_kind)

SIZE = 64


def seeds_of(kind: str, count: int) -> list[int]:
    found = [s for s in range(400) if scene_kind(s) == kind][:count]
    assert len(found) == count
    return found


def test_a_wall_at_a_known_distance_is_exact_through_random_cameras():
    rng = np.random.default_rng(3)
    for _ in range(5):
        intr = random_camera(rng, SIZE, SIZE)
        # 5 m from the x = 6 wall; the wall fills the view within +-45 deg when it is 4 m wide, 3 m high
        depth = Scene((6.0, 40.0, 40.0)).depth(CameraPose((1.0, 20.0, 20.0)), intr)
        np.testing.assert_allclose(depth, 5.0, rtol=0, atol=1e-5)


def test_random_camera_is_a_real_camera_resized_to_the_network():
    rng = np.random.default_rng(0)
    seen_aspects = set()
    for _ in range(200):
        intr = random_camera(rng, 320, 320, (45.0, 90.0))
        assert (intr.width, intr.height) == (320, 320)
        hfov = 2 * math.degrees(math.atan(160 / intr.fx))
        assert 45.0 - 1e-6 <= hfov <= 90.0 + 1e-6
        aspect = intr.fy / intr.fx      # square native pixels: fy / fx = sensor aspect * H / W
        match = [a for a in ASPECTS if abs(a - aspect) < 1e-9]
        assert match, aspect
        seen_aspects.add(match[0])
        assert abs(intr.cx - 159.5) <= 0.03 * 320 + 1e-9 and abs(intr.cy - 159.5) <= 0.03 * 320 + 1e-9
    assert seen_aspects == set(ASPECTS)
    with pytest.raises(ValueError, match="hfov_deg"):
        random_camera(rng, 32, 32, (100.0, 20.0))


def test_view_records_its_intrinsics_and_depth_is_the_scenes_geometry():
    for kind in WORLD_KINDS:
        seed = seeds_of(kind, 1)[0]
        view = render_world_view(seed, 3, SIZE, 48)
        frame = view.frame
        assert view.kind == kind and frame.rgb.shape == (48, SIZE, 3) and frame.depth.shape == (48, SIZE)
        assert (frame.intrinsics.width, frame.intrinsics.height) == (SIZE, 48)
        scene = make_world_scene(seed)
        np.testing.assert_array_equal(frame.depth, scene.depth(frame.pose, frame.intrinsics))
        # back-projected with the recorded intrinsics, every pixel lies inside the scene's box
        x = (np.arange(SIZE) - frame.intrinsics.cx) / frame.intrinsics.fx
        y = (np.arange(48) - frame.intrinsics.cy) / frame.intrinsics.fy
        gx, gy = np.meshgrid(x, y)
        points = np.stack([gx * frame.depth, gy * frame.depth, frame.depth], -1) @ frame.pose.rotation().T
        points += np.array(frame.pose.position)
        assert (points > -1e-3).all() and (points < np.array(scene.size) + 1e-3).all()


def test_tabletop_views_are_close_range_and_halls_reach_far():
    for seed in seeds_of("tabletop", 3):
        scene = make_world_scene(seed)
        assert max(scene.size[:2]) <= 1.6 and len(scene.items) >= 4
        for view in range(2):
            depth = render_world_view(seed, view, SIZE, SIZE, scene=scene).frame.depth
            assert 0.2 <= float(np.median(depth)) <= 1.0
            assert float(depth.min()) > 0.05 and float(np.percentile(depth, 95)) < 2.3
    far = []
    for seed in seeds_of("hall", 2):
        scene = make_world_scene(seed)
        assert min(scene.size[:2]) >= 6.0
        far.append(max(float(render_world_view(seed, v, SIZE, SIZE, scene=scene).frame.depth.max()) for v in range(3)))
    assert max(far) > 6.0


def test_world_is_deterministic_per_seed_and_views_differ():
    a = render_world_view(11, 0, SIZE, SIZE)
    b = render_world_view(11, 0, SIZE, SIZE)
    c = render_world_view(11, 1, SIZE, SIZE)
    np.testing.assert_array_equal(a.frame.rgb, b.frame.rgb)
    np.testing.assert_array_equal(a.frame.depth, b.frame.depth)
    assert a.frame.intrinsics == b.frame.intrinsics and a.frame.pose == b.frame.pose
    assert a.frame.pose != c.frame.pose and not np.array_equal(a.frame.depth, c.frame.depth)
    assert make_world_scene(11).size == make_world_scene(11).size
    assert make_world_scene(11).size != make_world_scene(12).size


def test_scene_kinds_follow_the_weights():
    kinds = [scene_kind(s) for s in range(300)]
    assert set(kinds) == set(WORLD_KINDS)
    assert {scene_kind(s, {"hall": 1.0}) for s in range(20)} == {"hall"}
    with pytest.raises(ValueError, match="kind weights"):
        scene_kind(0, {"garden": 1.0})
    with pytest.raises(ValueError, match="scene kind"):
        make_world_scene(0, "garden")


def test_render_frame_is_unchanged_by_the_world():
    """The fixtures' and demo's frames stay NYU-camera rooms (the world is opt-in)."""
    frame = render_frame(0, width=64, height=48)
    assert frame.intrinsics == Intrinsics.nyu(64, 48)
