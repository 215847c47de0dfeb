"""OME-Zarr through acquire-zarr's native streaming writer (extra ``acquire-zarr``).

acquire-zarr takes frames strictly in sequence and chunks, compresses and shards them in
its own C++ threads. One thread of ours feeds it: the event loop queues each frame (no
task and no thread hand-off per frame) and the thread calls ``append``, which copies the
frame into acquire-zarr's frame queue with the GIL released, then resolves the frame's
future; the pipeline collects those futures in order, one wake-up for many (see
:meth:`~ome_stream.backends.base.Backend.start_write`). The native stream never sees
concurrent calls and the loop never blocks. While frames wait for it, the thread appends
several of one array in one call (up to :data:`_BATCH_BYTES`): acquire-zarr's cost per
call is then paid once for them. A frame that arrives before its predecessors
is parked by its number until they have been queued. The NGFF group documents are ours
(the same as the other zarr backends): acquire-zarr writes bare arrays.

acquire-zarr only appends, in the order its dimensions are declared; it transposes to
another storage order itself (``storage_dimension_order``), as long as the first
dimension stays first. So a ``storage_order`` other than the acquisition order is
declared in acquisition order, each frame numbered by its place in the acquisition, and
acquire-zarr files it at its storage index. An order that moves the first acquisition
dimension, which acquire-zarr 0.10 cannot transpose, is declared in storage order and
its frames are held here until their predecessors in storage order have arrived; the
stream refuses to open when that would hold more than its buffer budget
(:func:`frames_held` says how many frames).

acquire-zarr 0.10 has no flush: a frame reaches storage when acquire-zarr completes
its chunk (its shard, when sharded) or when the stream closes. :meth:`flush` therefore
raises rather than pretend; see docs/reliability.md.
"""

from __future__ import annotations

import json
import queue
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

import acquire_zarr as az
import anyio
import anyio.to_thread
import numpy as np

from ome_stream.backends._futures import wait_future
from ome_stream.backends.base import Backend
from ome_stream.errors import WriterError
from ome_stream.metadata.ngff import group_documents
from ome_stream.stream import DEFAULT_MAX_BUFFER_BYTES

if TYPE_CHECKING:
    from ome_stream.layout import AcquisitionRecord, ArraySpec, Layout
    from ome_stream.settings import Dimension

__all__ = ["AcquireZarrBackend", "frames_held", "native_memory_estimate"]

_KINDS = {"time": "TIME", "channel": "CHANNEL", "space": "SPACE"}
# The peers' codec settings (ome-writers 0.3.2): zstd at level 3, lz4 at level 5.
_CODECS = {"blosc-zstd": ("BLOSC_ZSTD", 3), "blosc-lz4": ("BLOSC_LZ4", 5)}
#: what the feeding thread is given: array key, frame, the future resolved once appended
_Job = tuple[str, np.ndarray, "Future[None] | None"]
#: while frames wait for the feeding thread, it resolves their futures this many at once
_RESOLVE_EVERY = 16
#: while frames of one array wait, the feeding thread appends up to this many bytes of
#: them in one call (copied together first), at most :data:`_RESOLVE_EVERY` frames
_BATCH_BYTES = 1 << 20


def _dimension(dim: Dimension, chunk: int, shard: int, size: int) -> az.Dimension:
    kwargs: dict[str, Any] = {
        "name": dim.name,
        "kind": getattr(az.DimensionType, _KINDS.get(dim.type or "", "OTHER")),
        "array_size_px": size,
        "chunk_size_px": chunk,
        "shard_size_chunks": shard,
    }
    if dim.unit is not None:
        kwargs["unit"] = dim.unit
    if dim.scale is not None:
        kwargs["scale"] = float(dim.scale)
    return az.Dimension(**kwargs)


def _append_axes(layout: Layout) -> tuple[tuple[int, ...], bool]:
    """The storage axes in the order acquire-zarr is given them, and whether frames wait.

    Frames arrive in acquisition order and acquire-zarr places them by their order of
    arrival, so its dimensions are declared in acquisition order (the frame axes last)
    and it transposes to the storage order. It cannot move its first dimension: for an
    order that does, the dimensions are declared in storage order and frames wait here
    (``True``) until every frame before them in storage order has arrived.
    """
    stored = layout.arrays[0].dim_names[:-2]
    acquired = [d.name for d in layout.settings.index_dimensions]
    n = len(stored)
    if stored and stored[0] != acquired[0]:
        return tuple(range(n + 2)), True
    return (*(stored.index(name) for name in acquired), n, n + 1), False


def frames_held(layout: Layout) -> int:
    """How many frames the acquire-zarr backend holds at most, over every position.

    Zero unless the storage order moves the first acquisition dimension; then frames
    that arrive before their predecessors in storage order wait in memory (an upper
    bound: the worst moment of one position, times the number of positions).

    Parameters
    ----------
    layout
        The layout of the acquisition.

    Returns
    -------
    int
        The most frames held in memory at once; the stream refuses to open when they
        exceed the settings' ``max_buffer_bytes``.

    """
    if not _append_axes(layout)[1]:
        return 0
    stored = layout.arrays[0].dim_names[:-2]
    acquired = [d.name for d in layout.settings.index_dimensions]
    sizes = [layout.arrays[0].shape[stored.index(name)] for name in acquired]
    # arrival[j]: when (in acquisition order) the frame with storage number j arrives
    numbers = np.arange(int(np.prod(sizes, dtype=np.int64))).reshape(sizes)
    arrival = numbers.transpose([acquired.index(name) for name in stored]).ravel()
    latest = np.maximum.accumulate(arrival)  # frames 0..j are all in once this one is
    appended = np.searchsorted(latest, np.arange(arrival.size), side="right")
    held = np.arange(1, arrival.size + 1) - appended
    return int(held.max(initial=0)) * len(layout.arrays)


def _check_hold(layout: Layout) -> None:
    """Refuse an order whose held frames would exceed the stream's buffer budget."""
    held = frames_held(layout)
    budget = layout.settings.max_buffer_bytes or DEFAULT_MAX_BUFFER_BYTES
    frame_bytes = int(np.prod(layout.frame_shape, dtype=np.int64)) * layout.dtype.itemsize
    if held * frame_bytes > budget:
        stored = list(layout.arrays[0].dim_names[:-2])
        acquired = [d.name for d in layout.settings.index_dimensions]
        suggested = [acquired[0], *(name for name in stored if name != acquired[0])]
        raise ValueError(
            f"storage_order {layout.settings.storage_order!r} stores the dimensions as "
            f"{stored}, moving the first acquisition dimension {acquired[0]!r}, which "
            f"acquire-zarr cannot do itself: the 'acquire-zarr' backend would have to hold "
            f"up to {held} frames ({held * frame_bytes} bytes) until their predecessors "
            f"arrive, more than max_buffer_bytes={budget}. Store them as {suggested}, "
            "raise max_buffer_bytes in the settings, or use the tensorstore or zarr-python "
            "backend"
        )


def _array_settings(
    array: ArraySpec, compression: str | None, axes: tuple[int, ...]
) -> az.ArraySettings:
    dims = [
        _dimension(
            array.dims[i],
            array.chunk_shape[i],
            array.shard_shape[i] // array.chunk_shape[i],
            array.shape[i],
        )
        for i in axes
    ]
    kwargs: dict[str, Any] = {
        "output_key": array.array_path,
        "dimensions": dims,
        "data_type": array.dtype,
    }
    if list(axes) != sorted(axes):
        kwargs["storage_dimension_order"] = list(array.dim_names)
    if compression in _CODECS:
        codec, level = _CODECS[compression]
        kwargs["compression"] = az.CompressionSettings(
            compressor=az.Compressor.BLOSC1,
            codec=getattr(az.CompressionCodec, codec),
            level=level,
            shuffle=1,
        )
    return az.ArraySettings(**kwargs)


def _stream_settings(layout: Layout) -> az.StreamSettings:
    axes, _ = _append_axes(layout)
    compression = layout.settings.compression
    return az.StreamSettings(
        store_path=str(layout.settings.output_path),
        arrays=[_array_settings(a, compression, axes) for a in layout.arrays],
        overwrite=True,
    )


def native_memory_estimate(layout: Layout) -> int:
    """acquire-zarr's own estimate of what it buffers for ``layout``, in bytes.

    ``StreamSettings.get_maximum_memory_usage`` of acquire-zarr 0.10: about 64 MiB for
    128 KiB frames, 260-280 MiB for 0.5-8 MiB frames. It comes on top of the stream's
    ``max_buffer_bytes``, and measured resident memory exceeds it while the disk lags
    (docs/performance.md has the figures per case).
    """
    return int(_stream_settings(layout).get_maximum_memory_usage())


class _Feeder:
    """The one thread that appends to the native stream, in the order it is given frames.

    The loop only queues a frame (no task, no thread hand-off per frame or batch); the
    thread appends it (acquire-zarr copies it, with the GIL released) and resolves its
    future, which the pipeline collects in order: at once when no other frame waits, else
    in groups of :data:`_RESOLVE_EVERY`. Frames of one array that wait together are copied
    into one staging buffer and appended in one call; acquire-zarr splits a buffer of
    whole frames into its frames. After a failed append nothing more is appended: the
    frames of that call and every later one fail with the same error.
    """

    def __init__(
        self, stream: az.ZarrStream, root: Path, frame_shape: tuple[int, int], dtype: np.dtype
    ) -> None:
        self._stream = stream
        self._root = root
        self.error: RuntimeError | None = None
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        frame_bytes = int(np.prod(frame_shape, dtype=np.int64)) * dtype.itemsize
        self._batch = max(1, min(_RESOLVE_EVERY, _BATCH_BYTES // max(frame_bytes, 1)))
        # (no staging buffer when frames are appended one at a time)
        self._staging = np.empty((self._batch if self._batch > 1 else 0, *frame_shape), dtype)
        self._thread = threading.Thread(
            target=self._run, name=f"ome-stream acquire-zarr {root.name}", daemon=True
        )
        self._thread.start()

    def append(self, key: str, frame: np.ndarray, done: Future[None] | None) -> None:
        """Queue ``frame`` for array ``key``; ``done`` resolves once it is appended."""
        self._jobs.put((key, frame, done))

    def failure(self) -> WriterError:
        """The error every frame after a failed append fails with."""
        return WriterError(f"acquire-zarr failed writing {str(self._root)!r}: {self.error}")

    def _run(self) -> None:
        jobs = self._jobs
        ended: list[tuple[Future[None], bool]] = []  # (future, appended), not yet resolved
        job = jobs.get()
        while job is not None:
            batch = [job]
            looked_ahead = False  # whether ``job`` is already the next one to append
            while len(batch) < self._batch:
                try:
                    job = jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None or job[0] != batch[0][0]:
                    looked_ahead = True
                    break
                batch.append(job)
            self._append(batch, ended)
            # While more frames wait, resolve in groups: each group costs the loop one
            # wake-up (the pipeline watches the oldest future), not one per frame.
            if len(ended) >= _RESOLVE_EVERY or (not looked_ahead and jobs.empty()):
                self._resolve(ended)
            if not looked_ahead:
                job = jobs.get()
        self._resolve(ended)

    def _append(self, batch: list[_Job], ended: list[tuple[Future[None], bool]]) -> None:
        """Append the frames of ``batch`` (all of one array) in one call."""
        if self.error is None:
            key = batch[0][0]
            try:
                if len(batch) == 1:
                    self._stream.append(batch[0][1], key=key)
                else:
                    staging = self._staging[: len(batch)]
                    np.stack([frame for _, frame, _ in batch], out=staging)
                    self._stream.append(staging, key=key)
            except RuntimeError as err:  # acquire-zarr reports every failure this way
                self.error = err
        ended.extend((done, self.error is None) for _, _, done in batch if done is not None)

    def _resolve(self, ended: list[tuple[Future[None], bool]]) -> None:
        for done, appended in ended:
            if appended:
                done.set_result(None)
            else:
                done.set_exception(self.failure())
        ended.clear()

    def stop(self) -> None:
        """Blocking: append everything queued, then end the thread."""
        self._jobs.put(None)
        self._thread.join()


class AcquireZarrBackend(Backend):
    """Streams every position's frames into acquire-zarr, in sequence, from one thread."""

    max_inflight = 32  # frames queued for (or parked before) the feeding thread
    frame_blocks = True

    def __init__(self, layout: Layout) -> None:
        super().__init__(layout)
        _check_hold(layout)  # before anything is written
        axes, self._hold = _append_axes(layout)
        self._axes = axes[:-2]
        self._root = Path(layout.settings.output_path)
        self._stream: az.ZarrStream | None = None
        self._feeder: _Feeder | None = None
        self._keys = [a.array_path for a in layout.arrays]
        self._taken = [0] * len(layout.arrays)  # per array: the next frame to hand over
        # per array, by frame number: frames that arrived before their predecessors, with
        # the future of their write (frame None: skipped, appended as zeros)
        self._parked: list[dict[int, tuple[np.ndarray | None, Future[None] | None]]] = [
            {} for _ in layout.arrays
        ]
        self._zeros = np.zeros(layout.frame_shape, layout.dtype)

    # ------------------------------------------------------------------ lifecycle
    async def open(self) -> None:
        """Start the native stream and its feeding thread; write the group documents.

        A failure (or a cancellation) here closes whatever was started: no native
        thread outlives a stream that did not open.
        """
        settings = _stream_settings(self.layout)

        def start() -> None:
            # assigned in the thread, so a cancelled open still sees (and closes) it
            self._stream = az.ZarrStream(settings)
            self._feeder = _Feeder(
                self._stream, self._root, self.layout.frame_shape, self.layout.dtype
            )

        try:
            try:
                await anyio.to_thread.run_sync(start)
            except RuntimeError as err:  # acquire-zarr reports every failure this way
                raise WriterError(f"acquire-zarr: {err} (its log on stderr says why)") from err
            await self._write_groups(group_documents(self.layout))
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._close_native()
            raise

    async def _write_groups(self, docs: dict[str, dict[str, Any]]) -> None:
        def place() -> None:
            for path, doc in docs.items():
                target = self._root / path / "zarr.json"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(json.dumps(doc, indent=2))

        await anyio.to_thread.run_sync(place)

    async def _stop_feeder(self) -> None:
        """Let the feeding thread append what it was given, then end it."""
        feeder, self._feeder = self._feeder, None
        if feeder is not None:
            await anyio.to_thread.run_sync(feeder.stop)

    async def _close_native(self) -> None:
        await self._stop_feeder()
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                await anyio.to_thread.run_sync(stream.close)
            except RuntimeError as err:
                raise WriterError(
                    f"acquire-zarr failed closing {str(self._root)!r}: {err}"
                ) from err

    # ------------------------------------------------------------------ frames
    def _live_feeder(self) -> _Feeder:
        feeder = self._feeder
        if feeder is None:
            raise WriterError(f"the acquire-zarr stream of {str(self._root)!r} is closed")
        if feeder.error is not None:
            raise feeder.failure() from feeder.error
        return feeder

    def _hand_over(self, array_index: int) -> None:
        """Queue every parked frame of the array that is next in sequence (loop thread)."""
        feeder = self._live_feeder()
        parked, key = self._parked[array_index], self._keys[array_index]
        number = self._taken[array_index]
        while number in parked:
            frame, done = parked.pop(number)
            feeder.append(key, self._zeros if frame is None else frame, done)
            number += 1
        self._taken[array_index] = number

    def _number(self, array_index: int, index: tuple[int, ...]) -> int:
        """The frame at storage ``index``'s place in the acquisition: when it is appended.

        The first axis (which may be unbounded) is first in both orders, so its extent
        does not enter the computation.
        """
        shape = self.layout.arrays[array_index].shape
        number = 0
        for axis in self._axes:
            number = number * shape[axis] + index[axis]
        return number

    def start_write(
        self, array_index: int, origin: tuple[int, ...], block: np.ndarray
    ) -> Future[None]:
        """Queue one frame for the feeding thread; its future resolves once appended.

        A frame that arrives before its predecessors waits here, uncopied, with its
        future. When frames wait for their predecessors in storage order (an order that
        moves the first dimension), the frame is copied and its future is resolved at
        once; the copies are bounded by the check at construction.
        """
        self._live_feeder()
        self.layout.contrast.observe(array_index, origin, block)
        number = self._number(array_index, origin)
        frame = block.reshape(block.shape[-2:])
        done: Future[None] = Future()
        if self._hold:
            self._parked[array_index][number] = (np.array(frame, order="C", copy=True), None)
            done.set_result(None)
        else:
            self._parked[array_index][number] = (np.ascontiguousarray(frame), done)
        self._hand_over(array_index)
        return done

    async def write(self, array_index: int, origin: tuple[int, ...], block: np.ndarray) -> None:
        """Append one frame once every frame before it has been appended."""
        await wait_future(self.start_write(array_index, origin, block))

    async def skip(self, array_index: int, index: tuple[int, ...]) -> None:
        """A skipped frame is appended as zeros, in its place in the sequence."""
        self._parked[array_index][self._number(array_index, index)] = (None, None)
        self._hand_over(array_index)  # frames after it may be parked, waiting for it

    async def resize(self, array_index: int, first_extent: int) -> None:
        """acquire-zarr grows its unbounded axis itself."""

    async def flush(self) -> None:
        """acquire-zarr 0.10 cannot flush: this always raises.

        Raises
        ------
        NotImplementedError
            Always: frames reach storage when their chunk (shard) is complete or when
            the stream closes, and acquire-zarr offers no call that writes them sooner.

        """
        raise NotImplementedError(
            "the acquire-zarr backend cannot flush: acquire-zarr 0.10 writes a frame when "
            "its chunk (or shard) is complete or the stream closes; close the stream, or "
            "use the tensorstore or zarr-python backend"
        )

    async def finalize(self, record: AcquisitionRecord) -> None:
        """Pad to whole rows with zeros, close the native stream, write the metadata."""
        for array_index, shape in enumerate(record.final_shapes):
            total = int(np.prod(shape[:-2], dtype=np.int64))
            parked = self._parked[array_index]
            for number in range(self._taken[array_index], total):
                parked.setdefault(number, (None, None))
            self._hand_over(array_index)
        feeder = self._live_feeder()
        await self._stop_feeder()  # every frame given to it is appended
        if feeder.error is not None:
            raise feeder.failure() from feeder.error
        await self._close_native()
        await self._write_groups(group_documents(self.layout, record))

    async def rewrite_metadata(self, record: AcquisitionRecord) -> None:
        """Write every group document from ``record`` (after close)."""
        await self._write_groups(group_documents(self.layout, record))

    async def aclose(self) -> None:
        """Close the native stream if still open (after a failure)."""
        with anyio.CancelScope(shield=True):
            await self._close_native()


BACKEND = AcquireZarrBackend
