"""Where the executables land: <prefix>/lib/mde_ros for colcon (`ros2 run`), bin/ for every pip.

Runs setup.py the way colcon's python build task does for --symlink-install (develop --prefix; plain
`colcon build` is test_package_build's) and the way pip < 23.1 without `wheel` does (legacy
`setup.py install --record ... --single-version-externally-managed`, no --prefix). Modern pip builds a
wheel, which never honours install_scripts, so the legacy call is the case that used to break.
"""
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {"mde-ros", "depth_node"}


def run_setup(args: list[str], build: Path, env: dict | None = None) -> None:
    build.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(build),
               "build", "--build-base", str(build / "build"), *args]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stderr[-2000:]


def names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def develop(tmp_path, *args: str) -> Path:
    prefix = tmp_path / "install" / "mde_ros"
    site = prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    site.mkdir(parents=True)
    command = [sys.executable, "setup.py", "-q", "develop", "--prefix", str(prefix), "--no-deps", *args]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONPATH": str(site)})
    assert result.returncode == 0, result.stderr[-2000:]
    return prefix


def test_colcon_symlink_install_puts_executables_where_ros2_run_finds_them(tmp_path):
    """`colcon build --symlink-install`: `setup.py develop --editable --build-directory ...` (plain
    `colcon build` is test_package_build's)."""
    prefix = develop(tmp_path, "--editable", "--build-directory", str(tmp_path / "build"))
    assert SCRIPTS <= names(prefix / "lib" / "mde_ros")
    assert not SCRIPTS & names(prefix / "bin")


def test_legacy_pip_editable_install_puts_executables_on_path(tmp_path):
    """pip < 23.1 without `wheel`, `pip install -e .`: `setup.py develop --no-deps` (--prefix: pip's own
    --prefix option, here to keep the files under tmp_path)."""
    prefix = develop(tmp_path)
    assert SCRIPTS <= names(prefix / "bin")
    assert not SCRIPTS & names(prefix / "lib" / "mde_ros")


def test_legacy_pip_install_puts_executables_on_path(tmp_path):
    """pip 23.0 (Python 3.10's venv) without `wheel`: `setup.py install` into the interpreter's prefix;
    --root keeps this test's files under tmp_path."""
    root = tmp_path / "root"
    run_setup(["install", "--record", str(tmp_path / "record.txt"), "--single-version-externally-managed",
               "--root", str(root)], tmp_path / "build")
    scripts = root / Path(sysconfig.get_path("scripts")).relative_to("/")
    assert SCRIPTS <= names(scripts)
    assert not SCRIPTS & names(root / Path(sys.prefix).relative_to("/") / "lib" / "mde_ros")
