"""`mde-ros replay IN_BAG --out OUT_BAG`: a recorded bag through the node's pipeline into a new bag.

Every message of the input is copied unchanged (same receive timestamps); every camera image also
yields depth, depth/camera_info, points, scan and depth/colorized, stamped with the image's receive
timestamp and carrying its header (stamp and frame_id). The depth comes from the same
DepthEstimator + build_outputs the node runs, so a replayed bag is what the node would have
published for that recording, minus the frames a live node drops when it falls behind.

With a fixed model, backend and thread count the output messages are byte-identical from run to
run (onnxruntime runs with one intra-op thread unless told otherwise). An .mcap output is written by a
writer thread, in input order, while the next frame is inferred (_WriterThread).
"""
from __future__ import annotations

import argparse
import bisect
import json
import logging
import queue
import shutil
import signal
import sqlite3
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from rosbags.serde import SerdeError

from mde_ros.bags import anchors as bag_anchors
from mde_ros.bags.anchors import ReplayAnchors, ReplayRefine
from mde_ros.bags.io import (CAMERA_INFO_TYPE, STORAGES, BagError, BagReadError, ConnectionCopier, OutputTopics,
                             bag_storage, create_writer, custom_data, deserialize, detect_topics,
                             list_topics, open_reader, read_messages, remove_bag, serialize, stamp_ns)
from mde_ros.bags.messages import CameraInfoError, intrinsics_from_camera_info, output_msg, rgb_from_msg
from mde_ros.pipeline.frame_step import Note, StepConfig, run_frame
from mde_ros.pipeline.health import Finding
from mde_ros.pipeline.outputs import BY_KEY, DEPTH_ENCODINGS, METRIC_KEYS, OutputConfig, outputs_for
from mde_ros.pipeline.preprocess import InputError
from mde_ros.ros import naming
from mde_ros.ros.naming import SCAN_TIME_S
from mde_ros.stopping import StopRequest, exit_code, signal_name

if TYPE_CHECKING:
    from rosbags.rosbag2 import Reader

    from mde_ros.pipeline.estimator import DepthEstimator, EstimatorConfig
    from mde_ros.pipeline.intrinsics import Intrinsics

log = logging.getLogger(__name__)
PERCENTILES = (50, 90, 99)
SYNC_TOLERANCE_S = 0.05  # the node's sync_tolerance default
MAX_LOGGED_WARNINGS = 20


def _read_errors() -> tuple[type[BaseException], ...]:
    """What a damaged storage file raises mid-iteration (a corrupt .db3 page, a bad .mcap chunk)."""
    return (BagReadError,)


@dataclass
class _Stats:
    frames_in_bag: int = 0  # as the bag's index says; more than `frames` when reading stopped early
    frames: int = 0
    processed: int = 0
    copied: int = 0
    skipped: Counter = field(default_factory=Counter)  # frames without any output, by reason
    outputs_skipped: Counter = field(default_factory=Counter)  # frames with depth only, by reason
    corrupt_camera_info: int = 0
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    warnings: list[str] = field(default_factory=list)
    read_error: str | None = None
    messages_in_bag: int = 0  # as metadata.yaml says
    done_messages: int = 0  # input messages copied with their outputs (a resumed run's included)
    last_timestamp: int = -1  # receive time of the last of them
    resumed_frames: int = 0  # images a previous, interrupted run already replayed
    interrupted: int | None = None  # the signal that stopped the run
    findings: Counter = field(default_factory=Counter)  # frames per health finding / note kind (as the node's)
    valid: list[float] = field(default_factory=list)  # per frame: share of usable depth pixels

    def frame_notes(self, notes: list[Note], findings: list[Finding], valid: float | None) -> None:
        """One frame's notes and health findings (mde_ros.pipeline.frame_step), counted; each kind's
        first message is warned. `valid`: None for a frame without depth."""
        if valid is not None:
            self.valid.append(valid)
        for kind, message in [(n.kind, n.message) for n in notes if not n.kind.startswith("anchor_")] + \
                [(f.kind, f.message) for f in findings]:
            if kind == "scan_height":  # the frame has depth but no scan
                self.outputs_skipped[kind] += 1
                continue
            if not self.findings[kind]:
                self.warn(f"{message} (first frame with {kind}; counted in the summary's findings)")
            self.findings[kind] += 1

    def warn(self, message: str) -> None:
        log.warning(message)
        if len(self.warnings) < MAX_LOGGED_WARNINGS:
            self.warnings.append(message)


class _CameraInfos:
    """All CameraInfo messages of one topic, matched to images as the node matches them: the newest
    stamp within `tolerance` of the image's (ties: the last received)."""

    def __init__(self, reader: "Reader", topic: str | None, stats: _Stats) -> None:
        self.topic = topic
        self.by_stamp: dict[int, Any] = {}
        if topic is not None:
            connections = [c for c in reader.connections if c.topic == topic]
            try:
                for _, timestamp, data in read_messages(reader, connections):
                    try:
                        msg = deserialize(data, CAMERA_INFO_TYPE)
                    except SerdeError as exc:
                        stats.corrupt_camera_info += 1
                        stats.warn(f"skipping corrupt CameraInfo on {topic} received at {timestamp} ns: {exc}")
                        continue
                    self.by_stamp[stamp_ns(msg.header)] = msg
            except _read_errors() as exc:
                stats.warn(f"reading {topic} stopped at a damaged part of the bag: {exc}")
        self.stamps = sorted(self.by_stamp)

    def match(self, stamp: int, tolerance_ns: int) -> Any | None:
        last = bisect.bisect_right(self.stamps, stamp + tolerance_ns) - 1
        if last >= 0 and self.stamps[last] >= stamp - tolerance_ns:
            return self.by_stamp[self.stamps[last]]
        return None


def _percentiles(values: list[float]) -> dict[str, float]:
    ms = np.asarray(values, dtype=np.float64) * 1e3
    summary = {f"p{p}": round(float(np.percentile(ms, p)), 3) for p in PERCENTILES}
    summary["mean"] = round(float(ms.mean()), 3)
    return summary


def load_estimator(model: str | Path | None = None, backend: str = "auto", *, device: str = "cpu",
                   precision: str = "fp32", config: "EstimatorConfig | None" = None,
                   intra_op_threads: int = 1, **backend_options) -> "DepthEstimator":
    """The shipped model (or `model`) on `backend`, onnxruntime pinned to `intra_op_threads` so
    the output bytes do not depend on the machine's core count."""
    from mde_ros import modelfiles
    from mde_ros.inference.registry import takes_option

    options = {"intra_op_threads": intra_op_threads} if takes_option(backend, "intra_op_threads") else {}
    return modelfiles.load_estimator(model, backend, device=device, precision=precision, config=config,
                                     **options, **backend_options)


def run_replay(in_bag: str | Path, out_bag: str | Path, *, model: str | Path | None = None,
               backend: str = "auto", image_topic: str | None = None, camera_info_topic: str | None = None,
               output_config: OutputConfig | None = None, storage: str | None = None,
               summary_path: str | Path | None = None, progress: bool = True,
               output_prefix: str | None = None, sync_tolerance: float = SYNC_TOLERANCE_S,
               scan_frame: str | None = None, estimator: "DepthEstimator | None" = None,
               anchors: "ReplayAnchors | None" = None, resume: bool = False) -> dict:
    """Replay `in_bag` into the new bag `out_bag` and return the summary (also written to
    `summary_path` as JSON).

    SIGINT / SIGTERM stop after the current frame and a full disk after the last whole frame: the
    output is closed (metadata.yaml written) with what was done and marked partial in its custom_data;
    `resume` continues such an output (without it an existing `out_bag` is an error).

    `sync_tolerance` (s) and `scan_frame` are the node's sync_tolerance and scan.output_frame;
    `estimator` replaces model/backend when given (to reuse one across bags); `anchors` adds scale
    anchoring, the temporal filter and confidence (bags/anchors, the node's scale.* twin).
    """
    in_bag, out_bag = Path(in_bag), Path(out_bag)
    output_config = output_config or OutputConfig()
    storage = storage or bag_storage(in_bag)
    if storage not in STORAGES:
        raise BagError(f"storage {storage!r} is not supported (choose {' or '.join(STORAGES)})")
    resume_at = None
    if out_bag.exists() or out_bag.is_symlink():
        if not resume:
            raise BagError(f"output bag {out_bag} already exists; remove it or choose another --out "
                           "(--resume continues an interrupted replay, --overwrite replaces it)")
        resume_at = _resume_point(out_bag, in_bag)
    stats = _Stats()
    with open_reader(in_bag) as reader:
        topics = list_topics(reader)
        image_topic, info_topic = detect_topics(topics, image_topic, camera_info_topic)
        if estimator is None:
            estimator = load_estimator(model, backend)
        active = anchors is not None and anchors.active
        rows = outputs_for(estimator.card.is_relative, active and anchors.refine.confidence,
                           active and anchors.anchoring)
        out_topics = OutputTopics.for_image_topic(image_topic, output_prefix, [spec.key for spec in rows])
        clashes = sorted(set(out_topics.as_dict().values()) & {t.name for t in topics})
        if clashes:
            raise BagError(f"output topics {clashes} already exist in {in_bag} (the camera's own depth?); "
                           "choose another namespace with --output-prefix, e.g. /mde")
        if info_topic is None:
            stats.warn(f"{in_bag} has no CameraInfo topic: depth only, no points or scan")
        refine = None
        if anchors is not None and anchors.active:
            anchors.check_topics({t.name: t.msgtype for t in topics})
            refine = ReplayRefine(anchors, out_topics.depth)
        camera_infos = _CameraInfos(reader, info_topic, stats)
        # A resumed run writes beside the old output and replaces it once its own output is closed.
        target = out_bag if resume_at is None else out_bag.with_name(f".{out_bag.name}.resuming")
        if resume_at is not None and target.exists():
            remove_bag(target)
        writer = create_writer(target, storage)
        started = time.perf_counter()
        try:
            with StopRequest() as stop:
                copy = ConnectionCopier(writer)
                if resume_at is not None:
                    _copy_previous(out_bag, copy, {t.name for t in topics}, *resume_at)
                pipeline = _FramePipeline(estimator, output_config, camera_infos, sync_tolerance, scan_frame, stats,
                                          refine, wanted=tuple(spec.key for spec in rows))
                _replay_messages(reader, writer, image_topic, out_topics, pipeline, progress, copy,
                                 resume_at[0] if resume_at else 0, stop)
            wall = time.perf_counter() - started
            for key, value in ((STATE_KEY, "complete" if stats.interrupted is None else "partial"),
                               (DONE_KEY, str(stats.done_messages)), (LAST_KEY, str(stats.last_timestamp)),
                               (INPUT_KEY, in_bag.name)):
                writer.set_custom_data(key, value)
            writer.close()
        except (OSError, sqlite3.Error) as exc:
            # Full disk, read-only folder: a storage file cut mid-write (an mcap chunk, an sqlite
            # transaction) cannot be trusted, so it goes; an interrupted run's output is kept (Ctrl-C
            # and SIGTERM stop between frames, above).
            _discard(writer, target)
            kept = "" if resume_at is None else f"; {out_bag} from the interrupted run is kept (--resume again)"
            raise BagError(f"cannot write the output bag {out_bag} ({type(exc).__name__}: {exc}) after "
                           f"{stats.resumed_frames + stats.frames} of {stats.frames_in_bag} frames: the unfinished "
                           f"output was removed{kept}; free space and run again") from exc
        except BaseException:
            _discard(writer, target)
            raise
    if resume_at is not None:
        remove_bag(out_bag)
        target.rename(out_bag)
    summary = _summary(in_bag, out_bag, storage, image_topic, info_topic, out_topics, estimator, stats, wall)
    if refine is not None:
        summary["scale"] = refine.summary()
    if summary_path is not None:
        Path(summary_path).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


@dataclass
class _Context:
    """What the message adapters need besides the packed outputs (mde_ros.ros.adapters.AdapterContext)."""

    camera_info: Any | None
    scan_frame: str
    scan_time: float = SCAN_TIME_S


@dataclass
class _FramePipeline:
    """One recorded image -> the node's output messages: decode, pair with CameraInfo, then the node's
    per-frame step (mde_ros.pipeline.frame_step) and the output table's message adapters."""

    estimator: "DepthEstimator"
    output_config: OutputConfig
    camera_infos: _CameraInfos
    sync_tolerance: float
    scan_frame: str | None
    stats: _Stats
    refine: ReplayRefine | None = None  # anchors, temporal filter, confidence
    guessed_frames: set[str] = field(default_factory=set)  # image frames without '_optical', warned once
    wanted: tuple[str, ...] = METRIC_KEYS  # output rows written (OutputSpec keys)

    def __call__(self, msgtype: str, data: bytes, timestamp: int) -> "Callable[[], dict[str, Any]] | None":
        stats = self.stats
        began = time.perf_counter()
        try:
            msg = deserialize(data, msgtype)
            rgb = rgb_from_msg(msg, msgtype)
        except SerdeError as exc:
            stats.skipped["corrupt_message"] += 1
            stats.warn(f"skipping corrupt image received at {timestamp} ns: {exc}")
            return None
        except InputError as exc:
            stats.skipped["invalid_image"] += 1
            stats.warn(f"skipping image received at {timestamp} ns: {exc}")
            return None
        info, intrinsics = self._intrinsics(msg.header, rgb.shape[1], rgb.shape[0], timestamp)
        decoded = time.perf_counter()
        refine = self.refine
        step = run_frame(self.estimator, rgb, intrinsics, self.wanted,
                         StepConfig(self.output_config, self.estimator.min_depth, self.estimator.max_depth),
                         refiner=None if refine is None else refine.refiner,
                         anchors=None if refine is None else refine.anchors_for(msg.header),
                         stamp_s=stamp_ns(msg.header) * 1e-9, defer_outputs=True)
        if refine is not None:
            refine.record(step.refined, msg.header)
        stats.frame_notes(step.notes, step.findings, None if step.stopped else step.valid)
        if step.stopped:  # the scale expired (on_expiry stop): no depth for this image, as the node
            stats.outputs_skipped["scale_expired"] += 1
        else:
            stats.processed += 1
        for stage, seconds in {"decode": decoded - began, **step.result.timings}.items():
            stats.latencies[stage].append(seconds)
        frame, guessed = naming.scan_frame(msg.header.frame_id, self.scan_frame or "")
        header = msg.header

        def messages() -> dict[str, Any]:
            """The frame's output messages, built where they are written (the writer thread for mcap:
            frame N's outputs are built while frame N+1 is in the network)."""
            outputs = step.build()
            for stage, seconds in outputs.timings.items():
                stats.latencies[stage].append(seconds)
            if outputs.scan is not None and guessed and frame not in self.guessed_frames:
                self.guessed_frames.add(frame)
                stats.warn(f"image frame_id {frame!r} has no '_optical' part: the scan is written in {frame!r}, "
                           "assumed to be a body-convention frame; pass --scan-output-frame if it is optical")
            context = _Context(info, frame)
            return {key: output_msg(BY_KEY[key], value, header, context) for key, value in outputs.parts.items()}

        return messages

    def _intrinsics(self, header: Any, width: int, height: int, timestamp: int) -> tuple[Any, "Intrinsics | None"]:
        """(CameraInfo, intrinsics at the image's resolution), both None when unknown or unusable."""
        info = self.camera_infos.match(stamp_ns(header), int(round(self.sync_tolerance * 1e9)))
        wants_geometry = self.output_config.cloud_enabled or self.output_config.scan_enabled
        if info is None:
            if wants_geometry:
                reason = "no_camera_info" if self.camera_infos.topic is None else "camera_info_unsynced"
                self.stats.outputs_skipped[reason] += 1
            return None, None
        try:
            return info, intrinsics_from_camera_info(info, width, height)
        except CameraInfoError as exc:
            self.stats.outputs_skipped[exc.kind] += 1
            self.stats.warn(f"image received at {timestamp} ns: {exc}; depth only")
            return None, None


def _replay_messages(reader: "Reader", writer: Any, image_topic: str, out_topics: OutputTopics,
                     pipeline: _FramePipeline, progress: bool, copy: ConnectionCopier | None = None,
                     skip: int = 0, stop: StopRequest | None = None) -> None:
    """Copy every message; after each image, write its outputs with the image's receive time.

    `skip`: the first messages an interrupted run already replayed (copied by the caller from its
    output); `stop`: checked before each message, so the output always ends after a whole frame."""
    from tqdm import tqdm

    stats = pipeline.stats
    copy = copy or ConnectionCopier(writer)
    for conn in reader.connections:
        copy(conn)
    outputs_conn = {key: copy.ensure(topic, BY_KEY[key].msgtype) for key, topic in out_topics.as_dict().items()}
    stats.frames_in_bag = reader.topics[image_topic].msgcount
    stats.messages_in_bag = reader.message_count
    bar = tqdm(total=stats.frames_in_bag, unit="frame", disable=not progress, desc="replay",
               file=sys.stderr)
    # sqlite3 objects belong to the thread that made them (rosbags opens the .db3 here): .db3 output is
    # written inline, mcap output by the writer thread.
    sink = _WriterThread(writer, copy, stats, threaded=not _is_sqlite(writer))
    try:
        for index, (conn, timestamp, data) in enumerate(read_messages(reader)):
            if index < skip:  # replayed by the interrupted run this one resumes
                stats.resumed_frames += conn.topic == image_topic
                stats.done_messages, stats.last_timestamp = index + 1, timestamp
                continue
            if stop is not None and stop.requested:
                stats.interrupted = stop.signum
                break
            _replay_message(sink, conn, timestamp, data, image_topic, outputs_conn, pipeline, bar)
            stats.done_messages, stats.last_timestamp = index + 1, timestamp
    except _read_errors() as exc:
        stats.read_error = str(exc)
        stats.warn(f"stopped reading at a damaged part of the bag after {stats.copied} messages "
                   f"({stats.frames} images): {exc}; the output holds everything before it")
    finally:
        bar.close()
        sink.close()  # everything queued is written (or the writer's own error, e.g. a full disk, is raised)


class _WriterThread:
    """The output bag written in its own thread, in the order given: serialising and writing frame N
    overlap with decoding and inference of frame N+1 (onnxruntime and numpy release the GIL). At most
    QUEUE_ITEMS messages / frames wait, so memory stays bounded; queued outputs keep their buffers (the
    pipeline makes the next frame new ones: pipeline.buffers). A writer error (full disk) stops the
    writing; the reading loop gets it at its next put, and close() raises it after draining."""

    QUEUE_ITEMS = 16

    def __init__(self, writer: Any, copy: ConnectionCopier, stats: _Stats, threaded: bool = True) -> None:
        self._writer, self._copy, self._stats = writer, copy, stats
        self._queue: queue.Queue = queue.Queue(maxsize=self.QUEUE_ITEMS)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="mde_replay_writer", daemon=True)
        self._threaded = threaded
        if threaded:
            self._thread.start()

    def copy(self, conn: Any, timestamp: int, data: bytes) -> None:
        self._put((conn, timestamp, data, None, None))

    def outputs(self, outputs_conn: dict[str, Any], timestamp: int, out_msgs: dict[str, Any], began: float) -> None:
        self._put((outputs_conn, timestamp, out_msgs, began, True))

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._raise()

    def _put(self, item: tuple) -> None:
        self._raise()
        if self._threaded:
            self._queue.put(item)
        else:
            self._write(item)

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is not None:  # keep draining, so the reading loop never blocks on a full queue
                continue
            try:
                self._write(item)
            except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
                self._error = exc

    def _write(self, item: tuple) -> None:
        target, timestamp, payload, began, is_outputs = item
        if not is_outputs:
            self._writer.write(self._copy(target), timestamp, payload)
            return
        if callable(payload):  # the frame's outputs are built here (_FramePipeline.__call__)
            payload = payload()
        written = time.perf_counter()
        for key, out_msg in payload.items():
            self._writer.write(target[key], timestamp, serialize(out_msg))
        done = time.perf_counter()
        self._stats.latencies["write"].append(done - written)
        self._stats.latencies["total"].append(done - began)


def _is_sqlite(writer: Any) -> bool:
    """Whether a rosbags Writer stores into sqlite3 (.db3)."""
    storage = getattr(writer, "storage", None)
    return type(storage).__name__.lower().startswith("sqlite")


def _replay_message(sink: _WriterThread, conn: Any, timestamp: int, data: bytes, image_topic: str,
                    outputs_conn: dict[str, Any], pipeline: _FramePipeline, bar: Any) -> None:
    """One input message: copied, and for an image its outputs written after it (by the writer thread)."""
    stats, refine = pipeline.stats, pipeline.refine
    sink.copy(conn, timestamp, data)
    stats.copied += 1
    if refine is not None and refine.feed(conn.topic, data):
        return
    if conn.topic != image_topic:
        return
    stats.frames += 1
    bar.update()
    began = time.perf_counter()
    out_msgs = pipeline(conn.msgtype, data, timestamp)
    if out_msgs is None:
        return
    sink.outputs(outputs_conn, timestamp, out_msgs, began)


def _discard(writer: Any, target: Path) -> None:
    """Close without finishing (the storage's own abort may fail on a full disk too) and remove."""
    try:
        writer.abort()
    except Exception:  # noqa: BLE001 - the folder goes anyway
        pass
    shutil.rmtree(target, ignore_errors=True)


# metadata.yaml custom_data of a replayed bag: how far it got, so --resume knows where to go on.
STATE_KEY, DONE_KEY, LAST_KEY, INPUT_KEY = ("mde_ros.replay.state", "mde_ros.replay.input_messages",
                                            "mde_ros.replay.last_timestamp", "mde_ros.replay.input")


def _resume_point(out_bag: Path, in_bag: Path) -> tuple[int, int]:
    """(input messages done, receive time of the last) of an interrupted replay's output bag."""
    if not (out_bag / "metadata.yaml").exists():
        raise BagError(f"output bag {out_bag} has no metadata.yaml (killed, not interrupted?): it cannot be "
                       "resumed; --overwrite replaces it")
    data = custom_data(out_bag)
    if STATE_KEY not in data:
        raise BagError(f"{out_bag} was not written by `mde-ros replay`: nothing to resume; --overwrite replaces it")
    if data[STATE_KEY] == "complete":
        raise BagError(f"{out_bag} is already complete: nothing to resume")
    if data.get(INPUT_KEY) not in (None, in_bag.name):
        raise BagError(f"{out_bag} was replayed from {data[INPUT_KEY]!r}, not {in_bag.name!r}: cannot resume it")
    return int(data[DONE_KEY]), int(data[LAST_KEY])


def _copy_previous(out_bag: Path, copy: ConnectionCopier, input_topics: set[str], done: int, last: int) -> None:
    """Copy an interrupted run's output into the new writer: its first `done` input messages and the
    outputs up to the last of them (a frame cut short by a write error is replayed again)."""
    copied_inputs = 0
    with open_reader(out_bag) as previous:
        for conn, timestamp, data in previous.messages():
            if conn.topic in input_topics:
                if copied_inputs >= done:
                    continue
                copied_inputs += 1
            elif timestamp > last:
                continue
            copy.writer.write(copy(conn), timestamp, data)


def _summary(in_bag: Path, out_bag: Path, storage: str, image_topic: str, info_topic: str | None,
             out_topics: OutputTopics, estimator: "DepthEstimator", stats: _Stats, wall: float) -> dict:
    return {
        "input": str(in_bag),
        "output": str(out_bag),
        "storage": storage,
        "image_topic": image_topic,
        "camera_info_topic": info_topic,
        "output_topics": out_topics.as_dict(),
        "model": estimator.card.name,
        "backend": estimator.backend.name,
        "frames_in_bag": stats.frames_in_bag,
        "frames": stats.frames,
        "processed": stats.processed,
        "dropped": sum(stats.skipped.values()),
        "skipped": dict(stats.skipped),
        "outputs_skipped": dict(stats.outputs_skipped),
        "corrupt_camera_info": stats.corrupt_camera_info,
        "messages_copied": stats.copied,
        "read_error": stats.read_error,
        "messages_in_bag": stats.messages_in_bag,
        "messages_done": stats.done_messages,
        "resumed_frames": stats.resumed_frames,
        "interrupted": signal_name(stats.interrupted) if stats.interrupted is not None else None,
        "findings": dict(stats.findings),
        "valid_fraction": None if not stats.valid else {"mean": round(float(np.mean(stats.valid)), 4),
                                                        "min": round(float(np.min(stats.valid)), 4)},
        "latency_ms": {stage: _percentiles(values) for stage, values in stats.latencies.items()},
        "wall_s": round(wall, 3),
        "throughput_fps": round(stats.processed / wall, 3) if wall > 0 else 0.0,
        "warnings": stats.warnings,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mde_ros.modelargs import add_model_arguments

    parser.add_argument("bag", type=Path, help="input rosbag2 folder (metadata.yaml + .mcap or .db3)")
    parser.add_argument("--out", type=Path, help="output bag folder (default: <bag>_depth)")
    parser.add_argument("--storage", choices=STORAGES, help="output storage (default: the input's)")
    parser.add_argument("--summary", type=Path, help="write the JSON summary here")
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue an output bag that an interrupted run (Ctrl-C, SIGTERM, full disk) left")
    again.add_argument("--overwrite", action="store_true", help="replace an existing output bag")
    parser.add_argument("--allow-partial", action="store_true",
                        help="a damaged input bag (fewer messages readable than its metadata promises) is not "
                             "an error: replay what can be read, exit 0")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_model_arguments(parser, skip_options=("intra_op_threads",))
    parser.add_argument("--threads", type=int, default=1,
                        help="onnxruntime intra-op threads (default 1: reproducible bytes; 0 = all cores)")
    topics = parser.add_argument_group("topics", "found automatically when the bag has one colour camera")
    topics.add_argument("--image-topic", help="sensor_msgs/Image or CompressedImage topic to process")
    topics.add_argument("--camera-info-topic", help="its CameraInfo (default: the one beside it)")
    topics.add_argument("--output-prefix", help="namespace of the new topics (default: the camera's, e.g. "
                                                "/camera for /camera/color/image_raw)")
    outputs = parser.add_argument_group("outputs", "as the node's parameters")
    outputs.add_argument("--depth-encoding", choices=DEPTH_ENCODINGS, default="32FC1")
    outputs.add_argument("--no-points", action="store_true", help="no point cloud")
    outputs.add_argument("--cloud-decimation", type=int, default=1)
    outputs.add_argument("--no-scan", action="store_true", help="no laser scan")
    outputs.add_argument("--scan-height", type=int, default=1)
    outputs.add_argument("--scan-range-min", type=float, default=0.45)
    outputs.add_argument("--scan-range-max", type=float, default=10.0)
    outputs.add_argument("--scan-output-frame", help="frame_id of the scan, a body-convention frame (default: the "
                         "image's optical frame without '_optical', as the node)")
    outputs.add_argument("--no-colorized", action="store_true", help="no colourised depth")
    parser.add_argument("--sync-tolerance", type=float, default=SYNC_TOLERANCE_S, metavar="SECONDS",
                        help="newest CameraInfo within this of the image stamp is used (default 0.05)")
    bag_anchors.add_arguments(parser)


def _output_config(args: argparse.Namespace) -> OutputConfig:
    return OutputConfig(depth_encoding=args.depth_encoding, cloud_enabled=not args.no_points,
                        cloud_decimation=args.cloud_decimation, scan_enabled=not args.no_scan,
                        scan_height=args.scan_height, scan_range_min=args.scan_range_min,
                        scan_range_max=args.scan_range_max, colorized_enabled=not args.no_colorized)


def _path_problem(out: Path, summary: Path | None, again: bool = False) -> str | None:
    """What is wrong with the command's paths, found before any work (a summary into a missing
    folder must not fail after the whole bag was replayed). `again`: --resume / --overwrite given."""
    if (out.exists() or out.is_symlink()) and not again:
        return (f"output bag {out} already exists; remove it or choose another --out (--resume continues an "
                "interrupted replay, --overwrite replaces it)")
    if not out.parent.is_dir():
        return f"cannot create the output bag {out}: folder {out.parent} does not exist"
    if summary is not None:
        if summary.is_dir():
            return f"--summary {summary} is a folder; give a file name, e.g. {summary / 'summary.json'}"
        if not summary.parent.is_dir():
            return f"--summary {summary}: folder {summary.parent} does not exist"
    return None


def run(args: argparse.Namespace) -> int:
    from mde_ros.inference import BackendUnavailable
    from mde_ros.models.card import CardError

    bag = args.bag.resolve()  # `replay .` names the folder by its real name
    out = args.out or bag.with_name(bag.name + "_depth")
    try:
        config = _output_config(args)
        anchors = bag_anchors.from_args(args)
    except ValueError as exc:
        print(f"mde-ros replay: {exc}", file=sys.stderr)
        return 2
    problem = _number_problem(args)
    if problem:
        print(f"mde-ros replay: {problem}", file=sys.stderr)
        return 2
    problem = _path_problem(out, args.summary, args.resume or args.overwrite)
    if problem:  # before the bag is processed, not after
        print(f"mde-ros replay: {problem}", file=sys.stderr)
        return 1
    from mde_ros.modelargs import CommandError, backend_options_of, estimator_config_of

    try:
        estimator = load_estimator(args.model, args.backend, device=args.device, precision=args.precision,
                                   config=estimator_config_of(args),
                                   intra_op_threads=args.threads, **backend_options_of(args))
    except CommandError as exc:
        print(f"mde-ros replay: {exc}", file=sys.stderr)
        return 2
    except (CardError, BackendUnavailable, FileNotFoundError, ValueError) as exc:
        print(f"mde-ros replay: cannot load the model: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a runtime's own error for a corrupt file (onnxruntime's InvalidProtobuf, ...)
        print(f"mde-ros replay: cannot load the model: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if estimator.card.is_relative:  # as the node: depth/relative, metres only where anchors give them
        print(f"mde-ros replay: model {estimator.card.name!r} outputs {estimator.card.output} (affine-invariant): "
              "writing it on <namespace>/depth/relative; depth, points and scan only for frames that scale "
              "anchors give metres (--range-topic, --points-topic, --camera-height)", file=sys.stderr)
    if args.overwrite and (out.exists() or out.is_symlink()):
        try:
            remove_bag(out)
        except BagError as exc:
            print(f"mde-ros replay: --overwrite: {exc}", file=sys.stderr)
            return 1
    try:
        summary = run_replay(bag, out, estimator=estimator, resume=args.resume, image_topic=args.image_topic,
                             camera_info_topic=args.camera_info_topic, output_config=config,
                             storage=args.storage, summary_path=args.summary, progress=not args.no_progress,
                             output_prefix=args.output_prefix, sync_tolerance=args.sync_tolerance,
                             scan_frame=args.scan_output_frame, anchors=anchors)
    except (BagError, OSError) as exc:
        print(f"mde-ros replay: {exc}", file=sys.stderr)
        return 1
    total = summary["latency_ms"].get("total", {})
    resumed = f" (resumed after {summary['resumed_frames']})" if args.resume else ""
    print(f"{summary['processed']}/{summary['frames']} frames{resumed} -> {out} "
          f"({summary['throughput_fps']} frames/s, p50 {total.get('p50', '-')} ms/frame, "
          f"backend {summary['backend']})")
    for reason, count in {**summary["skipped"], **summary["outputs_skipped"]}.items():
        print(f"  {reason}: {count} frames")
    scale = summary.get("scale")
    if scale is not None:
        factor = scale["factor"]
        print(f"  scale: {scale['frames_anchored']} frames anchored" + (
            f", factor median {factor['median']} ({factor['min']}..{factor['max']}), sources {scale['sources']}"
            if factor else "") + f"; regimes {scale['regimes']}" +
            (f", events {scale['events']}" if scale["events"] else "") +
            (f"; rejected anchors {scale['rejected']}" if scale["rejected"] else ""))
    return _outcome(summary, bag, out, args.allow_partial)


def _outcome(summary: dict, bag: Path, out: Path, allow_partial: bool) -> int:
    """One line for a run that did not replay the whole bag, and its exit code."""
    done_frames = summary["resumed_frames"] + summary["frames"]
    of = f"{done_frames} of {summary['frames_in_bag']} frames"
    if summary["interrupted"]:
        print(f"mde-ros replay: stopped by {summary['interrupted']} after {of}: {out} is a readable bag with them; "
              "run again with --resume to continue", file=sys.stderr)
        return exit_code(getattr(signal, summary["interrupted"], signal.SIGINT))
    if summary["messages_done"] < summary["messages_in_bag"]:
        reason = f" ({summary['read_error']})" if summary["read_error"] else ""
        print(f"mde-ros replay: {bag} is damaged: read {summary['messages_done']} of the "
              f"{summary['messages_in_bag']} messages its metadata.yaml promises ({of}){reason}; {out} holds them"
              + ("" if allow_partial else " (--allow-partial accepts a damaged bag)"), file=sys.stderr)
        return 0 if allow_partial else 1
    return 0


def _number_problem(args: argparse.Namespace) -> str | None:
    """Options that would fail (or silently do nothing) after the model is loaded, refused first."""
    import math

    if not (math.isfinite(args.sync_tolerance) and args.sync_tolerance >= 0):
        return f"--sync-tolerance must be a finite number of seconds >= 0, got {args.sync_tolerance}"
    if args.threads < 0:
        return f"--threads must be >= 0 (0: all cores), got {args.threads}"
    return None  # the output options: OutputConfig's own checks (_output_config)
