"""OME-Zarr v0.5 through zarr-python's async API, on a private event-loop thread.

zarr-python is asyncio-only and does per-chunk work in Python; run on the user's loop it
would stall it (and it could not run under trio at all). Its coroutines therefore run on
an asyncio loop in a dedicated thread, and the stream awaits their concurrent futures
through anyio. Arrays are created with ``write_empty_chunks=True`` (the emptiness check
cost 3x throughput) and receive whole shards only, so no two writes ever share a shard.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.to_thread
import zarr
from zarr.api.asynchronous import create_array
from zarr.core.buffer import default_buffer_prototype

from ome_stream.backends._writeback import WriteBack
from ome_stream.backends.base import Backend, WriteFuture
from ome_stream.backends.tensorstore import (
    S3_MAX_RETRIES,
    kvstore_spec,
    request_timeout,
    wait_bounded,
    zarr_codecs,
)
from ome_stream.metadata.ngff import group_documents

if TYPE_CHECKING:
    from collections.abc import Coroutine

    import numpy as np
    from obstore.store import RetryConfig

    from ome_stream.layout import AcquisitionRecord, Layout

__all__ = ["ZarrPythonBackend"]

_T = TypeVar("_T")


class _LoopThread:
    """An asyncio event loop running in its own daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="ome-stream zarr-python", daemon=True
        )
        self._thread.start()

    async def run(
        self, coroutine: Coroutine[Any, Any, _T], limit: float | None = None, what: str = ""
    ) -> _T:
        """Run ``coroutine`` on the private loop; wait for it from the caller's loop.

        After ``limit`` seconds the coroutine is cancelled on the private loop; if the
        caller is cancelled, the coroutine is let finish first (see ``wait_bounded``).
        """
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        result: _T = await wait_bounded(future, limit, what)
        return result

    def stop(self) -> None:
        """Cancel what still runs on the loop (a request given up on), then end it."""

        async def cancel_pending() -> None:
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(cancel_pending(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


def open_store(root: str, storage_options: dict[str, str] | None = None) -> Any:
    """The zarr store of a dataset root: a local directory, or ``s3://bucket/prefix``.

    S3 uses zarr's ObjectStore on obstore (extra ``s3``), configured like the tensorstore
    backend: endpoint and region from ``storage_options`` or the standard AWS variables,
    credentials from the AWS environment.
    """
    if not root.startswith("s3://"):
        return zarr.storage.LocalStore(root, read_only=False)
    try:
        from obstore.store import S3Store
    except ImportError:
        raise ImportError(
            "writing to s3:// with zarr-python needs obstore; run pip install 'ome-stream[s3]'"
        ) from None
    spec = kvstore_spec(root, storage_options)
    timeout = request_timeout(root, storage_options)
    kwargs: dict[str, Any] = {
        "region": spec["aws_region"],
        # obstore's own bound on each attempt; ours (the whole request) is above it
        "client_options": {"timeout": timedelta(seconds=timeout or 30)},
    }
    if "endpoint" in spec:
        kwargs["endpoint"] = spec["endpoint"]
        kwargs["client_options"]["allow_http"] = spec["endpoint"].startswith("http://")
    for key, variable in (
        ("access_key_id", "AWS_ACCESS_KEY_ID"),
        ("secret_access_key", "AWS_SECRET_ACCESS_KEY"),
        ("session_token", "AWS_SESSION_TOKEN"),
    ):
        if os.environ.get(variable):
            kwargs[key] = os.environ[variable]
    retry: RetryConfig = {
        "max_retries": S3_MAX_RETRIES,
        "retry_timeout": timedelta(seconds=min(10.0, timeout or 10.0)),
    }
    store = S3Store(
        spec["bucket"], prefix=spec["path"].rstrip("/") or None, retry_config=retry, **kwargs
    )
    return zarr.storage.ObjectStore(store, read_only=False)


class ZarrPythonBackend(Backend):
    """Writes every array with zarr-python; places NGFF group documents in its store."""

    max_inflight = 16

    def __init__(self, layout: Layout) -> None:
        super().__init__(layout)
        settings = layout.settings
        self._store = open_store(settings.output_path, settings.storage_options)
        self._timeout = request_timeout(settings.output_path, settings.storage_options)
        self._loop: _LoopThread | None = None  # started by open, stopped by aclose
        self._arrays: list[Any] = []
        self._writeback = WriteBack.for_layout(layout)

    async def _run(self, coroutine: Coroutine[Any, Any, _T], what: str) -> _T:
        assert self._loop is not None
        return await self._loop.run(coroutine, self._timeout, what)

    async def open(self) -> None:
        """Create the arrays and write the group documents of the empty dataset."""
        self._loop = _LoopThread()
        await self._run(self._open(), "open")

    async def _open(self) -> None:
        settings = self.layout.settings
        for array in self.layout.arrays:
            codecs = zarr_codecs(settings.compression, array.dtype.itemsize)
            self._arrays.append(
                await create_array(
                    self._store,
                    name=array.array_path,
                    shape=array.shape,
                    chunks=array.chunk_shape,
                    shards=array.shard_shape if array.sharded else None,
                    dtype=array.dtype,
                    compressors=codecs[1:] or None,
                    fill_value=0,
                    dimension_names=list(array.dim_names),
                    chunk_key_encoding={"name": "default", "separator": "/"},
                    zarr_format=3,
                    overwrite=True,
                    config={"write_empty_chunks": True},
                )
            )
        await self._write_groups(group_documents(self.layout))

    async def _write_groups(self, docs: dict[str, dict[str, Any]]) -> None:
        prototype = default_buffer_prototype()
        for path, doc in docs.items():
            key = f"{path}/zarr.json" if path else "zarr.json"
            data = json.dumps(doc, indent=2).encode()
            await self._store.set(key, prototype.buffer.from_bytes(data))

    async def write(self, array_index: int, origin: tuple[int, ...], block: np.ndarray) -> None:
        """Write one whole block (a row of shards)."""
        await self._run(self._setitem(array_index, origin, block), "write")

    def _setitem(
        self, array_index: int, origin: tuple[int, ...], block: np.ndarray
    ) -> Coroutine[Any, Any, None]:
        self.layout.contrast.observe(array_index, origin, block)
        region = tuple(slice(o, o + n) for o, n in zip(origin, block.shape, strict=False))
        coroutine: Coroutine[Any, Any, None] = self._arrays[array_index].setitem(region, block)
        return coroutine

    def start_write(
        self, array_index: int, origin: tuple[int, ...], block: np.ndarray
    ) -> WriteFuture | None:
        """Local files: start the write on zarr's loop and return its future (no task).

        Object storage keeps the awaited path, which bounds every request in time, and so
        does a subclass that overrides :meth:`write`.
        """
        overridden = type(self).write is not ZarrPythonBackend.write
        if self._timeout is not None or self._loop is None or overridden:
            return None
        coroutine = self._setitem(array_index, origin, block)
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop.loop)
        if self._writeback is not None:  # local objects: to the disk once stored
            self._writeback.when_stored(future, array_index, origin, block.shape)
        return future

    async def read_frame(self, array_index: int, index: tuple[int, ...]) -> np.ndarray:
        """Read one frame back from storage."""
        frame: np.ndarray = await self._run(self._arrays[array_index].getitem(index), "read")
        return frame

    async def resize(self, array_index: int, first_extent: int) -> None:
        """Grow or trim the unbounded first axis."""
        array = self._arrays[array_index]
        await self._run(array.resize((first_extent, *array.shape[1:])), "resize")

    async def _check_arrays(self) -> None:
        for array in self.layout.arrays:
            key = f"{array.array_path}/zarr.json"
            if not await self._store.exists(key):
                raise FileNotFoundError(
                    f"{key!r} is gone from {self.layout.settings.output_path!r}: the dataset "
                    "was deleted or replaced while it was being written"
                )

    async def flush(self) -> None:
        """Check that every array is still there (its ``zarr.json``).

        Writes into a dataset deleted under the writer recreate chunk files, not arrays.
        """
        await self._run(self._check_arrays(), "check")

    async def finalize(self, record: AcquisitionRecord) -> None:
        """Trim unbounded arrays to what was acquired and write the final metadata."""
        await self.flush()
        if self.layout.settings.is_unbounded:
            for index, shape in enumerate(record.final_shapes):
                await self.resize(index, shape[0])
        await anyio.to_thread.run_sync(self.layout.contrast.windows)
        await self._run(self._write_groups(group_documents(self.layout, record)), "metadata")

    async def rewrite_metadata(self, record: AcquisitionRecord) -> None:
        """Write every group document from ``record`` (after close: on a loop of its own)."""
        docs = group_documents(self.layout, record)
        await anyio.to_thread.run_sync(asyncio.run, self._write_groups(docs))

    async def aclose(self) -> None:
        """Stop the private event loop and the write-back thread (idempotent)."""
        if self._writeback is not None:
            self._writeback.close()
        loop, self._loop = self._loop, None
        if loop is not None:
            await anyio.to_thread.run_sync(loop.stop)


BACKEND = ZarrPythonBackend
