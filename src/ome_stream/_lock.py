"""One writer per dataset: an exclusive ``flock`` on a lock file next to the dataset.

The lock file is ``.<name>.ome-stream-lock`` in the dataset's parent directory, so it is
no part of the dataset (readers never see it) and survives the dataset being moved aside
and replaced. The kernel releases a ``flock`` when its process dies, so a crashed writer
never leaves a dataset locked. The holder writes its process id, host and start time into
the file; a second writer reads them into its error message.

Closing removes the lock file. Removing a locked file is racy in general (another process
may have opened it already); :func:`acquire` therefore checks, after it got the lock, that
the file it locked is still the one at the path, and starts over if it is not.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import time
from typing import TYPE_CHECKING

from ome_stream.errors import DatasetLockedError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["WriterLock", "acquire", "sibling"]

#: Longest file name most filesystems accept.
_NAME_MAX = 255


def sibling(path: Path, tag: str) -> Path:
    """A hidden name next to ``path``: ``.<name>.<tag>``, hashed if that would be too long."""
    name = f".{path.name}.{tag}"
    if len(name.encode()) > _NAME_MAX:
        digest = hashlib.sha256(path.name.encode()).hexdigest()[:16]
        name = f".ome-stream-{digest}.{tag}"
    return path.parent / name


class WriterLock:
    """An acquired lock; :meth:`release` (idempotent) unlocks and removes the file."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        """Remove the lock file, then unlock (in that order: see the module docstring)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.unlink(self.path)
        except OSError:  # gone already, or a read-only filesystem: a stale file is harmless
            pass
        finally:
            os.close(fd)  # closing the last descriptor releases the flock


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 512, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "another writer"


def acquire(dataset: Path) -> WriterLock:
    """Lock ``dataset`` (which need not exist) for writing; its parent must exist.

    Raises
    ------
    DatasetLockedError
        Another writer holds the lock; the message names it (process, host, since when).

    """
    path = sibling(dataset, "ome-stream-lock")
    while True:
        # held read-only: a file open for writing would keep its filesystem from being
        # remounted read-only (flock needs no write access)
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise DatasetLockedError(
                f"{str(dataset)!r} is being written by {holder}; one writer per dataset "
                f"(lock file {str(path)!r}, released when that stream closes or its process "
                "ends)"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        locked = os.fstat(fd)
        if current is None or (current.st_dev, current.st_ino) != (
            locked.st_dev,
            locked.st_ino,
        ):
            os.close(fd)  # the previous holder removed it meanwhile: lock the new one
            continue
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        info = f"process {os.getpid()} on {socket.gethostname()} since {stamp}\n".encode()
        try:  # briefly open for writing; the lock is ours, so the name is still this file
            writer = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
            try:
                os.write(writer, info)
            finally:
                os.close(writer)
        except BaseException:
            os.close(fd)
            raise
        return WriterLock(path, fd)
