"""The per-frame step (pipeline/frame_step.run_frame): outputs built at once or later in another thread
(replay's writer, defer_outputs) are the same bytes."""
import threading

import numpy as np

from mde_ros.pipeline.estimator import DepthEstimator
from mde_ros.pipeline.frame_step import StepConfig, run_frame
from mde_ros.pipeline.outputs import METRIC_KEYS, OutputConfig
from mde_ros.resources import default_model_path
from mde_ros.synthetic import render_frame


def _bytes(parts: dict) -> dict:
    return {key: bytes(getattr(value, "data", b"")) or np.asarray(getattr(value, "ranges", [])).tobytes()
            for key, value in parts.items()}


def test_deferred_outputs_built_in_another_thread_equal_the_immediate_ones():
    estimator = DepthEstimator.from_model(default_model_path(), backend="onnxruntime")
    config = StepConfig(OutputConfig(cloud_decimation=2, cloud_organized=False), estimator.min_depth,
                        estimator.max_depth)
    frames = [render_frame(seed, 320, 240) for seed in (3, 4)]
    now = [_bytes(run_frame(estimator, f.rgb, f.intrinsics, METRIC_KEYS, config).outputs.parts) for f in frames]
    steps = [run_frame(estimator, f.rgb, f.intrinsics, METRIC_KEYS, config, defer_outputs=True) for f in frames]
    assert all(step.outputs is None and step.build is not None for step in steps)
    later = []
    worker = threading.Thread(target=lambda: later.extend(_bytes(step.build().parts) for step in steps))
    worker.start()  # both frames estimated before either is built, as in replay's writer thread
    worker.join()
    assert set(now[0]) == set(METRIC_KEYS)
    assert later == now
