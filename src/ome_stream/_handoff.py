"""Frames from the sync facade's callers to its event loop, without a round trip each.

A blocking ``append`` used to be one call onto the loop thread per frame: the caller
slept until the loop had run it. On small frames the two wake-ups of that round trip,
not the work, set the pace (E64: both threads idle most of the time). Here the caller
checks the frame itself (shape, dtype, metadata, room: the same checks, the same
errors, raised at once), copies it into a slot of the stream's pool, and queues it; a
feeder task on the loop accepts queued frames in order, waiting for the byte budget as
``append`` does. The loop is woken only when the feeder has run dry.

A frame is queued only while the stream's byte budget has room for it and for every
frame queued before it, and at most :data:`HANDOFF_BYTES` (at least one frame) are
queued at once: the frames in memory stay within the budget. When the budget is full,
``append`` waits on the loop for room, as before, so backpressure reaches the caller.
Every other call of the facade first *settles* the hand-off (waits until each queued
frame is accepted), so counts, views, metadata and ``close`` see every frame appended.
"""

from __future__ import annotations

import collections
import threading
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any

import anyio

from ome_stream._checks import check_room
from ome_stream._log import logger
from ome_stream.backends._futures import call_soon
from ome_stream.errors import WriterError

if TYPE_CHECKING:
    from concurrent.futures import Future

    import numpy as np
    from anyio.abc import TaskStatus
    from anyio.from_thread import BlockingPortal
    from anyio.lowlevel import EventLoopToken

    from ome_stream._pipeline import WriterPipeline
    from ome_stream.stream import AsyncOMEStream

__all__ = ["HANDOFF_BYTES", "HandOff"]

#: Bytes of frames that may wait between a blocking ``append`` and the stream's buffer.
HANDOFF_BYTES = 4 * 1024 * 1024

_Queued = tuple["np.ndarray", "dict[str, Any] | None", bool]


class HandOff:
    """The queue between callers' threads and the stream's loop (see the module)."""

    def __init__(
        self,
        stream: AsyncOMEStream,
        portal: BlockingPortal,
        token: EventLoopToken,
        loop: threading.Thread,
    ) -> None:
        self._stream = stream
        self._portal = portal
        self._token = token
        self._loop = loop
        self._capacity = max(1, HANDOFF_BYTES // max(1, stream.layout.frame_nbytes))
        self._lock = threading.Condition()
        self._queue: collections.deque[_Queued] = collections.deque()
        self._held = 0
        """Frames queued or being accepted: not yet counted by the stream."""
        self._sent = 0
        """Frames appended so far, counting those held here (the room check)."""
        self._idle = True
        self._stopping = False
        self._failure: BaseException | None = None
        self._wake: anyio.Event
        self._feeder: Future[None] = portal.start_task(self._feed)[0]

    # ------------------------------------------------------------ callers' threads
    def put(
        self,
        pipeline: WriterPipeline,
        pixels: np.ndarray,
        extra: dict[str, Any] | None,
        copy: bool,
    ) -> None:
        """Queue a frame checked for the open ``pipeline``, or wait for room on the loop.

        Never on the loop.
        """
        stream = self._stream
        if copy:
            pixels = pipeline.slot_copy(pixels)
        budget = pipeline.budget
        with self._lock:
            while True:
                self._raise_if_failed()
                check_room(stream.router.num_frames, self._sent, "append frame")
                # queued only while the budget has room for it and every frame held:
                # the frames in memory stay within the stream's budget
                room = self._held < budget.value
                if not room or self._held < self._capacity:
                    break
                self._lock.wait()
            if room:
                self._queue.append((pixels, extra, copy))
                self._held += 1
                self._sent += 1
                wake = self._take_wake()
        if not room:  # the buffer is full: wait on the loop, as the async append does
            self.settle()
            self._portal.call(stream._accept, pixels, extra, False, copy)
            with self._lock:
                self._sent = stream._next_frame
        elif wake is not None:
            call_soon(self._token, wake.set)

    def settle(self, timeout: float | None = None) -> bool:
        """Wait until every queued frame is accepted (False: not within ``timeout``).

        Off the loop only (on it, the feeder could never run); there it returns at once.
        """
        if threading.current_thread() is self._loop:
            return self._held == 0
        with self._lock:
            settled = self._lock.wait_for(lambda: self._held == 0, timeout)
            if settled:  # calls made on the loop meanwhile (skip, runs) moved the count
                self._sent = self._stream._next_frame
            return settled

    def stop(self, timeout: float | None = None) -> None:
        """Refuse further frames, settle, and end the feeder task.

        Raises ``concurrent.futures.TimeoutError`` if frames still wait after ``timeout``.
        """
        with self._lock:
            self._stopping = True
            wake = self._take_wake()
            self._lock.notify_all()
        if wake is not None:
            call_soon(self._token, wake.set)
        try:
            self._feeder.result(timeout)
        except FutureTimeout:
            raise  # frames still wait for room: the caller decides
        except Exception as err:  # recorded already; closing must go on
            logger.error("the hand-off ended with %r", err)

    def _take_wake(self) -> anyio.Event | None:
        """Under the lock: the event that wakes the idle feeder (None: it is not idle)."""
        if not self._idle:
            return None
        self._idle = False
        return self._wake

    def _raise_if_failed(self) -> None:
        if self._stopping:
            raise anyio.ClosedResourceError("the stream is closing")
        if self._failure is not None:
            raise WriterError(
                f"writing to {self._stream.output_path!r} failed: {self._failure!r}"
            ) from self._failure

    # ------------------------------------------------------------ the loop
    async def _feed(self, *, task_status: TaskStatus[None]) -> None:
        self._wake = anyio.Event()
        task_status.started()
        stream, lock, queue = self._stream, self._lock, self._queue
        while True:
            with lock:
                item = queue.popleft() if queue else None
                if item is None:
                    if self._stopping:
                        return
                    self._idle = True
                    event = self._wake = anyio.Event()
            if item is None:
                await event.wait()
                continue
            pixels, extra, copied = item
            try:
                await stream._accept(pixels, extra, copy=False, pooled=copied)
            except BaseException as err:
                self._fail(err)
                if not isinstance(err, Exception):
                    raise
            finally:
                with lock:
                    self._held -= 1
                    # callers waiting for room are woken once half the queue is free, not
                    # once per frame: one wake-up of theirs per many frames accepted
                    if self._held <= self._capacity // 2 or self._failure is not None:
                        lock.notify_all()

    def _fail(self, error: BaseException) -> None:
        with self._lock:
            dropped = len(self._queue)
            self._queue.clear()
            self._held -= dropped
            if self._failure is None:
                self._failure = error
        logger.error(
            "a frame appended could not be accepted (%r); %d more queued after it were dropped",
            error,
            dropped,
        )
