"""Block writes in flight: bounded in number, ended on the loop, waited for when idle.

A backend either starts a write itself and returns its future (``start_write``: no task,
and one engine-thread callback per batch of ended writes), or is awaited in a task
(``write``). Either way the write's ``ended(error)`` runs on the event loop once, then
its place in flight is freed.
"""

from __future__ import annotations

import collections
import functools
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel

from ome_stream.backends._futures import hand_back, outcome

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np
    from anyio.abc import TaskGroup

    from ome_stream.backends.base import Backend, WriteFuture

__all__ = ["BlockWrites"]


class BlockWrites:
    """The block writes of one stream to ``backend``, at most ``limit`` in flight.

    Create it on the stream's event loop.
    """

    def __init__(self, backend: Backend, limit: int) -> None:
        self.backend = backend
        self._slots = anyio.Semaphore(limit, fast_acquire=True)
        self._pending = 0
        self._idle = anyio.Event()
        # writes started by the backend itself (start_write), oldest first
        self._started: collections.deque[
            tuple[WriteFuture, Callable[[BaseException | None], None]]
        ] = collections.deque()
        self._armed = False
        self._token = anyio.lowlevel.current_token()

    async def start(
        self,
        array_index: int,
        origin: tuple[int, ...],
        block: np.ndarray,
        writes: TaskGroup,
        ended: Callable[[BaseException | None], None],
    ) -> None:
        """Start writing ``block`` once a place in flight is free (``writes``: for tasks).

        ``ended(error)`` is called on the loop when the write has ended (``None``: done).
        """
        await self._slots.acquire()
        self._pending += 1
        finish = functools.partial(self._finish, ended)
        try:
            future = self.backend.start_write(array_index, origin, block)
        except Exception as err:
            finish(err)
            return
        if future is None:
            writes.start_soon(self._write, array_index, origin, block, finish)
            return
        self._started.append((future, finish))
        if not self._armed:
            self._collect()

    async def wait_idle(self) -> None:
        """Return once no write is in flight."""
        # Several writers (one per image) may wait at once: they share one event, renewed
        # only once it has fired, so no waiter is left on an event nobody will set.
        while self._pending:
            if self._idle.is_set():
                self._idle = anyio.Event()
            await self._idle.wait()

    def _finish(
        self, ended: Callable[[BaseException | None], None], error: BaseException | None
    ) -> None:
        try:
            ended(error)
        finally:
            self._slots.release()
            self._pending -= 1
            if not self._pending:
                self._idle.set()

    def _collect(self, _: object = None) -> None:
        """End the started writes that are done, oldest first; watch the oldest left.

        One callback watches only the oldest running write, so an engine thread runs
        Python (and takes the GIL) once per batch of ended writes, not once per write.
        """
        started = self._started
        while started:
            future, finish = started[0]
            if not future.done():
                self._armed = True
                hand_back(future, self._token, self._collect)
                return
            started.popleft()
            finish(outcome(future))
        self._armed = False

    async def _write(
        self,
        array_index: int,
        origin: tuple[int, ...],
        block: np.ndarray,
        finish: Callable[[BaseException | None], None],
    ) -> None:
        try:
            await self.backend.write(array_index, origin, block)
        except BaseException as err:  # a failure is recorded; a cancellation goes on
            finish(err)
            if not isinstance(err, Exception):
                raise
        else:
            finish(None)
