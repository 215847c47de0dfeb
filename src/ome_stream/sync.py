"""The synchronous facade: the async core on a background event-loop thread.

``create_stream`` holds no logic of its own; every call is forwarded to an
:class:`~ome_stream.stream.AsyncOMEStream` running in an anyio blocking portal, so code
written for the ``ome-writers`` API runs unchanged, from scripts, threads, or code that
is itself running inside an event loop's thread (a notebook cell).

A stream its user never closes is closed for them: when it is garbage-collected, or at
interpreter exit (within ``drain_timeout``), with an :class:`UnclosedStreamWarning`
saying what was written and what, if anything, was lost.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import threading
import warnings
import weakref
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any, Self

import anyio
import anyio.from_thread
import anyio.lowlevel
import numpy as np
from anyio.from_thread import BlockingPortal

from ome_stream._checks import check_frame
from ome_stream._handoff import HandOff
from ome_stream._log import logger
from ome_stream.backends.scratch import ScratchBackend
from ome_stream.errors import UnclosedStreamWarning
from ome_stream.stream import AsyncOMEStream

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence
    from concurrent.futures import ThreadPoolExecutor
    from types import TracebackType

    from numpy.typing import ArrayLike

    from ome_stream.backends.base import Backend
    from ome_stream.events import CallbackKind
    from ome_stream.settings import AcquisitionSettings
    from ome_stream.stream import StreamStats
    from ome_stream.view import StreamView

__all__ = ["OMEStream", "create_stream"]


#: Seconds an unattended close may take beyond ``drain_timeout`` (final metadata).
_CLOSE_GRACE = 5.0


class _LoopThread:
    """An event loop in a daemon thread, reached through a blocking portal.

    A daemon thread, so that an unclosed stream can never keep the interpreter alive.
    """

    def __init__(self, backend: str) -> None:
        ready: Future[BlockingPortal] = Future()

        async def serve() -> None:
            async with BlockingPortal() as portal:
                self.token = anyio.lowlevel.current_token()
                ready.set_result(portal)
                await portal.sleep_until_stopped()

        def run() -> None:
            try:
                anyio.run(serve, backend=backend)
            except BaseException as err:  # pragma: no cover - the loop failed to start
                if not ready.done():
                    ready.set_exception(err)

        self.thread = threading.Thread(target=run, name="ome-stream loop", daemon=True)
        self.thread.start()
        self.portal = ready.result()

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError):  # already stopped
            self.portal.call(self.portal.stop, True)
        self.thread.join()


class _Handle:
    """The running stream of an :class:`OMEStream`, closable without the facade object."""

    def __init__(self, stream: AsyncOMEStream, backend: str) -> None:
        self.stream = stream
        self.loop = _LoopThread(backend)
        try:
            self.loop.portal.call(stream.__aenter__)
        except BaseException:
            self.loop.stop()
            raise
        self.handoff = HandOff(stream, self.loop.portal, self.loop.token, self.loop.thread)
        stream.settle = self.handoff.settle
        self.open = True
        _OPEN.add(self)
        _register_exit_hook()

    def close(self) -> None:
        if not self.open:
            return
        self.open = False
        _OPEN.discard(self)
        try:
            self.handoff.stop()  # every frame appended is accepted first
            self.loop.portal.call(self.stream.aclose)
        finally:
            self.loop.stop()

    def close_unattended(self, when: str) -> None:
        """Close a stream its user left open (``when``: "gc" or "exit"), within bounds."""
        if not self.open:
            return
        if threading.current_thread() is self.loop.thread:  # collected on the loop itself
            threading.Thread(target=self.close_unattended, args=(when,), daemon=True).start()
            return
        self.open = False
        _OPEN.discard(self)
        stream, stats = self.stream, self.stream.stats
        try:  # every frame appended is accepted, and counted, first
            self.handoff.stop(timeout=stream.drain_timeout)
        except FutureTimeout:
            logger.warning("frames appended were still waiting for room at close")
        if when == "gc":
            if stats.frames_accepted:
                _warn(
                    "OMEStream was not closed before garbage collection. Please use `with "
                    "create_stream(...):` in a context manager or call `stream.close()` "
                    "before deletion."
                )
        else:
            _warn(
                f"OMEStream for {stream.output_path!r} was not closed before the interpreter "
                f"exited; closing it now (within drain_timeout={stream.drain_timeout} s): "
                f"{stats.frames_accepted} frames accepted, {stats.frames_written} written"
            )
        future = self.loop.portal.start_task_soon(stream.aclose)
        try:
            future.result(timeout=stream.drain_timeout + _CLOSE_GRACE)
        except FutureTimeout:
            _warn(self._lost(f"closing did not finish within {stream.drain_timeout} s"))
            return  # leave the loop thread: a daemon, it ends with the process
        except Exception as err:
            _warn(self._lost(f"closing failed: {err}"))
        self.loop.stop()

    def _lost(self, what: str) -> str:
        stream, stats = self.stream, self.stream.stats
        lost = stats.frames_accepted - stats.frames_written
        return (
            f"OMEStream for {stream.output_path!r}: {what}; {lost} of "
            f"{stats.frames_accepted} accepted frames were not written and the final "
            "metadata may be missing"
        )


_OPEN: set[_Handle] = set()


def _warn(message: str) -> None:
    logger.warning("%s", message)
    try:
        warnings.warn(message, UnclosedStreamWarning, stacklevel=3)
    except Warning as err:  # warnings raised as errors must not stop the closing
        logger.warning("the warning was raised as an error: %r", err)


_hooked = False


def _register_exit_hook() -> None:
    """Close open streams at exit before the libraries they use stop their threads.

    ``atexit`` is too late: by then ``concurrent.futures`` refuses new work (zarr-python's
    I/O) and tensorstore has stopped. ``threading``'s own exit hooks run first, before
    any thread is joined; ``atexit`` is the fallback where they do not exist.
    """
    global _hooked
    if _hooked:
        return
    _hooked = True
    register = getattr(threading, "_register_atexit", None)
    try:
        if register is None:
            raise RuntimeError("no threading exit hooks")
        register(_close_all_at_exit)
    except RuntimeError:
        atexit.register(_close_all_at_exit)


def _close_all_at_exit() -> None:
    for handle in list(_OPEN):
        handle.close_unattended("exit")


class OMEStream:
    """A blocking stream with the same methods as :class:`AsyncOMEStream`.

    Use it as a context manager; leaving the block writes every accepted frame and the
    final metadata. A stream never closed is closed when garbage-collected or at exit,
    with an :class:`~ome_stream.errors.UnclosedStreamWarning`.
    """

    def __init__(self, stream: AsyncOMEStream, backend: str = "asyncio") -> None:
        self._async = stream
        self._handle = _Handle(stream, backend)
        self._finalizer = weakref.finalize(self, self._handle.close_unattended, "gc")
        self._finalizer.atexit = False  # the exit is handled for every open stream at once
        self._portal = self._handle.loop.portal
        self._handoff = self._handle.handoff
        storage = stream._backend
        if isinstance(storage, ScratchBackend):
            # weakly: the backend must not keep an unclosed facade from being collected
            storage.settle = functools.partial(_settle, weakref.ref(self))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Write every accepted frame and the final metadata; release storage."""
        self._finalizer.detach()
        self._handle.close()

    def append(
        self,
        frame: ArrayLike,
        *,
        metadata: dict[str, Any] | None = None,
        frame_metadata: dict[str, Any] | None = None,
        copy: bool = True,
    ) -> None:
        """Append the next frame; blocks while the buffer is full (see ``append``)."""
        if np.ndim(frame) == 1:  # a run of pixels (see AsyncOMEStream.append)
            self._handoff.settle()
            self._portal.call(
                lambda: self._async.append(
                    frame, metadata=metadata, frame_metadata=frame_metadata, copy=copy
                )
            )
            return
        # checked (the same errors, at once) and copied here, accepted on the loop
        pipeline = self._async._running()  # closed or failed: that error first
        pixels, extra = check_frame(self._async.layout, frame, metadata, frame_metadata)
        self._handoff.put(pipeline, pixels, extra, copy)

    def append_nowait(
        self,
        frame: ArrayLike,
        *,
        metadata: dict[str, Any] | None = None,
        frame_metadata: dict[str, Any] | None = None,
        copy: bool = True,
    ) -> None:
        """Append without waiting; raises ``anyio.WouldBlock`` when the buffer is full."""
        self._handoff.settle()
        self._portal.call(
            lambda: self._async.append_nowait(
                frame, metadata=metadata, frame_metadata=frame_metadata, copy=copy
            )
        )

    def skip(self, frames: int = 1) -> None:
        """Advance past ``frames`` frames, leaving them at the fill value."""
        self._handoff.settle()
        self._portal.call(self._async.skip, frames)

    def flush(self) -> None:
        """Block until every accepted frame is in storage."""
        self._handoff.settle()
        self._portal.call(self._async.flush)

    def _run(self, func: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        # after close the portal's loop is gone: run the call on a loop of its own
        self._handoff.settle()
        if self.closed:
            return anyio.run(func, *args)
        return self._portal.call(func, *args)

    def _call(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self._handoff.settle()
        if self.closed:
            return func(*args, **kwargs)
        return self._portal.call(lambda: func(*args, **kwargs))

    def set_global_metadata(self, namespace: str, metadata: Mapping[str, Any]) -> None:
        """Attach acquisition-level metadata under ``namespace`` (see the async twin)."""
        self._run(self._async.set_global_metadata, namespace, metadata)

    def get_metadata(self) -> dict[Any, Any]:
        """The metadata as it would be written now (see the async twin)."""
        self._handoff.settle()
        return self._async.get_metadata()

    def update_metadata(self, metadata: Mapping[Any, Any]) -> None:
        """Replace metadata documents (see the async twin); works after close too."""
        self._run(self._async.update_metadata, metadata)

    def view(self, *, dynamic_shape: bool = True, strict: bool = False) -> StreamView:
        """A live, read-only array of the acquisition (``view[t, c, ...]``); after close too.

        See :meth:`AsyncOMEStream.view`.
        """
        view: StreamView = self._call(self._async.view, dynamic_shape=dynamic_shape, strict=strict)
        return view

    def on(self, kind: CallbackKind, callback: Callable[[Any], object]) -> None:
        """Call ``callback`` in a worker thread for every event of ``kind``.

        ``"coords_expanded"`` and ``"coords_changed"`` pass a
        :class:`~ome_stream.events.CoordUpdate` (as ``ome-writers``); ``"frames_accepted"``,
        ``"frames_written"``, ``"error"`` and ``"closed"`` a
        :class:`~ome_stream.events.StreamEvent`. See :meth:`AsyncOMEStream.on`.
        """
        self._call(self._async.on, kind, callback)

    @property
    def _callback_executor(self) -> ThreadPoolExecutor | None:
        # the thread running the callbacks; ome-writers' test helpers wait on it (after
        # every frame appended has been accepted, so its callbacks are queued there)
        self._handoff.settle()
        return self._async.live.executor

    @property
    def _event_handlers(self) -> dict[str, list[Callable[[Any], object]]]:
        # the callbacks registered with on(), by kind (an ome-writers private name)
        return self._async.live.handlers

    @property
    def _frames_written(self) -> int:
        # ome-writers' private count of the frames appended or skipped so far
        self._handoff.settle()
        return self._async.stats.frames_accepted

    @property
    def _coord_tracker(self) -> _CoordProgress | None:
        # ome-writers' private tracker exists once a coordinate callback is registered
        self._handoff.settle()
        if not any(kind in self._event_handlers for kind in ("coords_expanded", "coords_changed")):
            return None
        return _CoordProgress(self._async)

    @property
    def _backend(self) -> Backend | None:
        # the storage backend; ome-writers' test helpers pass it to their waits (a view
        # needs no wait here: accepted frames are served from memory)
        self._handoff.settle()
        return self._async._backend

    @property
    def stats(self) -> StreamStats:
        """Progress counters (every frame appended counted)."""
        self._handoff.settle()
        return self._async.stats

    @property
    def output_path(self) -> str:
        """The root container of the data written."""
        return self._async.output_path

    @property
    def closed(self) -> bool:
        """Whether the stream has been closed."""
        return not self._handle.open


class _CoordProgress:
    """Where a stream stands, under the private names ome-writers' tests read."""

    def __init__(self, stream: AsyncOMEStream) -> None:
        self._stream = stream

    @property
    def _frames_written(self) -> int:
        return self._stream.stats.frames_accepted

    def get_coords(self) -> dict[str, Sequence[Any]]:
        """The coordinates reached so far, by dimension (``CoordUpdate.max_coords``)."""
        tracker = self._stream.live.tracker
        return tracker.coords(tracker.reached(self._frames_written))


def _settle(ref: weakref.ref[OMEStream]) -> None:
    """Off the loop, while open: wait until every accepted frame is in storage."""
    stream = ref()
    if stream is None:
        return
    handle = stream._handle
    if handle.open and threading.current_thread() is not handle.loop.thread:
        stream.flush()


def create_stream(
    settings: AcquisitionSettings,
    *,
    max_buffer_bytes: int | None = None,
    drain_timeout: float = 600.0,
) -> OMEStream:
    """Open an acquisition for writing with a blocking API.

    Examples
    --------
    >>> with create_stream(settings) as stream:     # doctest: +SKIP
    ...     for frame in frames:
    ...         stream.append(frame)

    """
    return OMEStream(
        AsyncOMEStream(settings, max_buffer_bytes=max_buffer_bytes, drain_timeout=drain_timeout)
    )
