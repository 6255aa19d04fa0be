"""Atomic writes: all or nothing, and readable by other users like any installed file."""
import os
import stat

import pytest

from mde_ros.atomic import atomic_write, write_bytes_atomically


def test_replaces_the_file_in_one_step_with_normal_permissions(tmp_path):
    target = write_bytes_atomically(tmp_path / "sub" / "model.onnx", b"new")
    assert target.read_bytes() == b"new"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in target.parent.iterdir()] == ["model.onnx"]


def test_an_error_keeps_the_old_content_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "last.pt"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as stream:
            stream.write(b"half")
            raise RuntimeError("crash while writing")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
