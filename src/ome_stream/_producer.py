"""The producer methods of the async core: append, append_nowait and skip.

A frame is checked (shape, dtype, metadata, room) before anything is queued, then waits
for a token of the byte budget and is handed to the writer pipeline in acquisition
order; :class:`~ome_stream.stream.AsyncOMEStream` provides the state used here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ome_stream._checks import PixelRuns, check_frame, check_room

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from ome_stream._live import LiveData
    from ome_stream._metadata_api import StreamMetadata
    from ome_stream._pipeline import StreamStats, WriterPipeline
    from ome_stream.layout import Layout
    from ome_stream.router import FrameRouter

__all__ = ["ProducerAPI"]


class ProducerAPI:
    """The producer methods of :class:`~ome_stream.stream.AsyncOMEStream`."""

    layout: Layout
    router: FrameRouter
    stats: StreamStats
    live: LiveData
    metadata: StreamMetadata
    _runs: PixelRuns
    _next_frame: int

    def _running(self) -> WriterPipeline:
        raise NotImplementedError  # pragma: no cover - provided by the stream

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
            A 2-D array of the frame shape and the settings' dtype (any memory order);
            or a 1-D run of pixels in C order, of any length: with the pixels left over
            from earlier runs, every whole frame it completes is appended (as
            ``ome-writers``' acquire-zarr backend takes buffers of any size). A run
            carries no metadata; pixels short of a whole frame at close are not written
            (logged). Cancelled while waiting, a run has appended a prefix of its frames.
        metadata
            Optional per-frame metadata: ``delta_t``, ``exposure_time``, ``position_x``,
            ``position_y``, ``position_z`` (numbers), or any JSON value under any other
            key but ``frame``, ``index`` and ``storage_index`` (the stream records those).
            Checked here: NumPy scalars become numbers; values JSON cannot hold raise
            TypeError (NaN and infinities ValueError) naming the key.
        frame_metadata
            Alias of ``metadata``, the name used by ``ome-writers``.
        copy
            Copy the frame (default), so the caller may reuse its buffer at once. With
            ``copy=False`` the stream takes ownership: do not modify the array afterwards.

        Raises
        ------
        ValueError, TypeError, IndexError
            Wrong shape, wrong dtype, bad metadata, or more frames than a bounded
            acquisition has. Nothing is queued and the stream stays usable.
        WriterError
            Storage failed; frames written before the failure remain readable.

        """
        if np.ndim(frame) == 1:
            self._running()
            run = np.asarray(frame)
            extra = metadata if metadata is not None else frame_metadata
            for whole in self._runs.cut(run, extra, self.router.num_frames, self._next_frame):
                await self.append(whole, copy=False)  # cut frames are the stream's own
            return
        pixels, extra = self._validate(frame, metadata, frame_metadata)
        await self._accept(pixels, extra, copy)

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
        self._check_room("append frame")
        pipeline = self._running()
        pipeline.budget.acquire_nowait()
        self._enqueue(pipeline, pixels, extra, copy)

    async def skip(self, frames: int = 1) -> None:
        """Advance past ``frames`` frames without data; they read as the fill value (0)."""
        if frames <= 0:
            raise ValueError(f"frames must be positive, got {frames}")
        self._check_room("skip frames", frames)
        pipeline = self._running()
        first = self._next_frame
        for _ in range(frames):
            await pipeline.budget.acquire()
            self._enqueue(pipeline, None, None, False, announce=False)
        self.live.accepted(first, self._next_frame - first)
        await pipeline.pace()

    async def _accept(
        self,
        pixels: np.ndarray,
        extra: dict[str, Any] | None,
        copy: bool,
        pooled: bool = False,
    ) -> None:
        """Queue a checked frame once the budget has room (``pooled``: see ``put``)."""
        self._check_room("append frame")
        pipeline = self._running()
        await pipeline.budget.acquire()
        self._enqueue(pipeline, pixels, extra, copy, pooled=pooled)
        await pipeline.pace()

    def _check_room(self, operation: str, frames: int = 1) -> None:
        check_room(self.router.num_frames, self._next_frame, operation, frames)

    def _validate(
        self,
        frame: ArrayLike,
        metadata: dict[str, Any] | None,
        frame_metadata: dict[str, Any] | None,
    ) -> tuple[np.ndarray, dict[str, Any] | None]:
        self._running()
        return check_frame(self.layout, frame, metadata, frame_metadata)

    def _enqueue(
        self,
        pipeline: WriterPipeline,
        pixels: np.ndarray | None,
        extra: dict[str, Any] | None,
        copy: bool,
        announce: bool = True,
        pooled: bool = False,
    ) -> None:
        # No await from here on: the frame number and the queue order cannot interleave
        # with another producer's. The checks are repeated: the state may have changed
        # while the budget was awaited.
        try:
            self._running()
            self._check_room("append frame")
        except BaseException:
            pipeline.budget.release()
            raise
        frame_number = self._next_frame
        array_index, storage_index = self.router.route(frame_number)
        self._next_frame += 1
        self.stats.frames_accepted += 1
        if extra:
            self.metadata.add_frame(array_index, frame_number, storage_index, extra)
        pipeline.put(array_index, storage_index, pixels, copy, pooled)
        if announce:
            self.live.accepted(frame_number, 1)
