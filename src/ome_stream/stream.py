"""The async core: accept frames, buffer them within a byte budget, write them in order.

Data flow: ``append`` validates and routes a frame, waits for room in the byte budget
(backpressure) and hands the frame to the writer pipeline (:mod:`ome_stream._pipeline`),
whose writer tasks assemble whole blocks and write them. Live data (views, events,
callbacks) lives in :mod:`ome_stream._live` and :mod:`ome_stream.view`, the metadata
collected along the way in :mod:`ome_stream._metadata_api`.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Self

import anyio

from ome_stream._checks import PixelRuns
from ome_stream._lifecycle import spawn_service, warn_unclosed
from ome_stream._live import LiveAPI, LiveData
from ome_stream._log import log_closed, log_closing, log_opening, logger
from ome_stream._metadata_api import MetadataAPI, StreamMetadata
from ome_stream._pipeline import StreamStats, WriterPipeline
from ome_stream._producer import ProducerAPI
from ome_stream._readback import StoredFrames
from ome_stream._target import TargetLease, open_target
from ome_stream.backends.base import Backend, load_backend
from ome_stream.errors import WriterError
from ome_stream.layout import AcquisitionRecord, Layout
from ome_stream.router import FrameRouter

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    import numpy as np

    from ome_stream.settings import AcquisitionSettings

__all__ = ["DEFAULT_MAX_BUFFER_BYTES", "AsyncOMEStream", "StreamStats", "open_stream"]

#: Default byte budget for frames accepted but not yet handed to storage.
DEFAULT_MAX_BUFFER_BYTES = 256 * 1024 * 1024


class AsyncOMEStream(ProducerAPI, LiveAPI, MetadataAPI):
    """An open acquisition: append frames in acquisition order, then close.

    Create it with :func:`open_stream` and use it as an async context manager. Exiting
    (also by an exception or cancellation) writes every frame that ``append`` accepted,
    then the final metadata. A stream entered and never exited is closed, with a
    warning, when its event loop ends.
    """

    def __init__(
        self,
        settings: AcquisitionSettings,
        *,
        max_buffer_bytes: int | None = None,
        drain_timeout: float = 600.0,
    ) -> None:
        settings.validate_stream_ready()  # incomplete settings fail here, as in ome-writers
        self.settings = settings
        self.layout = Layout(settings)
        self.router = FrameRouter(settings)
        """Maps frame numbers to arrays and storage indices."""
        budget = max_buffer_bytes or settings.max_buffer_bytes or DEFAULT_MAX_BUFFER_BYTES
        self.capacity = max(2, budget // max(1, self.layout.frame_nbytes))
        """How many accepted frames may wait for storage before ``append`` waits."""
        self.drain_timeout = drain_timeout
        self.stats = StreamStats()
        self.live = LiveData(settings, self.router, self.stats)
        """Events, callbacks and coordinate tracking."""
        self.metadata = StreamMetadata(self.layout)
        # the pipeline and every anyio primitive are created in __aenter__, on the loop
        # that runs the stream (the sync facade constructs it on the caller's thread)
        self._pipeline: WriterPipeline | None = None
        self._backend: Backend | None = None
        self._stored: StoredFrames | None = None
        self._lease = TargetLease()
        """The lock on the dataset, held until close (see ``_target``)."""
        self._next_frame = 0
        self._runs = PixelRuns(self.layout)
        """Pixels of runs appended short of a whole frame (see ``append``)."""
        self._state = "new"
        self._closed: anyio.Event
        self.settle: Callable[[], object] = _nothing
        """Called before a view counts the frames: the sync facade's hand-off settles."""

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Self:
        if self._state != "new":
            raise RuntimeError("a stream can be opened only once")
        self._state = "opening"
        # import the backend (tensorstore, zarr, ... take tens of ms) off the event loop,
        # and before anything on disk is touched
        settings = self.settings
        log_opening(self)
        backend_class = await anyio.to_thread.run_sync(load_backend, settings.backend)
        backend = backend_class(self.layout)
        try:
            self._lease = await open_target(settings, backend)  # locked until aclose
        except BaseException as err:
            self._state = "closed"
            if isinstance(err, Exception):
                logger.error("cannot open %r: %s", settings.output_path, err)
            raise
        self._backend = backend
        self._pipeline = WriterPipeline(
            self.layout, backend, self.stats, self.capacity, self._final_shapes, self._notify
        )
        self._closed = anyio.Event()
        started = anyio.Event()
        spawn_service(self._serve, started)
        # The target is committed (an old dataset replaced): finish opening whatever
        # happens, so the caller's ``async with`` owns the stream and its exit closes it.
        with anyio.CancelScope(shield=True):
            await started.wait()
        self._state = "open"
        self.stats.started = time.perf_counter()
        logger.debug(
            "opened %r: %d writes in flight at most",
            settings.output_path,
            self._pipeline.max_inflight,
        )
        return self

    async def _serve(self, started: anyio.Event) -> None:
        """Own the writer tasks; close the stream if the loop ends while it is open."""
        assert self._pipeline is not None
        async with anyio.create_task_group() as writers:
            self._pipeline.start(writers)
            started.set()
            try:
                await self._closed.wait()
            except anyio.get_cancelled_exc_class():
                with anyio.CancelScope(shield=True):
                    if self._state == "open":
                        warn_unclosed(self, "its event loop ended while it was open; closing it")
                    try:
                        await self.aclose()
                    except Exception as err:
                        warn_unclosed(self, f"closing it at the end of its loop failed: {err}")
                    lost = self.stats.frames_accepted - self.stats.frames_written
                    if lost:  # asyncio cancels every task of a loop that ends, writers too
                        warn_unclosed(self, f"up to {lost} accepted frames may be lost")
                raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Write every accepted frame and the final metadata, then release storage.

        Runs shielded from cancellation (within ``drain_timeout``) so that a cancelled
        producer loses nothing it had appended, and may be called from any task of the
        stream's event loop (leaving the ``async with`` block calls it). Raises
        WriterError if storage failed.
        """
        if self._state == "closing":
            with anyio.CancelScope(shield=True):
                await self._closed.wait()
            return
        if self._state in ("closed", "new"):
            self._state = "closed"
            return
        self._state = "closing"
        assert self._backend is not None and self._pipeline is not None
        self._runs.log_incomplete(self.output_path)
        log_closing(self)
        with anyio.CancelScope(shield=True):
            await self._pipeline.drain(self.drain_timeout)
            try:
                if self._pipeline.failure is None:
                    await self._backend.finalize(self._record())
            except Exception as err:
                self._pipeline.fail(err)
            finally:
                try:
                    await self._backend.aclose()
                except Exception as err:  # reported like any storage failure
                    self._pipeline.fail(err)
                self._lease.release()
                self._state = "closed"
                self._closed.set()
                self.live.publish("closed")
                self.live.close()
        log_closed(self, self._pipeline.failure)
        self._raise_if_failed()

    @property
    def max_inflight(self) -> int:
        """How many block writes may be in flight at once (0 before the stream opens)."""
        return 0 if self._pipeline is None else self._pipeline.max_inflight

    async def close(self) -> None:
        """Alias of :meth:`aclose` (the name ``ome-writers`` uses)."""
        await self.aclose()

    # ------------------------------------------------------------------ flush (append: ProducerAPI)
    async def flush(self) -> None:
        """Return when every accepted frame is in storage (partial blocks included).

        Raises
        ------
        NotImplementedError
            The backend cannot make frames durable before close (acquire-zarr); the stream
            stays usable and loses nothing.
        WriterError
            A storage failure (e.g. the dataset was deleted under the writer).

        """
        pipeline = self._running()
        await pipeline.flush()
        if pipeline.failure is None and self._backend is not None:
            try:
                await self._backend.flush()
            except NotImplementedError:
                raise  # the backend cannot make frames durable before close: it says so
            except Exception as err:  # e.g. the dataset was deleted under the writer
                pipeline.fail(err)
        self._raise_if_failed()

    @property
    def output_path(self) -> str:
        """The root container of the data written (see ``AcquisitionSettings``)."""
        return self.settings.output_path

    @property
    def closed(self) -> bool:
        """Whether the stream has been closed."""
        return self._state == "closed"

    # ------------------------------------------------------------------ internals
    def _running(self) -> WriterPipeline:
        if self._state != "open" or self._pipeline is None:
            raise anyio.ClosedResourceError(
                "the stream is not open (use it inside 'async with open_stream(...)')"
            )
        self._raise_if_failed()
        return self._pipeline

    def _notify(self, kind: str, error: BaseException | None) -> None:
        if kind == "error":
            self.live.publish("error", error)
        else:
            self.live.publish("frames_written")

    def _raise_if_failed(self) -> None:
        failure = self._pipeline.failure if self._pipeline is not None else None
        if failure is not None:
            raise WriterError(
                f"writing to {self.settings.output_path!r} failed: {failure!r}"
            ) from failure

    def _final_shapes(self) -> list[tuple[int, ...]]:
        shapes = []
        for array in self.layout.arrays:
            shape = array.shape
            if self.settings.is_unbounded:
                per_row = self.router.frames_per_first_index
                shape = (math.ceil(self._next_frame / per_row), *shape[1:])
            shapes.append(shape)
        return shapes

    def _record(self) -> AcquisitionRecord:
        return self.metadata.record(self._final_shapes())

    def _frame_source(self) -> _StreamFrames:
        return _StreamFrames(self)


def _nothing() -> None:
    pass


class _StreamFrames:
    """The frames of a stream as a view reads them (:class:`~ome_stream.view.FrameSource`)."""

    def __init__(self, stream: AsyncOMEStream) -> None:
        self._stream = stream

    @property
    def frames_accepted(self) -> int:
        self._stream.settle()
        return self._stream.stats.frames_accepted

    def settle(self) -> None:
        self._stream.settle()

    @property
    def finished(self) -> bool:
        return self._stream.closed

    async def read_live(self, number: int) -> np.ndarray | None:
        stream = self._stream
        if stream._pipeline is None:
            return None
        return await stream._pipeline.read_frame(*stream.router.route(number))

    def read_stored(self, number: int) -> np.ndarray | None:
        stream = self._stream
        if stream._backend is not None:
            kept = stream._backend.stored_frame(*stream.router.route(number))
            if kept is not None:
                return kept
        if stream._stored is None:
            stream._stored = StoredFrames(stream.layout)
        return stream._stored.read(*stream.router.route(number))


def open_stream(
    settings: AcquisitionSettings,
    *,
    max_buffer_bytes: int | None = None,
    drain_timeout: float = 600.0,
) -> AsyncOMEStream:
    """Open an acquisition for writing; use the result as an async context manager.

    Parameters
    ----------
    settings
        What to acquire and where to write it.
    max_buffer_bytes
        Byte budget for accepted-but-unwritten frames; overrides
        ``settings.max_buffer_bytes`` (default 256 MiB, at least 2 frames).
    drain_timeout
        Seconds the exit may spend writing buffered frames before it gives up with
        WriterError.

    Examples
    --------
    >>> async def acquire(settings, camera):            # doctest: +SKIP
    ...     async with open_stream(settings) as stream:
    ...         async for frame in camera:
    ...             await stream.append(frame)

    """
    return AsyncOMEStream(settings, max_buffer_bytes=max_buffer_bytes, drain_timeout=drain_timeout)
