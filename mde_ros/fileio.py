"""Files users exchange with other tools: depth PNG/npy, PLY clouds, camera_info YAML, images.

Formats are the common ones so results open anywhere: 16-bit PNG in millimetres with 0 = invalid
(REP 118, what RealSense/Kinect tools write), binary PLY (MeshLab, CloudCompare, Open3D), and the
camera_info YAML that camera_calibration / camera_info_manager write.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import yaml

from mde_ros.atomic import atomic_write, write_bytes_atomically
from mde_ros.pipeline.intrinsics import Intrinsics, camera_info_field_problems, image_matrices, sensor_window_problems
from mde_ros.pipeline.outputs import depth_to_millimetres


def _imwrite(path: Path, image: np.ndarray) -> Path:
    """Encoded in memory, then written atomically (mde_ros.atomic): a full disk leaves no truncated
    file, and a symlink already at `path` is replaced, not followed."""
    path = Path(path)
    if not path.parent.is_dir():
        raise OSError(f"cannot write {path}: folder {path.parent} does not exist")
    try:
        ok, encoded = cv2.imencode(path.suffix or ".png", image)
    except cv2.error as exc:  # e.g. no encoder for the extension
        raise OSError(f"cannot write {path}: OpenCV has no writer for {path.suffix!r} ({exc.err})") from exc
    if not ok:
        raise OSError(f"cannot write {path}: OpenCV has no writer for {path.suffix!r}")
    write_bytes_atomically(path, encoded.tobytes())
    return path


def _check_depth(depth: np.ndarray) -> np.ndarray:
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"expected an HxW depth image, got shape {depth.shape}")
    return depth


def write_depth_png16(path: str | Path, depth: np.ndarray) -> Path:
    """16-bit PNG, millimetres rounded, 0 for invalid (NaN, +-Inf, <= 0) or beyond 65.535 m."""
    return _imwrite(Path(path), depth_to_millimetres(_check_depth(depth)).astype(np.uint16))


def read_depth_png16(path: str | Path) -> np.ndarray:
    """HxW float32 metres from a 16-bit millimetre PNG; 0 becomes NaN."""
    millimetres = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if millimetres is None or millimetres.dtype != np.uint16 or millimetres.ndim != 2:
        raise ValueError(f"{path} is not a single-channel 16-bit PNG depth image")
    depth = millimetres.astype(np.float32) / 1000.0
    depth[millimetres == 0] = np.nan
    return depth


def write_depth_npy(path: str | Path, depth: np.ndarray) -> Path:
    """float32 metres, NaN for invalid, as numpy .npy (lossless)."""
    path = Path(path)
    depth = _check_depth(depth).astype(np.float32)
    with atomic_write(path) as stream:  # no truncated file on a full disk, a symlink replaced not followed
        np.save(stream, depth)
    return path


def write_ply(path: str | Path, points: np.ndarray, rgb: np.ndarray | None = None) -> Path:
    """Binary little-endian PLY: float x y z (+ uchar red green blue); non-finite points are dropped.

    points: HxWx3 or Nx3 (e.g. geometry.backproject's output); rgb: the same shape in uint8.
    """
    points = np.asarray(points)
    if points.ndim not in (2, 3) or points.shape[-1] != 3:
        raise ValueError(f"points must be HxWx3 or Nx3, got shape {points.shape}")
    xyz = points.reshape(-1, 3).astype("<f4", copy=False)
    keep = np.isfinite(xyz).all(axis=1)
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if rgb is not None:
        rgb = np.asarray(rgb)
        if rgb.shape != points.shape or rgb.dtype != np.uint8:
            raise ValueError(f"rgb must be uint8 with the points' shape {points.shape}, got "
                             f"{rgb.shape} {rgb.dtype}")
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vertices = np.empty(int(keep.sum()), dtype=fields)
    for axis, name in enumerate("xyz"):
        vertices[name] = xyz[keep, axis]
    if rgb is not None:
        colours = rgb.reshape(-1, 3)[keep]
        for channel, name in enumerate(("red", "green", "blue")):
            vertices[name] = colours[:, channel]
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(vertices)}",
              "property float x", "property float y", "property float z"]
    if rgb is not None:
        header += ["property uchar red", "property uchar green", "property uchar blue"]
    header.append("end_header")
    path = Path(path)
    with atomic_write(path) as stream:  # no truncated .ply on a full disk, a symlink replaced not followed
        stream.write(("\n".join(header) + "\n").encode("ascii"))
        stream.write(vertices.tobytes())
    return path


def _matrix(data: dict, key: str, rows: int, cols: int, path: Path) -> list[float]:
    node = data.get(key)
    values = node.get("data") if isinstance(node, dict) else node
    if not isinstance(values, list) or len(values) != rows * cols:
        raise ValueError(f"{path}: '{key}' must hold {rows}x{cols} = {rows * cols} numbers "
                         f"(camera_calibration format: {key}: {{rows: {rows}, cols: {cols}, data: [...]}})")
    return [float(v) for v in values]


def read_camera_info_yaml(path: str | Path) -> Intrinsics:
    """Intrinsics from a camera_info YAML.

    Reads the camera_calibration / camera_info_manager format (image_width, image_height,
    camera_matrix) and, for convenience, a `ros2 topic echo --once .../camera_info` dump
    (width, height, k). Distortion is ignored: like depth_image_proc, the image is taken as rectified.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"camera info file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a camera_info YAML mapping, got {type(data).__name__}")
    if "camera_matrix" in data:
        size_keys, k = ("image_width", "image_height"), _matrix(data, "camera_matrix", 3, 3, path)
    elif "k" in data:
        size_keys, k = ("width", "height"), _matrix(data, "k", 3, 3, path)
    else:
        raise ValueError(f"{path}: no 'camera_matrix' (camera_calibration format) or 'k' (CameraInfo "
                         "message) key: is this a camera_info YAML?")
    missing = [key for key in size_keys if key not in data]
    if missing:
        raise ValueError(f"{path}: missing {missing}: the image size the calibration belongs to")
    intr = Intrinsics.from_k(k, int(data[size_keys[0]]), int(data[size_keys[1]]))
    if not any(k):
        raise ValueError(f"{path}: the camera matrix is all zero: the camera is not calibrated "
                         "(calibrate it, e.g. with camera_calibration's cameracalibrator)")
    if not intr.is_valid():
        raise ValueError(f"{path}: invalid camera matrix (need fx, fy > 0 and a positive image size): {k}")
    # A CameraInfo dump may carry binning and ROI (REP 104): K is then the full sensor's.
    roi = data.get("roi") if isinstance(data.get("roi"), dict) else {}
    info = SimpleNamespace(k=k, width=intr.width, height=intr.height,
                           binning_x=int(data.get("binning_x", 0) or 0), binning_y=int(data.get("binning_y", 0) or 0),
                           roi=SimpleNamespace(**{key: int(roi.get(key, 0) or 0)
                                                  for key in ("x_offset", "y_offset", "width", "height")}))
    problems = camera_info_field_problems(k, (), "", intr.width, intr.height) + sensor_window_problems(info)
    if problems:
        raise ValueError(f"{path}: " + "; ".join(problems))
    image_k, _, width, height = image_matrices(info)
    return Intrinsics.from_k(image_k, width, height)


def write_camera_info_yaml(path: str | Path, intr: Intrinsics, camera_name: str = "camera") -> Path:
    """camera_calibration-format YAML for a rectified pinhole camera (zero distortion)."""
    def matrix(rows: int, cols: int, data: list[float]) -> dict:
        return {"rows": rows, "cols": cols, "data": [float(v) for v in data]}

    content = {
        "image_width": int(intr.width),
        "image_height": int(intr.height),
        "camera_name": camera_name,
        "camera_matrix": matrix(3, 3, intr.k()),
        "distortion_model": "plumb_bob",
        "distortion_coefficients": matrix(1, 5, [0.0] * 5),
        "rectification_matrix": matrix(3, 3, [1, 0, 0, 0, 1, 0, 0, 0, 1]),
        "projection_matrix": matrix(3, 4, intr.p()),
    }
    path = Path(path)
    path.write_text(yaml.safe_dump(content, sort_keys=False, default_flow_style=None))
    return path


def read_image(path: str | Path) -> np.ndarray:
    """HxWx3 uint8 RGB from any file OpenCV decodes (grey is replicated, alpha dropped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot decode {path}: not an image format OpenCV reads (PNG, JPEG, BMP, TIFF, ...)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def write_image(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an HxWx3 uint8 RGB (or HxW grey) image; the format follows the file extension."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or not (rgb.ndim == 2 or (rgb.ndim == 3 and rgb.shape[2] == 3)):
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got shape {rgb.shape} dtype {rgb.dtype}")
    return _imwrite(Path(path), rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
