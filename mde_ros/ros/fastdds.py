"""Which Fast DDS profile the node's process starts with (pure: no rclpy import, runs before rclpy.init).

Stock Fast DDS loses most camera-sized samples (a 512 KB shared-memory segment per process, 64 KB
fragments; `mde-ros bench --sections delivery`, README "Delivery") and keeps every publisher's and
subscription's largest sample buffer for the life of the process (README "Reliability"). The shipped
config/fastdds_large_data.xml fixes both: a shared-memory segment sized for 1280x720 images and clouds
(a reader receives through the segment of the writer's process, so the node's own process is what makes
depth, points and scan arrive at any subscriber) and DYNAMIC history memory for subscriptions (a large
input sample's buffer is freed again), which rmw_fastrtps reads from XML only with
RMW_FASTRTPS_USE_QOS_FROM_XML=1 (QoS set in code still wins over the XML).

MDE_ROS_DDS_PROFILE (the launch file's `fastdds_profile` argument sets it for the node):
  auto (default; also empty or 1)  the shipped profile, unless the environment already chose
                                   (FASTDDS_DEFAULT_PROFILES_FILE, FASTRTPS_DEFAULT_PROFILES_FILE or
                                   RMW_FASTRTPS_USE_QOS_FROM_XML set: yours wins) or RMW_IMPLEMENTATION is
                                   not Fast DDS (nothing to do);
  true                             the shipped profile, replacing a choice of the environment;
  0 / false                        no change: stock Fast DDS (or your own profile);
  PATH                             that XML file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

PROFILE_ENV = "MDE_ROS_DDS_PROFILE"
PROFILE_FILE = "fastdds_large_data.xml"
# Fast DDS 2.x/3.x (Jazzy) read the first; Humble's Fast DDS 2.6 the second.
PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
XML_QOS = "RMW_FASTRTPS_USE_QOS_FROM_XML"
FAST_DDS_RMWS = ("rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp")


def shipped_profile() -> Path | None:
    """config/fastdds_large_data.xml of the install (share/mde_ros) or of this checkout; None if absent."""
    from mde_ros.resources import find_shared

    return find_shared(f"config/{PROFILE_FILE}")


def profile_environment(environ: Mapping[str, str],
                        shipped: Callable[[], Path | None] = shipped_profile) -> tuple[dict[str, str], str]:
    """(variables to set in the node's environment, one line saying what was chosen and why).
    FileNotFoundError for a named profile (true, PATH) that does not exist."""
    choice = environ.get(PROFILE_ENV, "").strip() or "auto"
    lowered = choice.lower()
    if lowered in ("false", "0", "off", "no"):
        return {}, f"{PROFILE_ENV}={choice}: Fast DDS left as the environment configures it"
    if lowered in ("auto", "1"):
        rmw = environ.get("RMW_IMPLEMENTATION") or FAST_DDS_RMWS[0]
        if rmw not in FAST_DDS_RMWS:
            return {}, f"RMW_IMPLEMENTATION={rmw}: no Fast DDS profile needed"
        own = next((f"{name}={environ[name]}" for name in (*PROFILE_VARIABLES, XML_QOS) if environ.get(name)), None)
        if own:
            return {}, f"Fast DDS as the environment chose ({own})"
        path = shipped()
        if path is None:
            return {}, f"{PROFILE_FILE} is not installed: stock Fast DDS"
    elif lowered in ("true", "on", "yes"):
        path = shipped()
        if path is None:
            raise FileNotFoundError(f"{PROFILE_ENV}={choice}: {PROFILE_FILE} not found in share/mde_ros/config")
    else:
        path = Path(choice).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{PROFILE_ENV}={choice}: no such file (auto, true, false or an XML path)")
    return {**dict.fromkeys(PROFILE_VARIABLES, str(path)), XML_QOS: "1"}, f"Fast DDS profile {path}"
