"""rosbag2 tools on the pure-Python `rosbags` library (no ros2bag needed).

- io: open/read/write bags (mcap and sqlite3), camera topic auto-detection, output topic names
- messages: pipeline outputs <-> rosbags message dataclasses (the bag twin of mde_ros.ros.messages)
- replay: `mde-ros replay`, a recorded bag through the node's pipeline into a new bag
- player: `mde-ros play`, a bag published into a live ROS graph with rclpy
- fixtures: the test bags with exact ground truth, and the regression goldens
"""
