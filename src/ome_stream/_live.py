"""Live data of a stream: coordinate tracking, progress events and callbacks.

Where an acquisition stands is a pure function of how many frames were accepted (frames
arrive in acquisition order), so nothing is tracked per frame unless someone listens:
the high water marks are computed when asked, and events are built only for subscribers
and registered callbacks.
"""

from __future__ import annotations

import contextlib
import math
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, get_args

import anyio

from ome_stream._log import logger
from ome_stream.events import CallbackKind, CoordUpdate, EventHub, EventKind, StreamEvent

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from anyio.streams.memory import MemoryObjectReceiveStream

    from ome_stream._pipeline import StreamStats
    from ome_stream.router import FrameRouter
    from ome_stream.settings import AcquisitionSettings
    from ome_stream.view import FrameSource, StreamView

__all__ = ["CoordTracker", "LiveAPI", "LiveData", "coord_labels"]


_COORD_KINDS = ("coords_expanded", "coords_changed")


def coord_labels(dim: Any) -> list[Any] | None:
    """The labels of a dimension's coordinates (channel/position names), or None."""
    coords = getattr(dim, "coords", None) or getattr(dim, "positions", None)
    if not coords:
        return None
    return [getattr(c, "name", c) for c in coords]


class CoordTracker:
    """How far an acquisition has reached along each dimension after ``n`` frames.

    After ``n`` frames (acquisition order), an axis of stride ``s`` (frames per index)
    and ``count`` indices has reached ``min(count, (n - 1) // s + 1)`` of them.
    """

    def __init__(self, settings: AcquisitionSettings, router: FrameRouter) -> None:
        acquisition = settings.dimensions[:-2]
        self.names = tuple(d.name for d in acquisition)
        self._frame_coords = {d.name: range(d.count or 0) for d in settings.dimensions[-2:]}
        self._counts = [d.count for d in acquisition]
        self._labels = [coord_labels(d) for d in acquisition]
        known = [c or 0 for c in self._counts]
        self._strides = [math.prod(known[i + 1 :]) or 1 for i in range(len(known))]
        self._router = router

    def reached(self, frames: int) -> tuple[int, ...]:
        """Per acquisition axis, how many indices ``frames`` frames have reached."""
        if frames <= 0:
            return (0,) * len(self._counts)
        last = frames - 1
        return tuple(
            last // stride + 1 if count is None else min(count, last // stride + 1)
            for count, stride in zip(self._counts, self._strides, strict=True)
        )

    def coords(self, extents: Sequence[int]) -> dict[str, Sequence[Any]]:
        """Coordinates of every dimension, the acquisition axes cut at ``extents``."""
        result: dict[str, Sequence[Any]] = {}
        for name, labels, extent in zip(self.names, self._labels, extents, strict=True):
            result[name] = labels[:extent] if labels is not None else range(extent)
        result.update(self._frame_coords)
        return result

    def update(self, first: int, count: int) -> CoordUpdate:
        """The state after frames ``[first, first + count)`` were accepted."""
        end = first + count
        after = self.reached(end)
        indices = dict(zip(self.names, self._router.acquisition_index(end - 1), strict=True))
        indices.update(dict.fromkeys(self._frame_coords, 0))
        return CoordUpdate(
            max_coords=self.coords(after),
            current_indices=indices,
            frame_number=end - 1,
            is_high_water_mark=after != self.reached(first),
        )


class LiveAPI:
    """The live-data methods of :class:`~ome_stream.stream.AsyncOMEStream`."""

    settings: AcquisitionSettings
    router: FrameRouter
    live: LiveData
    _state: str

    def _frame_source(self) -> FrameSource:
        raise NotImplementedError  # pragma: no cover - provided by the stream

    def events(self) -> MemoryObjectReceiveStream[StreamEvent]:
        """Subscribe to progress events: ``async for event in stream.events(): ...``.

        Each subscriber has its own queue; one that falls behind misses intermediate
        ``frames_*`` snapshots (never ``coords_expanded``, ``error`` or ``closed``) and
        never slows the writer. The iteration ends when the stream closes. Subscribe
        before the first append to see every high-water change.
        """
        return self.live.subscribe()

    def on(self, kind: CallbackKind, callback: Callable[[Any], object]) -> None:
        """Call ``callback`` in the stream's events thread for every event of ``kind``.

        ``"coords_changed"`` (every frame) and ``"coords_expanded"`` (a dimension reached
        a new index) pass a :class:`~ome_stream.events.CoordUpdate`; ``"frames_accepted"``,
        ``"frames_written"``, ``"error"`` and ``"closed"`` a
        :class:`~ome_stream.events.StreamEvent`. Callbacks run in order, in one thread
        that is never the event loop's: a slow callback never slows the writer.
        """
        self.live.on(kind, callback)

    def view(self, *, dynamic_shape: bool = True, strict: bool = False) -> StreamView:
        """A live, read-only array of the acquisition, in acquisition order.

        Written frames are read back from storage, accepted ones from memory, and slots
        not acquired yet read as 0; after close, the dataset is read from storage. See
        :class:`~ome_stream.view.StreamView` for ``dynamic_shape`` and ``strict``.
        """
        from ome_stream.view import StreamView

        if self._state not in ("open", "closed"):
            raise anyio.ClosedResourceError("the stream is not open yet")
        view = StreamView(
            self.settings,
            self.router,
            self.live.tracker,
            self._frame_source(),
            dynamic_shape=dynamic_shape,
            strict=strict,
        )
        if dynamic_shape and self._state == "open":
            self.live.on("coords_expanded", view._on_expanded)
        return view


class LiveData:
    """Progress events (``events()``) and callbacks (``on()``) of one stream.

    Callbacks run in order in one worker thread (``ome-stream-events``), never on the
    event loop, so a slow callback delays only later callbacks, never the writer.
    """

    def __init__(
        self, settings: AcquisitionSettings, router: FrameRouter, stats: StreamStats
    ) -> None:
        self.tracker = CoordTracker(settings, router)
        self.stats = stats
        self._hub = EventHub()
        self.handlers: dict[str, list[Callable[[Any], object]]] = {}
        """Callbacks registered with :meth:`on`, by kind."""
        self.executor: ThreadPoolExecutor | None = None
        """The worker thread that runs the callbacks (created by the first ``on``)."""

    def subscribe(self) -> MemoryObjectReceiveStream[StreamEvent]:
        """A new subscriber's stream of :class:`StreamEvent` (see ``events()``)."""
        return self._hub.subscribe()

    def on(self, kind: CallbackKind, callback: Callable[[Any], object]) -> None:
        """Call ``callback`` in the events thread for every event of ``kind``."""
        if kind not in get_args(CallbackKind):
            raise ValueError(f"unknown event kind {kind!r}; choose from {get_args(CallbackKind)}")
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {callback!r}")
        if self.executor is None:
            self.executor = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="ome-stream-events"
            )
        self.handlers.setdefault(kind, []).append(callback)

    def accepted(self, first: int, count: int) -> None:
        """Frames ``[first, first + count)`` were accepted (appended or skipped)."""
        handlers = self.handlers
        if not (self._hub or handlers):
            return
        tracker = self.tracker
        expanded = tracker.reached(first) != tracker.reached(first + count)
        if expanded:
            self.publish("coords_expanded")
        self.publish("frames_accepted")
        changed = handlers.get("coords_changed", ())
        grown = handlers.get("coords_expanded", ()) if expanded else ()
        # like ome-writers, a skip tells coords_changed listeners only when coords grew
        if (changed and (count == 1 or expanded)) or grown:
            update = tracker.update(first, count)
            for callback in (*changed, *grown):
                self._call(callback, update)

    def publish(self, kind: EventKind, error: BaseException | None = None) -> None:
        """Offer a :class:`StreamEvent` of ``kind`` to subscribers and callbacks."""
        callbacks = self.handlers.get(kind, ()) if kind not in _COORD_KINDS else ()
        if not (self._hub or callbacks):
            return
        stats = self.stats
        event = StreamEvent(
            kind=kind,
            frames_accepted=stats.frames_accepted,
            frames_written=stats.frames_written,
            high_water=dict(
                zip(self.tracker.names, self.tracker.reached(stats.frames_accepted), strict=True)
            ),
            error=repr(error) if error is not None else None,
        )
        self._hub.publish(event, must_arrive=kind in ("coords_expanded", "error", "closed"))
        for callback in callbacks:
            self._call(callback, event)

    def _call(self, callback: Callable[[Any], object], payload: object) -> None:
        if self.executor is None:
            return
        with contextlib.suppress(RuntimeError):  # shut down: the stream has closed
            self.executor.submit(_run_callback, callback, payload)

    def close(self) -> None:
        """End every subscription and let the callbacks already queued finish."""
        self._hub.close()
        if self.executor is not None:
            self.executor.shutdown(wait=False)


def _run_callback(callback: Callable[[Any], object], payload: object) -> None:
    try:
        callback(payload)
    except Exception:
        logger.exception("an event callback %r raised", callback)
