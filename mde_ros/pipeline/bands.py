"""Row bands: whole-frame elementwise work (marking, colouring, counting) with bounded temporaries.

numpy's comparison masks and float intermediates are as large as the frame: a 4K depth image's are
8 MB (bool) and 32 MB (float32) each. Done a band of rows at a time they stay ~0.25 Mpx (1 MB of
float32), so a large frame's peak memory is its outputs plus a fixed amount (issue 22); a 640x480
frame is two bands (colouring it measured 0.38 ms either way).
"""
from __future__ import annotations

from typing import Iterator

BAND_PIXELS = 1 << 18


def row_bands(height: int, width: int, pixels: int = BAND_PIXELS) -> Iterator[slice]:
    """Slices of rows covering 0..height, each at most `pixels` (at least one row)."""
    rows = max(1, pixels // max(1, width))
    for top in range(0, height, rows):
        yield slice(top, min(height, top + rows))
