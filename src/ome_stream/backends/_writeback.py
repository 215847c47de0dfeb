"""Start writing stored zarr objects to the disk at once, instead of at the end (Linux).

The kernel keeps freshly written files dirty in its page cache until its thresholds (a
tenth of memory) or a sync: a stream's disk idles while frames arrive, and the whole
dataset is flushed when the acquisition ends. Here one thread of the backend asks the
kernel, object by object, to start writing each file out as soon as it is stored
(``sync_file_range(SYNC_FILE_RANGE_WRITE)``: it starts the write-back and does not wait
for it). Durability does not change (the kernel's, as before; docs/reliability.md): the
data reaches the disk sooner, and a final sync has little left to do.

Objects under :data:`MIN_BYTES` are left to the kernel's own batching: one write-back
per 128 KiB chunk cost more than it saved, from 512 KiB on it paid (docs/performance.md).
Elsewhere than Linux, and for object storage, nothing is started. The OME-TIFF backend
uses :func:`start_writeback` on its own files' descriptors (docs/tiff.md).
"""

from __future__ import annotations

import ctypes
import itertools
import math
import os
import queue
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ome_stream.backends._futures import outcome

if TYPE_CHECKING:
    from collections.abc import Callable

    from ome_stream.backends.base import WriteFuture
    from ome_stream.layout import ArraySpec, Layout

__all__ = ["MIN_BYTES", "WriteBack", "start_writeback"]

#: Objects (shards, else chunks) at least this large, uncompressed, are written out early.
MIN_BYTES = 512 * 1024
_SYNC_FILE_RANGE_WRITE = 2


def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """The C library's ``sync_file_range``, or None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function: Any = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    started: Callable[[int, int, int, int], int] = function
    return started


_START = _sync_file_range()


def start_writeback(descriptor: int, offset: int = 0, length: int = 0) -> bool:
    """Ask the kernel to start writing ``length`` bytes at ``offset`` of a file to disk.

    ``length`` 0 means to the end of the file. Never waits for the disk. False where
    this is not available (not Linux) or was refused.
    """
    return _START is not None and _START(descriptor, offset, length, _SYNC_FILE_RANGE_WRITE) == 0


class WriteBack:
    """Starts the write-back of a zarr dataset's local objects, once each is stored.

    ``WriteBack.for_layout`` returns None when nothing would be started (object storage,
    objects under :data:`MIN_BYTES`, no ``sync_file_range``). :meth:`when_stored` may be called
    from any thread; the work (open, start, close: three system calls per object) is done
    by one daemon thread, started on first use and ended by :meth:`close`.
    """

    def __init__(self, layout: Layout) -> None:
        self._layout = layout
        self._root = Path(layout.settings.output_path)
        self._jobs: queue.SimpleQueue[list[str] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.started = 0
        """Objects whose write-back was started (opened and handed to the kernel)."""

    @classmethod
    def for_layout(cls, layout: Layout) -> WriteBack | None:
        """A write-back for ``layout``'s local arrays, or None when it would do nothing."""
        root = layout.settings.output_path
        if _START is None or not root or root.startswith("s3://"):
            return None
        if not any(_object_bytes(array) >= MIN_BYTES for array in layout.arrays):
            return None
        return cls(layout)

    def _files(
        self, array_index: int, origin: tuple[int, ...], shape: tuple[int, ...]
    ) -> list[str]:
        """The files of the objects a block covers (none: too small to start early).

        ``origin`` gives the block's place along the leading axes (the frame axes start
        at 0); the files are the objects' zarr v3 default keys (``c/<i>/<j>/...``).
        """
        array = self._layout.arrays[array_index]
        if _object_bytes(array) < MIN_BYTES:
            return []
        origin = (*origin, *(0,) * (len(shape) - len(origin)))
        ranges = [
            range(o // s, (o + n - 1) // s + 1)
            for o, n, s in zip(origin, shape, array.shard_shape, strict=True)
        ]
        directory = self._root / array.array_path / "c"
        return [os.path.join(directory, *map(str, i)) for i in itertools.product(*ranges)]

    def when_stored(
        self,
        future: WriteFuture,
        array_index: int,
        origin: tuple[int, ...],
        shape: tuple[int, ...],
    ) -> None:
        """Start writing out the block's objects once ``future`` has succeeded."""
        files = self._files(array_index, origin, shape)

        def ended(done: WriteFuture) -> None:
            if outcome(done) is None:  # a failed write is not written out
                self._stored(files)

        if files:
            future.add_done_callback(ended)

    def _stored(self, files: list[str]) -> None:
        """``files`` (from ``_files``) are stored: start writing them out (any thread)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"ome-stream write-back {self._root.name}", daemon=True
                )
                self._thread.start()
        self._jobs.put(files)

    def close(self) -> None:
        """End the thread once it has started what it was given (never waits)."""
        self._jobs.put(None)

    def _run(self) -> None:
        while (paths := self._jobs.get()) is not None:
            for path in paths:
                try:
                    descriptor = os.open(path, os.O_RDONLY)
                except OSError:  # gone (deleted under the writer): nothing to write out
                    continue
                try:
                    if start_writeback(descriptor):
                        self.started += 1
                finally:
                    os.close(descriptor)


def _object_bytes(array: ArraySpec) -> int:
    return math.prod(array.shard_shape) * array.dtype.itemsize
