"""Suite-wide set-up: a private ROS domain per run, discovery kept on this machine."""
import os
import random

# Set before any test imports rclpy, so every node in this run (and its subprocesses) shares
# one domain that parallel runs on the same machine are unlikely to share.
os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 101)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
