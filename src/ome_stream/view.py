"""A live, read-only view of an acquisition in progress, in acquisition order.

Frames already in storage are read back through the backend; frames accepted but not yet
written come from the stream's memory; slots not yet acquired read as the fill value (0).
"""

from __future__ import annotations

import itertools
import threading
from typing import TYPE_CHECKING, Any

import anyio.from_thread
import anyio.lowlevel
import numpy as np

if TYPE_CHECKING:
    from ome_stream.stream import AsyncOMEStream

__all__ = ["StreamView"]


def _normalize(key: Any, shape: tuple[int, ...]) -> list[int | range]:
    """Basic numpy indexing (ints, slices, Ellipsis) → an int or a range per axis."""
    items = key if isinstance(key, tuple) else (key,)
    if sum(item is Ellipsis for item in items) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if Ellipsis in items:
        at = items.index(Ellipsis)
        fill = len(shape) - (len(items) - 1)
        items = items[:at] + (slice(None),) * fill + items[at + 1 :]
    if len(items) > len(shape):
        raise IndexError(f"too many indices: {len(items)} for a view with {len(shape)} axes")
    items = items + (slice(None),) * (len(shape) - len(items))
    out: list[int | range] = []
    for axis, (item, size) in enumerate(zip(items, shape, strict=True)):
        if isinstance(item, slice):
            out.append(range(*item.indices(size)))
        elif isinstance(item, int | np.integer):
            index = int(item)
            if not -size <= index < size:
                raise IndexError(f"index {index} is out of bounds for axis {axis} with size {size}")
            out.append(index % size)
        else:
            raise TypeError(f"the view supports ints, slices and '...', not {type(item).__name__}")
    return out


class StreamView:
    """Read-only array-like of everything acquired so far, in acquisition order.

    Its axes are the acquisition's ``dimensions`` (positions included), its shape grows
    with an unbounded first axis. In async code use ``await view.read(key)``; from other
    threads (a viewer's), ``view[key]`` works and is served by the stream's event loop.

    Examples
    --------
    >>> view = stream.view()                        # doctest: +SKIP
    >>> latest = await view.read((-1, ...))         # doctest: +SKIP

    """

    def __init__(self, stream: AsyncOMEStream) -> None:
        self._stream = stream
        self._token = anyio.lowlevel.current_token()
        self._loop_thread = threading.get_ident()
        self.dims = tuple(d.name for d in stream.settings.dimensions)
        """Axis names, in acquisition order."""
        self.dtype = stream.layout.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        """Current shape; an unbounded first axis counts the rows begun so far."""
        settings = self._stream.settings
        counts = [d.count for d in settings.dimensions[:-2]]
        if counts and counts[0] is None:
            per_row = self._stream.router.frames_per_first_index
            counts[0] = -(-self._stream.stats.frames_accepted // per_row)
        return (*(c or 0 for c in counts), *settings.frame_shape)

    @property
    def ndim(self) -> int:
        """Number of axes."""
        return len(self.dims)

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        data = self[...]
        return data.astype(dtype) if dtype is not None else data

    def __getitem__(self, key: Any) -> np.ndarray:
        if threading.get_ident() == self._loop_thread:
            raise RuntimeError(
                "view[...] was called on the stream's event loop thread, where it would "
                "block the loop; use 'await view.read(key)' there"
            )
        result: np.ndarray = anyio.from_thread.run(self.read, key, token=self._token)
        return result

    async def read(self, key: Any = Ellipsis) -> np.ndarray:
        """Return the pixels selected by ``key`` (basic numpy indexing)."""
        stream = self._stream
        shape = self.shape
        selection = _normalize(key, shape)
        outer, frame_key = selection[:-2], selection[-2:]
        frame_index = tuple(
            k if isinstance(k, int) else slice(k.start, k.stop, k.step) for k in frame_key
        )
        outer_ranges = [range(k, k + 1) if isinstance(k, int) else k for k in outer]
        frame_shape = tuple(len(k) for k in frame_key if isinstance(k, range))
        out = np.zeros((*(len(r) for r in outer_ranges), *frame_shape), dtype=self.dtype)
        accepted = stream.stats.frames_accepted
        router = stream.router
        for position in itertools.product(*(range(len(r)) for r in outer_ranges)):
            index = tuple(r[i] for r, i in zip(outer_ranges, position, strict=True))
            number = router.frame_number(index)
            if number >= accepted:
                continue  # not acquired yet: fill value
            frame = await stream._read_frame(number)
            if frame is not None:
                out[position] = frame[frame_index]
        squeeze = tuple(axis for axis, k in enumerate(outer) if isinstance(k, int))
        return out.reshape([n for a, n in enumerate(out.shape) if a not in squeeze])
