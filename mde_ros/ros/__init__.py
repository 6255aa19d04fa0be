"""ROS 2 glue, the only place that imports rclpy: the depth node, message conversion, diagnostics."""
