"""The ROS-free depth pipeline (numpy + OpenCV; no rclpy, no torch).

preprocess -> backend (mde_ros.inference) -> postprocess, wrapped by estimator.DepthEstimator;
geometry, colorize and outputs turn a DepthResult into what the node and the bag tool publish.
Import the submodules directly; this package deliberately imports nothing, so that using
`pipeline.intrinsics` alone stays cheap.
"""
