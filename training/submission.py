"""Kaggle seed submission: one CSV row per test image, depth as 128x128 uint8 pixels.

Each prediction is resized to 128x128 (area when shrinking, bilinear when enlarging), clipped to
[0, max_depth] and written as ``round(depth / max_depth * 255)``; NaN (no prediction) is written as 0.
Columns: ``id`` (row number), ``ImageID`` (the image's stem) and ``pixel_0 .. pixel_16383`` in row-major
order (pixel_k is row k // 128, column k % 128). The competition's own column names were not found in
any public source we could check; pass ``pixel_prefix`` if yours differ.

``python -m training.submission --model m.onnx --images test/images --out submission.csv --max-depth 10``
runs any mde_ros model (ONNX, .pt bundle) over a folder of images and writes the CSV.
"""
from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from mde_ros.atomic import atomic_write

SIZE = 128
PIXELS = SIZE * SIZE


def pixel_columns(prefix: str = "pixel_") -> list[str]:
    return [f"{prefix}{k}" for k in range(PIXELS)]


def encode_depth(depth: np.ndarray, max_depth: float) -> np.ndarray:
    """HxW metres -> 128x128 uint8 with 255 = max_depth."""
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim == 3 and depth.shape[0] == 1:
        depth = depth[0]
    if depth.ndim != 2:
        raise ValueError(f"each depth map must be HxW (or 1xHxW), got shape {depth.shape}")
    if max_depth <= 0:
        raise ValueError(f"max_depth must be positive, got {max_depth}")
    depth = np.nan_to_num(depth, nan=0.0, posinf=max_depth, neginf=0.0)
    shrink = depth.shape[0] >= SIZE and depth.shape[1] >= SIZE
    resized = cv2.resize(depth, (SIZE, SIZE), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return np.rint(np.clip(resized, 0.0, max_depth) / max_depth * 255.0).astype(np.uint8)


def decode_depth(pixels: np.ndarray, max_depth: float) -> np.ndarray:
    """uint8 submission pixels -> metres (the inverse of encode_depth up to quantisation)."""
    return pixels.astype(np.float32) / 255.0 * float(max_depth)


def write_submission(path: str | os.PathLike, ids: Sequence, image_ids: Sequence[str],
                     depths: Sequence[np.ndarray] | np.ndarray, max_depth: float, pixel_prefix: str = "pixel_") -> None:
    """Write the CSV atomically (a half-written submission is worse than none)."""
    if not len(ids) == len(image_ids) == len(depths):
        raise ValueError(f"ids ({len(ids)}), image_ids ({len(image_ids)}) and depths ({len(depths)}) "
                         "must have the same length")
    path = Path(path)
    with atomic_write(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["id", "ImageID", *pixel_columns(pixel_prefix)])
        for row_id, image_id, depth in zip(ids, image_ids, depths):
            writer.writerow([row_id, image_id, *encode_depth(depth, max_depth).ravel().tolist()])


def read_submission(path: str | os.PathLike) -> tuple[list[str], list[str], np.ndarray]:
    """(ids, image_ids, pixels (N,128,128) uint8) from a submission CSV; checks its shape."""
    with open(path, newline="") as stream:
        reader = csv.reader(stream)
        header = next(reader, None)
        if header is None or header[:2] != ["id", "ImageID"] or len(header) != 2 + PIXELS:
            raise ValueError(f"{path}: header must be id, ImageID and {PIXELS} pixel columns")
        ids, image_ids, rows = [], [], []
        for number, row in enumerate(reader, start=2):
            if len(row) != 2 + PIXELS:
                raise ValueError(f"{path}:{number}: {len(row)} columns, expected {2 + PIXELS}")
            ids.append(row[0])
            image_ids.append(row[1])
            rows.append(np.array(row[2:], dtype=np.int64))
    pixels = np.stack(rows).reshape(-1, SIZE, SIZE) if rows else np.zeros((0, SIZE, SIZE), np.int64)
    if pixels.size and (pixels.min() < 0 or pixels.max() > 255):
        raise ValueError(f"{path}: pixel values must be 0..255")
    return ids, image_ids, pixels.astype(np.uint8)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="model file (.onnx with its card, or .pt bundle)")
    parser.add_argument("--images", required=True, type=Path, help="folder of test images (png/jpg)")
    parser.add_argument("--out", required=True, type=Path, help="CSV to write")
    parser.add_argument("--max-depth", type=float, default=None, help="metres for pixel 255 (default: the card's)")
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args(argv)

    from mde_ros.fileio import read_image
    from mde_ros.pipeline.estimator import DepthEstimator

    images = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not images:
        parser.error(f"no .png/.jpg images in {args.images}")
    estimator = DepthEstimator.from_model(args.model, backend=args.backend)
    max_depth = args.max_depth or estimator.card.max_depth
    depths = []
    for path in images:
        try:
            rgb = read_image(path)
        except (FileNotFoundError, ValueError) as exc:
            parser.error(str(exc))
        depths.append(estimator.estimate(rgb).depth)
    write_submission(args.out, list(range(len(images))), [p.stem for p in images], depths, max_depth)
    print(f"wrote {len(images)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
