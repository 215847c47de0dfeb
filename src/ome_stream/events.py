"""Progress events of a stream, for viewers and UIs that follow an acquisition.

A stream publishes snapshots; each subscriber has a small queue of its own, and a
subscriber that falls behind misses intermediate snapshots instead of slowing the writer.
Snapshots are cumulative, so the latest one always tells the whole state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TypeAlias

import anyio

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = ["CallbackKind", "CoordUpdate", "EventKind", "StreamEvent"]

EventKind: TypeAlias = Literal[
    "frames_accepted", "frames_written", "coords_expanded", "error", "closed"
]
#: What ``on(kind, callback)`` accepts: the coordinate events (with a
#: :class:`CoordUpdate`) and the progress events (with a :class:`StreamEvent`).
CallbackKind: TypeAlias = Literal[
    "coords_expanded", "coords_changed", "frames_accepted", "frames_written", "error", "closed"
]


@dataclass(frozen=True, slots=True)
class CoordUpdate:
    """Where an acquisition stands, passed to ``coords_expanded``/``coords_changed`` callbacks.

    Attributes
    ----------
    max_coords
        For every dimension, the coordinates reached so far: a ``range`` or the labels of
        its ``coords`` (channel or position names); frame axes always in full.
    current_indices
        The index of the latest frame along every dimension (frame axes 0).
    frame_number
        Number of that frame in acquisition order (the last one, after a ``skip``).
    is_high_water_mark
        Whether ``max_coords`` grew with this frame.

    """

    max_coords: Mapping[str, Sequence[object]]
    current_indices: Mapping[str, int]
    frame_number: int
    is_high_water_mark: bool


@dataclass(frozen=True)
class StreamEvent:
    """One snapshot of a stream's progress.

    Attributes
    ----------
    kind
        What happened: ``frames_accepted``, ``frames_written``, ``coords_expanded`` (a
        dimension reached a new index), ``error`` (storage failed) or ``closed``.
    frames_accepted, frames_written
        Counters at the time of the event.
    high_water
        For each acquisition dimension (positions included, frame axes excluded), how many
        indices have been reached so far: the shape of the data acquired up to now.
    error
        ``repr`` of the storage failure, for ``error`` events.

    """

    kind: EventKind
    frames_accepted: int
    frames_written: int
    high_water: dict[str, int] = field(default_factory=dict)
    error: str | None = None


class EventHub:
    """Fans events out to subscribers without ever waiting for them."""

    def __init__(self, queue_size: int = 256) -> None:
        self._queue_size = queue_size
        self._subscribers: list[
            tuple[MemoryObjectSendStream[StreamEvent], MemoryObjectReceiveStream[StreamEvent]]
        ] = []
        self.closed = False

    def __bool__(self) -> bool:
        return bool(self._subscribers)

    def subscribe(self) -> MemoryObjectReceiveStream[StreamEvent]:
        """A new subscriber's stream of events; it ends when the stream closes."""
        send, receive = anyio.create_memory_object_stream[StreamEvent](self._queue_size)
        if self.closed:
            send.close()
        else:
            self._subscribers.append((send, receive.clone()))
        return receive

    def publish(self, event: StreamEvent, *, must_arrive: bool = False) -> None:
        """Offer ``event`` to every subscriber without waiting.

        A full queue drops the event, or, when it ``must_arrive``, the subscriber's oldest.
        """
        for send, spare in list(self._subscribers):
            try:
                send.send_nowait(event)
            except anyio.WouldBlock:
                if spare.statistics().open_receive_streams == 1:  # the subscriber left
                    self._subscribers.remove((send, spare))
                    send.close()
                    spare.close()
                elif must_arrive:
                    spare.receive_nowait()
                    send.send_nowait(event)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subscribers.remove((send, spare))
                spare.close()

    def close(self) -> None:
        """End every subscriber's stream (after the events already queued)."""
        self.closed = True
        for send, spare in self._subscribers:
            send.close()
            spare.close()
        self._subscribers.clear()
