"""Where the package's shipped files live: a colcon install, a pip install, or this source tree."""
from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE = "mde_ros"
DEMO_MODEL = "mde_demo_unet_r18.onnx"
MODEL_ENV = "MDE_ROS_MODEL"


def share_dirs() -> list[Path]:
    """Candidate share/mde_ros folders, most specific first."""
    candidates: list[Path] = []
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            candidates.append(Path(get_package_share_directory(PACKAGE)))
        except (PackageNotFoundError, ValueError, LookupError, OSError):  # OSError: no AMENT_PREFIX_PATH
            pass
    except ImportError:
        pass
    candidates.append(Path(sys.prefix) / "share" / PACKAGE)  # pip install: data_files land here
    source_root = Path(__file__).resolve().parents[1]
    if (source_root / "package.xml").exists():  # source checkout / editable install
        candidates.append(source_root)
    return [c for c in candidates if c.is_dir()]


def find_shared(relative: str) -> Path | None:
    for root in share_dirs():
        path = root / relative
        if path.exists():
            return path
    return None


def default_model_path() -> Path:
    """The model used when none is named: $MDE_ROS_MODEL, else the shipped demo model."""
    override = os.environ.get(MODEL_ENV)
    if override:
        return Path(override).expanduser()
    found = find_shared(f"models/{DEMO_MODEL}")
    if found is None:
        searched = ", ".join(str(d / "models") for d in share_dirs()) or "(no share folder found)"
        raise FileNotFoundError(
            f"shipped demo model {DEMO_MODEL} not found in {searched}; pass a model path or set {MODEL_ENV}")
    return found


def default_params_file() -> Path | None:
    return find_shared("config/depth.yaml")
