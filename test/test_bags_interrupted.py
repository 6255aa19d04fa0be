"""Interrupted or damaged offline work keeps what was done (issue 22): real bags, real signals sent to
real `mde-ros replay` / `mde-ros play` processes, a file size limit standing in for a full disk."""
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mde_ros.bags import fixtures
from mde_ros.bags.io import custom_data, open_reader, topic_counts

N_FRAMES = 40
DEPTH_TOPIC = "/camera/depth/image"


def mde_ros(*args, **kwargs):
    return [sys.executable, "-m", "mde_ros.cli", *map(str, args)]


def no_traceback(text):
    assert "Traceback" not in text, text


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp("bags")
    return {storage: fixtures.write_fixture_bag(root / f"in_{storage}", storage, n_frames=N_FRAMES)
            for storage in ("mcap", "sqlite3")}


def all_messages(bag):
    with open_reader(bag) as reader:
        return sorted((conn.topic, timestamp, bytes(data)) for conn, timestamp, data in reader.messages())


def interrupt_after_frames(command, frames, signum, cwd):
    """Start a replay with its progress bar on stderr; once it shows `frames` done, send the signal."""
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = ""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        chunk = process.stderr.read(1)
        if not chunk:
            break
        seen += chunk
        done = [int(n) for n in re.findall(rf"(\d+)/{N_FRAMES}", seen)]
        if done and max(done) >= frames:
            process.send_signal(signum)
            break
    out, err = process.communicate(timeout=120)
    return process.returncode, out, seen + err


@pytest.mark.parametrize("storage, signum", [("mcap", signal.SIGINT), ("sqlite3", signal.SIGTERM)])
def test_an_interrupted_replay_is_a_readable_bag_and_resume_completes_it(bags, tmp_path, storage, signum):
    out = tmp_path / "out"
    code, _, err = interrupt_after_frames(mde_ros("replay", bags[storage], "--out", out), 5, signum, tmp_path)
    no_traceback(err)
    assert code == 128 + signum, err
    last = err.strip().splitlines()[-1]
    assert f"stopped by {signal.Signals(signum).name} after" in last and "--resume" in last, last
    # Readable as it is: metadata.yaml written, the sqlite journal merged, every image with its depth.
    assert sorted(p.name for p in out.iterdir()) == ["metadata.yaml", f"out.{'mcap' if storage == 'mcap' else 'db3'}"]
    counts = topic_counts(out)
    assert 0 < counts[DEPTH_TOPIC] == counts[fixtures.IMAGE_TOPIC] < N_FRAMES, counts
    assert custom_data(out)["mde_ros.replay.state"] == "partial"

    again = subprocess.run(mde_ros("replay", bags[storage], "--out", out, "--no-progress"), cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 1 and "--resume" in again.stderr, again.stderr
    resumed = subprocess.run(mde_ros("replay", bags[storage], "--out", out, "--no-progress", "--resume"),
                             cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"(resumed after {counts[fixtures.IMAGE_TOPIC]})" in resumed.stdout
    assert custom_data(out)["mde_ros.replay.state"] == "complete"
    # The same messages, byte for byte, as one uninterrupted run.
    whole = tmp_path / "whole"
    subprocess.run(mde_ros("replay", bags[storage], "--out", whole, "--no-progress"), cwd=tmp_path, check=True,
                   capture_output=True, timeout=300)
    assert all_messages(out) == all_messages(whole)
    finished = subprocess.run(mde_ros("replay", bags[storage], "--out", out, "--resume"), cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
    assert finished.returncode == 1 and "already complete" in finished.stderr
    if storage == "sqlite3":  # (one storage is enough: it is the same folder removal)
        overwritten = subprocess.run(mde_ros("replay", bags[storage], "--out", out, "--no-progress", "--overwrite"),
                                     cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert overwritten.returncode == 0 and topic_counts(out)[DEPTH_TOPIC] == N_FRAMES


def _limit_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (2_000_000, 2_000_000))  # Python ignores SIGXFSZ: writes fail


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_a_replay_that_cannot_write_says_so_and_leaves_no_unreadable_output(bags, tmp_path, storage):
    """A 2 MB file size limit (RLIMIT_FSIZE, EFBIG) stands in for a full disk (ENOSPC): both are write
    errors in the middle of the output. Before: sqlite3.OperationalError traceback, a .db3 + journal."""
    out = tmp_path / "out"
    result = subprocess.run(mde_ros("replay", bags[storage], "--out", out, "--no-progress"), cwd=tmp_path,
                            capture_output=True, text=True, timeout=300, preexec_fn=_limit_file_size)
    no_traceback(result.stderr)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("mde-ros replay: cannot write the output bag") and "removed" in last, last
    assert not out.exists()


def damage(bag, tmp_path):
    """A copy of `bag` with garbage in the middle of its storage file (bad disk blocks): 400 kB of
    zeros in the mcap (chunk lengths become garbage), 4 kB of 0xff in the sqlite file (a b-tree page)."""
    copy = Path(shutil.copytree(bag, tmp_path / "damaged"))
    storage = next(p for p in copy.iterdir() if p.suffix in (".mcap", ".db3"))
    at, garbage = (0.4, bytes(400_000)) if storage.suffix == ".mcap" else (0.6, b"\xff" * 4000)
    with open(storage, "r+b") as stream:
        stream.seek(int(storage.stat().st_size * at))
        stream.write(garbage)
    return copy


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_a_damaged_input_bag_is_reported_with_what_was_read(bags, tmp_path, storage):
    """Before: a corrupt mcap was cut short silently (`17/17 frames`, exit 0)."""
    damaged = damage(bags[storage], tmp_path)
    result = subprocess.run(mde_ros("replay", damaged, "--out", tmp_path / "out", "--no-progress"), cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    no_traceback(result.stderr)
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    match = re.search(r"is damaged: read (\d+) of the (\d+) messages its metadata.yaml promises", last)
    assert match and int(match[1]) < int(match[2]) == 3 * N_FRAMES, last
    assert "--allow-partial" in last
    kept = topic_counts(tmp_path / "out")  # what was read is replayed and readable
    assert kept[DEPTH_TOPIC] == kept[fixtures.IMAGE_TOPIC] > 0
    allowed = subprocess.run(mde_ros("replay", damaged, "--out", tmp_path / "out2", "--no-progress",
                                     "--allow-partial"), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert allowed.returncode == 0 and "is damaged: read" in allowed.stderr

    played = subprocess.run(mde_ros("play", damaged, "--rate", "100", "--delay", "0"), cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    no_traceback(played.stderr)
    assert played.returncode == 1 and "is damaged: read" in played.stderr, played.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_play_stops_on_a_signal_with_one_line_and_the_signal_exit_code(bags, tmp_path, signum):
    """Before: SIGTERM gave an RCLError traceback (publish after rclpy's handler shut the context)."""
    process = subprocess.Popen(mde_ros("play", bags["mcap"], "--delay", "0", "--rate", "0.25"), cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "ROS_DOMAIN_ID": "77"})
    time.sleep(6.0)  # past start-up (a few seconds on a loaded machine): the bag's 4 s (16 s at 0.25) play
    process.send_signal(signum)
    out, err = process.communicate(timeout=60)
    no_traceback(err)
    assert process.returncode == 128 + signum, err
    assert re.search(rf"stopped by {signal.Signals(signum).name} after \d+ of {3 * N_FRAMES} messages", err), err
