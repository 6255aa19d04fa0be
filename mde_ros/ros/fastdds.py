"""Which Fast DDS profile the node's process starts with (pure: no rclpy import, runs before rclpy.init).

Stock Fast DDS loses most camera-sized samples (a 512 KB shared-memory segment per process, 64 KB
fragments): measured with `mde-ros bench --sections delivery` (README, "Delivery"). A reader receives
through the shared-memory segment of the writer's process, so the node's own process with
config/fastdds_large_data.xml is what makes depth, points and scan arrive, at any subscriber.

MDE_ROS_FASTDDS_PROFILE (the launch file's `fastdds_profile` argument sets it for the node):
  auto (default, also empty)  the shipped profile, unless FASTDDS_DEFAULT_PROFILES_FILE or
                              FASTRTPS_DEFAULT_PROFILES_FILE already names one (yours wins) or
                              RMW_IMPLEMENTATION is not Fast DDS (nothing to do);
  true                        the shipped profile, replacing a profile named in the environment;
  false                       no change: stock Fast DDS (or your own profile);
  PATH                        that XML file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

PROFILE_ENV = "MDE_ROS_FASTDDS_PROFILE"
PROFILE_FILE = "fastdds_large_data.xml"
# Fast DDS >= 2.? (Jazzy's 2.14, 3.x) read the first; Humble's Fast DDS 2.6 reads the second.
PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
CHOICES = ("auto", "true", "false")


def shipped_profile() -> Path:
    """config/fastdds_large_data.xml of the install (share/mde_ros) or of this checkout."""
    from mde_ros.resources import find_shared

    found = find_shared(f"config/{PROFILE_FILE}")
    if found is None:
        raise FileNotFoundError(f"{PROFILE_FILE} not found in share/mde_ros/config")
    return found


def profile_environment(environ: Mapping[str, str],
                        shipped: Callable[[], Path] = shipped_profile) -> tuple[dict[str, str], str]:
    """(variables to set in the node's environment, one line saying what was chosen and why)."""
    choice = environ.get(PROFILE_ENV, "").strip() or "auto"
    lowered = choice.lower()
    if lowered in ("false", "0", "off", "no"):
        return {}, f"{PROFILE_ENV}={choice}: Fast DDS profile left as the environment has it"
    if lowered == "auto":
        rmw = environ.get("RMW_IMPLEMENTATION", "")
        if rmw and "fastrtps" not in rmw:
            return {}, f"RMW_IMPLEMENTATION={rmw}: no Fast DDS profile needed"
        own = next((f"{name}={environ[name]}" for name in PROFILE_VARIABLES if environ.get(name)), None)
        if own:
            return {}, f"using the Fast DDS profile of the environment ({own})"
        path = shipped()
    elif lowered in ("true", "1", "on", "yes"):
        path = shipped()
    else:
        path = Path(choice).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{PROFILE_ENV}={choice}: no such file (auto, true, false or an XML path)")
    return dict.fromkeys(PROFILE_VARIABLES, str(path)), f"Fast DDS profile {path}"
