"""The depth node: camera image (+ CameraInfo) in; depth, CameraInfo, cloud, scan, preview out.

Glue only: decoding, depth estimation and output packing are mde_ros.pipeline's. The image
callback keeps just the newest frame and wakes the inference thread, so the executor keeps
receiving while the network runs and a slow network drops stale frames instead of queueing them.

    ros2 run mde_ros depth_node --ros-args --params-file config/depth.yaml -r image:=/camera/image_raw

Topics follow image_transport: `camera_info` is the image topic's sibling unless remapped itself,
and depth goes out as `depth/image` + its sibling `depth/camera_info` (mde_ros.ros.naming).
"""
from __future__ import annotations

import gc
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNodeMixin, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from mde_ros.memory import LargeFrameTrim, map_large_arrays
from mde_ros.threads import name_current_thread, set_opencv_threads
from mde_ros.modelfiles import load_estimator
from mde_ros.pipeline.estimator import DepthEstimator, EstimatorConfig
from mde_ros.pipeline.intrinsics import Intrinsics
from mde_ros.pipeline.budget import BudgetError, FrameBudget
from mde_ros.pipeline.frame_step import run_frame
from mde_ros.pipeline.outputs import BY_KEY, outputs_for
from mde_ros.pipeline.pairing import SyncedCameraInfos
from mde_ros.pipeline.preprocess import InputError
from mde_ros.ros import fastdds, messages, naming, paramcheck, shutdown
from mde_ros.ros.aliases import ALIASES, resolve_aliases
from mde_ros.ros.anchors import NodeAnchors
from mde_ros.ros.compat import add_parameter_callbacks
from mde_ros.ros.executor import make_executor
from mde_ros.ros.diagnostics import NodeStats, ThrottledWarnings, diagnostic_status
from mde_ros.ros.parameters import PARAMETERS, SPECS, TRANSPORTS, ParamSpec, Settings  # noqa: F401 (re-export)
from mde_ros.ros.qos import incompatible_publisher_callbacks, publisher_qos, subscription_qos

NODE_NAME = "mde_depth"
DIAGNOSTICS_PERIOD_S = 1.0
WARN_THROTTLE_S = 5.0


class StartupError(RuntimeError):
    """The node cannot start with this configuration; the message says what to change."""


@dataclass
class _Frame:
    msg: Image | CompressedImage
    received: float  # time.perf_counter()


@dataclass(frozen=True)
class _AdapterContext:
    """What the message adapters need besides the packed outputs (mde_ros.ros.adapters.AdapterContext)."""

    camera_info: CameraInfo | None
    scan_frame: str
    scan_time: float


class DepthNode(Node):
    """sensor_msgs/Image (+ CameraInfo) -> metric depth, CameraInfo, PointCloud2, LaserScan, preview.

    `estimator` replaces the model named by the parameters (tests, or an application that already
    holds one); everything else behaves exactly as in production.
    """

    managed = False  # ManagedDepthNode: configure / activate come from lifecycle transitions

    def __init__(self, *, estimator: DepthEstimator | None = None, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        self._given_estimator = estimator
        try:
            self._settings = self._declare_parameters()
        except StartupError:
            super().destroy_node()
            raise
        set_opencv_threads(self._settings.opencv_threads)  # process-wide, before any frame
        self._stats = NodeStats()
        self._warnings = ThrottledWarnings(self.get_logger().warning, self._stats, WARN_THROTTLE_S)
        self._estimator: DepthEstimator | None = None  # loaded by _configure (a lifecycle node: on configure)
        self._active = False  # frames are processed and outputs published only while active
        self._frame_lock = threading.Lock()  # held while a frame is processed (cleanup waits for it)
        self._pubs: dict[str, Any] = {}
        self._pubs_lock = threading.Lock()
        self._computed: tuple[str, ...] = ()  # output keys the last frame built (diagnostics)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        add_parameter_callbacks(self, self._check_parameters, self._apply_parameters)
        self._diag_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics)

        self._pending: _Frame | None = None
        map_large_arrays()  # a large frame's arrays are unmapped when freed (process-wide, idempotent)
        self._memory = LargeFrameTrim()
        self._stopping = False
        self._wake = threading.Condition()
        self._worker = threading.Thread(target=self._inference_loop, name="mde_depth_inference", daemon=True)
        self._worker.start()
        if not self.managed:
            try:
                self._configure()
            except StartupError:
                self.destroy_node()
                raise
            self._active = True

    def _configure(self) -> None:
        """Load the model and create the publishers and subscriptions (StartupError says what to change)."""
        settings = self._settings
        estimator = self._given_estimator if self._given_estimator is not None else self._load_estimator(settings)
        problem = settings.problem(estimator.card)
        if problem:
            raise StartupError(f"invalid parameters: {problem}")
        # The backend is fixed for the node's life (read-only parameters): describe it once.
        backend_info = estimator.backend.describe()
        self._hardware_id = str(backend_info.get("device", ""))
        self._backend_label = (f"{backend_info.get('backend', estimator.backend.name)} on "
                               f"{backend_info.get('device', '?')} ({backend_info.get('precision', '?')})")
        self._camera_infos: SyncedCameraInfos[CameraInfo] = SyncedCameraInfos(settings.sync_tolerance)
        self._pub_qos = publisher_qos(settings.qos_depth)
        sub_qos = subscription_qos(settings.qos_reliability, settings.qos_depth)
        try:  # scale anchors, temporal filter, confidence: scale.*, temporal.*, confidence.* (ros/anchors)
            # best effort: matches both kinds of rangefinder / lidar driver (anchor messages are small)
            self._anchors = NodeAnchors(self, settings.values("anchors"),
                                        subscription_qos("best_effort", settings.qos_depth))
        except ValueError as exc:
            raise StartupError(f"invalid parameters: {exc}") from exc
        card = estimator.card
        # The output table's rows this node has (pipeline.outputs.OUTPUTS): publishers for those switched on.
        self._outputs = outputs_for(card.is_relative, self._anchors.confidence, self._anchors.anchoring)
        if card.is_relative:
            self.get_logger().warning(
                f"model {card.name!r} outputs {card.output} (affine-invariant): publishing it on depth/relative "
                "(32FC1, larger = nearer); depth, points and scan need metres, which only scale anchors give it "
                "(scale.range.*, scale.points.*, scale.ground.*)")
        self._estimator = estimator
        self._sync_publishers(settings)

        # Depth 1 for images: only the newest frame is processed, so an older one waiting in a
        # queue is pure latency (issue 9: p99 781 ms under 2x overload with a reliable depth-5 queue).
        image_qos = subscription_qos(settings.qos_reliability, 1)
        image_topic = self.resolve_topic_name("image")

        def hints(topic: str):  # a best-effort camera against the reliable default: say which parameter
            return incompatible_publisher_callbacks(self.get_logger().warning, topic, settings.qos_reliability)

        if settings.image_transport == "compressed":
            self._image_topic = image_topic + "/compressed"
            self._image_sub = self.create_subscription(CompressedImage, self._image_topic, self._on_image, image_qos,
                                                       event_callbacks=hints(self._image_topic))
        else:
            self._image_sub = self.create_subscription(Image, image_topic, self._on_image, image_qos,
                                                       event_callbacks=hints(image_topic))
            self._image_topic = self._image_sub.topic_name
        info_topic = self._camera_info_topic(image_topic)
        self._info_sub = self.create_subscription(CameraInfo, info_topic, self._on_camera_info, sub_qos,
                                                  event_callbacks=hints(info_topic))
        self._scan_frame_guessed: str | None = None  # image frame warned about (no '_optical' in it)
        self.get_logger().info(f"model {card.name!r} on {self._backend_label}; listening on "
                               f"{self._image_topic} and {self._info_sub.topic_name}")

    def _set_active(self, active: bool) -> None:
        """Start or stop processing; stopping drops the waiting frame and waits for the one in progress."""
        with self._wake:
            self._active = active
            self._pending = None
        if not active:
            with self._frame_lock:
                pass

    def _cleanup(self) -> None:
        """Undo _configure: subscriptions and publishers destroyed, the model released."""
        self._set_active(False)
        with self._frame_lock:
            for sub in (self._image_sub, self._info_sub):
                self.destroy_subscription(sub)
            self._anchors.close()
            with self._pubs_lock:
                for pub in self._pubs.values():
                    self.destroy_publisher(pub)
                self._pubs.clear()
            self._computed = ()
            self._estimator = None
        self.get_logger().info("model unloaded, outputs and subscriptions removed")

    def _camera_info_topic(self, image_topic: str) -> str:
        """image_transport's pairing: the image topic's sibling `camera_info`, unless `camera_info`
        itself is remapped (then the remap wins, as for any topic)."""
        if self.resolve_topic_name("camera_info") != self.resolve_topic_name("camera_info", only_expand=True):
            return self.resolve_topic_name("camera_info")
        return naming.sibling_topic(image_topic)

    # ---- parameters ---------------------------------------------------------------------------

    def _declare_parameters(self) -> Settings:
        try:
            declared = self.declare_parameters("", [(s.name, s.default, s.descriptor()) for s in PARAMETERS])
            aliases = self.declare_parameters("", [
                (a.name, SPECS[a.canonical].default,
                 ParameterDescriptor(name=a.name, description=a.description(), read_only=True)) for a in ALIASES])
        except ParameterException as exc:
            raise StartupError(f"invalid parameter: {exc}") from exc
        values, warnings = resolve_aliases({p.name: p.value for p in declared}, {p.name: p.value for p in aliases},
                                           {s.name: s.default for s in PARAMETERS})
        # Every name declared by now (the whole table, the aliases, rclpy's own such as use_sim_time):
        # what a misspelt key is matched against.
        known = list(self._parameters)
        for warning in warnings + paramcheck.unknown_parameters(getattr(self, "_parameter_overrides", {}), known):
            self.get_logger().warning(warning)
        settings = Settings.from_values(values)
        problem = settings.problem()
        if problem is None and settings.fallback_incomplete():
            problem = "set all of fallback_intrinsics.fx, fy, cx, cy (> 0) or none of them"
        if problem:
            raise StartupError(f"invalid parameters: {problem}")
        return settings

    def _check_parameters(self, params: list[Parameter]) -> SetParametersResult:
        ours = {p.name: p.value for p in params if p.name in SPECS}
        card = None if self._estimator is None else self._estimator.card
        problem = self._settings.with_values(ours).problem(card)
        return SetParametersResult(successful=problem is None, reason=problem or "")

    def _apply_parameters(self, params: list[Parameter]) -> None:
        ours = {p.name: p.value for p in params if p.name in SPECS}
        if ours:
            self._settings = self._settings.with_values(ours)
            if self._estimator is not None:  # configured: its publishers follow publish.*
                self._sync_publishers(self._settings)
            self.get_logger().info("parameters changed: " + ", ".join(f"{k}={v!r}" for k, v in ours.items()))

    def _sync_publishers(self, settings: Settings) -> None:
        """Publishers exist only for enabled outputs (OutputSpec.switch), so `ros2 topic list` shows what
        is produced."""
        with self._pubs_lock:
            for spec in self._outputs:
                enabled = spec.switch is None or settings.value(spec.switch)
                if enabled and spec.key not in self._pubs:
                    self._pubs[spec.key] = self.create_publisher(messages.message_class(spec.msgtype), spec.topic,
                                                                 self._pub_qos)
                elif not enabled and spec.key in self._pubs:
                    self.destroy_publisher(self._pubs.pop(spec.key))

    def _load_estimator(self, settings: Settings) -> DepthEstimator:
        model = settings.model
        if not model:
            from mde_ros.resources import default_model_path

            try:
                model = str(default_model_path())
            except OSError as exc:  # not found, or an unusable ament environment
                raise StartupError(f"no model given and the shipped one cannot be found: {exc}") from exc
        path = Path(model).expanduser()
        if not path.is_file():
            raise StartupError(f"model file not found: {path} (set the 'model' parameter to an .onnx or .pt file)")
        config = EstimatorConfig(camera_aware_rescale=settings.camera_aware_rescale,
                                 resize_policy=settings.resize_policy, sky_depth=settings.sky_depth,
                                 device_pipeline=settings.device_pipeline)
        try:
            return load_estimator(path, backend=settings.backend, device=settings.device,
                                  precision=settings.precision, config=config, **settings.backend_options())
        except Exception as exc:  # card, backend and runtime errors alike end the start-up with their reason
            raise StartupError(f"cannot load model {path} with backend {settings.backend!r} on "
                               f"{settings.device} ({settings.precision}): {exc}") from exc

    # ---- callbacks (executor thread): cheap, never block on inference ---------------------------

    def _on_image(self, msg: Image | CompressedImage) -> None:
        if not self._active:  # a lifecycle node configured but not active: frames are not processed
            return
        received = time.perf_counter()
        self._stats.frame_received()
        self._camera_infos.add_image(messages.stamp_ns(msg.header), received)
        with self._wake:
            if not self._active:
                return
            if self._pending is not None:
                self._stats.frame_dropped()
            self._pending = _Frame(msg, received)
            self._wake.notify()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_infos.add_info(messages.stamp_ns(msg.header), msg)

    def _publish_diagnostics(self) -> None:
        window = self._stats.take_window()
        settings = self._settings
        name = f"{self.get_fully_qualified_name()}: depth estimation"
        if self._estimator is None:  # a lifecycle node before configure / after cleanup
            status = DiagnosticStatus(level=DiagnosticStatus.OK, name=name, hardware_id="",
                                      message="unconfigured (lifecycle): no model loaded")
        else:
            geometry_wanted = settings.publish_points or settings.publish_scan
            status = diagnostic_status(
                window, name=name, hardware_id=self._hardware_id,
                backend=self._backend_label, model=self._estimator.card.name, input_topic=self._image_topic,
                intrinsics_missing=window.intrinsics_source == "none" and geometry_wanted,
                extra={"lifecycle state": "active" if self._active else "inactive", **self._outputs_diagnostics(),
                       **self._anchors.diagnostic_values()})
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(array)

    # ---- inference thread ---------------------------------------------------------------------

    def _inference_loop(self) -> None:
        name_current_thread("mde_inference")  # top -H, py-spy, the node benchmark's per-thread CPU
        while True:
            with self._wake:
                while self._pending is None and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                frame, self._pending = self._pending, None
            pixels = 0
            message_bytes = len(getattr(frame.msg, "data", b""))
            try:
                with self._frame_lock:  # deactivate / cleanup wait for the frame in progress
                    pixels = self._process(frame) if self._active else 0
            except Exception as exc:  # a bug or backend failure must not stop the node
                if self._stopping:  # destroy_node gave up waiting (a frame over 10 s): publishers are gone
                    return
                self._warnings.warn("frame_failed", f"frame skipped: {type(exc).__name__}: {exc}")
            del frame  # the message (up to budget.max_message_bytes) must not outlive its frame
            # a one-off large frame's (or a rejected large message's) memory goes back to the system
            self._memory.after_frame(pixels, message_bytes)

    def _process(self, frame: _Frame) -> int:
        """Decode, pair, run the frame step, publish one frame; the pixels it processed (0: rejected)."""
        settings = self._settings
        header = frame.msg.header
        cpu_start = time.thread_time()
        decode_start = time.perf_counter()
        rgb = self._decode(frame.msg, settings.budget())
        if rgb is None:
            return 0
        height, width = rgb.shape[:2]
        intr, template, source = self._match_intrinsics(header, frame.received, width, height, settings)
        decode_s = time.perf_counter() - decode_start

        wanted = self._wanted_outputs()
        card = self._estimator.card
        self._estimator.config = settings.estimator_config(card)
        refiner = self._anchors.refiner
        step = run_frame(self._estimator, rgb, intr, wanted, settings.step_config(card), refiner=refiner,
                         anchors=None if refiner is None else self._anchors.anchors_for(header),
                         stamp_s=messages.stamp_ns(header) * 1e-9)
        for note in step.notes:
            text = f"image on {self._image_topic} rejected: {note.message}" if note.kind == "over_budget" \
                else note.message
            self._warnings.warn(note.kind, text, count=note.counted)
        if step.outputs is None:
            return 0
        self._computed = tuple(step.outputs.parts)
        self._anchors.record(step.refined)

        publish_start = time.perf_counter()
        context = _AdapterContext(template, self._scan_frame(header, settings) if "scan" in step.outputs.parts
                                  else "", settings.scan_scan_time)
        # Relative and confidence first, then depth and the rest (table order within each).
        parts = sorted(step.outputs.parts.items(), key=lambda item: BY_KEY[item[0]].metric)
        msgs = [(key, messages.output_msg(BY_KEY[key], value, header, context)) for key, value in parts]
        # Under the lock: a parameter change (executor thread) may have destroyed a publisher since
        # `wanted` was taken, and publishing on a destroyed one raises.
        with self._pubs_lock:
            for key, msg in msgs:
                if key in self._pubs:
                    self._pubs[key].publish(msg)

        if step.stopped:  # the scale expired and scale.on_expiry is 'stop': depth/scale says so
            return width * height
        timings = {"queue": decode_start - frame.received, "decode": decode_s, **step.result.timings,
                   "outputs": sum(step.outputs.timings.values()), "publish": time.perf_counter() - publish_start}
        network_cpu = step.result.network_cpu_s
        cpu = {"frame": time.thread_time() - cpu_start,  # this thread's CPU for the frame (not the executor's)
               **({} if network_cpu is None else {"network": network_cpu})}
        for finding in step.findings:  # states of the output, not rejected frames: logged, not counted
            self._warnings.warn(finding.kind, finding.message, count=False)
        self._stats.frame_published(timings, source, step.valid, step.findings, cpu_s=cpu)
        return width * height

    def _wanted_outputs(self) -> set[str]:
        """The outputs to compute: every published one, the on-demand ones (cloud, scan, preview, confidence)
        only while someone subscribes (depth_image_proc's way)."""
        with self._pubs_lock:
            return {key for key, pub in self._pubs.items()
                    if not BY_KEY[key].on_demand or pub.get_subscription_count() > 0}

    def _outputs_diagnostics(self) -> dict[str, str]:
        """Which outputs the last frame computed and which wait for a subscriber."""
        with self._pubs_lock:
            idle = [BY_KEY[key].topic for key, pub in self._pubs.items()
                    if BY_KEY[key].on_demand and pub.get_subscription_count() == 0]
        return {"outputs computed (last frame)": ", ".join(BY_KEY[key].topic for key in self._computed) or "none yet",
                "outputs idle (no subscriber)": ", ".join(idle) or "none"}

    def _decode(self, msg: Image | CompressedImage, budget: FrameBudget) -> np.ndarray | None:
        """HxWx3 RGB of the image message, or None when it is rejected (warned)."""
        notes: list[str] = []
        try:
            if isinstance(msg, CompressedImage):
                rgb = messages.compressed_msg_to_rgb(msg, budget, notes)
            else:
                rgb = messages.image_msg_to_rgb(msg, budget)
        except BudgetError as exc:  # checked from the message fields / JPEG-PNG header: nothing decoded
            self._warnings.warn("over_budget", f"image on {self._image_topic} rejected: {exc}")
            return None
        except InputError as exc:
            self._warnings.warn("bad_image", f"image on {self._image_topic} rejected: {exc}")
            return None
        for note in notes:  # harmless codec messages (libjpeg's), throttled with the rest
            self._warnings.warn("image_codec_note", f"image on {self._image_topic}: {note}", count=False)
        return rgb

    def _scan_frame(self, header: Header, settings: Settings) -> str:
        """The scan's frame: a body-convention frame (never the optical one)."""
        frame, guessed = naming.scan_frame(header.frame_id, settings.scan_output_frame)
        if guessed and self._scan_frame_guessed != frame:
            self._scan_frame_guessed = frame  # once per frame name, not per period: it is a setup issue
            self.get_logger().warning(
                f"image frame_id {frame!r} has no '_optical' part: publishing 'scan' in {frame!r}, assumed to "
                "be a body-convention frame (x forward, z up); set scan.output_frame if it is an optical frame")
        return frame

    def _match_intrinsics(self, header: Header, received: float, width: int, height: int,
                          settings: Settings) -> tuple[Intrinsics | None, CameraInfo | None, str]:
        """(intrinsics at the image's resolution, the CameraInfo they came from, source name).

        The image's CameraInfo (same stamp, else the newest within sync_tolerance), waited for as
        long as this camera's measured lag says (mde_ros.pipeline.pairing); a bad one is treated as
        missing (with a warning); then fallback_intrinsics; then none (depth only).
        """
        self._camera_infos.tolerance_s = settings.sync_tolerance
        info_topic = self._info_sub.topic_name
        pairing = self._camera_infos.pair(messages.stamp_ns(header), received, self.count_publishers(info_topic))
        info = pairing.info
        if info is not None:
            try:
                intr = messages.intrinsics_from_camera_info(info, width, height)
            except messages.CameraInfoError as exc:
                self._warnings.warn(exc.kind, str(exc))
            else:
                described = messages.camera_info_image_size(info)  # its ROI / binning (REP 104)
                if described != (width, height):
                    self._warnings.warn("camera_info_scaled", f"CameraInfo describes a {described[0]}x{described[1]}"
                                        f" image, the image is {width}x{height}: K scaled per axis", count=False)
                return intr, info, "camera_info"
        elif pairing.problem[0] != "no_camera_info":
            kind, message = pairing.problem
            self._warnings.warn(kind, f"no CameraInfo on {info_topic} for the image stamped "
                                f"{header.stamp.sec}.{header.stamp.nanosec:09d}: {message}")
        fallback = settings.fallback_intrinsics(width, height)
        if fallback is not None:
            return fallback, None, "fallback_intrinsics"
        if pairing.problem is not None and pairing.problem[0] == "no_camera_info":
            fallback_state = "incomplete (need fx, fy, cx and cy > 0)" if settings.fallback_incomplete() else "not set"
            self._warnings.warn("no_intrinsics", f"no CameraInfo received on {self._info_sub.topic_name} and "
                                f"fallback_intrinsics.* {fallback_state}: publishing depth only (points, scan and "
                                "camera-aware rescale are off)", count=False)
        return None, None, "none"

    # ---- shutdown -----------------------------------------------------------------------------

    def destroy_node(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._worker.is_alive() and threading.current_thread() is not self._worker:
            self._worker.join(timeout=10.0)
        super().destroy_node()


class ManagedDepthNode(LifecycleNodeMixin, DepthNode):
    """The depth node as a ROS 2 managed (lifecycle) node: what `ros2 run` and `mde-ros node` start.

    With the parameter `lifecycle: true` it waits unconfigured for a lifecycle manager (nav2's, or
    `ros2 lifecycle set`): configure loads the model and creates the topics, activate starts processing and
    publishing, deactivate stops (the model stays loaded), cleanup unloads the model, shutdown ends. With
    `lifecycle: false` (the default) it configures and activates itself at start and offers no lifecycle
    services: a plain node, as before. rclpy.lifecycle is the same on Humble and Jazzy.
    """

    managed = True

    def __init__(self, **kwargs: Any) -> None:
        DepthNode.__init__(self, **kwargs)
        lifecycle = self._settings.lifecycle
        LifecycleNodeMixin.__init__(self, enable_communication_interface=lifecycle)
        if not lifecycle:
            try:
                self._configure()
            except StartupError:
                self.destroy_node()
                raise
            self.trigger_configure()  # the state machine follows: unconfigured -> inactive -> active
            self.trigger_activate()

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self._estimator is None:
            try:
                self._configure()
            except StartupError as exc:  # stays unconfigured; the manager sees the failure
                self.get_logger().error(f"configure failed: {exc}")
                return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._set_active(True)
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._set_active(False)
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._cleanup()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self._estimator is not None:
            self._cleanup()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._set_active(False)
        return TransitionCallbackReturn.SUCCESS  # back to unconfigured (the model stays until cleanup)


def main(args: list[str] | None = None) -> int:
    """Entry point of `ros2 run mde_ros depth_node` and `mde-ros node`; `args` as sys.argv (ROS args)."""
    argv = list(sys.argv if args is None else args)
    problem = next(filter(None, map(paramcheck.params_file_problem, paramcheck.params_files(argv))), None)
    if problem:  # rcl would raise it from rclpy.init as a traceback
        print(f"[FATAL] [{NODE_NAME}]: {problem}", file=sys.stderr)
        return 1
    # Before rclpy starts Fast DDS: the transport that delivers camera-sized messages and returns a large
    # sample's memory (mde_ros.ros.fastdds; README Delivery, Reliability).
    try:
        variables, _ = fastdds.profile_environment(os.environ)
    except OSError as exc:
        print(f"[FATAL] [{NODE_NAME}]: {exc}", file=sys.stderr)
        return 1
    os.environ.update(variables)
    with shutdown.NodeStopRequest() as stop:  # SIGINT/SIGTERM: the inference thread stops before the context ends
        return _run(args, argv, stop)


def _run(args: list[str] | None, argv: list[str], stop: shutdown.NodeStopRequest) -> int:
    try:
        shutdown.init_without_signal_handlers(args)
    except KeyboardInterrupt:
        return 0
    except Exception as exc:  # rcl's RCLError for other bad --ros-args
        print(f"[FATAL] [{NODE_NAME}]: cannot start: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    node = None
    try:
        node = ManagedDepthNode()
        for warning in paramcheck.unmatched_params_files(paramcheck.params_files(argv),
                                                         node.get_fully_qualified_name()):
            node.get_logger().warning(warning)
        # Start-up's objects (model, modules, parameter tables) out of the collector's way: a full
        # collection during a frame no longer walks them (overload p99 measured, README "Latency under
        # overload").
        gc.freeze()
        try:
            executor, executor_name = make_executor(node.get_parameter("executor").value, node.context)
        except ValueError as exc:
            raise StartupError(str(exc)) from None
        node.get_logger().info(f"spinning with {executor_name}")
        shutdown.spin_until_stopped(node, stop, executor)
    except StartupError as exc:
        if stop.requested:  # the signal broke the start-up (an import it interrupted reads "initialization failed")
            print(f"[INFO] [{NODE_NAME}]: stopped during start-up", file=sys.stderr)
            return 0
        rclpy.logging.get_logger(NODE_NAME).fatal(str(exc))
        return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        if node is None:
            print(f"[INFO] [{NODE_NAME}]: stopped during start-up", file=sys.stderr)
    finally:
        stop.deferring = True  # a signal now only asks for what is already under way
        if node is not None:
            try:
                node.destroy_node()  # joins the inference thread: nothing publishes after this
            except Exception:  # noqa: BLE001 - already shut down
                pass
        rclpy.utilities.try_shutdown()
    return 0

if __name__ == "__main__":
    sys.exit(main())
