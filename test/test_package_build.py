"""`colcon build` of the package installs what `ros2 run` / `ros2 launch` need (colcon-core + colcon-ros)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("package.xml", "setup.py", "setup.cfg", "resource", "launch", "config", "models", "mde_ros")


@pytest.fixture(scope="module")
def colcon_install(tmp_path_factory) -> Path:
    colcon = shutil.which("colcon", path=str(Path(sys.executable).parent)) or shutil.which("colcon")
    if colcon is None:
        pytest.fail("colcon is not installed: it comes with requirements-dev.txt (colcon-core, colcon-ros)")
    ws = tmp_path_factory.mktemp("ws")
    package = ws / "src" / "mde_ros"
    package.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, package / name, ignore=ignore)
        else:
            shutil.copy2(source, package / name)
    result = subprocess.run([colcon, "build"], cwd=ws, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return ws / "install" / "mde_ros"


def test_executables_land_where_ros2_run_looks(colcon_install):
    for script in ("depth_node", "mde-ros"):
        path = colcon_install / "lib" / "mde_ros" / script
        assert path.is_file() and os.access(path, os.X_OK), path


def test_share_holds_launch_config_models_and_index_marker(colcon_install):
    share = colcon_install / "share" / "mde_ros"
    for relative in ("package.xml", "launch/depth.launch.py", "config/depth.yaml", "config/depth.rviz"):
        assert (share / relative).is_file(), relative
    shipped_models = sorted(p.name for p in (ROOT / "models").iterdir() if p.is_file())
    assert shipped_models == sorted(p.name for p in (share / "models").iterdir())
    assert (colcon_install / "share" / "ament_index" / "resource_index" / "packages" / "mde_ros").is_file()


def test_installed_package_finds_its_share_folder_through_the_ament_index(colcon_install):
    site = next(colcon_install.glob("lib/python3*/site-packages"))
    env = dict(os.environ, AMENT_PREFIX_PATH=str(colcon_install), PYTHONPATH=str(site))
    code = "import mde_ros.resources as r; print(r.share_dirs()[0]); print(r.default_params_file())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    share, params = out.stdout.split()
    assert Path(share) == colcon_install / "share" / "mde_ros"
    assert Path(params) == colcon_install / "share" / "mde_ros" / "config" / "depth.yaml"
