"""ament_python package that is also pip-installable (see README)."""
import sys
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "mde_ros"


def ros_layout_options(argv: list) -> dict:
    """`ros2 run` looks for executables in <prefix>/lib/<package>; pip users need them in bin/.

    colcon (`setup.py install --prefix ...` / `setup.py develop --prefix ...`) and bloom's Debian
    rules always name the install prefix; pip never does (wheels ignore install_scripts anyway, but an
    older pip without `wheel` runs `setup.py install` and would put `mde-ros` into lib/mde_ros, off
    PATH). So the ROS layout is chosen here, only for a prefix install, instead of in setup.cfg.
    """
    if any(arg == "--prefix" or arg.startswith("--prefix=") for arg in argv):
        return {"install": {"install_scripts": "$base/lib/" + PACKAGE},
                "develop": {"script_dir": "$base/lib/" + PACKAGE}}
    return {}


def share(subdir: str, pattern: str) -> tuple[str, list[str]]:
    return (f"share/{PACKAGE}/{subdir}".rstrip("/"), sorted(glob(pattern)))


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
    options=ros_layout_options(sys.argv[1:]),
    entry_points={
        "console_scripts": [
            "depth_node = mde_ros.ros.depth_node:main",
            "mde-ros = mde_ros.cli:main",
        ],
    },
)
