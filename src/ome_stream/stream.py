"""The async core: accept frames, buffer them within a byte budget, write them in order.

Data flow: ``append`` validates and routes a frame, waits for room in the byte budget
(backpressure), copies the frame into a pool slot and sends it to the writer task of its
array. Each writer assembles whole blocks (one shard or chunk deep, the full frame wide)
and hands each complete block to the backend exactly once, several blocks in flight.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self

import anyio
import numpy as np
from ome_types.model import OME

from ome_stream._target import TargetLease, open_target
from ome_stream.backends.base import Backend, load_backend
from ome_stream.errors import WriterError
from ome_stream.events import EventHub, EventKind, StreamEvent
from ome_stream.layout import AcquisitionRecord, Layout
from ome_stream.metadata.ngff import RESERVED_ATTRIBUTES, group_attributes, group_documents
from ome_stream.metadata.ome_xml import build_ome
from ome_stream.pyramid import PyramidBuilder
from ome_stream.router import FrameRouter
from ome_stream.view import StreamView

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType

    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
    from numpy.typing import ArrayLike

    from ome_stream.settings import AcquisitionSettings

__all__ = ["DEFAULT_MAX_BUFFER_BYTES", "AsyncOMEStream", "StreamStats", "open_stream"]

#: Default byte budget for frames accepted but not yet handed to storage.
DEFAULT_MAX_BUFFER_BYTES = 256 * 1024 * 1024
#: Bytes of blocks that may be in flight to storage at once (beyond the frame buffer).
INFLIGHT_BYTES = 64 * 1024 * 1024
#: Resizes of an unbounded axis grow it by at least this many frames along it.
_GROW_STEP = 32


@dataclass
class StreamStats:
    """Progress counters of a stream; read them at any time."""

    frames_accepted: int = 0
    """Frames appended (or skipped) so far."""
    frames_written: int = 0
    """Frames whose block has been written to storage."""
    bytes_buffered: int = 0
    """Bytes of accepted frames not yet handed to storage."""
    peak_bytes_buffered: int = 0
    """Highest ``bytes_buffered`` seen."""
    started: float = field(default_factory=time.perf_counter)

    @property
    def write_rate(self) -> float:
        """Frames written per second since the stream opened."""
        elapsed = time.perf_counter() - self.started
        return self.frames_written / elapsed if elapsed > 0 else 0.0


@dataclass
class _Frame:
    storage_index: tuple[int, ...]
    pixels: np.ndarray | None  # None: a skipped frame, left as fill value
    pooled: bool  # return ``pixels`` to the slot pool when done


@dataclass
class _Flush:
    done: anyio.Event = field(default_factory=anyio.Event)


_Item = _Frame | _Flush


@dataclass
class _Block:
    origin: tuple[int, ...]
    pixels: np.ndarray
    expected: int
    received: int = 0

    def offset(self, index: tuple[int, ...]) -> tuple[int, ...]:
        """Position of the frame at storage ``index`` inside this block."""
        return tuple(i - o for i, o in zip(index, self.origin, strict=True))


class _Assembler:
    """Collects the frames of one array into blocks and says when a block is complete."""

    def __init__(
        self, block_shape: tuple[int, ...], shape: tuple[int, ...], unbounded: bool
    ) -> None:
        self.block = block_shape[:-2]
        self.frame_shape = block_shape[-2:]
        self.shape = shape[:-2]
        self.unbounded = unbounded
        self.direct = math.prod(self.block) == 1
        self.open: dict[tuple[int, ...], _Block] = {}

    def _extent(self, coord: tuple[int, ...]) -> tuple[int, ...]:
        extent = []
        for axis, (c, b, n) in enumerate(zip(coord, self.block, self.shape, strict=True)):
            extent.append(b if axis == 0 and self.unbounded else min(b, n - c * b))
        return tuple(extent)

    def add(
        self, index: tuple[int, ...], pixels: np.ndarray | None, dtype: np.dtype[Any]
    ) -> tuple[_Block, bool]:
        """File one frame; return its block and whether that block is now complete."""
        coord = tuple(i // b for i, b in zip(index, self.block, strict=True))
        block = self.open.get(coord)
        if block is None:
            extent = self._extent(coord)
            block = _Block(
                origin=tuple(c * b for c, b in zip(coord, self.block, strict=True)),
                pixels=np.zeros((*extent, *self.frame_shape), dtype),
                expected=math.prod(extent),
            )
            self.open[coord] = block
        if pixels is not None:
            block.pixels[block.offset(index)] = pixels
        block.received += 1
        if block.received >= block.expected:
            del self.open[coord]
            return block, True
        return block, False


class AsyncOMEStream:
    """An open acquisition: append frames in acquisition order, then close.

    Create it with :func:`open_stream` and use it as an async context manager; enter
    and exit it in the same task. Exiting (also by an exception or cancellation) writes
    every frame that ``append`` accepted, then the final metadata.
    """

    def __init__(
        self,
        settings: AcquisitionSettings,
        *,
        max_buffer_bytes: int | None = None,
        drain_timeout: float = 600.0,
    ) -> None:
        self.settings = settings
        self.layout = Layout(settings)
        self.router = FrameRouter(settings)
        """Maps frame numbers to arrays and storage indices."""
        budget = max_buffer_bytes or settings.max_buffer_bytes or DEFAULT_MAX_BUFFER_BYTES
        self._frame_nbytes = self.layout.frame_nbytes
        self.capacity = max(2, budget // max(1, self._frame_nbytes))
        """How many accepted frames may wait for storage before ``append`` waits."""
        self._drain_timeout = drain_timeout
        self.stats = StreamStats()
        # anyio primitives are created in __aenter__, on the loop that runs the stream (the
        # sync facade constructs the stream on the caller's thread, maybe in another loop)
        self._budget: anyio.Semaphore
        self._free_slots: list[np.ndarray] = []
        self._senders: list[MemoryObjectSendStream[_Item]] = []
        self._frame_metadata: list[list[dict[str, Any]]] = [[] for _ in self.layout.arrays]
        self._global_metadata: dict[str, Any] = {}
        self._overrides: dict[Any, Any] = {}
        self._next_frame = 0
        self._failure: BaseException | None = None
        self._state = "new"
        self._backend: Backend | None = None
        self._lease = TargetLease()
        self._task_group: anyio.abc.TaskGroup | None = None
        self._writer_scopes: list[anyio.CancelScope] = []
        self._writers_running = 0
        self._writers_done: anyio.Event
        self._extents = [a.shape[0] if a.shape else 0 for a in self.layout.arrays]
        self._inflight: anyio.Semaphore | None = None
        self._pending_writes = 0
        self._idle: anyio.Event
        # Accepted frames not yet in storage, per array, by storage index: the live view
        # serves them from memory.
        self._unwritten: list[dict[tuple[int, ...], np.ndarray]] = [{} for _ in self.layout.arrays]
        self._acquisition_names = [d.name for d in settings.dimensions[:-2]]
        self._high_water = [0] * len(self._acquisition_names)
        self._events = EventHub()
        self._closed: anyio.Event

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Self:
        if self._state != "new":
            raise RuntimeError("a stream can be opened only once")
        self._state = "opening"
        # import the backend (tensorstore, zarr, ... take tens of ms) off the event loop,
        # and before anything on disk is touched
        backend_class = await anyio.to_thread.run_sync(load_backend, self.settings.backend)
        backend = backend_class(self.layout)
        self._lease = await open_target(self.settings, backend)  # locked until aclose
        self._backend = backend
        self.max_inflight = self._inflight_limit(backend)
        """How many block writes may be in flight at once."""
        self._inflight = anyio.Semaphore(self.max_inflight)
        self._budget = anyio.Semaphore(self.capacity)
        self._writers_done = anyio.Event()
        self._idle = anyio.Event()
        self._closed = anyio.Event()
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        for index in range(len(self.layout.images)):
            send, receive = anyio.create_memory_object_stream[_Item](math.inf)
            self._senders.append(send)
            self._writers_running += 1
            self._task_group.start_soon(self._writer, index, receive)
        self._state = "open"
        self.stats = StreamStats()
        return self

    def _inflight_limit(self, backend: Backend) -> int:
        # Many small blocks need many writes in flight to hide per-object latency; large
        # blocks need few. Blocks in flight are bounded by bytes as well as by the backend.
        block = backend.block_shape(0)
        block_bytes = math.prod(block) * self.layout.dtype.itemsize
        by_bytes = max(1, INFLIGHT_BYTES // max(1, block_bytes))
        return max(1, min(backend.max_inflight, max(by_bytes, 2)))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        try:
            await self.aclose()
        finally:
            task_group, self._task_group = self._task_group, None
            if task_group is not None:
                try:
                    await task_group.__aexit__(None, None, None)
                except BaseExceptionGroup as group:  # a writer bug, not a storage failure
                    self._fail(group.exceptions[0] if len(group.exceptions) == 1 else group)
                    self._raise_if_failed()
        return None

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
        assert self._backend is not None
        with anyio.CancelScope(shield=True):
            for send in self._senders:
                send.close()
            with anyio.move_on_after(self._drain_timeout) as drain:
                await self._writers_done.wait()
            if drain.cancelled_caught:
                self._fail(TimeoutError(f"storage did not drain within {self._drain_timeout} s"))
                for scope in self._writer_scopes:
                    scope.cancel()
                await self._writers_done.wait()
            try:
                if self._failure is None:
                    await self._backend.finalize(self._record())
            except Exception as err:
                self._fail(err)
            finally:
                try:
                    await self._backend.aclose()
                except Exception as err:  # reported like any storage failure
                    self._fail(err)
                self._lease.release()
                self._state = "closed"
                self._closed.set()
                self._publish("closed")
                self._events.close()
        self._raise_if_failed()

    # ------------------------------------------------------------------ producer API
    async def append(
        self,
        frame: ArrayLike,
        *,
        metadata: dict[str, Any] | None = None,
        frame_metadata: dict[str, Any] | None = None,
        copy: bool = True,
    ) -> None:
        """Accept the next frame in acquisition order; wait while the buffer is full.

        Parameters
        ----------
        frame
            A 2-D array of the frame shape and the settings' dtype (any memory order).
        metadata
            Optional per-frame metadata (e.g. ``delta_t``, ``exposure_time``,
            ``position_x``, or any JSON-serialisable keys).
        frame_metadata
            Alias of ``metadata``, the name used by ``ome-writers``.
        copy
            Copy the frame (default), so the caller may reuse its buffer at once. With
            ``copy=False`` the stream takes ownership: do not modify the array afterwards.

        Raises
        ------
        ValueError, TypeError, IndexError
            Wrong shape, wrong dtype, or more frames than a bounded acquisition has.
            Nothing is queued and the stream stays usable.
        WriterError
            Storage failed; frames written before the failure remain readable.

        """
        pixels, extra = self._validate(frame, metadata, frame_metadata)
        self._check_room()
        await self._budget.acquire()
        self._enqueue(pixels, extra, copy)

    def append_nowait(
        self,
        frame: ArrayLike,
        *,
        metadata: dict[str, Any] | None = None,
        frame_metadata: dict[str, Any] | None = None,
        copy: bool = True,
    ) -> None:
        """Like :meth:`append`, but raise ``anyio.WouldBlock`` instead of waiting."""
        pixels, extra = self._validate(frame, metadata, frame_metadata)
        self._check_room()
        self._budget.acquire_nowait()
        self._enqueue(pixels, extra, copy)

    async def skip(self, frames: int = 1) -> None:
        """Advance past ``frames`` frames without data; they read as the fill value (0)."""
        if frames < 0:
            raise ValueError(f"frames must be >= 0, got {frames}")
        for _ in range(frames):
            self._check_usable()
            self._check_room()
            await self._budget.acquire()
            self._enqueue(None, None, False)

    async def flush(self) -> None:
        """Return when every accepted frame is in storage (partial blocks included)."""
        self._check_usable()
        flushes = [_Flush() for _ in self._senders]
        for send, marker in zip(self._senders, flushes, strict=True):
            await send.send(marker)
        for marker in flushes:
            await marker.done.wait()
        if self._failure is None and self._backend is not None:
            try:
                await self._backend.flush()
            except Exception as err:  # e.g. the dataset was deleted under the writer
                self._fail(err)
        self._raise_if_failed()

    async def set_global_metadata(self, namespace: str, metadata: Mapping[str, Any]) -> None:
        """Attach acquisition-level metadata (a JSON mapping) under ``namespace``.

        OME-Zarr: a top-level key ``namespace`` in the root group's attributes. OME-TIFF: a
        MapAnnotation with that Namespace in every file, each top-level key a Map entry
        with a JSON-encoded value. Setting a namespace again replaces it. Before close the
        metadata is written when the stream closes; after close, at once. The namespaces
        ``ome``, ``ome_stream`` and ``ome_writers`` are reserved.
        """
        if not isinstance(namespace, str) or not namespace:
            raise ValueError(f"namespace must be a non-empty string, got {namespace!r}")
        if namespace in RESERVED_ATTRIBUTES:
            raise ValueError(f"namespace {namespace!r} is reserved")
        self._global_metadata[namespace] = json.loads(json.dumps(dict(metadata)))
        await self._rewrite_if_closed()

    def get_metadata(self) -> dict[Any, Any]:
        """The metadata as it would be written if the stream closed now.

        OME-Zarr: ``{group path: attributes}`` ('.' is the root group). OME-TIFF:
        ``{position index: ome_types.OME}``. Modify it and pass it to
        :meth:`update_metadata`.
        """
        record = self._record()
        if self.settings.file_format == "ome-tiff":
            return {
                index: record.overrides.get(index)
                or build_ome(
                    self.layout, array, record.final_shapes[index],
                    record.frame_metadata[index], record.global_metadata,
                )
                for index, array in enumerate(self.layout.images)
            }  # fmt: skip
        return group_attributes(group_documents(self.layout, record))

    async def update_metadata(self, metadata: Mapping[Any, Any]) -> None:
        """Replace metadata documents: the keys and values of :meth:`get_metadata`.

        Before close the documents replace the generated ones when the stream closes;
        after close they are written at once (for OME-TIFF, the OME-XML of each file).
        """
        known = self.get_metadata()
        for key, value in metadata.items():
            if key not in known:
                raise KeyError(f"no metadata document {key!r}; known: {sorted(known, key=str)}")
            if self.settings.file_format == "ome-tiff":
                if not isinstance(value, OME):
                    raise TypeError(f"OME-TIFF metadata must be ome_types.OME, got {value!r}")
                self._overrides[key] = value
            else:
                self._overrides["" if key == "." else key] = json.loads(json.dumps(value))
        await self._rewrite_if_closed()

    async def _rewrite_if_closed(self) -> None:
        if self._state != "closed":
            return
        assert self._backend is not None
        await self._backend.rewrite_metadata(self._record())

    @property
    def output_path(self) -> str:
        """The root container of the data written (see ``AcquisitionSettings``)."""
        return self.settings.output_path

    @property
    def closed(self) -> bool:
        """Whether the stream has been closed."""
        return self._state == "closed"

    # ------------------------------------------------------------------ internals
    def _check_usable(self) -> None:
        if self._state != "open":
            raise anyio.ClosedResourceError(
                "the stream is not open (use it inside 'async with open_stream(...)')"
            )
        self._raise_if_failed()

    def _check_room(self) -> None:
        total = self.router.num_frames
        if total is not None and self._next_frame >= total:
            raise IndexError(
                f"the acquisition has {total} frames, all already appended; "
                f"frame {self._next_frame} does not exist"
            )

    def _validate(
        self,
        frame: ArrayLike,
        metadata: dict[str, Any] | None,
        frame_metadata: dict[str, Any] | None,
    ) -> tuple[np.ndarray, dict[str, Any] | None]:
        self._check_usable()
        pixels = np.asarray(frame)
        if pixels.shape != self.layout.frame_shape:
            names = [d.name for d in self.settings.frame_dimensions]
            raise ValueError(
                f"frame shape {pixels.shape} does not match the frame shape "
                f"{self.layout.frame_shape} of dimensions {names}"
            )
        if pixels.dtype != self.layout.dtype:
            raise TypeError(
                f"frame dtype {pixels.dtype} does not match the acquisition dtype "
                f"{self.layout.dtype}; convert it first (e.g. frame.astype('{self.layout.dtype}'))"
            )
        if metadata is not None and frame_metadata is not None:
            raise TypeError("give either metadata= or frame_metadata=, not both")
        extra = metadata if metadata is not None else frame_metadata
        if extra is not None and not isinstance(extra, dict):
            raise TypeError(f"metadata must be a dict, got {type(extra).__name__}")
        return pixels, extra

    def _enqueue(self, pixels: np.ndarray | None, extra: dict[str, Any] | None, copy: bool) -> None:
        # No await from here on: the frame number and the queue order cannot interleave
        # with another producer's.
        try:
            self._check_usable()
            self._check_room()
        except BaseException:
            self._budget.release()
            raise
        frame_number = self._next_frame
        array_index, storage_index = self.router.route(frame_number)
        pooled = False
        if pixels is not None:
            if copy:
                slot = (
                    self._free_slots.pop() if self._free_slots else np.empty_like(pixels, order="C")
                )
                np.copyto(slot, pixels)
                pixels, pooled = slot, True
            self._unwritten[array_index][storage_index] = pixels
        self._next_frame += 1
        self.stats.frames_accepted += 1
        self._account(self._frame_nbytes)
        if self._events:
            self._publish_accepted(frame_number)
        if extra:
            names = self.layout.arrays[array_index].dim_names
            self._frame_metadata[array_index].append(
                {
                    "frame": frame_number,
                    "index": dict(zip(names, storage_index, strict=False)),
                    **extra,
                }
            )
        self._senders[array_index].send_nowait(_Frame(storage_index, pixels, pooled))

    def _publish_accepted(self, frame_number: int) -> None:
        expanded = False
        for axis, index in enumerate(self.router.acquisition_index(frame_number)):
            if index >= self._high_water[axis]:
                self._high_water[axis] = index + 1
                expanded = True
        if expanded:
            self._publish("coords_expanded")
        self._publish("frames_accepted")

    def _publish(self, kind: EventKind, error: str | None = None) -> None:
        self._events.publish(
            StreamEvent(
                kind=kind,
                frames_accepted=self.stats.frames_accepted,
                frames_written=self.stats.frames_written,
                high_water=dict(zip(self._acquisition_names, self._high_water, strict=True)),
                error=error,
            ),
            must_arrive=kind in ("coords_expanded", "error", "closed"),
        )

    def events(self) -> MemoryObjectReceiveStream[StreamEvent]:
        """Subscribe to progress events: ``async for event in stream.events(): ...``.

        Each subscriber has its own queue; one that falls behind misses intermediate
        ``frames_*`` snapshots (never ``coords_expanded``, ``error`` or ``closed``) and
        never slows the writer. The iteration ends when the stream closes. Subscribe
        before the first append to see every high-water change.
        """
        return self._events.subscribe()

    def view(self) -> StreamView:
        """A live, read-only array of the acquisition so far, in acquisition order.

        Written frames are read back from storage, accepted ones from memory, and slots
        not acquired yet read as 0. See :class:`~ome_stream.view.StreamView`.
        """
        self._check_usable()
        return StreamView(self)

    async def _read_frame(self, number: int) -> np.ndarray | None:
        array_index, storage_index = self.router.route(number)
        pending = self._unwritten[array_index].get(storage_index)
        if pending is not None:
            return pending.copy()  # copied before any await: its slot may be reused
        if self._backend is None or (
            self.settings.is_unbounded and storage_index[0] >= self._extents[array_index]
        ):
            return None  # never written (skipped), beyond what storage holds yet
        return await self._backend.read_frame(array_index, storage_index)

    def _account(self, delta: int) -> None:
        stats = self.stats
        stats.bytes_buffered += delta
        stats.peak_bytes_buffered = max(stats.peak_bytes_buffered, stats.bytes_buffered)

    def _release(self, frame: _Frame) -> None:
        if frame.pooled and frame.pixels is not None:
            self._free_slots.append(frame.pixels)
        self._account(-self._frame_nbytes)
        self._budget.release()

    def _fail(self, error: BaseException) -> None:
        if self._failure is None:
            self._failure = error
            self._publish("error", repr(error))

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise WriterError(
                f"writing to {self.settings.output_path!r} failed: {self._failure!r}"
            ) from self._failure

    def _record(self) -> AcquisitionRecord:
        shapes = []
        for array in self.layout.arrays:
            shape = array.shape
            if self.settings.is_unbounded:
                per_row = self.router.frames_per_first_index
                shape = (math.ceil(self._next_frame / per_row), *shape[1:])
            shapes.append(shape)
        return AcquisitionRecord(
            shapes, self._frame_metadata, dict(self._global_metadata), dict(self._overrides)
        )

    async def _writer(self, array_index: int, receive: MemoryObjectReceiveStream[_Item]) -> None:
        """Write the image at ``array_index`` (a position): its frames, then its levels."""
        assert self._backend is not None
        # one assembler per multiscale level, keyed by the level's array index
        assemblers = {}
        for level in range(self.layout.levels):
            index = self.layout.level_array(array_index, level)
            assemblers[index] = _Assembler(
                self._backend.block_shape(index),
                self.layout.arrays[index].shape,
                self.settings.is_unbounded,
            )
        builder = self._pyramid_builder()
        try:
            with anyio.CancelScope(shield=True) as scope:
                self._writer_scopes.append(scope)
                async with anyio.create_task_group() as writes, receive:
                    try:
                        async for item in receive:
                            if isinstance(item, _Flush):
                                for index, assembler in assemblers.items():
                                    await self._write_partial(index, assembler, writes)
                                await self._wait_idle()
                                item.done.set()
                                continue
                            levels = []
                            if builder is not None and self._failure is None:
                                levels = await anyio.to_thread.run_sync(
                                    builder.add, item.storage_index, item.pixels
                                )
                            await self._file(array_index, assemblers[array_index], item, writes)
                            await self._file_levels(array_index, assemblers, levels, writes)
                        if builder is not None and self._failure is None:
                            await self._file_levels(
                                array_index, assemblers, builder.drain(), writes
                            )
                        for index, assembler in assemblers.items():
                            await self._write_partial(index, assembler, writes, final=True)
                    except Exception as err:  # never let a failure cancel the producer
                        self._fail(err)
                        async for item in receive:  # keep freeing producers until closed
                            if isinstance(item, _Flush):
                                item.done.set()
                            else:
                                self._release(item)
        finally:
            self._writers_running -= 1
            if self._writers_running == 0:
                self._writers_done.set()

    def _pyramid_builder(self) -> PyramidBuilder | None:
        pyramid = self.settings.pyramid
        if pyramid is None or self.layout.levels == 1:
            return None
        z_axis = self.layout.z_axis
        z_size = self.layout.images[0].shape[z_axis] if z_axis is not None else 1
        return PyramidBuilder(
            pyramid, self.layout.levels, self.layout.frame_shape, z_axis, z_size, self.layout.dtype
        )

    async def _file_levels(
        self,
        array_index: int,
        assemblers: dict[int, _Assembler],
        levels: list[tuple[int, tuple[int, ...], np.ndarray]],
        writes: anyio.abc.TaskGroup,
    ) -> None:
        """File frames of levels >= 1; they hold no buffer budget and count as no frames."""
        for level, index, pixels in levels:
            if self._failure is not None:
                return
            level_array = self.layout.level_array(array_index, level)
            assembler = assemblers[level_array]
            if assembler.direct:
                single = pixels[(np.newaxis,) * len(index)]
                await self._submit(level_array, index, single, writes, None, 0)
                continue
            block, complete = assembler.add(index, pixels, self.layout.dtype)
            if complete:
                await self._submit(level_array, block.origin, block.pixels, writes, None, 0)

    async def _file(
        self, array_index: int, assembler: _Assembler, item: _Frame, writes: anyio.abc.TaskGroup
    ) -> None:
        if self._failure is not None:  # storage failed: drop, but free the producer
            self._release(item)
            return
        if assembler.direct:
            if item.pixels is None:
                assert self._backend is not None
                try:
                    await self._backend.skip(array_index, item.storage_index)
                except Exception as err:
                    self._fail(err)
                self._release(item)
                self.stats.frames_written += 1
                return
            single = item.pixels[(np.newaxis,) * len(item.storage_index)]
            await self._submit(array_index, item.storage_index, single, writes, item, 1)
            return
        block, complete = assembler.add(item.storage_index, item.pixels, self.layout.dtype)
        if item.pixels is not None:  # the live view now finds the frame in its block
            self._unwritten[array_index][item.storage_index] = block.pixels[
                block.offset(item.storage_index)
            ]
        self._release(item)
        if complete:
            await self._submit(
                array_index, block.origin, block.pixels, writes, None, block.expected
            )

    async def _write_partial(
        self,
        array_index: int,
        assembler: _Assembler,
        writes: anyio.abc.TaskGroup,
        final: bool = False,
    ) -> None:
        if self._failure is not None:
            return
        # only final writes of full-resolution blocks count frames as written
        counted = final and self.layout.arrays[array_index].level == 0
        blocks = list(assembler.open.values())
        if final:
            assembler.open.clear()
        limit = None
        if self.settings.is_unbounded:
            limit = self._record().final_shapes[array_index][0]
        for block in blocks:
            pixels = block.pixels
            if limit is not None:
                pixels = pixels[: max(0, limit - block.origin[0])]
                if pixels.shape[0] == 0:
                    continue
            # a flush writes a copy: the block keeps filling afterwards
            data = pixels if final else pixels.copy()
            await self._submit(
                array_index, block.origin, data, writes, None, block.received if counted else 0
            )

    async def _submit(
        self,
        array_index: int,
        origin: tuple[int, ...],
        block: np.ndarray,
        writes: anyio.abc.TaskGroup,
        frame: _Frame | None,
        frames: int,
    ) -> None:
        assert self._backend is not None and self._inflight is not None
        if self.settings.is_unbounded:
            needed = origin[0] + block.shape[0]
            if needed > self._extents[array_index]:
                step = max(block.shape[0], _GROW_STEP)
                new_extent = -(-needed // step) * step
                try:
                    await self._backend.resize(array_index, new_extent)
                except Exception as err:
                    self._fail(err)
                    if frame is not None:
                        self._release(frame)
                    return
                self._extents[array_index] = new_extent
        await self._inflight.acquire()
        self._pending_writes += 1
        writes.start_soon(self._write, array_index, origin, block, frame, frames)

    async def _write(
        self,
        array_index: int,
        origin: tuple[int, ...],
        block: np.ndarray,
        frame: _Frame | None,
        frames: int,
    ) -> None:
        assert self._backend is not None and self._inflight is not None
        try:
            await self._backend.write(array_index, origin, block)
            if frames:
                self.stats.frames_written += frames
                unwritten = self._unwritten[array_index]
                for index in itertools.product(
                    *(range(o, o + n) for o, n in zip(origin, block.shape[:-2], strict=True))
                ):
                    unwritten.pop(index, None)
                if self._events:
                    self._publish("frames_written")
        except Exception as err:
            self._fail(err)
        finally:
            self._inflight.release()
            self._pending_writes -= 1
            if not self._pending_writes:
                self._idle.set()
            if frame is not None:
                self._release(frame)

    async def _wait_idle(self) -> None:
        assert self._inflight is not None
        assert self._backend is not None
        while self._pending_writes:
            self._idle = anyio.Event()
            await self._idle.wait()


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
