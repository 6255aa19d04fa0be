"""Row bands (pipeline.bands): banded marking, colouring and counting equal the whole-frame results."""
import numpy as np

from mde_ros.pipeline import bands
from mde_ros.pipeline.bands import row_bands
from mde_ros.pipeline.colorize import colorize
from mde_ros.pipeline.health import valid_fraction
from mde_ros.pipeline.outputs import mark_out_of_range


def test_bands_cover_every_row_once_within_the_pixel_bound():
    for height, width, pixels in [(2160, 3840, 1 << 18), (480, 640, 1 << 18), (7, 5, 10), (3, 100, 1), (0, 4, 8)]:
        slices = list(row_bands(height, width, pixels))
        rows = [r for s in slices for r in range(s.start, s.stop)]
        assert rows == list(range(height))
        assert all((s.stop - s.start) * width <= max(pixels, width) for s in slices)


def test_banded_work_equals_the_whole_frame(monkeypatch):
    monkeypatch.setattr(bands.row_bands, "__defaults__", (1000,))  # many bands on a small frame
    rng = np.random.default_rng(0)
    depth = rng.uniform(-1, 12, (97, 61)).astype(np.float32)
    depth[rng.random(depth.shape) < 0.1] = np.nan
    depth[0, 0], depth[5, 5] = np.inf, -np.inf
    expected = depth.copy()
    expected[expected < 0.3] = -np.inf
    expected[expected > 10.0] = np.inf
    np.testing.assert_array_equal(mark_out_of_range(depth, 0.3, 10.0), expected)
    usable = np.count_nonzero((depth >= 0.3) & (depth <= 10.0)) / depth.size
    assert valid_fraction(depth, 0.3, 10.0) == usable
    whole = colorize(depth, 0.3, 10.0)
    monkeypatch.setattr(bands.row_bands, "__defaults__", (1 << 30,))
    np.testing.assert_array_equal(colorize(depth, 0.3, 10.0), whole)
    assert not whole[np.isnan(depth)].any()  # NaN black in every band


def test_marking_into_a_strided_out_and_a_vector_still_works():
    rng = np.random.default_rng(1)
    depth = rng.uniform(-1, 12, (40, 30)).astype(np.float32)
    out = np.zeros((30, 40), np.float32).T  # a transposed view: not C-contiguous
    expected = depth.copy()
    expected[expected < 0.3] = -np.inf
    expected[expected > 10.0] = np.inf
    assert mark_out_of_range(depth, 0.3, 10.0, out=out) is out
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(mark_out_of_range(np.array([20.0, 0.1, np.nan], np.float32), 0.3, 10.0),
                                  np.array([np.inf, -np.inf, np.nan], np.float32))
