"""A live, read-only view of an acquisition in progress, in acquisition order.

Frames already in storage are read back through the backend; frames accepted but not yet
written come from the stream's memory; slots not yet acquired read as the fill value (0).
After the stream closes, the view reads the finished dataset from storage.
"""

from __future__ import annotations

import itertools
import threading
from typing import TYPE_CHECKING, Any, Protocol

import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ome_stream._live import CoordTracker
    from ome_stream.events import CoordUpdate
    from ome_stream.router import FrameRouter
    from ome_stream.settings import AcquisitionSettings

__all__ = ["CoordsSignal", "FrameSource", "StreamView"]


class FrameSource(Protocol):
    """What a view reads: the stream's frames, live or, once closed, from storage."""

    @property
    def frames_accepted(self) -> int:
        """Frames accepted so far (every frame appended, also from other threads)."""

    def settle(self) -> None:
        """Off the stream's loop: wait until every frame appended is accepted."""

    @property
    def finished(self) -> bool:
        """Whether the stream has closed (read with :meth:`read_stored` from then on)."""

    async def read_live(self, number: int) -> np.ndarray | None:
        """Frame ``number`` from memory or storage, on the stream's loop (None: fill)."""

    def read_stored(self, number: int) -> np.ndarray | None:
        """Frame ``number`` from the finished dataset, from any thread (None: fill)."""


class CoordsSignal:
    """A minimal signal: ``connect(callback)``, ``disconnect(callback)``, ``emit()``.

    Callbacks take no arguments; ``connect`` returns the callback (usable as a decorator).
    """

    def __init__(self) -> None:
        self._slots: list[Callable[[], object]] = []

    def connect(self, callback: Callable[[], object]) -> Callable[[], object]:
        """Call ``callback()`` on every emission; keeps a strong reference."""
        self._slots.append(callback)
        return callback

    def disconnect(self, callback: Callable[[], object]) -> None:
        """Stop calling ``callback``; ValueError if it was not connected."""
        self._slots.remove(callback)

    def emit(self) -> None:
        """Call every connected callback."""
        for callback in list(self._slots):
            callback()


def _normalize(
    key: Any,
    shape: tuple[int, ...],
    slice_shape: tuple[int, ...] | None = None,
    *,
    position_axis: int | None = None,
) -> list[int | range]:
    """Basic numpy indexing (ints, slices, Ellipsis) → an int or a range per axis.

    Integers are checked against ``shape`` (an error on ``position_axis`` says "Position
    index", as ome-writers does); slices are cut to ``slice_shape`` (default ``shape``).
    """
    slice_shape = shape if slice_shape is None else slice_shape
    items = key if isinstance(key, tuple) else (key,)
    if sum(item is Ellipsis for item in items) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if Ellipsis in items:
        at = items.index(Ellipsis)
        fill = len(shape) - (len(items) - 1)
        items = items[:at] + (slice(None),) * fill + items[at + 1 :]
    if len(items) > len(shape):
        raise IndexError(
            f"too many indices for array: array is {len(shape)}-dimensional, "
            f"but {len(items)} were indexed"
        )
    items = items + (slice(None),) * (len(shape) - len(items))
    out: list[int | range] = []
    for axis, (item, size, cut) in enumerate(zip(items, shape, slice_shape, strict=True)):
        if isinstance(item, slice):
            out.append(range(*item.indices(cut)))
        elif isinstance(item, int | np.integer):
            index = int(item)
            if not -size <= index < size:
                what = "Position index" if axis == position_axis else "index"
                raise IndexError(
                    f"{what} {index} is out of bounds for axis {axis} with size {size}"
                )
            out.append(index % size)
        else:
            raise TypeError(f"the view supports ints, slices and '...', not {type(item).__name__}")
    return out


class StreamView:
    """Read-only array-like of everything acquired so far, in acquisition order.

    Its axes are the acquisition's ``dimensions`` (positions included). With
    ``dynamic_shape`` (the default) ``shape`` and ``coords`` cover what has been acquired
    so far and grow with every new index (``coords_changed`` is emitted then); indexing
    beyond them reads zeros, or raises IndexError with ``strict``. Otherwise they are the
    full acquisition's (an unbounded first axis: the rows begun). In async code use
    ``await view.read(key)``; from other threads ``view[key]`` is served by the stream's
    event loop; after the stream closed, ``view[key]`` reads the dataset from storage.

    Examples
    --------
    >>> view = stream.view()                        # doctest: +SKIP
    >>> latest = await view.read((-1, ...))         # doctest: +SKIP

    """

    def __init__(
        self,
        settings: AcquisitionSettings,
        router: FrameRouter,
        tracker: CoordTracker,
        source: FrameSource,
        *,
        dynamic_shape: bool = True,
        strict: bool = False,
    ) -> None:
        self._settings = settings
        self._router = router
        self._tracker = tracker
        self._source = source
        self._dynamic = dynamic_shape
        self._strict = strict and dynamic_shape
        self._token = None if source.finished else anyio.lowlevel.current_token()
        self._loop_thread = threading.get_ident()
        self._coords_changed = CoordsSignal()
        self.dims = tuple(d.name for d in settings.dimensions)
        """Axis names, in acquisition order."""
        self.dtype = np.dtype(settings.dtype)
        """Pixel type."""

    @property
    def coords_changed(self) -> CoordsSignal:
        """Emitted (in the events thread) when ``shape``/``coords`` grow, with dynamic_shape."""
        return self._coords_changed

    def _on_expanded(self, update: CoordUpdate) -> None:
        self._coords_changed.emit()

    def _full_extents(self) -> list[int]:
        extents = [d.count or 0 for d in self._settings.dimensions[:-2]]
        if extents and self._settings.dimensions[0].count is None:
            per_row = self._router.frames_per_first_index
            extents[0] = -(-self._source.frames_accepted // per_row)
        return extents

    def _extents(self) -> list[int]:
        if self._dynamic:
            return list(self._tracker.reached(self._source.frames_accepted))
        return self._full_extents()

    @property
    def shape(self) -> tuple[int, ...]:
        """Current shape (see the class description)."""
        return (*self._extents(), *self._settings.frame_shape)

    @property
    def coords(self) -> dict[str, Sequence[Any]]:
        """Coordinates per dimension: a ``range``, or the channel/position names."""
        return self._tracker.coords(self._extents())

    @property
    def ndim(self) -> int:
        """Number of axes."""
        return len(self.dims)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"StreamView(dims={self.dims}, shape={self.shape}, dtype={self.dtype})"

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if copy is False:
            raise ValueError(
                "a StreamView cannot be converted to an array without a copy (copy=False)"
            )
        data = self[...]
        return data.astype(dtype) if dtype is not None else data

    def __getitem__(self, key: Any) -> np.ndarray:
        if self._source.finished or self._token is None:
            return self._read_sync(key)
        if threading.get_ident() == self._loop_thread:
            raise RuntimeError(
                "view[...] was called on the stream's event loop thread, where it would "
                "block the loop; use 'await view.read(key)' there"
            )
        self._source.settle()  # a frame appended from this thread is readable at once
        try:
            result: np.ndarray = anyio.from_thread.run(self.read, key, token=self._token)
        except RuntimeError:
            if not self._source.finished:  # the loop ended for another reason
                raise
            return self._read_sync(key)  # the stream closed meanwhile: read storage
        return result

    async def read(self, key: Any = Ellipsis) -> np.ndarray:
        """Return the pixels selected by ``key`` (basic numpy indexing)."""
        if self._source.finished:
            return await anyio.to_thread.run_sync(self._read_sync, key)
        plan = self._plan(key)
        for position, number in plan.frames:
            plan.put(position, await self._source.read_live(number))
        return plan.result()

    def _read_sync(self, key: Any) -> np.ndarray:
        plan = self._plan(key)
        for position, number in plan.frames:
            plan.put(position, self._source.read_stored(number))
        return plan.result()

    def _plan(self, key: Any) -> _Selection:
        frame_shape = self._settings.frame_shape
        full = (*self._full_extents(), *frame_shape)
        if self._strict:
            key = self._check_live(key)
        # slices cover the shape the view reports; integers reach the whole acquisition
        # (slots not acquired yet read 0)
        selection = _normalize(
            key,
            full,
            self.shape if self._dynamic else full,
            position_axis=self._settings.position_dimension_index,
        )
        return _Selection(selection, self.dtype, self._router, self._source.frames_accepted)

    def _check_live(self, key: Any) -> Any:
        """With ``strict``: integers must fall within the live shape (negatives from its end)."""
        items = list(key) if isinstance(key, tuple) else [key]
        live = self.shape
        for axis, item in enumerate(items[: len(live)]):
            if item is Ellipsis:
                break
            if isinstance(item, int | np.integer):
                size = live[axis]
                index = int(item) + size if item < 0 else int(item)
                if not 0 <= index < size:
                    raise IndexError(
                        f"index {int(item)} is out of bounds for live dimension "
                        f"{self.dims[axis]!r} with size {size}"
                    )
                items[axis] = index
        return tuple(items)


class _Selection:
    """The frames a key selects and the output array they fill."""

    def __init__(
        self, selection: list[int | range], dtype: np.dtype[Any], router: FrameRouter, accepted: int
    ) -> None:
        outer, frame_key = selection[:-2], selection[-2:]
        self._frame_index = tuple(
            k if isinstance(k, int) else slice(k.start, k.stop, k.step) for k in frame_key
        )
        ranges = [range(k, k + 1) if isinstance(k, int) else k for k in outer]
        frame_shape = tuple(len(k) for k in frame_key if isinstance(k, range))
        self._out = np.zeros((*(len(r) for r in ranges), *frame_shape), dtype=dtype)
        self._squeeze = tuple(axis for axis, k in enumerate(outer) if isinstance(k, int))
        frames = []
        for position in itertools.product(*(range(len(r)) for r in ranges)):
            number = router.frame_number(tuple(r[i] for r, i in zip(ranges, position, strict=True)))
            if number < accepted:  # otherwise not acquired yet: fill value
                frames.append((position, number))
        self.frames = frames

    def put(self, position: tuple[int, ...], frame: np.ndarray | None) -> None:
        if frame is not None:
            self._out[position] = frame[self._frame_index]

    def result(self) -> np.ndarray:
        out = self._out
        return out.reshape([n for a, n in enumerate(out.shape) if a not in self._squeeze])
