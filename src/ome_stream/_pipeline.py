"""The writer pipeline: accepted frames → whole blocks → the backend, several in flight.

Each image (position) has one writer task. It assembles the frames routed to it into
blocks (one shard or chunk deep, the full frame wide), files the pyramid levels, grows an
unbounded first axis, and hands each complete block to the backend exactly once, with
several block writes in flight. Frames not yet written stay readable from memory for the
live view. The pipeline holds the byte budget: a frame's budget returns when its pixels
are no longer needed.
"""

from __future__ import annotations

import functools
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import numpy as np

from ome_stream._assembly import Assembler
from ome_stream._log import logger
from ome_stream._writes import BlockWrites
from ome_stream.errors import WriterError

if TYPE_CHECKING:
    from collections.abc import Callable

    from anyio.abc import TaskGroup
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from ome_stream.backends.base import Backend
    from ome_stream.layout import Layout
    from ome_stream.pyramid import PyramidBuilder

__all__ = ["INFLIGHT_BYTES", "YIELD_INTERVAL", "StreamStats", "WriterPipeline"]

#: Bytes of blocks that may be in flight to storage at once (beyond the frame buffer).
INFLIGHT_BYTES = 64 * 1024 * 1024
#: Seconds a producer appending into free room may run before it yields to the loop.
YIELD_INTERVAL = 0.001
#: Resizes of an unbounded axis grow it by at least this many frames along it.
_GROW_STEP = 32
#: Seconds between two drain-progress log records while a stream closes.
DRAIN_REPORT_INTERVAL = 1.0


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


class WriterPipeline:
    """The writer tasks of one open stream and the frames they hold.

    Create it on the stream's event loop once the backend is open, then :meth:`start`
    the writers in a task group. ``final_shapes(frames)`` gives the storage shape of each
    array after ``frames`` accepted frames (an unbounded axis trimmed to what was written).
    """

    def __init__(
        self,
        layout: Layout,
        backend: Backend,
        stats: StreamStats,
        capacity: int,
        final_shapes: Callable[[], list[tuple[int, ...]]],
        notify: Callable[[str, BaseException | None], None],
    ) -> None:
        self.layout = layout
        self.backend = backend
        self.stats = stats
        self.unbounded = layout.settings.is_unbounded
        self._final_shapes = final_shapes
        self._notify = notify
        self.failure: BaseException | None = None
        """The first storage failure, if any."""
        # taken without a yield while there is room; producers yield through pace()
        self.budget = anyio.Semaphore(capacity, fast_acquire=True)
        """One token per frame that may wait for storage; ``append`` takes one."""
        self._last_yield = time.perf_counter()
        self.max_inflight = self._inflight_limit()
        self._block_writes = BlockWrites(backend, self.max_inflight)
        self._frame_nbytes = layout.frame_nbytes
        self._free_slots: list[np.ndarray] = []
        self._senders: list[MemoryObjectSendStream[_Item]] = []
        self._receivers: list[MemoryObjectReceiveStream[_Item]] = []
        for _ in layout.images:
            send, receive = anyio.create_memory_object_stream[_Item](math.inf)
            self._senders.append(send)
            self._receivers.append(receive)
        self._scopes: list[anyio.CancelScope] = []
        self._running = len(layout.images)
        self.writers_done = anyio.Event()
        self._extents = [a.shape[0] if a.shape else 0 for a in layout.arrays]
        # Accepted frames not yet in storage, per array, by storage index: the live view
        # serves them from memory.
        self._unwritten: list[dict[tuple[int, ...], np.ndarray]] = [{} for _ in layout.arrays]

    def _inflight_limit(self) -> int:
        # Many small blocks need many writes in flight to hide per-object latency; large
        # blocks need few. Blocks in flight are bounded by bytes as well as by the backend.
        block = self.backend.block_shape(0)
        block_bytes = math.prod(block) * self.layout.dtype.itemsize
        by_bytes = max(1, INFLIGHT_BYTES // max(1, block_bytes))
        return max(1, min(self.backend.max_inflight, max(by_bytes, 2)))

    def start(self, task_group: TaskGroup) -> None:
        """Start one writer task per image in ``task_group``."""
        for index, receive in enumerate(self._receivers):
            task_group.start_soon(self._writer, index, receive)
        self._receivers.clear()

    # ------------------------------------------------------------ called by the stream
    def put(
        self,
        array_index: int,
        storage_index: tuple[int, ...],
        pixels: np.ndarray | None,
        copy: bool,
        pooled: bool = False,
    ) -> None:
        """Queue one accepted frame (its budget token already taken); never waits.

        ``copy`` copies the pixels into a slot of the pool; ``pooled`` says they are one
        already (from :meth:`slot_copy`).
        """
        if pixels is not None:
            if copy:
                pixels, pooled = self.slot_copy(pixels), True
            self._unwritten[array_index][storage_index] = pixels
        self._account(self._frame_nbytes)
        self._senders[array_index].send_nowait(_Frame(storage_index, pixels, pooled))

    def slot_copy(self, pixels: np.ndarray) -> np.ndarray:
        """``pixels`` copied into a free slot of the pool (from any thread)."""
        try:
            slot = self._free_slots.pop()  # atomic: the sync facade copies in its caller
        except IndexError:
            slot = np.empty_like(pixels, order="C")
        np.copyto(slot, pixels)
        return slot

    async def pace(self) -> None:
        """Let the loop run other tasks if producers have run :data:`YIELD_INTERVAL`.

        A producer appending into free room takes no scheduling point per frame (one per
        frame cost a fifth of the loop's time on small frames); it yields here instead,
        at least every :data:`YIELD_INTERVAL` seconds. Shielded: a frame already accepted
        is never followed by a cancellation from this call.
        """
        if time.perf_counter() - self._last_yield >= YIELD_INTERVAL:
            await anyio.lowlevel.cancel_shielded_checkpoint()
            self._last_yield = time.perf_counter()

    async def flush(self) -> None:
        """Return when every queued frame is in storage (partial blocks included)."""
        flushes = [_Flush() for _ in self._senders]
        for send, marker in zip(self._senders, flushes, strict=True):
            await send.send(marker)
        for marker in flushes:
            await marker.done.wait()

    async def drain(self, seconds: float) -> None:
        """Write every queued frame and end the writers, giving up after ``seconds``."""
        for send in self._senders:
            send.close()
        stats = self.stats
        with anyio.move_on_after(seconds) as drain:
            while not self.writers_done.is_set():
                with anyio.move_on_after(DRAIN_REPORT_INTERVAL):
                    await self.writers_done.wait()
                if not self.writers_done.is_set():
                    logger.info(
                        "draining: %d of %d frames written (%d bytes buffered)",
                        stats.frames_written, stats.frames_accepted, stats.bytes_buffered,
                    )  # fmt: skip
        if drain.cancelled_caught:
            logger.warning(
                "storage did not drain within %s s: %d of %d frames written; giving up",
                seconds, stats.frames_written, stats.frames_accepted,
            )  # fmt: skip
            self.fail(TimeoutError(f"storage did not drain within {seconds} s"))
            for scope in self._scopes:
                scope.cancel()
            await self.writers_done.wait()

    async def read_frame(
        self, array_index: int, storage_index: tuple[int, ...]
    ) -> np.ndarray | None:
        """The pixels at ``storage_index``: from memory, from storage, or None (fill)."""
        pending = self._unwritten[array_index].get(storage_index)
        if pending is not None:
            return pending.copy()  # copied before any await: its slot may be reused
        if self.unbounded and storage_index[0] >= self._extents[array_index]:
            return None  # never written (skipped), beyond what storage holds yet
        try:
            return await self.backend.read_frame(array_index, storage_index)
        except (TypeError, IndexError):
            raise  # the backend cannot read back, or no such frame: not a storage failure
        except Exception as err:
            raise WriterError(f"cannot read frame {storage_index} back: {err}") from err

    def fail(self, error: BaseException) -> None:
        """Record a storage failure (the first one wins) and announce it."""
        if self.failure is None:
            self.failure = error
            logger.error("storage failed: %r", error, exc_info=error)
            self._notify("error", error)

    # ------------------------------------------------------------ the writer tasks
    def _account(self, delta: int) -> None:
        stats = self.stats
        stats.bytes_buffered += delta
        stats.peak_bytes_buffered = max(stats.peak_bytes_buffered, stats.bytes_buffered)

    def _release(self, frame: _Frame) -> None:
        if frame.pooled and frame.pixels is not None:
            self._free_slots.append(frame.pixels)
        self._account(-self._frame_nbytes)
        self.budget.release()

    async def _writer(self, image: int, receive: MemoryObjectReceiveStream[_Item]) -> None:
        """Write the image at ``image`` (a position): its frames, then its levels."""
        levels = Levels(self, image)
        try:
            with anyio.CancelScope(shield=True) as scope:
                self._scopes.append(scope)
                async with anyio.create_task_group() as writes, receive:
                    try:
                        async for item in receive:
                            if isinstance(item, _Flush):
                                for index, assembler in levels.assemblers.items():
                                    await self._write_partial(index, assembler, writes)
                                await self._block_writes.wait_idle()
                                item.done.set()
                                continue
                            pyramid = await levels.downsample(item.storage_index, item.pixels)
                            await self._file(image, levels.assemblers[image], item, writes)
                            await levels.file(pyramid, writes)
                        await levels.file(levels.drain(), writes)
                        for index, assembler in levels.assemblers.items():
                            await self._write_partial(index, assembler, writes, final=True)
                    except Exception as err:  # never let a failure cancel the producer
                        self.fail(err)
                        async for item in receive:  # keep freeing producers until closed
                            if isinstance(item, _Flush):
                                item.done.set()
                            else:
                                self._release(item)
                    await self._block_writes.wait_idle()  # writes started without a task
        finally:
            self._running -= 1
            if self._running == 0:
                self.writers_done.set()

    async def _file(
        self, array_index: int, assembler: Assembler, item: _Frame, writes: TaskGroup
    ) -> None:
        if self.failure is not None:  # storage failed: drop, but free the producer
            self._release(item)
            return
        if assembler.direct:
            if item.pixels is None:
                try:
                    await self.backend.skip(array_index, item.storage_index)
                except Exception as err:
                    self.fail(err)
                self._release(item)
                self.stats.frames_written += 1
                return
            single = item.pixels[(np.newaxis,) * len(item.storage_index)]
            await self.submit(array_index, item.storage_index, single, writes, item, 1)
            return
        block, complete = assembler.add(item.storage_index, item.pixels)
        if item.pixels is not None:  # the live view now finds the frame in its block
            self._unwritten[array_index][item.storage_index] = block.pixels[
                block.offset(item.storage_index)
            ]
        self._release(item)
        if complete:
            done = functools.partial(assembler.recycle, block.pixels)
            await self.submit(
                array_index, block.origin, block.pixels, writes, None, block.expected, done
            )

    async def _write_partial(
        self, array_index: int, assembler: Assembler, writes: TaskGroup, final: bool = False
    ) -> None:
        if self.failure is not None:
            return
        # only final writes of full-resolution blocks count frames as written
        counted = final and self.layout.arrays[array_index].level == 0
        blocks = list(assembler.open.values())
        if final:
            assembler.open.clear()
        limit = self._final_shapes()[array_index][0] if self.unbounded else None
        for block in blocks:
            pixels = block.pixels
            if limit is not None:
                pixels = pixels[: max(0, limit - block.origin[0])]
                if pixels.shape[0] == 0:
                    continue
            # a flush writes a copy: the block keeps filling afterwards
            data = pixels if final else pixels.copy()
            block.zero_missing(data)
            frames = block.received if counted else 0
            done = functools.partial(assembler.recycle, block.pixels) if final else None
            await self.submit(array_index, block.origin, data, writes, None, frames, done)

    async def submit(
        self,
        array_index: int,
        origin: tuple[int, ...],
        block: np.ndarray,
        writes: TaskGroup,
        frame: _Frame | None,
        frames: int,
        done: Callable[[], None] | None = None,
    ) -> None:
        """Start writing ``block`` (growing the array first if needed) once one may.

        ``frame`` is released and ``done`` called once the write has ended.
        """
        if self.unbounded:
            needed = origin[0] + block.shape[0]
            if needed > self._extents[array_index]:
                step = max(block.shape[0], _GROW_STEP)
                new_extent = -(-needed // step) * step
                try:
                    await self.backend.resize(array_index, new_extent)
                except Exception as err:
                    self.fail(err)
                    if frame is not None:
                        self._release(frame)
                    return
                self._extents[array_index] = new_extent
        ended = functools.partial(self._ended, array_index, origin, block, frame, frames, done)
        await self._block_writes.start(array_index, origin, block, writes, ended)

    def _ended(
        self,
        array_index: int,
        origin: tuple[int, ...],
        block: np.ndarray,
        frame: _Frame | None,
        frames: int,
        done: Callable[[], None] | None,
        error: BaseException | None,
    ) -> None:
        """A block write has ended (on the loop): account for it, free what it held."""
        try:
            if error is None:
                if frames:
                    self.stats.frames_written += frames
                    unwritten = self._unwritten[array_index]
                    for index in itertools.product(
                        *(range(o, o + n) for o, n in zip(origin, block.shape[:-2], strict=True))
                    ):
                        unwritten.pop(index, None)
                    self._notify("frames_written", None)
                if done is not None:  # only after a success: its frames stay readable
                    done()
            elif isinstance(error, Exception):
                self.fail(error)
        finally:
            if frame is not None:
                self._release(frame)


class Levels:
    """The assemblers of one image's levels and its pyramid builder (levels >= 1)."""

    def __init__(self, pipeline: WriterPipeline, image: int) -> None:
        self.pipeline = pipeline
        self.image = image
        layout = pipeline.layout
        block_shapes = {}
        for level in range(layout.levels):
            index = layout.level_array(image, level)
            block_shapes[index] = pipeline.backend.block_shape(index)
        self.assemblers = {
            index: Assembler(shape, layout.arrays[index].shape, pipeline.unbounded, layout.dtype)
            for index, shape in block_shapes.items()
        }
        self.builder = _pyramid_builder(layout)

    async def downsample(
        self, index: tuple[int, ...], pixels: np.ndarray | None
    ) -> list[tuple[int, tuple[int, ...], np.ndarray]]:
        """Feed one full-resolution frame; return the level frames it completes."""
        if self.builder is None or self.pipeline.failure is not None:
            return []
        return await anyio.to_thread.run_sync(self.builder.add, index, pixels)

    def drain(self) -> list[tuple[int, tuple[int, ...], np.ndarray]]:
        """The level frames still held by the builder, at the end of the acquisition."""
        if self.builder is None or self.pipeline.failure is not None:
            return []
        return self.builder.drain()

    async def file(
        self, levels: list[tuple[int, tuple[int, ...], np.ndarray]], writes: TaskGroup
    ) -> None:
        """File frames of levels >= 1; they hold no buffer budget and count as no frames."""
        pipeline = self.pipeline
        for level, index, pixels in levels:
            if pipeline.failure is not None:
                return
            level_array = pipeline.layout.level_array(self.image, level)
            assembler = self.assemblers[level_array]
            if assembler.direct:
                single = pixels[(np.newaxis,) * len(index)]
                await pipeline.submit(level_array, index, single, writes, None, 0)
                continue
            block, complete = assembler.add(index, pixels)
            if complete:
                done = functools.partial(assembler.recycle, block.pixels)
                await pipeline.submit(
                    level_array, block.origin, block.pixels, writes, None, 0, done
                )


def _pyramid_builder(layout: Layout) -> PyramidBuilder | None:
    pyramid = layout.settings.pyramid
    if pyramid is None or layout.levels == 1:
        return None
    from ome_stream.pyramid import PyramidBuilder

    z_axis = layout.z_axis
    z_size = layout.images[0].shape[z_axis] if z_axis is not None else 1
    return PyramidBuilder(pyramid, layout.levels, layout.frame_shape, z_axis, z_size, layout.dtype)
