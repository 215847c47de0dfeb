"""OME-Zarr through acquire-zarr's native streaming writer (extra ``acquire-zarr``).

acquire-zarr takes frames strictly in sequence and chunks, compresses and shards them in
its own C++ threads. Every call into it runs on one dedicated thread, so the event loop
never blocks and the native stream never sees concurrent calls. It only appends, so the
storage order must equal the acquisition order (the settings reject anything else).
The NGFF group documents are ours (the same as the other zarr backends): acquire-zarr
writes bare arrays.
"""

from __future__ import annotations

import json
import queue
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

import acquire_zarr as az
import anyio.to_thread
import numpy as np

from ome_stream.backends._futures import wait_future
from ome_stream.backends.base import Backend
from ome_stream.metadata.ngff import group_documents

if TYPE_CHECKING:
    from collections.abc import Callable

    from ome_stream.layout import AcquisitionRecord, ArraySpec, Layout
    from ome_stream.settings import Dimension

__all__ = ["AcquireZarrBackend"]

_KINDS = {"time": "TIME", "channel": "CHANNEL", "space": "SPACE"}
_CODECS = {"blosc-zstd": "BLOSC_ZSTD", "blosc-lz4": "BLOSC_LZ4"}


class _Worker:
    """One thread that runs every call into acquire-zarr, in submission order."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._run, name="ome-stream acquire-zarr", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()

    def submit(self, call: Callable[[], Any]) -> Future[Any]:
        future: Future[Any] = Future()

        def run() -> None:
            try:
                future.set_result(call())
            except BaseException as err:
                future.set_exception(err)

        self._jobs.put(run)
        return future

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join()


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


def _array_settings(array: ArraySpec, compression: str | None) -> az.ArraySettings:
    dims = [
        _dimension(d, c, s // c, n)
        for d, c, s, n in zip(
            array.dims, array.chunk_shape, array.shard_shape, array.shape, strict=True
        )
    ]
    kwargs: dict[str, Any] = {
        "output_key": array.array_path,
        "dimensions": dims,
        "data_type": array.dtype,
    }
    if compression in _CODECS:
        kwargs["compression"] = az.CompressionSettings(
            compressor=az.Compressor.BLOSC1,
            codec=getattr(az.CompressionCodec, _CODECS[compression]),
            level=5,
            shuffle=1,
        )
    return az.ArraySettings(**kwargs)


class AcquireZarrBackend(Backend):
    """Streams every position's frames into acquire-zarr, one frame at a time."""

    max_inflight = 1  # acquire-zarr appends in sequence
    frame_blocks = True

    def __init__(self, layout: Layout) -> None:
        super().__init__(layout)
        self._root = Path(layout.settings.output_path)
        self._worker = _Worker()
        self._stream: az.ZarrStream | None = None
        self._next = [0] * len(layout.arrays)  # next frame (flat storage index) per array

    async def open(self) -> None:
        """Start the native stream and write the empty dataset's group documents."""
        settings = self.layout.settings
        stream_settings = az.StreamSettings(
            store_path=str(self._root),
            arrays=[_array_settings(a, settings.compression) for a in self.layout.arrays],
            overwrite=True,
        )
        self._stream = await wait_future(
            self._worker.submit(lambda: az.ZarrStream(stream_settings))
        )
        await self._write_groups(group_documents(self.layout))

    async def _write_groups(self, docs: dict[str, dict[str, Any]]) -> None:
        def place() -> None:
            for path, doc in docs.items():
                target = self._root / path / "zarr.json"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(json.dumps(doc, indent=2))

        await wait_future(self._worker.submit(place))

    async def _append(self, array_index: int, number: int, frame: np.ndarray | None) -> None:
        stream = self._stream
        assert stream is not None
        key = self.layout.arrays[array_index].array_path
        shape = self.layout.frame_shape
        dtype = self.layout.dtype

        def append() -> None:
            # frames the stream never handed over (skipped) are zeros, keeping alignment
            while self._next[array_index] < number:
                stream.append(np.zeros(shape, dtype), key=key)
                self._next[array_index] += 1
            if frame is not None:
                stream.append(np.ascontiguousarray(frame), key=key)
                self._next[array_index] += 1

        await wait_future(self._worker.submit(append))

    async def write(self, array_index: int, origin: tuple[int, ...], block: np.ndarray) -> None:
        """Append one frame (after zeros for any skipped before it)."""
        self.layout.contrast.observe(array_index, origin, block)
        await self._append(
            array_index,
            self.layout.arrays[array_index].frame_number(origin),
            block.reshape(block.shape[-2:]),
        )

    async def skip(self, array_index: int, index: tuple[int, ...]) -> None:
        """Skipped frames become zeros when the next frame (or the close) comes."""

    async def resize(self, array_index: int, first_extent: int) -> None:
        """acquire-zarr grows its unbounded axis itself."""

    async def finalize(self, record: AcquisitionRecord) -> None:
        """Pad to whole rows with zeros, close the native stream, write the metadata."""
        for array_index, shape in enumerate(record.final_shapes):
            total = int(np.prod(shape[:-2], dtype=np.int64))
            await self._append(array_index, total, None)
        stream, self._stream = self._stream, None
        if stream is not None:
            await wait_future(self._worker.submit(stream.close))
        await self._write_groups(group_documents(self.layout, record))

    async def rewrite_metadata(self, record: AcquisitionRecord) -> None:
        """Write every group document from ``record`` (after close)."""
        root = self._root
        for path, doc in group_documents(self.layout, record).items():
            (root / path / "zarr.json").write_text(json.dumps(doc, indent=2))

    async def aclose(self) -> None:
        """Close the native stream if still open and stop the worker thread."""
        stream, self._stream = self._stream, None
        try:
            if stream is not None:
                await wait_future(self._worker.submit(stream.close))
        finally:
            await anyio.to_thread.run_sync(self._worker.stop)


BACKEND = AcquireZarrBackend
