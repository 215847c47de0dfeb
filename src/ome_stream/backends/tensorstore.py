"""OME-Zarr v0.5 through tensorstore's zarr3 driver (the default OME-Zarr backend).

tensorstore encodes and writes in its own C++ threads and releases the GIL; its futures
are awaited through anyio, so the event loop never waits on storage.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import tensorstore as ts

from ome_stream.backends._futures import wait_future
from ome_stream.backends._writeback import WriteBack
from ome_stream.backends.base import Backend, WriteFuture
from ome_stream.metadata.ngff import group_documents

if TYPE_CHECKING:
    import numpy as np

    from ome_stream.layout import AcquisitionRecord, ArraySpec, Layout

__all__ = [
    "CONTEXT",
    "DEFAULT_TIMEOUT",
    "TensorStoreBackend",
    "kvstore_spec",
    "request_timeout",
    "wait_bounded",
    "zarr_codecs",
]


#: Bounded retries for object storage: transient errors are retried with backoff, a
#: dead endpoint fails within seconds instead of stalling the acquisition.
S3_MAX_RETRIES = 5
S3_RETRIES = {"max_retries": S3_MAX_RETRIES, "initial_delay": "0.1s", "max_delay": "2s"}
#: Seconds one request to object storage may take (retries included) before it fails:
#: an endpoint that accepts connections and never answers cannot stall an acquisition.
DEFAULT_TIMEOUT = 30.0


def request_timeout(root: str, storage_options: dict[str, str] | None) -> float | None:
    """The bound in seconds on one storage request, or None (a local filesystem).

    On object storage: ``storage_options['timeout']``, default :data:`DEFAULT_TIMEOUT`.
    """
    if not root.startswith("s3://"):
        return None
    return float((storage_options or {}).get("timeout", DEFAULT_TIMEOUT))


class StorageTimeoutError(TimeoutError):
    """Object storage did not answer a request within the configured bound."""


async def wait_bounded(future: Any, limit: float | None, what: str) -> Any:
    """Await a tensorstore or concurrent future, cancelling it after ``limit`` seconds.

    If the caller is cancelled, the operation is let finish first (shielded, within the
    same bound): a storage operation still running after its caller gave up could write
    into a dataset that has since been restored or replaced.
    """
    try:
        with anyio.fail_after(limit) if limit is not None else contextlib.nullcontext():
            return await wait_future(future)
    except TimeoutError:
        if future.done():  # it ended just as the bound passed: its own outcome counts
            return future.result()
        future.cancel()
        raise StorageTimeoutError(
            f"object storage did not answer ({what}) within {limit:g} s "
            "(storage_options['timeout'])"
        ) from None
    except BaseException:
        if not future.done():
            with (
                anyio.CancelScope(shield=True),
                anyio.move_on_after(limit or DEFAULT_TIMEOUT),
                contextlib.suppress(Exception),
            ):
                await wait_future(future)
        raise


def _is_zarr_document(data: bytes) -> bool:
    try:
        doc = json.loads(data)
    except ValueError:
        return False
    return (
        isinstance(doc, dict)
        and doc.get("zarr_format") == 3
        and doc.get("node_type") in ("group", "array")
    )


def kvstore_spec(root: str, storage_options: dict[str, str] | None = None) -> dict[str, Any]:
    """The tensorstore kvstore spec of a dataset root: a local path or ``s3://bucket/key``.

    For S3 the endpoint and region come from ``storage_options`` (``endpoint``,
    ``region``) or the standard environment variables (``AWS_ENDPOINT_URL_S3``,
    ``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_DEFAULT_REGION``); credentials come from
    the standard AWS environment variables or profile files.
    """
    if not root.startswith("s3://"):
        return {"driver": "file", "path": os.path.abspath(root) + "/"}
    options = storage_options or {}
    bucket, _, prefix = root.removeprefix("s3://").partition("/")
    spec: dict[str, Any] = {
        "driver": "s3",
        "bucket": bucket,
        "path": prefix.strip("/") + "/" if prefix.strip("/") else "",
        "aws_region": options.get("region")
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or "us-east-1",
        "context": {"s3_request_retries": S3_RETRIES},
    }
    endpoint = (
        options.get("endpoint")
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
    )
    if endpoint:
        spec["endpoint"] = endpoint
    return spec


def prepare_object_target(
    root: str, overwrite: bool, storage_options: dict[str, str] | None
) -> None:
    """The overwrite rules on object storage (blocking; run it in a worker thread).

    Objects under the prefix mean the target exists: ``FileExistsError`` without
    ``overwrite``; with it, only a zarr dataset (a ``zarr.json`` at the prefix that parses
    as a zarr v3 group or array) is deleted, never the bucket's root. Every request is
    bounded by the storage timeout.
    """
    timeout = request_timeout(root, storage_options)
    spec = kvstore_spec(root, storage_options)
    store = ts.KvStore.open(spec).result(timeout=timeout)
    keys = store.list().result(timeout=timeout)
    if not keys:
        return
    if not overwrite:
        raise FileExistsError(
            f"{root!r} already holds {len(keys)} objects; pass overwrite=True to replace it"
        )
    document = store.read(b"zarr.json").result(timeout=timeout)
    if document.state != "value" or not _is_zarr_document(document.value):
        raise FileExistsError(
            f"{root!r} holds objects but no zarr dataset; refusing to delete "
            "them even with overwrite=True"
        )
    if not spec["path"]:
        raise FileExistsError(
            f"{root!r} is the root of the bucket; refusing to delete it even with overwrite=True"
        )
    store.delete_range(ts.KvStore.KeyRange()).result(timeout=timeout)


def zarr_codecs(compression: str | None, itemsize: int) -> list[dict[str, Any]]:
    """The zarr v3 codec chain (bytes → compressor) for an ome-stream compression name."""
    codecs: list[dict[str, Any]] = [{"name": "bytes", "configuration": {"endian": "little"}}]
    if compression in ("blosc-zstd", "blosc-lz4"):
        codecs.append(
            {
                "name": "blosc",
                "configuration": {
                    "cname": compression.removeprefix("blosc-"),
                    # zstd level 3: streaming speed on a 2-core machine (level 5 cost 25 %
                    # of throughput in benchmark C for a few % of size); lz4 is cheap at 5
                    "clevel": 3 if compression == "blosc-zstd" else 5,
                    "shuffle": "bitshuffle" if itemsize == 1 else "shuffle",
                    "typesize": itemsize,
                    "blocksize": 0,
                },
            }
        )
    elif compression == "zstd":
        codecs.append({"name": "zstd", "configuration": {"level": 3, "checksum": False}})
    return codecs


def _array_metadata(array: ArraySpec, compression: str | None) -> dict[str, Any]:
    codecs = zarr_codecs(compression, array.dtype.itemsize)
    if array.sharded:
        codecs = [
            {
                "name": "sharding_indexed",
                "configuration": {
                    "chunk_shape": list(array.chunk_shape),
                    "codecs": codecs,
                    "index_codecs": [
                        {"name": "bytes", "configuration": {"endian": "little"}},
                        {"name": "crc32c"},
                    ],
                    "index_location": "end",
                },
            }
        ]
    return {
        "shape": list(array.shape),
        "data_type": array.dtype.name,
        "chunk_grid": {
            "name": "regular",
            "configuration": {"chunk_shape": list(array.shard_shape)},
        },
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "codecs": codecs,
        "fill_value": 0,
        "dimension_names": list(array.dim_names),
    }


#: The tensorstore context every array shares. No chunk cache (frames are written once).
#: Local files: each chunk is still written to a temporary file and renamed into place
#: (a reader never sees half a chunk), but without tensorstore's per-file ``fsync`` and
#: lock file. Like the other backends, a chunk is in storage once the operating system
#: has it (docs/reliability.md); the dataset lock already keeps a second writer out.
#: This halves the system calls per chunk (docs/performance.md).
CONTEXT: dict[str, Any] = {
    "cache_pool": {"total_bytes_limit": 0},
    "file_io_sync": False,
    "file_io_locking": {"mode": "none"},
}


class TensorStoreBackend(Backend):
    """Writes every array with tensorstore; places NGFF group documents in its kvstore."""

    max_inflight = 32

    def __init__(self, layout: Layout) -> None:
        super().__init__(layout)
        settings = layout.settings
        self._kvstore = kvstore_spec(settings.output_path, settings.storage_options)
        self._context = ts.Context(CONTEXT)
        self._arrays: list[ts.TensorStore] = []
        self._kv: ts.KvStore | None = None
        self._timeout = request_timeout(settings.output_path, settings.storage_options)
        self._writeback = WriteBack.for_layout(layout)

    async def _wait(self, future: Any, what: str) -> Any:
        return await wait_bounded(future, self._timeout, what)

    async def open(self) -> None:
        """Create the arrays and write the group documents of the empty dataset."""
        self._kv = await self._wait(ts.KvStore.open(self._kvstore, context=self._context), "open")
        compression = self.layout.settings.compression
        for array in self.layout.arrays:
            spec = {
                "driver": "zarr3",
                "kvstore": {
                    **self._kvstore,
                    "path": self._kvstore["path"] + array.array_path + "/",
                },
                "metadata": _array_metadata(array, compression),
            }
            store = await self._wait(
                ts.open(spec, create=True, delete_existing=True, context=self._context),
                f"create array {array.array_path!r}",
            )
            self._arrays.append(store)
        await self._write_groups(group_documents(self.layout))

    async def _write_groups(self, docs: dict[str, dict[str, Any]]) -> None:
        assert self._kv is not None
        for path, doc in docs.items():
            key = f"{path}/zarr.json" if path else "zarr.json"
            await self._wait(self._kv.write(key, json.dumps(doc, indent=2).encode()), key)

    def _begin(self, array_index: int, origin: tuple[int, ...], block: np.ndarray) -> Any:
        self.layout.contrast.observe(array_index, origin, block)
        region = tuple(slice(o, o + n) for o, n in zip(origin, block.shape, strict=False))
        # The stream keeps ``block`` unmodified until the write has ended and the context
        # has no cache, so tensorstore may use the data in place: no copy on the loop.
        commit: Any = (
            self._arrays[array_index][region]
            .write(block, can_reference_source_data_indefinitely=True)
            .commit
        )
        if self._writeback is not None:  # local objects: to the disk once committed
            self._writeback.when_stored(commit, array_index, origin, block.shape)
        return commit

    async def write(self, array_index: int, origin: tuple[int, ...], block: np.ndarray) -> None:
        """Write one whole block and wait until it is committed to storage."""
        commit = self._begin(array_index, origin, block)
        await self._wait(commit, f"write {self.layout.arrays[array_index].array_path!r}")

    def start_write(
        self, array_index: int, origin: tuple[int, ...], block: np.ndarray
    ) -> WriteFuture | None:
        """Local files: start the write and return its commit future (no task waits).

        Object storage keeps the awaited path, which bounds every request in time, and so
        does a subclass that overrides :meth:`write`.
        """
        overridden = type(self).write is not TensorStoreBackend.write  # a subclass's own write
        if self._timeout is not None or overridden:
            return None
        commit: WriteFuture = self._begin(array_index, origin, block)
        return commit

    async def read_frame(self, array_index: int, index: tuple[int, ...]) -> np.ndarray:
        """Read one frame back from storage."""
        frame: np.ndarray = await self._wait(self._arrays[array_index][index].read(), "read")
        return frame

    async def resize(self, array_index: int, first_extent: int) -> None:
        """Grow or trim the unbounded first axis."""
        store = self._arrays[array_index]
        current = store.domain.exclusive_max[0]
        if first_extent == current:
            return
        upper = [first_extent, *([None] * (store.rank - 1))]
        self._arrays[array_index] = await self._wait(
            store.resize(
                exclusive_max=upper,
                resize_metadata_only=first_extent > current,
                expand_only=first_extent > current,
                shrink_only=first_extent < current,
            ),
            "resize",
        )

    async def flush(self) -> None:
        """Check that every array is still there (its ``zarr.json``).

        Writes into a dataset deleted under the writer recreate chunk files, not arrays.
        """
        assert self._kv is not None
        for array in self.layout.arrays:
            key = f"{array.array_path}/zarr.json"
            found = await self._wait(self._kv.read(key), key)
            if found.state != "value":
                raise FileNotFoundError(
                    f"{key!r} is gone from {self.layout.settings.output_path!r}: the dataset "
                    "was deleted or replaced while it was being written"
                )

    async def finalize(self, record: AcquisitionRecord) -> None:
        """Trim unbounded arrays to what was acquired and write the final metadata."""
        await self.flush()
        if self.layout.settings.is_unbounded:
            for index, shape in enumerate(record.final_shapes):
                await self.resize(index, shape[0])
        await anyio.to_thread.run_sync(self.layout.contrast.windows)
        await self.rewrite_metadata(record)

    async def rewrite_metadata(self, record: AcquisitionRecord) -> None:
        """Write every group document from ``record``."""
        await self._write_groups(group_documents(self.layout, record))

    async def aclose(self) -> None:
        """End the write-back thread (it starts what it was given, then ends)."""
        if self._writeback is not None:
            self._writeback.close()


BACKEND = TensorStoreBackend
