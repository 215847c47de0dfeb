"""The synchronous facade: the async core on a background event-loop thread.

``create_stream`` holds no logic of its own; every call is forwarded to an
:class:`~ome_stream.stream.AsyncOMEStream` running in an anyio blocking portal, so code
written for the ``ome-writers`` API runs unchanged, from scripts, threads, or code that
is itself running inside an event loop's thread (a notebook cell).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, ExitStack
from typing import TYPE_CHECKING, Any, Self, get_args

import anyio
from anyio.from_thread import start_blocking_portal

from ome_stream.events import EventKind
from ome_stream.stream import AsyncOMEStream

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping
    from types import TracebackType

    from numpy.typing import ArrayLike

    from ome_stream.events import StreamEvent
    from ome_stream.settings import AcquisitionSettings
    from ome_stream.stream import StreamStats
    from ome_stream.view import StreamView

__all__ = ["OMEStream", "create_stream"]


class OMEStream:
    """A blocking stream with the same methods as :class:`AsyncOMEStream`.

    Use it as a context manager; leaving the block writes every accepted frame and the
    final metadata.
    """

    def __init__(self, stream: AsyncOMEStream, backend: str = "asyncio") -> None:
        self._async = stream
        self._stack = ExitStack()
        self._portal = self._stack.enter_context(start_blocking_portal(backend))
        self._cm: AbstractContextManager[AsyncOMEStream] | None = None
        try:
            cm = self._portal.wrap_async_context_manager(stream)
            cm.__enter__()
            self._cm = cm
        except BaseException:
            self._stack.close()
            raise

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
        cm, self._cm = self._cm, None
        if cm is None:
            return
        try:
            cm.__exit__(None, None, None)
        finally:
            self._stack.close()

    def append(
        self,
        frame: ArrayLike,
        *,
        metadata: dict[str, Any] | None = None,
        frame_metadata: dict[str, Any] | None = None,
        copy: bool = True,
    ) -> None:
        """Append the next frame; blocks while the buffer is full (see ``append``)."""
        self._portal.call(
            lambda: self._async.append(
                frame, metadata=metadata, frame_metadata=frame_metadata, copy=copy
            )
        )

    def append_nowait(
        self,
        frame: ArrayLike,
        *,
        metadata: dict[str, Any] | None = None,
        frame_metadata: dict[str, Any] | None = None,
        copy: bool = True,
    ) -> None:
        """Append without waiting; raises ``anyio.WouldBlock`` when the buffer is full."""
        self._portal.call(
            lambda: self._async.append_nowait(
                frame, metadata=metadata, frame_metadata=frame_metadata, copy=copy
            )
        )

    def skip(self, frames: int = 1) -> None:
        """Advance past ``frames`` frames, leaving them at the fill value."""
        self._portal.call(self._async.skip, frames)

    def flush(self) -> None:
        """Block until every accepted frame is in storage."""
        self._portal.call(self._async.flush)

    def _run(self, func: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        # after close the portal's loop is gone: run the call on a loop of its own
        if self._cm is None:
            return anyio.run(func, *args)
        return self._portal.call(func, *args)

    def set_global_metadata(self, namespace: str, metadata: Mapping[str, Any]) -> None:
        """Attach acquisition-level metadata under ``namespace`` (see the async twin)."""
        self._run(self._async.set_global_metadata, namespace, metadata)

    def get_metadata(self) -> dict[Any, Any]:
        """The metadata as it would be written now (see the async twin)."""
        return self._async.get_metadata()

    def update_metadata(self, metadata: Mapping[Any, Any]) -> None:
        """Replace metadata documents (see the async twin); works after close too."""
        self._run(self._async.update_metadata, metadata)

    def view(self) -> StreamView:
        """A live, read-only array of the acquisition so far (``view[t, c, ...]``)."""
        return self._portal.call(self._async.view)

    def on(self, kind: EventKind, callback: Callable[[StreamEvent], object]) -> None:
        """Call ``callback(event)`` in a worker thread for every event of ``kind``.

        ``kind`` is one of ``"frames_accepted"``, ``"frames_written"``,
        ``"coords_expanded"``, ``"error"``, ``"closed"``. A slow callback misses
        intermediate progress snapshots; it never slows the writer.
        """
        if kind not in get_args(EventKind):
            raise ValueError(f"unknown event kind {kind!r}; choose from {get_args(EventKind)}")
        events = self._portal.call(self._async.events)

        async def deliver() -> None:
            async with events:
                async for event in events:
                    if event.kind == kind:
                        await anyio.to_thread.run_sync(callback, event)

        self._portal.start_task_soon(deliver)

    @property
    def stats(self) -> StreamStats:
        """Progress counters."""
        return self._async.stats

    @property
    def output_path(self) -> str:
        """The root container of the data written."""
        return self._async.output_path

    @property
    def closed(self) -> bool:
        """Whether the stream has been closed."""
        return self._cm is None


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
