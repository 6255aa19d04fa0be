"""ament_python package that is also pip-installable (see README)."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "mde_ros"


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
    entry_points={
        "console_scripts": [
            "depth_node = mde_ros.ros.depth_node:main",
            "mde-ros = mde_ros.cli:main",
        ],
    },
)
