"""Reading and replacing the world's own files (watch file, persist file) without trusting the directory.

Another local user or process may plant a symlink where a file or its temp file will be (a symlink to
/dev/zero, or to a file of ours to overwrite). So: the file is opened with O_NOFOLLOW and must be a regular
file; it is read within a limit known before reading (bus/reader_limits.py), never whole first; a
replacement is written to a fresh temp file made with O_EXCL in the same directory (mkstemp: a name
nobody could plant), then renamed over the file.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO


class NotRegularFile(ValueError):
    """The path is a symlink, a device, a FIFO or a directory: not a file we wrote."""


def open_regular(path: Path) -> IO[bytes]:
    """`path` opened for reading, refusing a symlink (OSError ELOOP) and anything but a regular file."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFile(f"{path} is not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of the regular file `path`, if it holds at most `limit` (ValueError otherwise): its size is
    checked before reading and the read stops at the limit (a file that grows meanwhile is refused too)."""
    with open_regular(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > limit:
            raise ValueError(f"larger than {limit} bytes ({size})")
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"larger than {limit} bytes")
    return data


def replace_atomically(path: Path, chunks: Iterable[bytes]) -> int:
    """Write `chunks` to a new 0600 temp file beside `path` (O_EXCL, random name), fsync it, rename it over
    `path` and fsync the directory: a crash leaves the old file or the new one. Returns the chunks written."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # O_EXCL, 0600
    count = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
                count += 1
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)  # a symlink at `path` is replaced, never followed
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return count


def fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable (filesystems that cannot fsync a directory are skipped)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
