"""Bags across ROS 2 distros: what `mde-ros replay` writes must open in Humble's and Jazzy's `ros2 bag`,
and a bag recorded on either distro must replay.

rosbag2 itself cannot run here (no ROS install), so its readers are represented by stand-ins:
`humble_reads` / `jazzy_reads` apply, field by field, the decode rules of rosbag2's metadata reader
(humble: rosbag2_storage/src/rosbag2_storage/metadata_io.cpp; jazzy: rosbag2_storage/yaml.hpp and
qos.cpp), and the sqlite3 checks run the SQL statements of Humble's sqlite storage plugin. They are
stand-ins, not rosbag2: they prove the fields have the types those readers demand, nothing more.
The bag contents are read back with the real `rosbags` reader.
"""
import shutil
import sqlite3

import pytest
import yaml

from mde_ros.bags import fixtures
from mde_ros.bags.io import BAG_VERSION, open_reader, typestore, write_bag
from mde_ros.bags.replay import run_replay

STORAGES = ("mcap", "sqlite3")
QOS_INT_FIELDS = ("history", "depth", "reliability", "durability", "liveliness")
QOS_TIME_FIELDS = ("deadline", "lifespan", "liveliness_lease_duration")


class NotReadable(AssertionError):
    """The stand-in reader would throw (yaml-cpp's TypedBadConversion) on this metadata."""


def _as(node, kind, where):
    if kind is str and isinstance(node, str):
        return node
    if kind is int and isinstance(node, int) and not isinstance(node, bool):
        return node
    if kind is list and isinstance(node, list):
        return node
    if kind is dict and isinstance(node, dict):
        return node
    if kind is bool and isinstance(node, bool):
        return node
    raise NotReadable(f"{where}: cannot convert {node!r} to {kind.__name__}")


def _qos_profiles(node, where):
    """rosbag2's Rosbag2QoS / rclcpp::QoS decode of one profile list."""
    for i, profile in enumerate(_as(node, list, where)):
        for key in QOS_INT_FIELDS:
            _as(profile.get(key), int, f"{where}[{i}].{key}")
        for key in QOS_TIME_FIELDS:
            time = _as(profile.get(key), dict, f"{where}[{i}].{key}")
            _as(time.get("sec"), int, f"{where}[{i}].{key}.sec")
            _as(time.get("nsec"), int, f"{where}[{i}].{key}.nsec")
        _as(profile.get("avoid_ros_namespace_conventions"), bool, f"{where}[{i}].avoid_ros_namespace_conventions")


def _qos_string(node, where):
    """A version < 9 offered_qos_profiles: a YAML string ('' for none) holding the profile list."""
    text = _as(node, str, where)
    if text:
        _qos_profiles(yaml.safe_load(text), where)


def _common(info, distro):
    version = _as(info.get("version"), int, "version")
    _as(info.get("storage_identifier"), str, "storage_identifier")
    _as(_as(info.get("duration"), dict, "duration").get("nanoseconds"), int, "duration.nanoseconds")
    _as(_as(info.get("starting_time"), dict, "starting_time").get("nanoseconds_since_epoch"), int, "starting_time")
    _as(info.get("message_count"), int, "message_count")
    for path in _as(info.get("relative_file_paths"), list, "relative_file_paths"):
        _as(path, str, "relative_file_paths[]")
    if version >= 3:
        _as(info.get("compression_format"), str, "compression_format")
        _as(info.get("compression_mode"), str, "compression_mode")
    if version >= 5:
        for entry in _as(info.get("files"), list, "files"):
            _as(entry.get("path"), str, "files[].path")
            _as(entry.get("message_count"), int, "files[].message_count")
    topics = _as(info.get("topics_with_message_count"), list, "topics_with_message_count")
    for entry in topics:
        topic = _as(entry.get("topic_metadata"), dict, "topic_metadata")
        where = f"topic {topic.get('name')}"
        for key in ("name", "type", "serialization_format"):
            _as(topic.get(key), str, f"{where}.{key}")
        _as(entry.get("message_count"), int, f"{where}.message_count")
        if distro == "humble":
            if version >= 4:
                _qos_string(topic.get("offered_qos_profiles"), f"{where}.offered_qos_profiles")
        else:
            if version >= 9:
                _qos_profiles(topic.get("offered_qos_profiles"), f"{where}.offered_qos_profiles")
            elif version >= 4:
                _qos_string(topic.get("offered_qos_profiles"), f"{where}.offered_qos_profiles")
            if version >= 7:
                _as(topic.get("type_description_hash"), str, f"{where}.type_description_hash")
    return version


def humble_reads(metadata: dict) -> int:
    """Stand-in for Humble's rosbag2 metadata reader; returns the version, raises NotReadable."""
    return _common(_as(metadata.get("rosbag2_bagfile_information"), dict, "rosbag2_bagfile_information"), "humble")


def jazzy_reads(metadata: dict) -> int:
    """Stand-in for Jazzy's rosbag2 metadata reader; returns the version, raises NotReadable."""
    info = _as(metadata.get("rosbag2_bagfile_information"), dict, "rosbag2_bagfile_information")
    version = _common(info, "jazzy")
    if version >= 6:
        for key, value in _as(info.get("custom_data"), dict, "custom_data").items():
            _as(value, str, f"custom_data.{key}")
    if version >= 8:
        _as(info.get("ros_distro"), str, "ros_distro")
    return version


def metadata_of(bag):
    return yaml.safe_load((bag / "metadata.yaml").read_text())


def humble_sqlite_reads(bag):
    """The statements Humble's sqlite3 plugin runs to list topics and read messages."""
    db = next(bag.glob("*.db3"))
    with sqlite3.connect(db) as con:
        (schema,) = con.execute("SELECT schema_version from schema;").fetchone()
        topics = con.execute("SELECT name, type, serialization_format, offered_qos_profiles FROM topics "
                             "ORDER BY id;").fetchall()
        rows = con.execute("SELECT data, timestamp, topics.name, messages.id FROM messages JOIN topics ON "
                           "messages.topic_id = topics.id WHERE (((timestamp = 0) AND (messages.id >= 0)) OR "
                           "(timestamp > 0)) ORDER BY messages.timestamp, messages.id;").fetchall()
    for name, _type, _fmt, qos in topics:
        _qos_string(qos, f"db3 topic {name}")
    return schema, {name for name, *_ in topics}, len(rows)


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    """Each committed fixture (recorded as Jazzy writes bags: version 9) replayed once."""
    model = fixtures.export_test_model(tmp_path_factory.mktemp("model") / "tiny.onnx")
    out = {}
    for storage in STORAGES:
        bag = tmp_path_factory.mktemp(storage) / "out"
        run_replay(fixtures.FIXTURE_DIR / fixtures.fixture_name(storage), bag, model=model, backend="onnxruntime",
                   progress=False)
        out[storage] = bag
    return model, out


@pytest.mark.parametrize("storage", STORAGES)
def test_replayed_bags_open_in_humble_and_jazzy(replayed, storage):
    bag = replayed[1][storage]
    metadata = metadata_of(bag)
    assert humble_reads(metadata) == jazzy_reads(metadata) == BAG_VERSION == 8
    topics = {t["topic_metadata"]["name"]: t["topic_metadata"]
              for t in metadata["rosbag2_bagfile_information"]["topics_with_message_count"]}
    # The node's outputs are recorded with the QoS the node offers (reliable, volatile, keep last 5).
    depth_qos = yaml.safe_load(topics["/camera/depth/image"]["offered_qos_profiles"])
    assert [(q["reliability"], q["durability"], q["history"], q["depth"]) for q in depth_qos] == [(1, 2, 1, 5)]
    if storage == "sqlite3":
        schema, names, rows = humble_sqlite_reads(bag)
        assert "/camera/depth/image" in names and rows == metadata["rosbag2_bagfile_information"]["message_count"]
    with open_reader(bag) as reader:  # the real rosbags reader
        assert reader.topics["/camera/scan"].msgcount == fixtures.N_FRAMES


def test_the_stand_ins_refuse_what_each_distro_cannot_read(tmp_path):
    """Version 9 (QoS as a YAML list) is what Humble cannot parse; `custom_data: null` what Jazzy cannot."""
    from rosbags.rosbag2 import Writer

    bag = tmp_path / "v9"
    with Writer(bag, version=9) as writer:
        conn = writer.add_connection("/t", "std_msgs/msg/String", typestore=typestore())
        writer.write(conn, 1, bytes(typestore().serialize_cdr(typestore().types["std_msgs/msg/String"](data="x"),
                                                              "std_msgs/msg/String")))
    metadata = metadata_of(bag)
    info = metadata["rosbag2_bagfile_information"]
    assert info["custom_data"] is None  # rosbags' default without custom data: not a YAML mapping
    with pytest.raises(NotReadable, match="custom_data"):
        jazzy_reads(metadata)
    info["custom_data"] = {}
    assert jazzy_reads(metadata) == 9
    assert info["topics_with_message_count"][0]["topic_metadata"]["offered_qos_profiles"] == []  # the case
    with pytest.raises(NotReadable, match="offered_qos_profiles"):
        humble_reads(metadata)


def as_humble_bag(src, dst):
    """The same recording as Humble's rosbag2 writes it: metadata version 5 (no type hashes, custom data
    or distro), and for sqlite3 Humble's schema 3 (no type_description_hash, no message definitions)."""
    shutil.copytree(src, dst)
    info = metadata_of(dst)["rosbag2_bagfile_information"]
    for entry in info["topics_with_message_count"]:
        topic = entry["topic_metadata"]
        qos = topic.get("offered_qos_profiles", "")
        topic.pop("type_description_hash", None)
        topic["offered_qos_profiles"] = qos if isinstance(qos, str) else (yaml.safe_dump(qos) if qos else "")
    humble = {key: info[key] for key in ("storage_identifier", "duration", "starting_time", "message_count",
                                         "topics_with_message_count", "compression_format", "compression_mode",
                                         "relative_file_paths", "files")}
    humble["version"] = 5
    (dst / "metadata.yaml").write_text(yaml.safe_dump({"rosbag2_bagfile_information": humble}))
    for db in dst.glob("*.db3"):
        with sqlite3.connect(db) as con:
            con.executescript("""
                CREATE TABLE topics_humble(id INTEGER PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL,
                                           serialization_format TEXT NOT NULL, offered_qos_profiles TEXT NOT NULL);
                INSERT INTO topics_humble SELECT id, name, type, serialization_format, offered_qos_profiles FROM topics;
                DROP TABLE topics; ALTER TABLE topics_humble RENAME TO topics;
                DROP TABLE IF EXISTS message_definitions;
                DELETE FROM schema; INSERT INTO schema (schema_version, ros_distro) VALUES (3, 'humble');
            """)
    assert humble_reads(metadata_of(dst)) == 5
    return dst


@pytest.mark.parametrize("storage", STORAGES)
def test_a_humble_recording_replays_like_the_jazzy_one(replayed, storage, tmp_path):
    model, jazzy_out = replayed
    humble_bag = as_humble_bag(fixtures.FIXTURE_DIR / fixtures.fixture_name(storage), tmp_path / "humble")
    out = tmp_path / "out"
    summary = run_replay(humble_bag, out, model=model, backend="onnxruntime", progress=False)
    assert summary["processed"] == fixtures.N_FRAMES
    assert humble_reads(metadata_of(out)) == jazzy_reads(metadata_of(out)) == 8
    depth = {}
    for name, bag in (("humble", out), ("jazzy", jazzy_out[storage])):
        with open_reader(bag) as reader:
            conns = [c for c in reader.connections if c.topic == "/camera/depth/image"]
            depth[name] = [bytes(data) for _, _, data in reader.messages(connections=conns)]
    assert len(depth["humble"]) == fixtures.N_FRAMES and depth["humble"] == depth["jazzy"]


def test_written_bags_round_trip_through_rosbags(tmp_path):
    msg = typestore().types["std_msgs/msg/String"](data="hello")
    for storage in STORAGES:
        bag = write_bag(tmp_path / storage, storage, [("/chatter", 7, msg)])
        assert humble_reads(metadata_of(bag)) == jazzy_reads(metadata_of(bag)) == 8
        assert metadata_of(bag)["rosbag2_bagfile_information"]["custom_data"]
        with open_reader(bag) as reader:
            assert [t for _, t, _ in reader.messages()] == [7]
