"""ament_python package that is also pip-installable (see README)."""
from glob import glob

from setuptools import find_packages, setup
from setuptools.command.develop import develop
from setuptools.command.install import install

PACKAGE = "mde_ros"


def share(subdir: str, pattern: str) -> tuple[str, list[str]]:
    return (f"share/{PACKAGE}/{subdir}".rstrip("/"), sorted(glob(pattern)))


def _given(command, name: str, option: str) -> bool:
    """Whether `option` of command `name` was named on the command line."""
    return command.distribution.get_option_dict(name).get(option, ("",))[0] == "command line"


def _from_setup_cfg(command, name: str, option: str) -> bool:
    """Whether the command's `option` is setup.cfg's value (not the command line's, not set in code
    by another command such as bdist_wheel)."""
    source, value = command.distribution.get_option_dict(name).get(option, ("", None))
    return source != "command line" and value is not None and getattr(command, option) == value


class RosLayoutInstall(install):
    """setup.cfg's install_scripts (<prefix>/lib/mde_ros, where `ros2 run` looks) only for colcon and bloom.

    colcon >= 0.12 passes setup.cfg's value itself as --install-scripts; older colcon and bloom's Debian
    rules name --prefix. pip never does: wheels ignore install_scripts anyway, and pip < 23.1 without
    `wheel` runs a plain `setup.py install`, which must put `mde-ros` and `depth_node` into bin/ (PATH).
    """

    def finalize_options(self):
        if _from_setup_cfg(self, "install", "install_scripts") and not _given(self, "install", "prefix"):
            self.install_scripts = None  # the interpreter's scripts folder
        super().finalize_options()


class RosLayoutDevelop(develop):
    """setup.cfg's script_dir only for `colcon build --symlink-install` (`develop --editable
    --build-directory ...`); pip's legacy editable install (`develop --no-deps`) keeps bin/."""

    def finalize_options(self):
        if _from_setup_cfg(self, "develop", "script_dir") and not _given(self, "develop", "build_directory"):
            self.script_dir = None
        super().finalize_options()


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        share("launch", "launch/*.launch.py"),
        share("config", "config/*"),
        share("models", "models/*"),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="mde_ros maintainers",
    maintainer_email="maintainers@users.noreply.b-seed-1df5c15c.example",
    description="Monocular metric depth estimation for ROS 2",
    license="Apache-2.0",
    tests_require=["pytest"],
    cmdclass={"install": RosLayoutInstall, "develop": RosLayoutDevelop},
    entry_points={
        "console_scripts": [
            "depth_node = mde_ros.ros.depth_node:main",
            "mde-ros = mde_ros.cli:main",
        ],
    },
)
