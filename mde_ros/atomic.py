"""One way to write a file that must never be seen half-written (checkpoints, models, engines, configs)."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


def _process_umask() -> int:
    """The umask, read without changing it where the kernel reports it (os.umask would briefly set
    it process-wide, racing with other threads creating files)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def _default_mode() -> int:
    """0666 minus the umask: mkstemp's 0600 would make an installed model unreadable to other users."""
    return 0o666 & ~_process_umask()


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", **open_kwargs) -> Iterator[IO]:
    """Open a temporary file beside `path`; on success it replaces `path` in one step (os.replace),
    on any error it disappears and `path` keeps its old content."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomically(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_write(path) as stream:
        stream.write(data)
    return Path(path)
