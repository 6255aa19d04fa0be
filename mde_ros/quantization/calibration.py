"""Calibration images for static INT8 quantisation: a folder of images or a bag's camera topic,
turned into network inputs by the project's own preprocessing (the node's resize + normalisation),
so the activation ranges are those the deployed model sees.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from mde_ros.models.card import ModelCard

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
DEFAULT_MAX_IMAGES = 64


class CalibrationError(ValueError):
    """The calibration source cannot give images; the message says what to change."""


@dataclass(frozen=True)
class CalibrationSet:
    images: list[np.ndarray]          # HxWx3 uint8 RGB
    info: dict[str, Any]              # what they are, for the model card (kind, path, topic, count)


def _evenly(items: list, count: int) -> list:
    """`count` items spread over the whole list (a sequence's start is rarely representative)."""
    if len(items) <= count:
        return list(items)
    picks = np.linspace(0, len(items) - 1, count).round().astype(int)
    return [items[i] for i in picks]


def is_bag(path: Path) -> bool:
    return path.is_dir() and (path / "metadata.yaml").is_file()


def load_calibration_images(source: str | Path, *, topic: str | None = None, pattern: str = "*",
                            max_images: int = DEFAULT_MAX_IMAGES) -> CalibrationSet:
    """Images from a folder (files matching `pattern` with an image suffix, sorted by name) or from a
    rosbag2 folder (its colour camera topic, or `topic`), at most `max_images`, spread evenly."""
    path = Path(source).expanduser()
    if max_images < 1:
        raise CalibrationError(f"max_images must be >= 1, got {max_images}")
    if not path.exists():
        raise CalibrationError(f"calibration source not found: {path} (a folder of images or a rosbag2 folder)")
    if is_bag(path):
        return _from_bag(path, topic, max_images)
    if topic is not None:
        raise CalibrationError(f"--topic is for bags, but {path} is not a rosbag2 folder (no metadata.yaml)")
    if not path.is_dir():
        raise CalibrationError(f"calibration source {path} is a file: give a folder of images or a rosbag2 folder")
    return _from_folder(path, pattern, max_images)


def _from_folder(path: Path, pattern: str, max_images: int) -> CalibrationSet:
    from mde_ros.fileio import read_image

    files = sorted(p for p in path.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and fnmatch.fnmatch(p.name, pattern))
    if not files:
        raise CalibrationError(f"no images matching {pattern!r} in {path} (suffixes {', '.join(IMAGE_SUFFIXES)})")
    chosen = _evenly(files, max_images)
    images = []
    for file in chosen:
        try:
            images.append(read_image(file))
        except (OSError, ValueError) as exc:
            raise CalibrationError(f"calibration image {file}: {exc}") from exc
    return CalibrationSet(images, {"kind": "folder", "path": str(path), "pattern": pattern,
                                   "images": len(images), "available": len(files)})


def _from_bag(path: Path, topic: str | None, max_images: int) -> CalibrationSet:
    from mde_ros.bags.io import BagError, deserialize, detect_topics, list_topics, open_reader
    from mde_ros.bags.messages import rgb_from_msg

    try:
        with open_reader(path) as reader:
            image_topic, _ = detect_topics(list_topics(reader), topic)
            connections = [c for c in reader.connections if c.topic == image_topic]
            total = sum(c.msgcount for c in connections)
            wanted = set(np.linspace(0, max(total - 1, 0), min(max_images, total)).round().astype(int).tolist())
            images = []
            for index, (connection, _, data) in enumerate(reader.messages(connections)):
                if index in wanted:
                    images.append(rgb_from_msg(deserialize(data, connection.msgtype), connection.msgtype))
    except BagError as exc:
        raise CalibrationError(f"calibration bag {path}: {exc}") from exc
    if not images:
        raise CalibrationError(f"calibration bag {path}: no images on {image_topic}")
    return CalibrationSet(images, {"kind": "bag", "path": str(path), "topic": image_topic,
                                   "images": len(images), "available": total})


def network_inputs(images: list[np.ndarray], card: ModelCard, resize_policy: str = "stretch") -> Iterator[np.ndarray]:
    """(1,3,H,W) float32 network inputs, made exactly as the node makes them."""
    from mde_ros.pipeline.preprocess import preprocess

    for rgb in images:
        yield preprocess(rgb, card, resize_policy)[0]
