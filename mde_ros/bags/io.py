"""Reading and writing rosbag2 folders with the pure-Python `rosbags` library (no ros2bag needed).

A bag is what `ros2 bag record` writes: a folder with metadata.yaml and .mcap or .db3 files, CDR
messages. Everything here works on raw CDR bytes and on rosbags' own message dataclasses, so the bag
tools run on machines without a ROS installation; only the player needs rclpy.
"""
from __future__ import annotations

import contextlib
import functools
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Sequence

import yaml

from mde_ros.pipeline.outputs import BY_KEY, METRIC_KEYS

if TYPE_CHECKING:
    from rosbags.interfaces import Connection
    from rosbags.rosbag2 import Reader, Writer
    from rosbags.typesys.store import Typestore

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE_TYPE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_IMAGE_TYPE)
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
STORAGES = ("mcap", "sqlite3")
# rosbag2 metadata version 8: the newest that Humble's and Jazzy's `ros2 bag` both read. Humble reads
# offered_qos_profiles as a YAML string (version >= 4) and ignores newer keys; Jazzy expects that string
# below version 9 (a YAML list from 9 on, which Humble cannot parse) and a custom_data mapping from 6 on.
BAG_VERSION = 8
WRITER_CUSTOM_DATA = {"mde_ros.writer": "mde-ros"}  # never empty: Jazzy cannot read `custom_data: null`
# Encodings of a colour camera vs. anything else a bag may carry as sensor_msgs/Image (depth, IR).
COLOUR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8")
MONO_ENCODINGS = ("mono8",)


class BagError(RuntimeError):
    """A bag cannot be used as asked: the message says what is wrong and what to do."""


@functools.lru_cache(maxsize=1)
def typestore() -> "Typestore":
    """Jazzy's message definitions: the CDR layout every tool here reads and writes."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_JAZZY)


def bag_storage(path: str | Path) -> str:
    """Storage plugin of a bag folder ('mcap' or 'sqlite3'), from its metadata.yaml."""
    if not Path(path).exists():
        raise BagError(f"bag not found: {path} (expected a rosbag2 folder with metadata.yaml)")
    metadata = Path(path) / "metadata.yaml"
    try:
        info = yaml.safe_load(metadata.read_text())["rosbag2_bagfile_information"]
        storage = str(info["storage_identifier"])
    except FileNotFoundError:
        raise BagError(f"{path} is not a rosbag2 folder: {metadata} is missing "
                       "(pass the folder `ros2 bag record` created, not a file inside it)") from None
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise BagError(f"cannot read {metadata}: {exc}") from exc
    if storage not in STORAGES:
        raise BagError(f"{path}: storage {storage!r} is not supported (supported: {', '.join(STORAGES)})")
    return storage


def _storage_hint(path: Path) -> str:
    if any(path.glob("*.mcap")):
        return (" The .mcap file looks truncated or corrupt (a recording that was killed?); "
                "`mcap recover` can rebuild its index.")
    if any(path.glob("*.db3")):
        return " The .db3 file looks corrupt; `sqlite3 file.db3 .recover` may salvage its messages."
    return ""


@contextlib.contextmanager
def open_reader(path: str | Path) -> Iterator["Reader"]:
    """An open rosbags Reader whose failures name the bag and say what to try."""
    from rosbags.rosbag2 import Reader, ReaderError

    path = Path(path)
    bag_storage(path)
    try:
        reader = Reader(path)
        reader.open()
    except (ReaderError, FileNotFoundError) as exc:
        raise BagError(f"cannot open bag {path}: {str(exc).rstrip('.')}.{_storage_hint(path)}") from exc
    try:
        yield reader
    finally:
        reader.close()


class BagReadError(BagError):
    """A damaged part of a bag stopped reading (a corrupt mcap chunk or sqlite page)."""


def read_messages(reader: "Reader", connections: Sequence["Connection"] | None = None,
                  **kwargs: Any) -> Iterator[tuple["Connection", int, bytes]]:
    """reader.messages(), where whatever a damaged storage file makes the reader raise (ReaderError,
    apsw's CorruptError, an OverflowError from a garbage mcap length, ...) is a BagReadError; errors
    of the caller's own work between two messages stay what they are."""
    messages = iter(reader.messages(connections, **kwargs) if connections is not None
                    else reader.messages(**kwargs))
    while True:
        try:
            item = next(messages)
        except StopIteration:
            return
        except Exception as exc:  # noqa: BLE001 - the storage readers raise many kinds on garbage
            raise BagReadError(f"{type(exc).__name__}: {exc}") from exc
        yield item


@dataclass(frozen=True)
class BagTopic:
    name: str
    msgtype: str
    count: int
    # First message's Image.encoding / CompressedImage.format; None for other types.
    encoding: str | None = None

    def describe(self) -> str:
        extra = f", {self.encoding}" if self.encoding else ""
        return f"{self.name} ({self.msgtype}{extra}, {self.count} msgs)"


def list_topics(reader: "Reader") -> list[BagTopic]:
    """Topics of a bag; image topics carry their first message's encoding (to tell colour from depth)."""
    topics = []
    for name, info in sorted(reader.topics.items()):
        encoding = None
        if info.msgtype in IMAGE_TYPES and info.msgcount:
            encoding = _first_encoding(reader, info.connections, info.msgtype)
        topics.append(BagTopic(name, info.msgtype or "?", info.msgcount, encoding))
    return topics


def _first_encoding(reader: "Reader", connections: Sequence["Connection"], msgtype: str) -> str | None:
    from rosbags.rosbag2 import ReaderError
    from rosbags.serde import SerdeError

    try:
        for _, _, data in read_messages(reader, connections):
            msg = typestore().deserialize_cdr(data, msgtype)
            return msg.encoding if msgtype == IMAGE_TYPE else msg.format
    except (ReaderError, SerdeError, BagReadError):
        return None
    return None


def describe_topics(topics: Iterable[BagTopic]) -> str:
    return "; ".join(t.describe() for t in topics) or "(none)"


def _namespace(image_topic: str) -> str:
    """Folder of an image topic: /cam/image_raw -> /cam; /cam/image_raw/compressed -> /cam."""
    if image_topic.endswith("/compressed"):
        image_topic = image_topic[: -len("/compressed")]
    return posixpath.dirname(image_topic.rstrip("/")) or "/"


def _image_kind(topic: BagTopic) -> str:
    """'colour', 'mono' or 'other' (depth, IR16, compressedDepth...): only the first two are camera input."""
    encoding = (topic.encoding or "").lower()
    if topic.msgtype == COMPRESSED_IMAGE_TYPE:
        return "other" if "depth" in encoding else "colour"
    if encoding in COLOUR_ENCODINGS:
        return "colour"
    if encoding in MONO_ENCODINGS:
        return "mono"
    return "other"


def detect_topics(topics: Sequence[BagTopic], image_topic: str | None = None,
                  camera_info_topic: str | None = None) -> tuple[str, str | None]:
    """The (image, camera_info) pair to process; camera_info is None when the bag has none.

    Without names: the one colour Image/CompressedImage topic (depth and 16-bit images are ignored;
    mono8 only when there is no colour topic), and the CameraInfo beside it (same namespace), else
    the only CameraInfo topic. Anything ambiguous is an error that lists the candidates.
    """
    by_name = {t.name: t for t in topics}
    if image_topic is not None:
        chosen = by_name.get(image_topic)
        if chosen is None or chosen.msgtype not in IMAGE_TYPES:
            found = "not in the bag" if chosen is None else f"of type {chosen.msgtype}"
            raise BagError(f"image topic {image_topic} is {found}; topics present: {describe_topics(topics)}")
    else:
        images = [t for t in topics if t.msgtype in IMAGE_TYPES and t.count > 0]
        colour = [t for t in images if _image_kind(t) == "colour"]
        candidates = colour or [t for t in images if _image_kind(t) == "mono"]
        if not candidates:
            raise BagError(f"no colour image topic (sensor_msgs/msg/Image or CompressedImage) with messages; "
                           f"topics present: {describe_topics(topics)}")
        if len(candidates) > 1:
            raise BagError(f"several camera image topics: {describe_topics(candidates)}; "
                           "pick one with --image-topic")
        chosen = candidates[0]

    infos = [t for t in topics if t.msgtype == CAMERA_INFO_TYPE]
    if camera_info_topic is not None:
        named = by_name.get(camera_info_topic)
        if named is None or named.msgtype != CAMERA_INFO_TYPE:
            found = "not in the bag" if named is None else f"of type {named.msgtype}"
            raise BagError(f"camera_info topic {camera_info_topic} is {found}; "
                           f"CameraInfo topics present: {describe_topics(infos)}")
        return chosen.name, camera_info_topic
    sibling = posixpath.join(_namespace(chosen.name), "camera_info")
    if sibling in by_name and by_name[sibling].msgtype == CAMERA_INFO_TYPE:
        return chosen.name, sibling
    if len(infos) == 1:
        return chosen.name, infos[0].name
    if not infos:
        return chosen.name, None
    raise BagError(f"no CameraInfo beside {chosen.name} ({sibling}) and several elsewhere: "
                   f"{describe_topics(infos)}; pick one with --camera-info-topic")


class OutputTopics:
    """The topic of each output row (mde_ros.pipeline.outputs.OUTPUTS key -> topic): `topics.depth`,
    `topics.points`, ...; as_dict() in table order."""

    def __init__(self, **topics: str) -> None:
        self._topics = dict(topics)

    def __getattr__(self, key: str) -> str:
        try:
            return self.__dict__["_topics"][key]
        except KeyError:
            raise AttributeError(key) from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OutputTopics) and other._topics == self._topics

    def __repr__(self) -> str:
        return f"OutputTopics({self._topics!r})"

    @classmethod
    def for_image_topic(cls, image_topic: str, prefix: str | None = None,
                        keys: Iterable[str] = METRIC_KEYS) -> "OutputTopics":
        """The node's relative names (OutputSpec.topic) of `keys`, under `prefix` or the camera's namespace.

        /camera/color/image_raw -> /camera/depth/image, /camera/depth/camera_info, /camera/points, ...
        (RealSense / OpenNI layout: depth beside color, not inside it); /cam/image_raw -> /cam/depth/image.
        """
        if prefix is None:
            prefix = _namespace(image_topic)
            if posixpath.basename(prefix) in ("color", "colour", "rgb"):
                prefix = posixpath.dirname(prefix) or "/"
        if not prefix.startswith("/"):
            prefix = "/" + prefix
        return cls(**{key: posixpath.join(prefix, BY_KEY[key].topic) for key in keys})

    def as_dict(self) -> dict[str, str]:
        return dict(self._topics)


def create_writer(path: str | Path, storage: str) -> "Writer":
    """An open rosbag2 Writer (bag version 8, readable by Humble's and Jazzy's ros2 bag); the folder
    must not exist yet."""
    from rosbags.rosbag2 import StoragePlugin, Writer, WriterError

    if storage not in STORAGES:
        raise BagError(f"storage {storage!r} is not supported (choose {' or '.join(STORAGES)})")
    path = Path(path)
    if path.exists():
        raise BagError(f"output bag {path} already exists; remove it or choose another path")
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    try:
        writer = Writer(path, version=BAG_VERSION, storage_plugin=plugin)
        for key, value in WRITER_CUSTOM_DATA.items():
            writer.set_custom_data(key, value)
        writer.open()
    except (WriterError, OSError) as exc:
        raise BagError(f"cannot create bag {path}: {exc}") from exc
    return writer


class ConnectionCopier:
    """Output connections mirroring the input's, one per (topic, type), with their definitions and QoS."""

    def __init__(self, writer: "Writer") -> None:
        self.writer = writer
        self._by_key: dict[tuple[str, str], Connection] = {}

    def ensure(self, topic: str, msgtype: str) -> "Connection":
        """The connection for a new topic (add_connection's definition and QoS), or the one already
        copied for it (a resumed output bag brings its output topics along)."""
        if (topic, msgtype) not in self._by_key:
            self._by_key[(topic, msgtype)] = add_connection(self.writer, topic, msgtype)
        return self._by_key[(topic, msgtype)]

    def __call__(self, conn: "Connection") -> "Connection":
        key = (conn.topic, conn.msgtype)
        if key not in self._by_key:
            kwargs: dict[str, Any] = {}
            if conn.msgdef.data and conn.digest:
                kwargs.update(msgdef=conn.msgdef.data, rihs01=conn.digest)
            else:  # older bags store neither: take Jazzy's definition of the type
                kwargs.update(typestore=typestore())
            self._by_key[key] = self.writer.add_connection(
                conn.topic, conn.msgtype, serialization_format=conn.ext.serialization_format,
                offered_qos_profiles=conn.ext.offered_qos_profiles, **kwargs)
        return self._by_key[key]


def custom_data(path: str | Path) -> dict[str, str]:
    """A bag's metadata.yaml custom_data (what a writer recorded about itself); {} without any."""
    try:
        info = yaml.safe_load((Path(path) / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise BagError(f"cannot read {Path(path) / 'metadata.yaml'}: {exc}") from exc
    data = info.get("custom_data") if isinstance(info, dict) else None
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


# What a rosbag2 folder written here may hold: a bag is only ever removed (--overwrite, a failed
# write) when everything in it is one of these, so a mistyped --out never deletes someone's folder.
BAG_FILE_SUFFIXES = (".yaml", ".mcap", ".db3", ".db3-journal", ".db3-wal", ".db3-shm", ".tmp")


def remove_bag(path: str | Path) -> None:
    """Delete a bag folder (metadata.yaml and storage files); BagError when it holds anything else."""
    import shutil

    path = Path(path)
    if path.is_symlink() or not path.is_dir():
        raise BagError(f"{path} is not a bag folder; not removing it")
    foreign = [p.name for p in path.iterdir() if not (p.is_file() and p.name.endswith(BAG_FILE_SUFFIXES))]
    if foreign:
        raise BagError(f"{path} holds more than a bag ({', '.join(sorted(foreign)[:3])}); not removing it")
    shutil.rmtree(path)


def publisher_qos_profile(depth: int = 5) -> Any:
    """What the node's publishers offer (mde_ros.ros.qos.publisher_qos: reliable, volatile, keep last
    `depth`), as rosbag2 records it: `ros2 bag play` offers the same to subscribers."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    unset = QosTime(0, 0)  # rmw's "default" duration: no deadline, lifespan or lease
    return Qos(QosHistory.KEEP_LAST, depth, QosReliability.RELIABLE, QosDurability.VOLATILE, unset, unset,
               QosLiveliness.SYSTEM_DEFAULT, unset, False)


def add_connection(writer: "Writer", topic: str, msgtype: str) -> "Connection":
    return writer.add_connection(topic, msgtype, typestore=typestore(), serialization_format="cdr",
                                 offered_qos_profiles=[publisher_qos_profile()])


def serialize(msg: object) -> bytes:
    """Little-endian CDR, as every ROS 2 machine we target writes it (and byte-stable for goldens)."""
    return bytes(typestore().serialize_cdr(msg, msg.__msgtype__, little_endian=True))


def deserialize(data: bytes | memoryview, msgtype: str) -> Any:
    return typestore().deserialize_cdr(data, msgtype)


def write_bag(path: str | Path, storage: str, messages: Iterable[tuple[str, int, object]]) -> Path:
    """Write (topic, receive time ns, rosbags message) records into a new bag; types come from the messages."""
    writer = create_writer(path, storage)
    connections: dict[str, Connection] = {}
    try:
        for topic, timestamp, msg in messages:
            if topic not in connections:
                connections[topic] = add_connection(writer, topic, msg.__msgtype__)
            writer.write(connections[topic], timestamp, serialize(msg))
    except BaseException:
        writer.abort()
        raise
    writer.close()
    return Path(path)


def stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def topic_counts(path: str | Path) -> Mapping[str, int]:
    with open_reader(path) as reader:
        return {name: info.msgcount for name, info in reader.topics.items()}
